//! Fulfilment and payouts: participants' payout details, payout batches of
//! approved cash rewards, the gift-card queue, the hand-over of credits and plan
//! upgrades to billing through the outbox, and yearly paid totals per payee.
//!
//! A batched reward stays `approved` until its batch is marked paid; the link
//! table's partial unique index keeps it in at most one open (or paid) batch,
//! whatever two finance users do at once. Every status change writes a
//! `reward_events` row in the same transaction.
//!
//! An item also settles its payee's unsettled adjustment entries of cash
//! rewards (re-prices and clawbacks, `payout_item_adjustments`), so it pays
//! the net; the same kind of index keeps an entry in at most one open or paid
//! item (decision 0013).

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;
use vouch_domain::payout::{
    AdjustedReward, BatchAdjustment, BatchCandidate, BatchRefusal, BatchScope, Iban, PayoutDetails, PayoutMethod,
    PlannedBatch, mask_email, plan_batch,
};
use vouch_domain::{Currency, Email, Money, ParticipantId, ReferralId};

use crate::outbox::enqueue;
use crate::rewards::{INSERT_REWARD_EVENT, RewardRecord, RewardStatus};
use crate::{Result, Store, StoreError, micros, on_read, on_write, timestamp};

/// Rows per multi-row statement (well under both engines' bind limits).
const CHUNK: usize = 1000;

/// The outbox kind of a credit or plan upgrade handed to billing.
pub const BILLING: &str = "billing";

/// A payout batch's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutStatus {
    Open,
    Paid,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Paid => "paid",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Paid].into_iter().find(|v| v.as_str() == s)
    }
}

/// Which rewards a new batch pays.
#[derive(Debug, Clone)]
pub enum PayoutSelection {
    /// These rewards, all of them payable together.
    Rewards(Vec<Uuid>),
    /// Every approved cash reward of participants paid by `method`, in
    /// `currency`, not yet in a batch, with their unsettled adjustment entries;
    /// participants owed less than `min_amount` (minor units), net, or nothing
    /// are left for a later batch.
    Method { method: PayoutMethod, currency: Currency, min_amount: Option<i64> },
}

#[derive(Debug, thiserror::Error)]
pub enum CreatePayoutError {
    /// `index` is the reward's position in the chosen ids.
    #[error("no reward has this id")]
    UnknownReward { index: usize },
    #[error("the reward is listed twice")]
    Duplicate { index: usize },
    #[error("the reward is already in the open payout batch {batch}")]
    InOpenBatch { index: usize, batch: Uuid },
    /// Another batch made at the same moment took one of the payees' entries.
    #[error("an adjustment entry of these payees was just put in another open payout batch")]
    AdjustmentInOpenBatch,
    /// The index is among the chosen ids, or (by method) among the candidates.
    #[error(transparent)]
    Refused(BatchRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(CreatePayoutError);

#[derive(Debug, thiserror::Error)]
pub enum PayoutActionError {
    #[error("not found")]
    NotFound,
    #[error("the item is not in this batch")]
    ItemNotFound,
    /// A batched reward is no longer `approved` (voided meanwhile): nothing is paid.
    #[error("the reward {0} is no longer approved")]
    RewardChanged(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(PayoutActionError);

/// Why a reward could not be fulfilled (gift card) or marked applied (billing).
#[derive(Debug, thiserror::Error)]
pub enum FulfilError {
    #[error("not found")]
    NotFound,
    /// The reward is of another kind than this fulfilment handles.
    #[error("the reward is a {0} reward")]
    WrongKind(String),
    /// Only approved rewards are fulfilled.
    #[error("the reward is {0}")]
    NotApproved(&'static str),
    /// Already paid with another reference.
    #[error("the reward was already fulfilled with another reference")]
    AlreadyFulfilled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(FulfilError);

/// One item of a payout batch: what one participant is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutItemRecord {
    pub id: Uuid,
    pub participant_id: ParticipantId,
    pub payee_name: String,
    pub payee_email: String,
    /// Where the money goes, in full: the IBAN or PayPal address.
    pub destination: String,
    pub account_holder: Option<String>,
    pub amount: Money,
    /// open, paid or failed
    pub status: String,
    pub failure_reason: Option<String>,
    pub reward_ids: Vec<Uuid>,
    /// The adjustment entries the item settles; `amount` counts them.
    pub adjustment_ids: Vec<Uuid>,
    /// The sum of those entries (negative when they take back more than they add).
    pub adjustments: Money,
}

impl PayoutItemRecord {
    /// The destination as the API shows it.
    pub fn masked_destination(&self, method: PayoutMethod) -> String {
        match method {
            PayoutMethod::Paypal => mask_email(&self.destination),
            PayoutMethod::BankTransfer => match Iban::parse(&self.destination) {
                Ok(iban) => iban.masked(),
                Err(_) => "***".into(),
            },
        }
    }
}

/// A payout batch with its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRecord {
    pub id: Uuid,
    pub method: PayoutMethod,
    pub currency: Currency,
    pub status: PayoutStatus,
    pub external_reference: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub paid_by: Option<String>,
    pub paid_at: Option<Timestamp>,
    /// The sum of the items not failed.
    pub total: Money,
    pub items: Vec<PayoutItemRecord>,
}

/// An approved gift-card reward waiting for its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiftCardDue {
    pub reward_id: Uuid,
    pub referral_id: ReferralId,
    pub program: String,
    pub participant_id: Option<ParticipantId>,
    pub payee_name: Option<String>,
    pub payee_email: Option<String>,
    pub amount: Money,
    pub created_at: Timestamp,
}

/// One payee's rewards paid in a year, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayeeTotal {
    pub participant_id: ParticipantId,
    pub name: String,
    pub email: String,
    /// The rewards and the adjustment entries settled in the year, net.
    pub paid: Money,
    pub rewards: u32,
    /// How many adjustment entries `paid` counts.
    pub adjustments: u32,
}

pub(crate) fn details_json(d: &PayoutDetails) -> String {
    match d {
        PayoutDetails::BankTransfer { iban, account_holder } => {
            json!({"iban": iban.as_str(), "account_holder": account_holder})
        }
        PayoutDetails::Paypal { email } => json!({"email": email.as_str()}),
    }
    .to_string()
}

fn details_from(participant: Uuid, method: &str, raw: &str) -> Result<PayoutDetails> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("payout details of {participant}: {what}"));
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|_| corrupt("not JSON"))?;
    let field = |k: &str| v[k].as_str().ok_or_else(|| corrupt(k));
    match PayoutMethod::parse(method) {
        Some(PayoutMethod::BankTransfer) => Ok(PayoutDetails::BankTransfer {
            iban: Iban::parse(field("iban")?).map_err(|_| corrupt("iban"))?,
            account_holder: field("account_holder")?.to_string(),
        }),
        Some(PayoutMethod::Paypal) => {
            Ok(PayoutDetails::Paypal { email: Email::parse(field("email")?).map_err(|_| corrupt("email"))? })
        }
        None => Err(corrupt("method")),
    }
}

/// Opens a write transaction. On SQLite, `BEGIN IMMEDIATE`: a transaction that
/// reads before it writes would fail at once if another process (`vouch jobs
/// run` beside a server) wrote in between; taking the write lock first waits
/// for it instead.
fn begin_statement<DB: sqlx::Database>(_: &sqlx::Pool<DB>) -> &'static str {
    if DB::NAME == "SQLite" { "BEGIN IMMEDIATE" } else { "BEGIN" }
}

fn currency(code: &str) -> Result<Currency> {
    Currency::parse(code).map_err(|_| StoreError::Corrupt(format!("currency {code}")))
}

/// The open batch holding reward `$1`, if any. `state <> 'failed'` says nothing
/// `state = 'open'` does not; it is there so that the unique partial index
/// `payout_item_rewards_once` answers (SQLite uses a partial index only when the
/// query repeats its condition); without it SQLite read every link per reward.
pub(crate) const SELECT_OPEN_BATCH: &str =
    "SELECT batch_id FROM payout_item_rewards WHERE reward_id = $1 AND state <> 'failed' AND state = 'open'";

/// id, participant_id, kind, status, amount_minor, currency, method
type CandidateRow = (Uuid, Option<Uuid>, String, String, i64, String, Option<String>);

/// Locks one reward (a no-op write: Postgres holds the row until commit) and
/// reads what batching needs, with its payee's payout method.
const LOCK_CANDIDATE: &str = "UPDATE rewards SET status = status WHERE id = $1
     RETURNING id, participant_id, kind, status, amount_minor, currency,
        (SELECT method FROM payout_details d WHERE d.participant_id = rewards.participant_id)";

/// The same for every approved cash reward in `$1` of payees paid by `$2` and
/// not in an open batch. A read, not a no-op write: a batch may take 100,000
/// rewards, and on Postgres rewriting each row (with its index entries) cost
/// about 3 of 7.7 s (docs/benchmarks.md, ledger). SQLite's transaction holds the write lock
/// from its start (`BEGIN IMMEDIATE`), so the rows stay as read; Postgres
/// locks them with [`LOCK_BY_METHOD_PG`].
const SELECT_BY_METHOD: &str = "SELECT r.id, r.participant_id, r.kind, r.status, r.amount_minor, r.currency, d.method
     FROM rewards r JOIN payout_details d ON d.participant_id = r.participant_id
     WHERE r.status = 'approved' AND r.kind = 'cash' AND r.currency = $1 AND d.method = $2
       AND NOT EXISTS (SELECT 1 FROM payout_item_rewards l
                       WHERE l.reward_id = r.id AND l.state <> 'failed' AND l.state = 'open')";
const LOCK_BY_METHOD_PG: &str = "SELECT r.id, r.participant_id, r.kind, r.status, r.amount_minor, r.currency, d.method
     FROM rewards r JOIN payout_details d ON d.participant_id = r.participant_id
     WHERE r.status = 'approved' AND r.kind = 'cash' AND r.currency = $1 AND d.method = $2
       AND NOT EXISTS (SELECT 1 FROM payout_item_rewards l
                       WHERE l.reward_id = r.id AND l.state <> 'failed' AND l.state = 'open')
     FOR UPDATE OF r";

/// adjustment id, participant_id, amount_minor, reward id, reward status
type AdjustmentRow = (Uuid, Uuid, i64, Uuid, String);

/// Unsettled adjustment entries in `$1` of cash rewards, not voided, of payees
/// paid by `$2`: one read for the whole batch, through the partial index of
/// unsettled entries (`$hint` names it to SQLite; `$lock` locks them on
/// Postgres, so a batch made at the same moment waits and then skips them).
macro_rules! unsettled_adjustments {
    ($hint:literal, $lock:literal) => {
        concat!(
            "SELECT a.id, r.participant_id, a.amount_minor, r.id, r.status FROM reward_adjustments a ",
            $hint,
            " JOIN rewards r ON r.id = a.reward_id
                  JOIN payout_details d ON d.participant_id = r.participant_id
             WHERE a.payout_item_id IS NULL AND a.currency = $1 AND d.method = $2
               AND r.kind = 'cash' AND r.status IN ('approved', 'paid')
             ORDER BY a.id",
            $lock
        )
    };
}
const UNSETTLED_SQLITE: &str = unsettled_adjustments!("INDEXED BY reward_adjustments_unsettled", "");
const UNSETTLED_PG: &str = unsettled_adjustments!("", " FOR UPDATE OF a");

/// An entry as batching sees it: its reward paid, batched here, or elsewhere.
fn batch_adjustment(row: &AdjustmentRow, currency: Currency, batched: &HashMap<Uuid, usize>) -> BatchAdjustment {
    let reward = if row.4 == RewardStatus::Paid.as_str() {
        AdjustedReward::Paid
    } else {
        batched.get(&row.3).map_or(AdjustedReward::NotInBatch, |&i| AdjustedReward::Candidate(i))
    };
    BatchAdjustment { participant: ParticipantId(row.1), amount: Money::new(row.2, currency), reward }
}

fn candidate(row: &CandidateRow) -> Result<BatchCandidate> {
    Ok(BatchCandidate {
        participant: row.1.map(ParticipantId),
        approved: row.3 == RewardStatus::Approved.as_str(),
        cash: row.2 == "cash",
        method: row.6.as_deref().and_then(PayoutMethod::parse),
        amount: Money::new(row.4, currency(&row.5)?),
    })
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    id: Uuid,
    method: String,
    currency: String,
    status: String,
    external_reference: Option<String>,
    created_by: String,
    created_at: i64,
    paid_by: Option<String>,
    paid_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: Uuid,
    participant_id: Uuid,
    name: String,
    email: String,
    destination: String,
    account_holder: Option<String>,
    amount_minor: i64,
    status: String,
    failure_reason: Option<String>,
}

const SELECT_BATCH: &str = "SELECT id, method, currency, status, external_reference, created_by, created_at,
        paid_by, paid_at FROM payout_batches WHERE id = $1";
const SELECT_ITEMS: &str = "SELECT i.id, i.participant_id, p.name, p.email, i.destination, i.account_holder,
        i.amount_minor, i.status, i.failure_reason
     FROM payout_items i JOIN participants p ON p.id = i.participant_id WHERE i.batch_id = $1 ORDER BY i.id";
const SELECT_LINKS: &str = "SELECT item_id, reward_id FROM payout_item_rewards WHERE batch_id = $1 ORDER BY reward_id";
const SELECT_ADJUSTMENT_LINKS: &str = "SELECT l.item_id, l.adjustment_id, l.amount_minor
     FROM payout_item_adjustments l JOIN payout_items i ON i.id = l.item_id
     WHERE i.batch_id = $1 ORDER BY l.adjustment_id";

fn payout_record(
    batch: BatchRow,
    items: Vec<ItemRow>,
    links: Vec<(Uuid, Uuid)>,
    adjustment_links: Vec<(Uuid, Uuid, i64)>,
) -> Result<PayoutRecord> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("payout {}: {what}", batch.id));
    let currency = currency(&batch.currency)?;
    let mut total = Money::new(0, currency);
    let mut out = Vec::with_capacity(items.len());
    let mut by_item: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (item, reward) in links {
        by_item.entry(item).or_default().push(reward);
    }
    let mut adjusted: HashMap<Uuid, (Vec<Uuid>, Money)> = HashMap::new();
    for (item, adjustment, amount) in adjustment_links {
        let (ids, sum) = adjusted.entry(item).or_insert_with(|| (Vec::new(), Money::new(0, currency)));
        ids.push(adjustment);
        *sum = sum.checked_add(Money::new(amount, currency)).map_err(|_| corrupt("adjustments overflow"))?;
    }
    for i in items {
        let amount = Money::new(i.amount_minor, currency);
        if i.status != "failed" {
            total = total.checked_add(amount).map_err(|_| corrupt("total overflows"))?;
        }
        let (adjustment_ids, adjustments) = adjusted.remove(&i.id).unwrap_or((Vec::new(), Money::new(0, currency)));
        out.push(PayoutItemRecord {
            reward_ids: by_item.remove(&i.id).unwrap_or_default(),
            adjustment_ids,
            adjustments,
            id: i.id,
            participant_id: ParticipantId(i.participant_id),
            payee_name: i.name,
            payee_email: i.email,
            destination: i.destination,
            account_holder: i.account_holder,
            amount,
            status: i.status,
            failure_reason: i.failure_reason,
        });
    }
    Ok(PayoutRecord {
        id: batch.id,
        method: PayoutMethod::parse(&batch.method).ok_or_else(|| corrupt("method"))?,
        currency,
        status: PayoutStatus::parse(&batch.status).ok_or_else(|| corrupt("status"))?,
        external_reference: batch.external_reference,
        created_by: batch.created_by,
        created_at: timestamp(batch.created_at)?,
        paid_by: batch.paid_by,
        paid_at: batch.paid_at.map(timestamp).transpose()?,
        total,
        items: out,
    })
}

/// Reads a batch with its items on `$exec` (a pool or an open transaction).
/// Evaluates to `Result<Option<PayoutRecord>, StoreError>`.
macro_rules! read_payout {
    ($exec:expr, $id:expr) => {
        async {
            let id: Uuid = $id;
            let batch: Option<BatchRow> = sqlx::query_as(SELECT_BATCH).bind(id).fetch_optional(&mut *$exec).await?;
            let Some(batch) = batch else { return Ok::<_, StoreError>(None) };
            let items: Vec<ItemRow> = sqlx::query_as(SELECT_ITEMS).bind(id).fetch_all(&mut *$exec).await?;
            let links: Vec<(Uuid, Uuid)> = sqlx::query_as(SELECT_LINKS).bind(id).fetch_all(&mut *$exec).await?;
            let adjustment_links: Vec<(Uuid, Uuid, i64)> =
                sqlx::query_as(SELECT_ADJUSTMENT_LINKS).bind(id).fetch_all(&mut *$exec).await?;
            payout_record(batch, items, links, adjustment_links).map(Some)
        }
    };
}

/// Writes one reward's status change and its event.
macro_rules! move_reward {
    ($tx:expr, $reward:expr, $from:expr, $to:expr, $actor:expr, $reason:expr, $now:expr) => {
        async {
            let moved = sqlx::query("UPDATE rewards SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2")
                .bind($reward)
                .bind($from.as_str())
                .bind($to.as_str())
                .bind(micros($now))
                .execute(&mut *$tx)
                .await?
                .rows_affected()
                == 1;
            if moved {
                sqlx::query(INSERT_REWARD_EVENT)
                    .bind(Uuid::now_v7())
                    .bind($reward)
                    .bind(Some($from.as_str()))
                    .bind($to.as_str())
                    .bind($actor)
                    .bind(Some($reason))
                    .bind(micros($now))
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<bool, sqlx::Error>(moved)
        }
    };
}

/// Runs `$sql` (`UPDATE … SET marker = $2 WHERE id = $1 AND marker IS NULL`)
/// for `$id` in `$tx`: whether this call set the marker, so that of two
/// replicas only one writes the message it stands for.
macro_rules! mark_once {
    ($tx:expr, $sql:expr, $id:expr, $now:expr) => {
        async {
            let set = sqlx::query($sql).bind($id).bind(micros($now)).execute(&mut *$tx).await?.rows_affected();
            Ok::<bool, sqlx::Error>(set == 1)
        }
    };
}

/// Credits and plan upgrades with what a billing message says, chosen by
/// `$where`, oldest first. `$hint` names the partial index that answers
/// `$where` on SQLite: its 3.51 planner prefers `rewards_status_release` and
/// sorts every reward of the status (0.4 s a batch at a million referrals),
/// even with statistics.
macro_rules! billing_rows {
    ($hint:literal, $where:expr) => {
        concat!(
            "SELECT r.id, r.kind, r.beneficiary, r.participant_id, r.referral_id, r.amount_minor, r.currency,
                    r.plan, r.months, r.void_reason, g.slug, p.email, f.prospect_email, f.prospect_external_id
             FROM rewards r ",
            $hint,
            " JOIN programs g ON g.id = r.program_id
                  JOIN referrals f ON f.id = r.referral_id
                  LEFT JOIN participants p ON p.id = r.participant_id
             WHERE ",
            $where,
            " ORDER BY r.id LIMIT $1"
        )
    };
}
/// Approved, not yet handed to billing.
macro_rules! billing_due {
    () => {
        "r.status = 'approved' AND r.kind IN ('credit', 'plan_upgrade') AND r.billing_handed_at IS NULL"
    };
}
/// Handed to billing, voided since, and billing not yet told.
macro_rules! billing_voided {
    () => {
        "r.status = 'voided' AND r.billing_handed_at IS NOT NULL AND r.billing_voided_at IS NULL"
    };
}
const BILLING_DUE: &str = billing_rows!("", billing_due!());
const BILLING_DUE_SQLITE: &str = billing_rows!("INDEXED BY rewards_billing_due", billing_due!());
const BILLING_VOIDED: &str = billing_rows!("", billing_voided!());
const BILLING_VOIDED_SQLITE: &str = billing_rows!("INDEXED BY rewards_billing_void_due", billing_voided!());

/// Adjustment entries on credits billing already has and has not heard of, with
/// the credit's message fields (the entry's amount in `amount_minor`).
const BILLING_ENTRIES_DUE: &str = "SELECT r.id, r.kind, r.beneficiary, r.participant_id, r.referral_id,
        a.amount_minor, a.currency, r.plan, r.months, r.void_reason, g.slug, p.email, f.prospect_email, f.prospect_external_id,
        a.id AS adjustment_id, a.kind AS adjustment_kind, a.explanation
     FROM reward_adjustments a JOIN rewards r ON r.id = a.reward_id
          JOIN programs g ON g.id = r.program_id
          JOIN referrals f ON f.id = r.referral_id
          LEFT JOIN participants p ON p.id = r.participant_id
     WHERE a.billing_handed_at IS NULL AND a.payout_item_id IS NULL
       AND r.kind = 'credit' AND r.billing_handed_at IS NOT NULL
     ORDER BY a.id LIMIT $1";

/// A reward as billing hears of it.
#[derive(sqlx::FromRow)]
struct BillingRow {
    id: Uuid,
    kind: String,
    beneficiary: String,
    participant_id: Option<Uuid>,
    referral_id: Uuid,
    amount_minor: i64,
    currency: String,
    plan: Option<String>,
    months: Option<i64>,
    void_reason: Option<String>,
    slug: String,
    email: Option<String>,
    prospect_email: Option<String>,
    prospect_external_id: Option<String>,
}

impl BillingRow {
    /// The fields every billing message has: what, which reward, and who
    /// receives it — the referrer (a participant), or the referee, known by the
    /// referral's prospect.
    fn payload(&self, kind: &str) -> serde_json::Value {
        let recipient = match self.participant_id {
            Some(participant) => json!({"participant_id": participant, "email": self.email}),
            None => json!({"email": self.prospect_email, "external_id": self.prospect_external_id}),
        };
        json!({
            "type": kind, "reward_id": self.id, "referral_id": self.referral_id, "program": self.slug,
            "beneficiary": self.beneficiary, "recipient": recipient,
        })
    }
}

/// An adjustment entry billing has to hear of, with its credit.
#[derive(sqlx::FromRow)]
struct BillingEntryRow {
    #[sqlx(flatten)]
    reward: BillingRow,
    adjustment_id: Uuid,
    adjustment_kind: String,
    explanation: String,
}

/// One reward of a new batch: its item, and its index among the candidates.
struct Link {
    item_id: Uuid,
    reward_id: Uuid,
    amount_minor: i64,
    index: usize,
}

/// Writes a new batch's links to its rewards, which may be 100,000 rows.
trait InsertLinks {
    async fn insert_links(&mut self, batch: Uuid, links: &[Link]) -> sqlx::Result<()>;
}

impl InsertLinks for sqlx::PgConnection {
    /// One statement over arrays: a hundred multi-row statements cost about a
    /// third of a second more at 100,000 links.
    async fn insert_links(&mut self, batch: Uuid, links: &[Link]) -> sqlx::Result<()> {
        let items: Vec<Uuid> = links.iter().map(|l| l.item_id).collect();
        let rewards: Vec<Uuid> = links.iter().map(|l| l.reward_id).collect();
        let amounts: Vec<i64> = links.iter().map(|l| l.amount_minor).collect();
        sqlx::query(
            "INSERT INTO payout_item_rewards (item_id, reward_id, batch_id, amount_minor, state)
             SELECT item_id, reward_id, $4, amount_minor, 'open'
             FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]) AS l (item_id, reward_id, amount_minor)",
        )
        .bind(items)
        .bind(rewards)
        .bind(amounts)
        .bind(batch)
        .execute(self)
        .await
        .map(|_| ())
    }
}

impl InsertLinks for sqlx::SqliteConnection {
    /// Multi-row statements (SQLite has no arrays), CHUNK rows each.
    async fn insert_links(&mut self, batch: Uuid, links: &[Link]) -> sqlx::Result<()> {
        for chunk in links.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO payout_item_rewards (item_id, reward_id, batch_id, amount_minor, state) ",
            );
            q.push_values(chunk, |mut row, l| {
                row.push_bind(l.item_id)
                    .push_bind(l.reward_id)
                    .push_bind(batch)
                    .push_bind(l.amount_minor)
                    .push_bind("open");
            });
            q.build().execute(&mut *self).await?;
        }
        Ok(())
    }
}

/// One adjustment entry of a new batch: its item.
struct AdjustmentLink {
    item_id: Uuid,
    adjustment_id: Uuid,
    amount_minor: i64,
}

/// Writes a new batch's links to the adjustment entries it settles, and marks
/// each entry with its item (the queue marker of `reward_adjustments_unsettled`).
trait LinkAdjustments {
    async fn link_adjustments(&mut self, links: &[AdjustmentLink]) -> sqlx::Result<()>;
}

impl LinkAdjustments for sqlx::PgConnection {
    /// One statement over arrays, as for the rewards.
    async fn link_adjustments(&mut self, links: &[AdjustmentLink]) -> sqlx::Result<()> {
        let items: Vec<Uuid> = links.iter().map(|l| l.item_id).collect();
        let adjustments: Vec<Uuid> = links.iter().map(|l| l.adjustment_id).collect();
        let amounts: Vec<i64> = links.iter().map(|l| l.amount_minor).collect();
        sqlx::query(
            "WITH linked AS (
                 INSERT INTO payout_item_adjustments (item_id, adjustment_id, amount_minor, state)
                 SELECT item_id, adjustment_id, amount_minor, 'open'
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]) AS l (item_id, adjustment_id, amount_minor)
                 RETURNING item_id, adjustment_id)
             UPDATE reward_adjustments a SET payout_item_id = linked.item_id
             FROM linked WHERE a.id = linked.adjustment_id",
        )
        .bind(items)
        .bind(adjustments)
        .bind(amounts)
        .execute(self)
        .await
        .map(|_| ())
    }
}

impl LinkAdjustments for sqlx::SqliteConnection {
    /// Multi-row statements, CHUNK rows each, then one update of the markers.
    async fn link_adjustments(&mut self, links: &[AdjustmentLink]) -> sqlx::Result<()> {
        for chunk in links.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO payout_item_adjustments (item_id, adjustment_id, amount_minor, state) ",
            );
            q.push_values(chunk, |mut row, l| {
                row.push_bind(l.item_id).push_bind(l.adjustment_id).push_bind(l.amount_minor).push_bind("open");
            });
            q.build().execute(&mut *self).await?;
            let mut q = sqlx::QueryBuilder::new(
                "UPDATE reward_adjustments SET payout_item_id = (
                     SELECT l.item_id FROM payout_item_adjustments l
                     WHERE l.adjustment_id = reward_adjustments.id AND l.state <> 'failed')
                 WHERE id IN (",
            );
            let mut ids = q.separated(", ");
            for l in chunk {
                ids.push_bind(l.adjustment_id);
            }
            q.push(")");
            q.build().execute(&mut *self).await?;
        }
        Ok(())
    }
}

/// How a reward paid outside payout batches is fulfilled: the kinds it is for,
/// the record of an earlier fulfilment (its reference), the statement recording
/// this one (bound as reward, reference, actor, time), and what the reward's
/// history says.
struct Fulfilment<'a> {
    kinds: &'static [&'static str],
    previous: &'static str,
    record: &'static str,
    reference: Option<&'a str>,
    reason: String,
}

impl Store {
    /// Sets (or replaces) where a participant is paid.
    pub async fn set_payout_details(
        &self,
        participant: ParticipantId,
        details: &PayoutDetails,
        now: Timestamp,
    ) -> Result<()> {
        let json = details_json(details);
        on_write!(self, p => {
            let mut tx = p.begin_with(begin_statement(p)).await?;
            let found: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM participants WHERE id = $1")
                .bind(participant.0)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO payout_details (participant_id, method, details, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (participant_id) DO UPDATE SET method = $2, details = $3, updated_at = $4",
            )
            .bind(participant.0)
            .bind(details.method().as_str())
            .bind(&json)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Where a participant is paid, if they said.
    pub async fn payout_details(&self, participant: ParticipantId) -> Result<Option<PayoutDetails>> {
        let row: Option<(String, String)> = on_read!(self, p => sqlx::query_as(
            "SELECT method, details FROM payout_details WHERE participant_id = $1"
        ).bind(participant.0).fetch_optional(p).await?);
        row.map(|(method, raw)| details_from(participant.0, &method, &raw)).transpose()
    }

    /// Creates a payout batch of approved cash rewards, one item per participant.
    pub async fn create_payout(
        &self,
        selection: &PayoutSelection,
        actor: &str,
        now: Timestamp,
    ) -> std::result::Result<PayoutRecord, CreatePayoutError> {
        let batch_id = Uuid::now_v7();
        on_write!(self, p => {
            let mut tx = p.begin_with(begin_statement(p)).await?;
            let (rows, scope): (Vec<CandidateRow>, BatchScope) = match selection {
                PayoutSelection::Rewards(ids) => {
                    let mut rows = Vec::with_capacity(ids.len());
                    for (index, id) in ids.iter().enumerate() {
                        if ids[..index].contains(id) {
                            return Err(CreatePayoutError::Duplicate { index });
                        }
                        let row: Option<CandidateRow> =
                            sqlx::query_as(LOCK_CANDIDATE).bind(id).fetch_optional(&mut *tx).await?;
                        let Some(row) = row else { return Err(CreatePayoutError::UnknownReward { index }) };
                        let open: Option<(Uuid,)> =
                            sqlx::query_as(SELECT_OPEN_BATCH).bind(id).fetch_optional(&mut *tx).await?;
                        if let Some((batch,)) = open {
                            return Err(CreatePayoutError::InOpenBatch { index, batch });
                        }
                        rows.push(row);
                    }
                    (rows, BatchScope::Chosen)
                }
                PayoutSelection::Method { method, currency, min_amount } => {
                    let select =
                        if crate::sql::on_postgres(&*tx) { LOCK_BY_METHOD_PG } else { SELECT_BY_METHOD };
                    let mut rows: Vec<CandidateRow> = sqlx::query_as(select)
                        .bind(currency.code())
                        .bind(method.as_str())
                        .fetch_all(&mut *tx)
                        .await?;
                    rows.sort_by_key(|r| r.0);
                    (rows, BatchScope::ByMethod { method: *method, currency: *currency, min_amount: *min_amount })
                }
            };
            // The payees' unsettled entries in the batch's method and currency
            // (the first chosen reward's: others are refused anyway).
            let shape = match (scope, rows.first()) {
                (BatchScope::ByMethod { method, currency, .. }, _) => Some((method, currency)),
                (BatchScope::Chosen, Some(first)) => match first.6.as_deref().and_then(PayoutMethod::parse) {
                    Some(method) => Some((method, currency(&first.5)?)),
                    None => None,
                },
                (BatchScope::Chosen, None) => None,
            };
            let (adjustment_rows, adjustments): (Vec<AdjustmentRow>, Vec<BatchAdjustment>) = match shape {
                Some((method, code)) => {
                    let select = if crate::sql::on_postgres(&*tx) { UNSETTLED_PG } else { UNSETTLED_SQLITE };
                    let found: Vec<AdjustmentRow> = sqlx::query_as(select)
                        .bind(code.code())
                        .bind(method.as_str())
                        .fetch_all(&mut *tx)
                        .await?;
                    let batched: HashMap<Uuid, usize> = rows.iter().enumerate().map(|(i, r)| (r.0, i)).collect();
                    let planned = found.iter().map(|r| batch_adjustment(r, code, &batched)).collect();
                    (found, planned)
                }
                None => (Vec::new(), Vec::new()),
            };
            let candidates = rows.iter().map(candidate).collect::<Result<Vec<_>>>()?;
            let plan: PlannedBatch =
                plan_batch(&candidates, &adjustments, scope).map_err(CreatePayoutError::Refused)?;
            sqlx::query(
                "INSERT INTO payout_batches (id, method, currency, status, created_by, created_at)
                 VALUES ($1, $2, $3, 'open', $4, $5)",
            )
            .bind(batch_id)
            .bind(plan.method.as_str())
            .bind(plan.total.currency.code())
            .bind(actor)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            // Multi-row statements, CHUNK rows each: a batch may hold
            // thousands of rewards.
            let mut details: HashMap<Uuid, PayoutDetails> = HashMap::new();
            let participants: Vec<Uuid> = plan.items.iter().map(|i| i.participant.0).collect();
            for chunk in participants.chunks(CHUNK) {
                let mut q =
                    sqlx::QueryBuilder::new("SELECT participant_id, method, details FROM payout_details WHERE participant_id IN (");
                let mut list = q.separated(", ");
                for p in chunk {
                    list.push_bind(*p);
                }
                q.push(")");
                let found: Vec<(Uuid, String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                for (p, method, raw) in found {
                    details.insert(p, details_from(p, &method, &raw)?);
                }
            }
            if let Some(missing) = participants.iter().find(|p| !details.contains_key(p)) {
                return Err(StoreError::Corrupt(format!("payout details of {missing} vanished")).into());
            }
            let item_ids: Vec<Uuid> = plan.items.iter().map(|_| Uuid::now_v7()).collect();
            for (items, ids) in plan.items.chunks(CHUNK).zip(item_ids.chunks(CHUNK)) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO payout_items (id, batch_id, participant_id, amount_minor, destination, account_holder, status) ",
                );
                q.push_values(items.iter().zip(ids), |mut row, (item, id)| {
                    let d = &details[&item.participant.0];
                    row.push_bind(*id)
                        .push_bind(batch_id)
                        .push_bind(item.participant.0)
                        .push_bind(item.amount.amount_minor)
                        .push_bind(d.destination())
                        .push_bind(d.account_holder().map(str::to_string))
                        .push_bind("open");
                });
                q.build().execute(&mut *tx).await?;
            }
            let links: Vec<Link> = plan
                .items
                .iter()
                .zip(&item_ids)
                .flat_map(|(item, id)| item.rewards.iter().map(move |&index| (*id, index)))
                .map(|(item_id, index)| Link { item_id, reward_id: rows[index].0, amount_minor: rows[index].4, index })
                .collect();
            // Another batch took one of these rewards between our read and this write.
            if let Err(e) = tx.insert_links(batch_id, &links).await {
                return Err(match StoreError::classify(e) {
                    c if c.is_conflict_on("payout_item_rewards") => {
                        CreatePayoutError::InOpenBatch { index: links[0].index, batch: Uuid::nil() }
                    }
                    other => other.into(),
                });
            }
            let adjustment_links: Vec<AdjustmentLink> = plan
                .items
                .iter()
                .zip(&item_ids)
                .flat_map(|(item, id)| item.adjustments.iter().map(move |&index| (*id, index)))
                .map(|(item_id, index)| AdjustmentLink {
                    item_id,
                    adjustment_id: adjustment_rows[index].0,
                    amount_minor: adjustment_rows[index].2,
                })
                .collect();
            if !adjustment_links.is_empty()
                && let Err(e) = tx.link_adjustments(&adjustment_links).await
            {
                return Err(match StoreError::classify(e) {
                    c if c.is_conflict_on("payout_item_adjustments") => CreatePayoutError::AdjustmentInOpenBatch,
                    other => other.into(),
                });
            }
            let record = read_payout!(tx, batch_id).await?.ok_or(StoreError::NotFound)?;
            tx.commit().await?;
            Ok(record)
        })
    }

    /// A payout batch with its items.
    pub async fn payout(&self, id: Uuid) -> Result<PayoutRecord> {
        on_read!(self, p => {
            let mut conn = p.acquire().await?;
            read_payout!(conn, id).await?.ok_or(StoreError::NotFound)
        })
    }

    /// Marks a batch paid: its open items and their rewards become `paid`, and
    /// their adjustment entries settled. A batch already paid is answered as it
    /// is, changing nothing.
    pub async fn mark_payout_paid(
        &self,
        id: Uuid,
        external_reference: &str,
        actor: &str,
        now: Timestamp,
    ) -> std::result::Result<PayoutRecord, PayoutActionError> {
        on_write!(self, p => {
            let mut tx = p.begin_with(begin_statement(p)).await?;
            let claimed = sqlx::query(
                "UPDATE payout_batches SET status = 'paid', external_reference = $2, paid_by = $3, paid_at = $4
                 WHERE id = $1 AND status = 'open'",
            )
            .bind(id)
            .bind(external_reference)
            .bind(actor)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if claimed {
                let rewards: Vec<(Uuid,)> = sqlx::query_as(
                    "SELECT reward_id FROM payout_item_rewards WHERE batch_id = $1 AND state = 'open' ORDER BY reward_id",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                // One statement for the batch's rewards; a count short of the
                // links means one was voided meanwhile: nothing is paid.
                let moved = sqlx::query(
                    "UPDATE rewards SET status = 'paid', updated_at = $2
                     WHERE status = 'approved'
                       AND id IN (SELECT reward_id FROM payout_item_rewards WHERE batch_id = $1 AND state = 'open')",
                )
                .bind(id)
                .bind(micros(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved != rewards.len() as u64 {
                    let statuses: Vec<(Uuid, String)> = sqlx::query_as(
                        "SELECT r.id, r.status FROM rewards r JOIN payout_item_rewards l ON l.reward_id = r.id
                         WHERE l.batch_id = $1 AND l.state = 'open' ORDER BY r.id",
                    )
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let changed = statuses.iter().find(|(_, s)| s != "paid").map_or(Uuid::nil(), |(r, _)| *r);
                    return Err(PayoutActionError::RewardChanged(changed));
                }
                let reason = format!("paid in payout {id} ({external_reference})");
                for chunk in rewards.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO reward_events (id, reward_id, status_from, status_to, actor, reason, at) ",
                    );
                    q.push_values(chunk, |mut event, (reward,)| {
                        event
                            .push_bind(Uuid::now_v7())
                            .push_bind(*reward)
                            .push_bind(RewardStatus::Approved.as_str())
                            .push_bind(RewardStatus::Paid.as_str())
                            .push_bind(actor.to_string())
                            .push_bind(reason.clone())
                            .push_bind(micros(now));
                    });
                    q.build().execute(&mut *tx).await?;
                }
                sqlx::query("UPDATE payout_item_rewards SET state = 'paid' WHERE batch_id = $1 AND state = 'open'")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // The entries are settled now; their markers already name the item.
                sqlx::query(
                    "UPDATE payout_item_adjustments SET state = 'paid'
                     WHERE state = 'open' AND item_id IN (SELECT id FROM payout_items WHERE batch_id = $1 AND status = 'open')",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE payout_items SET status = 'paid' WHERE batch_id = $1 AND status = 'open'")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let record = read_payout!(tx, id).await?.ok_or(PayoutActionError::NotFound)?;
            tx.commit().await?;
            Ok(record)
        })
    }

    /// Marks one item failed (or returned, after the batch was paid): its
    /// rewards leave the batch and are `approved` again, and its adjustment
    /// entries are unsettled again, to be batched anew. An item already failed
    /// is answered as it is.
    pub async fn fail_payout_item(
        &self,
        batch: Uuid,
        item: Uuid,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> std::result::Result<PayoutRecord, PayoutActionError> {
        on_write!(self, p => {
            let mut tx = p.begin_with(begin_statement(p)).await?;
            let found: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM payout_batches WHERE id = $1")
                .bind(batch)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(PayoutActionError::NotFound);
            }
            let status: Option<(String,)> =
                sqlx::query_as("SELECT status FROM payout_items WHERE id = $1 AND batch_id = $2")
                    .bind(item)
                    .bind(batch)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((status,)) = status else { return Err(PayoutActionError::ItemNotFound) };
            if status != "failed" {
                sqlx::query(
                    "UPDATE payout_items SET status = 'failed', failure_reason = $2, failed_by = $3, failed_at = $4
                     WHERE id = $1",
                )
                .bind(item)
                .bind(reason)
                .bind(actor)
                .bind(micros(now))
                .execute(&mut *tx)
                .await?;
                let links: Vec<(Uuid, String)> = sqlx::query_as(
                    "SELECT reward_id, state FROM payout_item_rewards WHERE item_id = $1 AND state <> 'failed'
                     ORDER BY reward_id",
                )
                .bind(item)
                .fetch_all(&mut *tx)
                .await?;
                let why = format!("payout {batch} item returned: {reason}");
                for (reward, state) in links {
                    // An open item's rewards are still approved: only leaving the batch changes.
                    if state == "paid" {
                        move_reward!(tx, reward, RewardStatus::Paid, RewardStatus::Approved, actor, &why, now).await?;
                    }
                }
                sqlx::query("UPDATE payout_item_rewards SET state = 'failed' WHERE item_id = $1")
                    .bind(item)
                    .execute(&mut *tx)
                    .await?;
                // Its entries are unsettled again: owed (or owing) in a later batch.
                sqlx::query(
                    "UPDATE reward_adjustments SET payout_item_id = NULL
                     WHERE id IN (SELECT adjustment_id FROM payout_item_adjustments WHERE item_id = $1)
                       AND payout_item_id = $1",
                )
                .bind(item)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE payout_item_adjustments SET state = 'failed' WHERE item_id = $1")
                    .bind(item)
                    .execute(&mut *tx)
                    .await?;
            }
            let record = read_payout!(tx, batch).await?.ok_or(PayoutActionError::NotFound)?;
            tx.commit().await?;
            Ok(record)
        })
    }

    /// Approved gift-card rewards waiting for their card, oldest first.
    pub async fn gift_card_queue(&self) -> Result<Vec<GiftCardDue>> {
        type Row = (Uuid, Uuid, String, Option<Uuid>, Option<String>, Option<String>, i64, String, i64);
        let rows: Vec<Row> = on_read!(self, p => sqlx::query_as(
            "SELECT r.id, r.referral_id, g.slug, r.participant_id, p.name, p.email, r.amount_minor, r.currency,
                    r.created_at
             FROM rewards r JOIN programs g ON g.id = r.program_id
                  LEFT JOIN participants p ON p.id = r.participant_id
             WHERE r.kind = 'gift_card' AND r.status = 'approved' ORDER BY r.id"
        ).fetch_all(p).await?);
        rows.into_iter()
            .map(|r| {
                Ok(GiftCardDue {
                    reward_id: r.0,
                    referral_id: ReferralId(r.1),
                    program: r.2,
                    participant_id: r.3.map(ParticipantId),
                    payee_name: r.4,
                    payee_email: r.5,
                    amount: Money::new(r.6, currency(&r.7)?),
                    created_at: timestamp(r.8)?,
                })
            })
            .collect()
    }

    /// Completes an approved gift-card reward with the card's reference: it is
    /// `paid`. The same reference again answers the reward as it is.
    pub async fn fulfil_gift_card(
        &self,
        reward: Uuid,
        card_reference: &str,
        actor: &str,
        now: Timestamp,
    ) -> std::result::Result<RewardRecord, FulfilError> {
        let fulfilment = Fulfilment {
            kinds: &["gift_card"],
            previous: "SELECT card_reference FROM gift_card_fulfilments WHERE reward_id = $1",
            record: "INSERT INTO gift_card_fulfilments (reward_id, card_reference, fulfilled_by, fulfilled_at)
                     VALUES ($1, $2, $3, $4)",
            reference: Some(card_reference),
            reason: format!("gift card delivered: {card_reference}"),
        };
        self.fulfil(reward, fulfilment, actor, now).await
    }

    /// Marks an approved credit or plan upgrade applied by billing: it is
    /// `paid`, and never handed over (again). The same reference again answers
    /// the reward as it is.
    pub async fn mark_applied(
        &self,
        reward: Uuid,
        reference: Option<&str>,
        actor: &str,
        now: Timestamp,
    ) -> std::result::Result<RewardRecord, FulfilError> {
        let fulfilment = Fulfilment {
            kinds: &["credit", "plan_upgrade"],
            // A hand-over row without `applied_at` is not a fulfilment yet.
            previous: "SELECT applied_reference FROM billing_handoffs WHERE reward_id = $1 AND applied_at IS NOT NULL",
            record: "INSERT INTO billing_handoffs (reward_id, applied_reference, applied_by, applied_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (reward_id) DO UPDATE SET applied_reference = $2, applied_by = $3, applied_at = $4",
            reference,
            reason: match reference {
                Some(r) => format!("applied by billing: {r}"),
                None => "applied by billing".to_string(),
            },
        };
        self.fulfil(reward, fulfilment, actor, now).await
    }

    /// Moves an approved reward fulfilled outside payout batches to `paid`,
    /// recording how; a repeat with the same reference changes nothing.
    async fn fulfil(
        &self,
        reward: Uuid,
        f: Fulfilment<'_>,
        actor: &str,
        now: Timestamp,
    ) -> std::result::Result<RewardRecord, FulfilError> {
        let done = on_write!(self, p => {
            let mut tx = p.begin_with(begin_statement(p)).await?;
            let row: Option<(String, String)> = sqlx::query_as("SELECT kind, status FROM rewards WHERE id = $1")
                .bind(reward)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((kind, status)) = row else { return Err(FulfilError::NotFound) };
            if !f.kinds.contains(&kind.as_str()) {
                return Err(FulfilError::WrongKind(kind));
            }
            let previous: Option<(Option<String>,)> =
                sqlx::query_as(f.previous).bind(reward).fetch_optional(&mut *tx).await?;
            match previous {
                Some((r,)) if r.as_deref() == f.reference => {}
                Some(_) => return Err(FulfilError::AlreadyFulfilled),
                None => {
                    let moved =
                        move_reward!(tx, reward, RewardStatus::Approved, RewardStatus::Paid, actor, &f.reason, now)
                            .await?;
                    if !moved {
                        return Err(FulfilError::NotApproved(status_str(&status)));
                    }
                    sqlx::query(f.record)
                        .bind(reward)
                        .bind(f.reference)
                        .bind(actor)
                        .bind(micros(now))
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok::<_, FulfilError>(())
        });
        done?;
        Ok(self.reward(reward).await?)
    }

    /// Hands every approved credit and plan upgrade not yet handed over to
    /// billing: an outbox row of kind [`BILLING`] each, written in the same
    /// transaction as the marker that makes a second hand-over impossible,
    /// `batch` rewards per transaction. A credit goes net of its adjustment
    /// entries so far; an entry made after its credit was handed over goes as
    /// a `credit_adjustment` row of its own, and a reward voided after it was
    /// handed over as a `cancel` row. Safe beside other replicas doing the
    /// same. Returns how many rows were written.
    pub async fn hand_over_to_billing(&self, now: Timestamp, batch: u32) -> Result<u64> {
        let mut total = 0;
        loop {
            let (seen, handed) = on_write!(self, p => {
                let mut tx = p.begin_with(begin_statement(p)).await?;
                let due = if crate::sql::on_postgres(&*tx) { BILLING_DUE } else { BILLING_DUE_SQLITE };
                let rows: Vec<BillingRow> = sqlx::query_as(due).bind(i64::from(batch)).fetch_all(&mut *tx).await?;
                let mut handed = 0u64;
                for r in &rows {
                    let outbox_id = Uuid::now_v7();
                    let marked = sqlx::query(
                        "INSERT INTO billing_handoffs (reward_id, outbox_id, handed_over_at) VALUES ($1, $2, $3)
                         ON CONFLICT (reward_id) DO NOTHING",
                    )
                    .bind(r.id)
                    .bind(outbox_id)
                    .bind(micros(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    // Marked either way: a marker row already there means handed over.
                    sqlx::query("UPDATE rewards SET billing_handed_at = $2 WHERE id = $1")
                        .bind(r.id)
                        .bind(micros(now))
                        .execute(&mut *tx)
                        .await?;
                    if !marked {
                        continue;
                    }
                    let mut payload = r.payload(&r.kind);
                    if r.kind == "plan_upgrade" {
                        payload["plan"] = json!(r.plan);
                        payload["months"] = json!(r.months);
                    } else {
                        // The entries travel in the credit: what RETURNING
                        // marked is exactly what the amount includes.
                        let entries: Vec<(Uuid, i64)> = sqlx::query_as(
                            "UPDATE reward_adjustments SET billing_handed_at = $2
                             WHERE reward_id = $1 AND billing_handed_at IS NULL RETURNING id, amount_minor",
                        )
                        .bind(r.id)
                        .bind(micros(now))
                        .fetch_all(&mut *tx)
                        .await?;
                        let net = entries.iter().try_fold(r.amount_minor, |sum, (_, a)| sum.checked_add(*a));
                        let net = net.ok_or_else(|| StoreError::Corrupt(format!("reward {}: amount", r.id)))?;
                        payload["amount"] = json!({"amount_minor": net, "currency": r.currency});
                        if !entries.is_empty() {
                            payload["adjustment_ids"] = json!(entries.iter().map(|(id, _)| id).collect::<Vec<_>>());
                        }
                    }
                    enqueue!(&mut *tx, outbox_id, BILLING, &payload, now).await?;
                    handed += 1;
                }
                // Entries on credits billing already has.
                let late: Vec<BillingEntryRow> =
                    sqlx::query_as(BILLING_ENTRIES_DUE).bind(i64::from(batch)).fetch_all(&mut *tx).await?;
                for a in &late {
                    let sql = "UPDATE reward_adjustments SET billing_handed_at = $2 WHERE id = $1 AND billing_handed_at IS NULL";
                    if !mark_once!(tx, sql, a.adjustment_id, now).await? {
                        continue;
                    }
                    let mut payload = a.reward.payload("credit_adjustment");
                    payload["adjustment_id"] = json!(a.adjustment_id);
                    payload["adjustment_kind"] = json!(a.adjustment_kind);
                    payload["explanation"] = json!(a.explanation);
                    payload["amount"] = json!({"amount_minor": a.reward.amount_minor, "currency": a.reward.currency});
                    enqueue!(&mut *tx, Uuid::now_v7(), BILLING, &payload, now).await?;
                    handed += 1;
                }
                // Voided after billing had them: billing takes them back.
                let voids = if crate::sql::on_postgres(&*tx) { BILLING_VOIDED } else { BILLING_VOIDED_SQLITE };
                let voided: Vec<BillingRow> = sqlx::query_as(voids).bind(i64::from(batch)).fetch_all(&mut *tx).await?;
                for r in &voided {
                    let sql = "UPDATE rewards SET billing_voided_at = $2 WHERE id = $1 AND billing_voided_at IS NULL";
                    if !mark_once!(tx, sql, r.id, now).await? {
                        continue;
                    }
                    let mut payload = r.payload("cancel");
                    payload["cancels"] = json!(r.kind);
                    payload["reason"] = json!(r.void_reason);
                    enqueue!(&mut *tx, Uuid::now_v7(), BILLING, &payload, now).await?;
                    handed += 1;
                }
                tx.commit().await?;
                (rows.len().max(late.len()).max(voided.len()), handed)
            });
            total += handed;
            // Fewer than a batch: none is left. None handed: another replica has them.
            if seen < batch as usize || handed == 0 {
                return Ok(total);
            }
        }
    }

    /// Each payee's rewards paid in `year` (by the UTC date of the payment),
    /// with the adjustment entries settled in it (by the date their batch was
    /// paid), per currency, by name.
    pub async fn payee_totals(&self, year: i16) -> Result<Vec<PayeeTotal>> {
        let utc_new_year = |y: i16| -> Result<Timestamp> {
            let day = jiff::civil::Date::new(y, 1, 1).map_err(|e| StoreError::Corrupt(format!("year {y}: {e}")))?;
            let zoned = day
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .map_err(|e| StoreError::Corrupt(format!("year {y}: {e}")))?;
            Ok(zoned.timestamp())
        };
        let (start, end) = (utc_new_year(year)?, utc_new_year(year.saturating_add(1))?);
        // participant, name, email, currency, amount, `reward` or `adjustment`
        let rows: Vec<(Uuid, String, String, String, i64, String)> = on_read!(self, p => sqlx::query_as(
            "SELECT participant_id, name, email, currency, amount_minor, entry FROM (
                 SELECT r.participant_id, p.name, p.email, r.currency, r.amount_minor, 'reward' AS entry
                 FROM rewards r JOIN participants p ON p.id = r.participant_id
                 WHERE r.status = 'paid'
                   AND (SELECT MAX(e.at) FROM reward_events e WHERE e.reward_id = r.id AND e.status_to = 'paid') >= $1
                   AND (SELECT MAX(e.at) FROM reward_events e WHERE e.reward_id = r.id AND e.status_to = 'paid') < $2
                 UNION ALL
                 SELECT i.participant_id, p.name, p.email, b.currency, l.amount_minor, 'adjustment'
                 FROM payout_batches b JOIN payout_items i ON i.batch_id = b.id
                      JOIN payout_item_adjustments l ON l.item_id = i.id
                      JOIN participants p ON p.id = i.participant_id
                 WHERE b.status = 'paid' AND b.paid_at >= $1 AND b.paid_at < $2 AND l.state = 'paid'
             ) t
             ORDER BY name, participant_id, currency"
        ).bind(micros(start)).bind(micros(end)).fetch_all(p).await?);
        let mut out: Vec<PayeeTotal> = Vec::new();
        for (participant, name, email, code, amount, entry) in rows {
            let amount = Money::new(amount, currency(&code)?);
            let (rewards, adjustments) = if entry == "reward" { (1, 0) } else { (0, 1) };
            match out.last_mut() {
                Some(t) if t.participant_id.0 == participant && t.paid.currency == amount.currency => {
                    t.paid = t
                        .paid
                        .checked_add(amount)
                        .map_err(|_| StoreError::Corrupt(format!("paid total of {participant} overflows")))?;
                    t.rewards += rewards;
                    t.adjustments += adjustments;
                }
                _ => out.push(PayeeTotal {
                    participant_id: ParticipantId(participant),
                    name,
                    email,
                    paid: amount,
                    rewards,
                    adjustments,
                }),
            }
        }
        Ok(out)
    }
}

fn status_str(s: &str) -> &'static str {
    RewardStatus::parse(s).map_or("unknown", RewardStatus::as_str)
}
