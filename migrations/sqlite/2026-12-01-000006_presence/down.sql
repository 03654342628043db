ALTER TABLE users DROP COLUMN share_presence;
ALTER TABLE users DROP COLUMN last_seen;
