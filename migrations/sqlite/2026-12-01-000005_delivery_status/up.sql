-- Mirror of the PostgreSQL migration.
ALTER TABLE conversations ADD COLUMN delivered_for_low BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN delivered_for_high BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN delivered_at TIMESTAMP;
