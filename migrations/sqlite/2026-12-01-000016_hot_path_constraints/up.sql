-- PostgreSQL drops the hot tables' foreign keys for their cost under
-- concurrent writers; SQLite (one writer, embedded) keeps them. Kept so
-- both backends have the same migrations.
SELECT 1;
