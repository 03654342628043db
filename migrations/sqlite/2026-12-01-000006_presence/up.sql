-- Mirror of the PostgreSQL migration.
ALTER TABLE users ADD COLUMN last_seen TIMESTAMP;
ALTER TABLE users ADD COLUMN share_presence BOOLEAN NOT NULL DEFAULT 1;
