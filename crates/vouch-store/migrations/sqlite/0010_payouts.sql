-- Fulfilment and payouts: where participants are paid, payout batches of cash
-- rewards, gift-card references, and rewards handed to billing.

-- Where a participant is paid: one method and its details (JSON: `iban` and
-- `account_holder` for bank_transfer, `email` for paypal).
CREATE TABLE payout_details (
    participant_id BLOB PRIMARY KEY REFERENCES participants (id),
    method         TEXT NOT NULL CHECK (method IN ('bank_transfer', 'paypal')),
    details        TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- A batch of approved cash rewards of one method and currency.
CREATE TABLE payout_batches (
    id                 BLOB PRIMARY KEY,
    method             TEXT NOT NULL CHECK (method IN ('bank_transfer', 'paypal')),
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('open', 'paid')),
    external_reference TEXT,
    created_by         TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    paid_by            TEXT,
    paid_at            INTEGER,
    CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);

-- One item per participant per batch: the sum of their rewards in it, paid to
-- the destination their details named when the batch was made.
CREATE TABLE payout_items (
    id             BLOB PRIMARY KEY,
    batch_id       BLOB NOT NULL REFERENCES payout_batches (id),
    participant_id BLOB NOT NULL REFERENCES participants (id),
    amount_minor   INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer' AND amount_minor > 0),
    destination    TEXT NOT NULL,
    account_holder TEXT,
    status         TEXT NOT NULL CHECK (status IN ('open', 'paid', 'failed')),
    failure_reason TEXT,
    failed_by      TEXT,
    failed_at      INTEGER,
    UNIQUE (batch_id, participant_id)
);

-- The rewards an item pays. `state` follows the item: a failed item's rewards
-- are out of the batch and may be batched again.
CREATE TABLE payout_item_rewards (
    item_id      BLOB NOT NULL REFERENCES payout_items (id),
    reward_id    BLOB NOT NULL REFERENCES rewards (id),
    batch_id     BLOB NOT NULL REFERENCES payout_batches (id),
    amount_minor INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer'),
    state        TEXT NOT NULL CHECK (state IN ('open', 'paid', 'failed')),
    PRIMARY KEY (item_id, reward_id)
);
-- A reward is in at most one batch that is open or paid.
CREATE UNIQUE INDEX payout_item_rewards_once ON payout_item_rewards (reward_id) WHERE state <> 'failed';
CREATE INDEX payout_item_rewards_batch ON payout_item_rewards (batch_id, state);

-- A gift card delivered for a reward: the card's reference as finance entered it.
CREATE TABLE gift_card_fulfilments (
    reward_id      BLOB PRIMARY KEY REFERENCES rewards (id),
    card_reference TEXT NOT NULL,
    fulfilled_by   TEXT NOT NULL,
    fulfilled_at   INTEGER NOT NULL
);

-- A credit or plan upgrade handed to billing (through the outbox row
-- `outbox_id`), and when billing confirmed it applied. The primary key makes a
-- second hand-over of the same reward impossible.
CREATE TABLE billing_handoffs (
    reward_id         BLOB PRIMARY KEY REFERENCES rewards (id),
    outbox_id         BLOB,
    handed_over_at    INTEGER,
    applied_reference TEXT,
    applied_by        TEXT,
    applied_at        INTEGER
);
