-- Adjustment entries (re-prices, clawbacks) paid or recovered through payout
-- items, beside the rewards they adjust.

-- The entries an item settles. `state` follows the item: a failed item's
-- entries are unsettled again and may be batched anew.
CREATE TABLE payout_item_adjustments (
    item_id       UUID NOT NULL REFERENCES payout_items (id),
    adjustment_id UUID NOT NULL REFERENCES reward_adjustments (id),
    amount_minor  BIGINT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('open', 'paid', 'failed')),
    PRIMARY KEY (item_id, adjustment_id)
);
-- An entry is in at most one item that is open or paid.
CREATE UNIQUE INDEX payout_item_adjustments_once ON payout_item_adjustments (adjustment_id) WHERE state <> 'failed';

-- The open or paid item settling the entry (its link above), NULL while
-- unsettled: a queue marker, so that a batch reads only the entries still
-- owed through the partial index, not every entry ever made.
ALTER TABLE reward_adjustments ADD COLUMN payout_item_id UUID;
CREATE INDEX reward_adjustments_unsettled ON reward_adjustments (currency, reward_id) WHERE payout_item_id IS NULL;
