-- Mirror of the PostgreSQL migration (SQLite has no fillfactor).
DROP INDEX conversations_low_recent;
DROP INDEX conversations_high_recent;
CREATE INDEX conversations_low ON conversations (user_low);
CREATE INDEX conversations_high ON conversations (user_high);
