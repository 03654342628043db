-- Messages per conversation, maintained with each send, so the `count` of a
-- history page costs the same for a thousand messages or a million.
ALTER TABLE conversations ADD COLUMN message_count BIGINT NOT NULL DEFAULT 0;
UPDATE conversations SET message_count =
    (SELECT count(*) FROM messages WHERE messages.conversation_id = conversations.id);
