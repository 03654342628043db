DROP TABLE user_events;
ALTER TABLE users DROP COLUMN unread_conversations;
ALTER TABLE users DROP COLUMN total_unread;
ALTER TABLE users DROP COLUMN event_seq;
