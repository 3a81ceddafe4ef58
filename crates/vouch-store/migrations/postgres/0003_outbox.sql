-- The transactional outbox: a row is written in the same transaction as the
-- change that must notify someone, so a change that rolled back sends nothing.
-- A worker claims due rows (pushing `next_attempt_at` forward by a lease, so no
-- two workers take the same row), delivers them, and marks them `delivered`, or
-- reschedules them with backoff, or, past the attempt cap, `dead`.
CREATE TABLE outbox (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Addresses that asked for no more mail (normalised email).
CREATE TABLE email_suppressions (
    email_norm TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
