-- Mirror of the PostgreSQL migration (SQLite has no fillfactor).
ALTER TABLE users ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN total_unread BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN unread_conversations BIGINT NOT NULL DEFAULT 0;
UPDATE users SET
    total_unread = COALESCE((SELECT sum(CASE WHEN c.user_low = users.id THEN c.unread_for_low ELSE c.unread_for_high END)
        FROM conversations c WHERE c.user_low = users.id OR c.user_high = users.id), 0),
    unread_conversations = (SELECT count(*) FROM conversations c
        WHERE (c.user_low = users.id AND c.unread_for_low > 0) OR (c.user_high = users.id AND c.unread_for_high > 0));

CREATE TABLE user_events (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
