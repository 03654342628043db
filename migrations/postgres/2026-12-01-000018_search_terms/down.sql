CREATE FUNCTION chat_search_word(word text, prefix boolean) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN prefix AND numnode(q) > 0 THEN (q::text || ':*')::tsquery ELSE q END
    FROM phraseto_tsquery('simple', chat_search_text(word)) AS q
$$;
CREATE AGGREGATE chat_tsquery_phrase(tsquery) (SFUNC = tsquery_phrase, STYPE = tsquery);
CREATE AGGREGATE chat_tsquery_and(tsquery) (SFUNC = tsquery_and, STYPE = tsquery);
CREATE FUNCTION chat_search_query(terms int8[], words text[], prefixes bool[]) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT chat_tsquery_and(t.q) FROM (
        SELECT chat_tsquery_phrase(chat_search_word(w.word, w.prefix) ORDER BY w.n) AS q
        FROM unnest(terms, words, prefixes) WITH ORDINALITY AS w(term, word, prefix, n)
        GROUP BY w.term) t
$$;
DROP FUNCTION chat_search_vector(text, int8, int8);
ALTER TABLE messages DROP COLUMN search_vector;
ALTER TABLE messages ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, chat_search_text(content))) STORED;
CREATE INDEX messages_search ON messages USING gin (search_vector);
