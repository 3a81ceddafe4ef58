-- When billing was told of an adjustment entry (a re-price, a clawback) of a
-- credit: inside the credit's own hand-over, which then carries the net amount,
-- or by a message of its own when the entry came after it.
ALTER TABLE reward_adjustments ADD COLUMN billing_handed_at INTEGER;
-- Entries billing may still have to hear of. Cash entries leave it when a payout
-- settles them; entries are rare (late facts), so it stays small.
CREATE INDEX reward_adjustments_billing_due ON reward_adjustments (reward_id)
    WHERE billing_handed_at IS NULL AND payout_item_id IS NULL;

-- When billing was told that a credit or plan upgrade it had was voided (by
-- finance, or by a late churn dated before its hold ended).
ALTER TABLE rewards ADD COLUMN billing_voided_at INTEGER;
CREATE INDEX rewards_billing_void_due ON rewards (id)
    WHERE status = 'voided' AND billing_handed_at IS NOT NULL AND billing_voided_at IS NULL;
