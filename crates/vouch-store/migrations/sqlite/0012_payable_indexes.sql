-- Work queues that must stay cheap however large the ledger grows.

-- When a credit or plan upgrade was handed to billing (the same instant as its
-- billing_handoffs row). Without it, finding the rewards still to hand over
-- read every approved reward and probed billing_handoffs for each: half a second
-- per batch at a million referrals, holding the writer.
ALTER TABLE rewards ADD COLUMN billing_handed_at INTEGER;
UPDATE rewards SET billing_handed_at = (
    SELECT COALESCE(h.handed_over_at, h.applied_at, 0) FROM billing_handoffs h WHERE h.reward_id = rewards.id
) WHERE id IN (SELECT reward_id FROM billing_handoffs);
CREATE INDEX rewards_billing_due ON rewards (id)
    WHERE status = 'approved' AND kind IN ('credit', 'plan_upgrade') AND billing_handed_at IS NULL;

-- What a payout batch by method and currency reads: approved cash rewards.
CREATE INDEX rewards_payable ON rewards (currency, participant_id)
    WHERE status = 'approved' AND kind = 'cash';

