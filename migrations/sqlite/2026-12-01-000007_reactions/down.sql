ALTER TABLE messages DROP COLUMN reactions;
DROP TABLE reactions;
