-- Times are BIGINT (INTEGER on SQLite) microseconds since the Unix epoch (UTC) on both engines, so
-- one set of queries and row types serves both.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Bumped by every change that a server's in-memory code cache must forget.
CREATE TABLE cache_epoch (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);
INSERT INTO cache_epoch (id, epoch) VALUES (1, 0);

CREATE TABLE programs (
    id              UUID PRIMARY KEY,
    slug            TEXT NOT NULL UNIQUE,
    current_version BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- Immutable: an edit is a new row.
CREATE TABLE program_versions (
    id          UUID PRIMARY KEY,
    program_id  UUID NOT NULL REFERENCES programs (id),
    version     BIGINT NOT NULL,
    source      TEXT NOT NULL,
    definition  TEXT NOT NULL,
    landing_url TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (program_id, version)
);

CREATE TABLE participants (
    id           UUID PRIMARY KEY,
    email        TEXT NOT NULL,
    email_norm   TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    team         TEXT,
    company      TEXT,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    suspended_at BIGINT
);

CREATE TABLE enrollments (
    id             UUID PRIMARY KEY,
    program_id     UUID NOT NULL REFERENCES programs (id),
    participant_id UUID NOT NULL REFERENCES participants (id),
    created_at     BIGINT NOT NULL,
    UNIQUE (program_id, participant_id)
);
CREATE INDEX enrollments_participant ON enrollments (participant_id);

-- `code` is the canonical upper-case form, unique across all programs.
CREATE TABLE codes (
    code          TEXT COLLATE "C" PRIMARY KEY,
    enrollment_id UUID NOT NULL REFERENCES enrollments (id),
    vanity        BOOLEAN NOT NULL,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX codes_enrollment ON codes (enrollment_id);

-- The hot table: its only index is the primary key (code, id). Codes are ASCII,
-- so byte order ("C") is their order and spares the B-tree locale comparisons. Click ids are
-- time-ordered, so a code's listing is a range scan of that key.
CREATE TABLE clicks (
    code         TEXT COLLATE "C" NOT NULL,
    id           UUID NOT NULL,
    occurred_at  BIGINT NOT NULL,
    ip_hash      TEXT,
    user_agent   TEXT,
    referer      TEXT,
    utm_source   TEXT,
    utm_medium   TEXT,
    utm_campaign TEXT,
    utm_term     TEXT,
    utm_content  TEXT,
    channel      TEXT NOT NULL,
    is_bot       BOOLEAN NOT NULL,
    PRIMARY KEY (code, id)
);

-- Maintained by the click writers in the same transaction as the clicks. Each
-- writer adds to its own shard, so parallel writers never wait on one another's
-- row lock for a busy code; readers sum the shards.
CREATE TABLE code_click_stats (
    code          TEXT COLLATE "C" NOT NULL,
    shard         BIGINT NOT NULL,
    clicks        BIGINT NOT NULL,
    bot_visits    BIGINT NOT NULL,
    last_click_at BIGINT,
    PRIMARY KEY (code, shard)
);

CREATE TABLE api_keys (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
