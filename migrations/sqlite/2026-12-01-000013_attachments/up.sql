-- Mirror of the PostgreSQL migration. SQLite cannot change a CHECK
-- constraint in place, so `messages` is rebuilt (the procedure of SQLite's
-- ALTER TABLE documentation: foreign keys off, new table, copy, drop,
-- rename, indexes and triggers again), in a transaction of its own.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE messages_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content TEXT NOT NULL,
    client_id TEXT,
    created_at TIMESTAMP NOT NULL,
    read_at TIMESTAMP,
    delivered_at TIMESTAMP,
    reactions TEXT NOT NULL DEFAULT '[]',
    attachments TEXT NOT NULL DEFAULT '[]',
    CONSTRAINT messages_content_or_files CHECK (length(content) > 0 OR attachments <> '[]')
);
INSERT INTO messages_rebuilt (id, conversation_id, sender_id, content, client_id, created_at,
                              read_at, delivered_at, reactions)
    SELECT id, conversation_id, sender_id, content, client_id, created_at,
           read_at, delivered_at, reactions
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;
CREATE INDEX messages_conversation_id ON messages (conversation_id, id);
CREATE INDEX messages_unread ON messages (conversation_id, sender_id, id) WHERE read_at IS NULL;
CREATE UNIQUE INDEX messages_client_id ON messages (conversation_id, sender_id, client_id)
    WHERE client_id IS NOT NULL;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TABLE attachments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uploader_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    storage_key TEXT NOT NULL UNIQUE,
    thumbnail_key TEXT,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    width BIGINT,
    height BIGINT,
    ready BOOLEAN NOT NULL DEFAULT 0,
    message_id BIGINT REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id BIGINT REFERENCES conversations (id) ON DELETE CASCADE,
    claimed_until TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX attachments_unattached ON attachments (created_at) WHERE message_id IS NULL;
CREATE INDEX attachments_message ON attachments (message_id) WHERE message_id IS NOT NULL;
COMMIT;
PRAGMA foreign_keys = ON;
