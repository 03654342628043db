ALTER TABLE connections DROP CONSTRAINT connections_conversation_fk;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE connections;
DROP TABLE users;
