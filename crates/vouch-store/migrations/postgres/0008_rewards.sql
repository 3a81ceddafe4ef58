-- The rewards ledger: what each beneficiary earns from one referral under one
-- rule of the program version the referral is judged by.
CREATE TABLE rewards (
    id                 UUID PRIMARY KEY,
    referral_id        UUID NOT NULL REFERENCES referrals (id),
    program_id         UUID NOT NULL REFERENCES programs (id),
    program_version_id UUID NOT NULL REFERENCES program_versions (id),
    rule_id            TEXT NOT NULL,
    beneficiary        TEXT NOT NULL CHECK (beneficiary IN ('referrer', 'referee')),
    -- The referrer (NULL for a referee who is not a participant).
    participant_id     UUID REFERENCES participants (id),
    -- Which occurrence of the trigger earned it: 'won', 'qualified', or a payment's fact id.
    occurrence         TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('credit', 'gift_card', 'cash', 'plan_upgrade', 'custom')),
    amount_minor       BIGINT NOT NULL,
    currency           TEXT NOT NULL,
    plan               TEXT,
    months             BIGINT,
    units              BIGINT CHECK (units >= 0),
    -- The date the referral counts on (YYYY-MM-DD) and when the won happened:
    -- the order the tiers count in.
    counting_date      TEXT,
    won_at             BIGINT,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'paid', 'voided')),
    void_reason        TEXT,
    release_at         BIGINT,
    explanation        TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
-- At most one reward per (referral, rule, beneficiary, trigger occurrence).
CREATE UNIQUE INDEX rewards_once ON rewards (referral_id, rule_id, beneficiary, occurrence);
CREATE INDEX rewards_participant ON rewards (participant_id, rule_id, program_id);
CREATE INDEX rewards_status_release ON rewards (status, release_at);

-- Every status change of a reward, with who, when and why.
CREATE TABLE reward_events (
    id          UUID PRIMARY KEY,
    reward_id   UUID NOT NULL REFERENCES rewards (id),
    status_from TEXT,
    status_to   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX reward_events_reward ON reward_events (reward_id, at);

-- A won that lacked the units a per-unit rule needs: nothing is computed until
-- staff send them.
ALTER TABLE referrals ADD COLUMN units_missing BOOLEAN NOT NULL DEFAULT FALSE;
