DROP TABLE messages;
DROP TABLE connections;
DROP TABLE conversations;
DROP TABLE users;
