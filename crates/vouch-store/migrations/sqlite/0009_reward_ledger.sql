-- The ledger beyond the rewards themselves: releasing holds, and adjustment
-- entries for what a reward may no longer be edited to say.

-- When the hold of a pending reward was released. A reward released into
-- `manual` approval stays pending; this keeps the release job from finding it
-- again.
ALTER TABLE rewards ADD COLUMN released_at INTEGER;
-- What the release job looks for: pending rewards on hold, by when it ends.
CREATE INDEX rewards_due ON rewards (release_at)
    WHERE status = 'pending' AND release_at IS NOT NULL AND released_at IS NULL;

-- Entries that change what a reward comes to without editing it: a re-priced
-- approved reward, or a clawback (negative) of a paid one.
CREATE TABLE reward_adjustments (
    id           BLOB PRIMARY KEY,
    reward_id    BLOB NOT NULL REFERENCES rewards (id),
    -- Negative for clawbacks.
    amount_minor INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('reprice', 'clawback')),
    -- What caused it (a fact id): a repeat of the same cause makes no second entry.
    cause        TEXT NOT NULL,
    explanation  TEXT NOT NULL,
    actor        TEXT NOT NULL,
    at           INTEGER NOT NULL,
    UNIQUE (reward_id, kind, cause)
);
