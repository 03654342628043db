-- The search vector is written by the server (crates/persistence/src/
-- search_terms.rs), no longer generated from the content: the server splits
-- and folds words as queries are split and folded, and adds what the text
-- alone does not give: each pair of adjacent words as a position-free
-- lexeme ' a b' (a phrase is found by its pairs, not by checking the
-- positions of every message that holds all its words) and the
-- conversation's two participants as ' u<id>' (a search over all of a
-- user's conversations intersects that entry in the index). Lexemes that
-- start with a space cannot be matched by any query word.
ALTER TABLE messages ALTER COLUMN search_vector DROP EXPRESSION;

-- The same vector in SQL, for rows written before this migration and for
-- data loaded with SQL (the benchmark's seed). Words come from PostgreSQL's
-- parser and pairs from splitting at what is not a letter or digit, which
-- agree with the server's words for text made of letters, digits,
-- punctuation and spaces; the server's are authoritative.
CREATE FUNCTION chat_search_vector(content text, user_low int8, user_high int8) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT to_tsvector('simple'::regconfig, chat_search_text(content))
        || array_to_tsvector(ARRAY(
               SELECT ' ' || w[i] || ' ' || w[i + 1]
               FROM generate_series(1, cardinality(w) - 1) AS i
               WHERE w[i] <> '' AND w[i + 1] <> ''
                 AND octet_length(w[i]) + octet_length(w[i + 1]) <= 1998)
           || ARRAY[' u' || user_low, ' u' || user_high])
    FROM regexp_split_to_array(lower(chat_search_text(content)), '[^[:alnum:]]+') AS w
$$;

-- Existing rows, with the index dropped and built again (faster than
-- updating it row by row).
DROP INDEX messages_search;
UPDATE messages m SET search_vector = chat_search_vector(m.content, c.user_low, c.user_high)
FROM conversations c WHERE c.id = m.conversation_id;
CREATE INDEX messages_search ON messages USING gin (search_vector);
-- The planner's statistics of the new lexemes (VACUUM cannot run in the
-- migration's transaction: run `VACUUM ANALYZE messages` after it).
ANALYZE messages;

-- The query is built by the server too.
DROP FUNCTION chat_search_query(int8[], text[], bool[]);
DROP AGGREGATE chat_tsquery_and(tsquery);
DROP AGGREGATE chat_tsquery_phrase(tsquery);
DROP FUNCTION chat_search_word(text, boolean);
