-- Facts received from the company's backend (`POST /api/v1/events`), each with
-- when it happened (`occurred_at`) and when it arrived (`recorded_at`). A fact
-- about a prospect no referral holds is stored too, with no referral.
CREATE TABLE facts (
    id             BLOB PRIMARY KEY,
    program_id     BLOB NOT NULL REFERENCES programs (id),
    referral_id    BLOB REFERENCES referrals (id),
    -- signup, qualified, won, payment, churned, refunded
    type           TEXT NOT NULL
        CHECK (type IN ('signup', 'qualified', 'won', 'payment', 'churned', 'refunded')),
    occurred_at    INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL,
    -- The sender's own id (a payment's invoice or charge id).
    event_id       TEXT,
    prospect_email_norm  TEXT,
    prospect_external_id TEXT,
    units          INTEGER CHECK (units >= 0),
    value_minor    INTEGER,
    value_currency TEXT,
    -- YYYY-MM-DD
    contract_date  TEXT,
    -- The request as received (JSON).
    raw            TEXT NOT NULL,
    CHECK ((value_minor IS NULL) = (value_currency IS NULL))
);
-- A fact seen before under any key is a duplicate.
CREATE UNIQUE INDEX facts_event_id ON facts (program_id, event_id) WHERE event_id IS NOT NULL;
-- Without the sender's id, the same fact about the same referral at the same
-- instant is the same fact: two replicas handling it at once store it once.
CREATE UNIQUE INDEX facts_same_fact ON facts (referral_id, type, occurred_at)
    WHERE event_id IS NULL AND referral_id IS NOT NULL;
CREATE INDEX facts_referral ON facts (referral_id, occurred_at);
