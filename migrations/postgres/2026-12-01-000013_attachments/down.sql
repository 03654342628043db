-- Messages with files and no text go (the old constraint refuses them).
DELETE FROM messages WHERE length(content) = 0;
ALTER TABLE messages DROP CONSTRAINT messages_content_or_files;
ALTER TABLE messages ADD CONSTRAINT messages_content_not_empty CHECK (length(content) > 0);
ALTER TABLE messages DROP COLUMN attachments;
DROP TABLE attachments;
