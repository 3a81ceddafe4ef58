-- What a participant wants to hear about. One row per participant who changed
-- a default; no row means the defaults (`stage_updates` = 'all').
CREATE TABLE participant_preferences (
    participant_id UUID PRIMARY KEY REFERENCES participants (id),
    stage_updates  TEXT NOT NULL CHECK (stage_updates IN ('all', 'won_only', 'none')),
    updated_at     BIGINT NOT NULL
);

-- The IP hashes (keyed, as clicks store them) from which a referrer enrolled or
-- handed over a lead or invite: a prospect's click from one of them is the
-- `referrer_ip` review signal. One row per (participant, hash), first and last seen.
CREATE TABLE participant_ips (
    participant_id UUID NOT NULL REFERENCES participants (id),
    ip_hash        TEXT NOT NULL,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    PRIMARY KEY (participant_id, ip_hash)
);
