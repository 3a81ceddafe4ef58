-- Referrals: a prospect attributed (or refused) to a participant in a program,
-- with the program version in force when it was created and the decision taken
-- then. A rejected referral is stored all the same: listed, explained, and open
-- to a staff override.
CREATE TABLE referrals (
    id                 UUID PRIMARY KEY,
    program_id         UUID NOT NULL REFERENCES programs (id),
    program_version_id UUID NOT NULL REFERENCES program_versions (id),
    enrollment_id      UUID NOT NULL REFERENCES enrollments (id),
    participant_id     UUID NOT NULL REFERENCES participants (id),
    code               TEXT COLLATE "C" NOT NULL,
    -- lead, invite, signup_with_code, signup_with_click, staff
    source             TEXT NOT NULL,
    prospect_email       TEXT,
    -- Lower-case: what the customer registry compares.
    prospect_email_norm  TEXT,
    -- The same person however they spell their address (see `person_key`).
    prospect_person_key  TEXT,
    prospect_name        TEXT,
    prospect_company     TEXT,
    prospect_phone       TEXT,
    prospect_external_id TEXT,
    -- The wording the referrer confirmed (the prospect agreed to be contacted) and when.
    consent_text       TEXT,
    consent_at         BIGINT,
    note               TEXT,
    stage              TEXT NOT NULL CHECK (stage IN ('new', 'contacted', 'qualified', 'won', 'lost', 'churned')),
    status             TEXT NOT NULL CHECK (status IN ('active', 'in_review', 'rejected')),
    rejection_reason   TEXT,
    -- Comma-separated review signals (empty when none).
    review_signals     TEXT NOT NULL,
    holder_referral_id UUID,
    explanation        TEXT NOT NULL,
    assignee           TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    CHECK ((status = 'rejected') = (rejection_reason IS NOT NULL)),
    CHECK (prospect_person_key IS NOT NULL OR prospect_external_id IS NOT NULL)
);
-- One holder per prospect and program: two replicas attributing the same
-- prospect at once end in a constraint, never in two holders.
CREATE UNIQUE INDEX referrals_holder_person ON referrals (program_id, prospect_person_key)
    WHERE status IN ('active', 'in_review') AND prospect_person_key IS NOT NULL;
CREATE UNIQUE INDEX referrals_holder_external_id ON referrals (program_id, prospect_external_id)
    WHERE status IN ('active', 'in_review') AND prospect_external_id IS NOT NULL;
CREATE INDEX referrals_person ON referrals (program_id, prospect_person_key);
CREATE INDEX referrals_participant ON referrals (participant_id, created_at);
CREATE INDEX referrals_program ON referrals (program_id, id);

-- A referral's timeline: its creation, the attribution decision, facts
-- received, staff moves, overrides, review decisions, notes and assignments.
CREATE TABLE referral_events (
    id          UUID PRIMARY KEY,
    referral_id UUID NOT NULL REFERENCES referrals (id),
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL
        CHECK (kind IN ('created', 'decision', 'stage', 'fact', 'override', 'review', 'note', 'assign')),
    stage_from  TEXT,
    stage_to    TEXT,
    actor       TEXT NOT NULL,
    note        TEXT,
    -- JSON object with what the kind carries (the decision, the fact, ...).
    data        TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    UNIQUE (referral_id, seq)
);
