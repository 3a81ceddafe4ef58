-- Times are INTEGER microseconds since the Unix epoch (UTC) on both engines, so
-- one set of queries and row types serves both.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Bumped by every change that a server's in-memory code cache must forget.
CREATE TABLE cache_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT INTO cache_epoch (id, epoch) VALUES (1, 0);

CREATE TABLE programs (
    id              BLOB PRIMARY KEY,
    slug            TEXT NOT NULL UNIQUE,
    current_version INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);

-- Immutable: an edit is a new row.
CREATE TABLE program_versions (
    id          BLOB PRIMARY KEY,
    program_id  BLOB NOT NULL REFERENCES programs (id),
    version     INTEGER NOT NULL,
    source      TEXT NOT NULL,
    definition  TEXT NOT NULL,
    landing_url TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (program_id, version)
);

CREATE TABLE participants (
    id           BLOB PRIMARY KEY,
    email        TEXT NOT NULL,
    email_norm   TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    team         TEXT,
    company      TEXT,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    suspended_at INTEGER
);

CREATE TABLE enrollments (
    id             BLOB PRIMARY KEY,
    program_id     BLOB NOT NULL REFERENCES programs (id),
    participant_id BLOB NOT NULL REFERENCES participants (id),
    created_at     INTEGER NOT NULL,
    UNIQUE (program_id, participant_id)
);
CREATE INDEX enrollments_participant ON enrollments (participant_id);

-- `code` is the canonical upper-case form, unique across all programs.
CREATE TABLE codes (
    code          TEXT PRIMARY KEY,
    enrollment_id BLOB NOT NULL REFERENCES enrollments (id),
    vanity        INTEGER NOT NULL,
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX codes_enrollment ON codes (enrollment_id);

-- The hot table: one B-tree clustered by (code, id). Click ids are time-ordered,
-- so a code's clicks append at the end of its range and a code's listing is a
-- range scan, without the cost of a secondary index on every insert.
CREATE TABLE clicks (
    code         TEXT NOT NULL,
    id           BLOB NOT NULL,
    occurred_at  INTEGER NOT NULL,
    ip_hash      TEXT,
    user_agent   TEXT,
    referer      TEXT,
    utm_source   TEXT,
    utm_medium   TEXT,
    utm_campaign TEXT,
    utm_term     TEXT,
    utm_content  TEXT,
    channel      TEXT NOT NULL,
    is_bot       INTEGER NOT NULL,
    PRIMARY KEY (code, id)
) WITHOUT ROWID;

-- Maintained by the click writers in the same transaction as the clicks. Each
-- writer adds to its own shard, so parallel writers never wait on one another's
-- row lock for a busy code; readers sum the shards.
CREATE TABLE code_click_stats (
    code          TEXT NOT NULL,
    shard         INTEGER NOT NULL,
    clicks        INTEGER NOT NULL,
    bot_visits    INTEGER NOT NULL,
    last_click_at INTEGER,
    PRIMARY KEY (code, shard)
);

CREATE TABLE api_keys (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
