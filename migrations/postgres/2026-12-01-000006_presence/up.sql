-- Presence: when a user was last online (written when they go offline),
-- and whether they show their presence at all.
ALTER TABLE users ADD COLUMN last_seen TIMESTAMP;
ALTER TABLE users ADD COLUMN share_presence BOOLEAN NOT NULL DEFAULT TRUE;
