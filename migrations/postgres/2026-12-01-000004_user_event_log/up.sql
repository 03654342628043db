-- The user stream's durable log. Each user's events are numbered 1, 2, 3 …
-- by `users.event_seq`, which is incremented under the user's row lock in
-- the same transaction as the change an event records: an event exists if
-- and only if its change committed, and seq N+1 can only commit after N.
-- The unread counters every event carries are maintained on the same row,
-- so they cost the same whatever the number of conversations.
ALTER TABLE users ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN total_unread BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN unread_conversations BIGINT NOT NULL DEFAULT 0;
UPDATE users SET
    total_unread = COALESCE((SELECT sum(CASE WHEN c.user_low = users.id THEN c.unread_for_low ELSE c.unread_for_high END)
        FROM conversations c WHERE c.user_low = users.id OR c.user_high = users.id), 0),
    unread_conversations = (SELECT count(*) FROM conversations c
        WHERE (c.user_low = users.id AND c.unread_for_low > 0) OR (c.user_high = users.id AND c.unread_for_high > 0));
-- Room in each page so the per-event update stays HOT (no index changes).
ALTER TABLE users SET (fillfactor = 70);

-- `payload` is the event's JSON exactly as the stream sends it (seq and the
-- counters of that moment included), so a replay is a read, not a rebuild.
CREATE TABLE user_events (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, seq)
);
