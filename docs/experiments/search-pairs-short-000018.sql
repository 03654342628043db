-- Variant B of migration 000018 (issue 13, session 6), not merged: the
-- branch's 000018 with word pairs only where both words have at most 4
-- characters (a common-grams rule: frequent words are short). Query side:
-- a pair is used only when both lexemes are that short and the second is
-- no prefix; otherwise the <-> chain on the words, as before. Measured
-- (BENCHMARKS.md, session 6): sends 0.872 of main's (variants.sh sql with
-- main's server), phrase p99 84 ms ("the people" has no indexed pair).
-- Note: no made-up word of chat-bench search is that short, so the
-- benchmark holds fewer pairs than real text would.
-- Phrase search by word pairs kept inside `search_vector`: besides the
-- words (with positions, as before) it holds every pair of adjacent words
-- as one lexeme without positions, ' a b' (a space, the first word, a
-- space, the second). A lexeme never starts with a space, so no word and
-- no word prefix of a query can match a pair. A phrase "a b" is then the
-- single lexeme ' a b' (exact: the pair exists exactly where `a <-> b`
-- holds), a longer one its pairs and its words' <-> chain; the planner
-- weighs the pairs by their own statistics instead of the product of the
-- words' frequencies, which sent a rare phrase of common words through
-- most of the table backwards by id (seconds). One column, one text
-- normalization, one GIN index: sends pay for the pairs' lexemes and
-- their index entries, not for a second column and index
-- (docs/experiments/search-pairs-000017.patch cost them 18 %).

-- The pairs of `v` exactly as its positions have them (the limits of a
-- tsvector apply: 256 positions a lexeme, positions up to 16383), a pair
-- longer than a lexeme may be (2047 bytes) left out. The slow path of
-- chat_search_vector, for messages the fast path cannot be sure of.
CREATE FUNCTION chat_search_pairs_of(v tsvector) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(' ' || a.l || ' ' || b.l), '{}')
    FROM (SELECT u.lexeme AS l, p FROM unnest(v) AS u, unnest(u.positions) AS p) a
    JOIN (SELECT u.lexeme AS l, p FROM unnest(v) AS u, unnest(u.positions) AS p) b
      ON b.p = a.p + 1
    WHERE length(a.l) <= 4 AND length(b.l) <= 4
$$;

-- The stored search vector of a message's content: the words of
-- `to_tsvector('simple', chat_search_text(content))` and their pairs. The
-- fast path reads the words in order from phraseto_tsquery of the same
-- text (the same parser, so the same words; 'simple' drops none, so they
-- are adjacent, `'a' <-> 'b' <-> ...`) and pairs them with plain
-- expressions (no query, no regular expression: this runs for every
-- send). It is exact while no word can have lost positions (at most 256
-- words), no pair can be too long (the words' text under 2045 bytes) and
-- the tsquery's text is only quoted words and <->; otherwise the slow
-- path derives the pairs from the tsvector's positions. PL/pgSQL caches
-- its expressions per session (the single-row INSERT of a send); the body
-- names chat_search_text with its schema, so a restore (empty
-- search_path) can compute the column.
DO $do$
BEGIN
    EXECUTE format(
        $f$CREATE FUNCTION chat_search_vector(content text) RETURNS tsvector
           LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
           AS $body$
           DECLARE
               t text := %1$I.chat_search_text(content);
               v tsvector := to_tsvector('simple'::regconfig, t);
               q tsquery;
               w text;
               a text[];
               pairs text[];
               n int;
           BEGIN
               IF length(v) = 0 THEN
                   RETURN v;
               END IF;
               q := phraseto_tsquery('simple'::regconfig, t);
               w := q::text;
               w := replace(substr(w, 2, length(w) - 2), ''' <-> ''', ' ');
               IF numnode(q) > 511 OR octet_length(w) > 2044 OR position('''' IN w) > 0 THEN
                   RETURN v || array_to_tsvector(%1$I.chat_search_pairs_of(v));
               END IF;
               a := string_to_array(w, ' ');
               n := cardinality(a);
               IF n < 2 THEN
                   RETURN v;
               END IF;
               pairs := '{}';
               FOR i IN 1 .. n - 1 LOOP
                   IF length(a[i]) <= 4 AND length(a[i + 1]) <= 4 THEN
                       pairs := pairs || (' ' || a[i] || ' ' || a[i + 1]);
                   END IF;
               END LOOP;
               RETURN v || array_to_tsvector(pairs);
           END
           $body$$f$,
        current_schema());
END
$do$;

-- The search query's tsquery (replaces chat_search_query, which stays for
-- a server of the previous version): each term as chat_search_query builds
-- it (chat_search_word of its words joined with <->), then for a phrase
-- the pairs of its lexemes, in order, whose first is a whole word (a
-- prefix first word has no pair lexeme to look up): ' a b', or ' a b':*
-- when the second is a prefix. A term of exactly two lexemes whose pair is
-- indexed is that pair alone (the same messages, estimated by the pair's
-- own frequency); a longer one is its pairs & its <-> chain (the pairs do
-- not say they are at consecutive places). The terms are joined with &.
-- The lexemes of a word come from to_tsvector of the word, so they are
-- the content's. PL/pgSQL: the planner evaluates this call while planning
-- every search (its arguments are constants), and a SQL function would be
-- planned anew at each call.
CREATE FUNCTION chat_search_tsquery(terms int8[], words text[], prefixes bool[]) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    result tsquery;
    term_q tsquery;
    pairs_q tsquery;
    wq tsquery;
    lex text[];
    pre bool[];
    wl text[];
    pair text;
    n int;
    used int;
    first_used bool;
    i int := 1;
    j int;
    total int := coalesce(cardinality(words), 0);
BEGIN
    WHILE i <= total LOOP
        term_q := NULL;
        lex := '{}';
        pre := '{}';
        j := i;
        WHILE j <= total AND terms[j] = terms[i] LOOP
            wq := chat_search_word(words[j], prefixes[j]);
            term_q := CASE WHEN term_q IS NULL THEN wq ELSE tsquery_phrase(term_q, wq) END;
            SELECT coalesce(array_agg(u.lexeme ORDER BY p), '{}') INTO wl
            FROM unnest(to_tsvector('simple'::regconfig, chat_search_text(words[j]))) AS u,
                 unnest(u.positions) AS p;
            IF cardinality(wl) > 0 THEN
                lex := lex || wl;
                pre := pre || array_fill(false, ARRAY[cardinality(wl) - 1]) || prefixes[j];
            END IF;
            j := j + 1;
        END LOOP;
        n := cardinality(lex);
        pairs_q := NULL;
        used := 0;
        first_used := false;
        FOR k IN 1 .. n - 1 LOOP
            pair := ' ' || lex[k] || ' ' || lex[k + 1];
            IF NOT pre[k] AND NOT pre[k + 1] AND length(lex[k]) <= 4 AND length(lex[k + 1]) <= 4 THEN
                wq := ('''' || replace(replace(pair, '\', '\\'), '''', '''''') || ''''
                       || CASE WHEN pre[k + 1] THEN ':*' ELSE '' END)::tsquery;
                pairs_q := CASE WHEN pairs_q IS NULL THEN wq ELSE tsquery_and(pairs_q, wq) END;
                used := used + 1;
                first_used := first_used OR k = 1;
            END IF;
        END LOOP;
        IF n = 2 AND first_used THEN
            term_q := pairs_q;
        ELSIF pairs_q IS NOT NULL THEN
            term_q := tsquery_and(pairs_q, term_q);
        END IF;
        IF term_q IS NOT NULL THEN
            result := CASE WHEN result IS NULL THEN term_q ELSE tsquery_and(result, term_q) END;
        END IF;
        i := j;
    END LOOP;
    RETURN result;
END
$$;

-- PostgreSQL 15 cannot change a generated column's expression: the column
-- is dropped (with its index) and added again, which rewrites `messages`
-- under an exclusive lock (minutes on millions of messages), then the
-- index is built. Without statistics on the new column the planner would
-- guess every term's frequency until autovacuum analyzes it (a rewrite
-- counts as no change), so the migration analyzes the column.
ALTER TABLE messages DROP COLUMN search_vector;
ALTER TABLE messages ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (chat_search_vector(content)) STORED;
SET LOCAL maintenance_work_mem = '256MB';
CREATE INDEX messages_search ON messages USING gin (search_vector);
ANALYZE messages (search_vector);
