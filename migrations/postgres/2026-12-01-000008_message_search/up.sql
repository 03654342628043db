-- Message search: a stored tsvector over the unaccented content with the
-- `simple` configuration (no stemming, no stop words: language-neutral),
-- a GIN index over it, and the helpers the search query is built with.
CREATE EXTENSION IF NOT EXISTS unaccent;

-- The text that is indexed and that query words go through: unaccent(),
-- then ASCII punctuation as spaces, so `example.com`, `e-mail` and `<b>`
-- are words (as FTS5's unicode61 tokenizer sees them) rather than the
-- host, hyphenated-word and tag tokens of the default parser. unaccent()
-- is only STABLE (its dictionary could change); this wrapper names the
-- dictionary schema-qualified and is IMMUTABLE so a generated column may
-- use it. The DO block finds the schema the extension lives in.
DO $do$
DECLARE
    s text := (SELECT quote_ident(n.nspname)
               FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
               WHERE e.extname = 'unaccent');
BEGIN
    EXECUTE format(
        $f$CREATE FUNCTION chat_search_text(text) RETURNS text
           LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
           AS $body$ SELECT translate(%s.unaccent(%L::regdictionary, $1), %L, %L) $body$$f$,
        s, s || '.unaccent', '!"#$%&''()*+,-./:;<=>?@[\]^_`{|}~', repeat(' ', 32));
END
$do$;

-- One word of a search term as a tsquery: the word goes through the same
-- normalization as the content, and PostgreSQL builds the tsquery from it
-- (phraseto_tsquery takes plain text, so no operator can come from it).
-- A prefix word gets `:*` on the tsquery PostgreSQL printed itself.
CREATE FUNCTION chat_search_word(word text, prefix boolean) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN prefix AND numnode(q) > 0 THEN (q::text || ':*')::tsquery ELSE q END
    FROM phraseto_tsquery('simple', chat_search_text(word)) AS q
$$;

-- The words of a phrase joined with <->, and the terms joined with &.
CREATE AGGREGATE chat_tsquery_phrase(tsquery) (SFUNC = tsquery_phrase, STYPE = tsquery);
CREATE AGGREGATE chat_tsquery_and(tsquery) (SFUNC = tsquery_and, STYPE = tsquery);

ALTER TABLE messages ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, chat_search_text(content))) STORED;
CREATE INDEX messages_search ON messages USING gin (search_vector);
