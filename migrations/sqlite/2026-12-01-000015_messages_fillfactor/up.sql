-- A page fill factor is PostgreSQL's (HOT updates); SQLite has none. Kept
-- so both backends have the same migrations.
SELECT 1;
