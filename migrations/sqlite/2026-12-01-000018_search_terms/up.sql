-- PostgreSQL's search vector is now written by the server (pairs of words
-- and participants); SQLite's FTS5 index has positions of its own and keeps
-- its triggers. Kept so both backends have the same migrations.
SELECT 1;
