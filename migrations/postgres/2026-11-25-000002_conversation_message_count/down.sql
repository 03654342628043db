ALTER TABLE conversations DROP COLUMN message_count;
