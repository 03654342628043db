-- Refresh tokens given up by their holder (POST /api/auth/token/blacklist/),
-- by their `jti`; refused by refresh and blacklist from then on. A row is
-- needed only while its token could still be used: rows are pruned once
-- `expires_at` has passed.
CREATE TABLE token_blacklist (
    jti TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    blacklisted_at TIMESTAMP NOT NULL
);
CREATE INDEX token_blacklist_expires_at ON token_blacklist (expires_at);
