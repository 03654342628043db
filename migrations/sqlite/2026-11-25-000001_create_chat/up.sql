-- Mirror of migrations/postgres with the same name; see the comments there.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    avatar TEXT,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT users_username_key_unique UNIQUE (username_key)
);

CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id BIGINT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    user_low BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_message_id BIGINT,
    unread_for_low BIGINT NOT NULL DEFAULT 0,
    unread_for_high BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT conversations_pair_unique UNIQUE (user_low, user_high),
    CONSTRAINT conversations_pair_order CHECK (user_low < user_high),
    CONSTRAINT conversations_unread_nonneg CHECK (unread_for_low >= 0 AND unread_for_high >= 0)
);
CREATE INDEX conversations_low_recent ON conversations (user_low, updated_at DESC, id DESC);
CREATE INDEX conversations_high_recent ON conversations (user_high, updated_at DESC, id DESC);

CREATE TABLE connections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    requester_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    addressee_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_low BIGINT NOT NULL,
    user_high BIGINT NOT NULL,
    status TEXT NOT NULL,
    conversation_id BIGINT REFERENCES conversations (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT connections_status_check CHECK (status IN ('pending', 'accepted', 'rejected', 'removed')),
    CONSTRAINT connections_not_self CHECK (requester_id <> addressee_id),
    CONSTRAINT connections_pair_order CHECK (
        user_low = min(requester_id, addressee_id) AND user_high = max(requester_id, addressee_id))
);
CREATE UNIQUE INDEX connections_open_pair ON connections (user_low, user_high)
    WHERE status IN ('pending', 'accepted');
CREATE INDEX connections_requester ON connections (requester_id, id);
CREATE INDEX connections_addressee ON connections (addressee_id, id);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content TEXT NOT NULL,
    client_id TEXT,
    created_at TIMESTAMP NOT NULL,
    read_at TIMESTAMP,
    CONSTRAINT messages_content_not_empty CHECK (length(content) > 0)
);
CREATE INDEX messages_conversation_id ON messages (conversation_id, id);
CREATE INDEX messages_unread ON messages (conversation_id, sender_id, id) WHERE read_at IS NULL;
CREATE UNIQUE INDEX messages_client_id ON messages (conversation_id, sender_id, client_id)
    WHERE client_id IS NOT NULL;
