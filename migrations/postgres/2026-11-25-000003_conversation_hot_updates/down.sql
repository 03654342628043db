ALTER TABLE conversations RESET (fillfactor);
DROP INDEX conversations_high;
DROP INDEX conversations_low;
CREATE INDEX conversations_low_recent ON conversations (user_low, updated_at DESC, id DESC);
CREATE INDEX conversations_high_recent ON conversations (user_high, updated_at DESC, id DESC);
