-- Delivery time from the watermarks, not stamped on each message: every
-- move of a (conversation, sender) watermark records where it moved and
-- when. A message's delivery time is that of the first mark at or above
-- its id (marks only move forward, so the first is the earliest). An ack
-- thus writes one row however many messages it covers; stamping
-- `messages.delivered_at` rewrote every covered message (as costly as
-- storing it). Messages stamped before this migration keep their value.
CREATE TABLE delivery_marks (
    conversation_id BIGINT NOT NULL,
    sender_id BIGINT NOT NULL,
    up_to BIGINT NOT NULL,
    at TIMESTAMP NOT NULL,
    PRIMARY KEY (conversation_id, sender_id, up_to)
);
