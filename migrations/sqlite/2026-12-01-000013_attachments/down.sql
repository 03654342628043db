-- The rebuild of up.sql backwards; messages with files and no text go
-- (the old constraint refuses them).
PRAGMA foreign_keys = OFF;
BEGIN;
DROP TABLE attachments;
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
    CONSTRAINT messages_content_not_empty CHECK (length(content) > 0)
);
INSERT INTO messages_rebuilt (id, conversation_id, sender_id, content, client_id, created_at,
                              read_at, delivered_at, reactions)
    SELECT id, conversation_id, sender_id, content, client_id, created_at,
           read_at, delivered_at, reactions
    FROM messages WHERE length(content) > 0;
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
COMMIT;
PRAGMA foreign_keys = ON;
