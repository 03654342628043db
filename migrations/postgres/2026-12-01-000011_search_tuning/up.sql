-- The search query's tsquery as one IMMUTABLE function of the bound word
-- arrays: with constant arguments the planner evaluates it while planning,
-- so it plans with the real tsquery and its selectivity (from the
-- column's most common lexemes) instead of a default guess for a
-- sub-select's result. With the guess, a common word ran a GIN scan per
-- conversation of the user (seconds on 5M messages); with the real
-- tsquery it reads the newest messages backwards and stops at the page.
CREATE FUNCTION chat_search_query(terms int8[], words text[], prefixes bool[]) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT chat_tsquery_and(t.q) FROM (
        SELECT chat_tsquery_phrase(chat_search_word(w.word, w.prefix) ORDER BY w.n) AS q
        FROM unnest(terms, words, prefixes) WITH ORDINALITY AS w(term, word, prefix, n)
        GROUP BY w.term) t
$$;
