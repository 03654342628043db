DROP AGGREGATE chat_tsquery_and(tsquery);
DROP AGGREGATE chat_tsquery_phrase(tsquery);
DROP FUNCTION chat_search_word(text, boolean);
-- Drops the index with it.
ALTER TABLE messages DROP COLUMN search_vector;
DROP FUNCTION chat_search_text(text);
-- The unaccent extension stays: it may have been installed before, and
-- other objects may use it.
