-- Idempotency-Key records: the first answer to a write, replayed for a repeat
-- of the same request with the same key. Scoped to the API key that sent it.
-- `status` is 0 while the first request is still being handled.
CREATE TABLE idempotency_keys (
    api_key_id   UUID NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
