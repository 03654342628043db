-- This deployment's identity: one row, written by the first node that
-- starts (a random id, not made here, so databases cloned from one
-- migrated template still differ). The default Redis channel prefix is
-- derived from it, so deployments with different databases sharing one
-- Redis never share channels.
CREATE TABLE deployment (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    deployment_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
