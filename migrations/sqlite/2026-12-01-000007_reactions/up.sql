-- Mirror of the PostgreSQL migration.
CREATE TABLE reactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT reactions_unique UNIQUE (message_id, user_id, emoji)
);
ALTER TABLE messages ADD COLUMN reactions TEXT NOT NULL DEFAULT '[]';
