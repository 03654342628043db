-- Mirror of the PostgreSQL migration.
CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    recipient_id BIGINT NOT NULL,
    subject_id BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    due_at TIMESTAMP NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    claimed_until TIMESTAMP,
    claim_token TEXT,
    payload TEXT,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (due_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_recipient ON webhook_outbox (recipient_id, id) WHERE state = 'pending';
