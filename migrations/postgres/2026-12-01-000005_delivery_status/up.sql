-- Delivery status. Each participant has a watermark per conversation: every
-- message of the other participant up to it has been acknowledged, and it
-- only moves forward, so an ack that changes nothing costs one row read.
-- `messages.delivered_at` keeps when each message was covered (set for the
-- range the watermark passes; a read message counts as delivered when read).
ALTER TABLE conversations ADD COLUMN delivered_for_low BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN delivered_for_high BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN delivered_at TIMESTAMP;
