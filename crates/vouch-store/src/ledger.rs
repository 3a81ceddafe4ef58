//! The ledger after a reward is made: holds released, churns and refunds that
//! reverse rewards, finance's approvals and voids, adjustment entries, and
//! balances derived from all of them.
//!
//! Every status change is a conditional update (`WHERE status = <the status it
//! was judged in>`) written with its `reward_events` row in one transaction, so
//! a reward changes once however many replicas act on it at once. Postgres locks
//! the rows it judges (`FOR UPDATE`, and `SKIP LOCKED` in the release job so
//! replicas share the work); SQLite transactions start `IMMEDIATE`, taking the
//! write lock before reading, so two processes on one file take turns.
//!
//! The decisions themselves are the domain's (`vouch_domain::reward::ledger`).
//! A void re-prices the referrer's other per-unit rewards
//! (`rewards::reprice_after_void!`): the voided units no longer count.

use std::collections::HashMap;

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::program::{ProgramDefinition, RewardRule, VoidOn};
use vouch_domain::referral::{FactKind, ReferralId};
use vouch_domain::reward::ledger::{self, Action, LedgerStatus, Refusal, Release, Reversal};
use vouch_domain::{Currency, Money, ParticipantId};

use crate::rewards::{RewardRecord, RewardStatus};
use crate::{Result, Store, StoreError, micros, on_read, on_write, timestamp};

/// Who releases holds.
pub const HOLDS_ACTOR: &str = "system:holds";

/// What ending one hold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Approved,
    /// Released into `manual` approval: still pending, now for finance.
    AwaitingApproval,
    Voided,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub reward_id: Uuid,
    pub referral_id: ReferralId,
    pub outcome: ReleaseOutcome,
    pub reason: String,
}

/// What one pass of [`Store::release_due_holds`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseReport {
    pub entries: Vec<Released>,
}

impl ReleaseReport {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn count(&self, outcome: ReleaseOutcome) -> usize {
        self.entries.iter().filter(|e| e.outcome == outcome).count()
    }
}

/// What a churn or refund did to its referral's rewards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reversed {
    pub voided: u32,
    pub clawed_back: u32,
}

/// An entry that changes what a reward comes to without editing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRecord {
    pub id: Uuid,
    pub reward_id: Uuid,
    /// Negative for a clawback.
    pub amount: Money,
    /// `reprice` or `clawback`
    pub kind: String,
    /// What caused it (a fact id).
    pub cause: String,
    pub explanation: String,
    pub actor: String,
    pub at: Timestamp,
    /// The paid payout item that settled the entry (paid it, or took it back),
    /// if one has.
    pub settled_in: Option<Uuid>,
}

/// One status change of a reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardEventRecord {
    pub status_from: Option<String>,
    pub status_to: String,
    pub actor: String,
    pub reason: Option<String>,
    pub at: Timestamp,
}

/// A beneficiary's rewards in one currency, summed from the entries (never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardBalance {
    pub currency: Currency,
    pub pending: Money,
    pub approved: Money,
    /// Paid rewards and the adjustment entries settled by paid payout items.
    pub paid: Money,
    /// Re-pricing and clawback entries of rewards that are not voided, not
    /// settled yet (still owed to, or by, the beneficiary).
    pub adjustments: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum RewardActionError {
    #[error("not found")]
    NotFound,
    #[error("refused: {}", .0.code())]
    Refused(Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(RewardActionError);

/// id, referral_id, program_version_id, rule_id, status, amount_minor, currency, release_at
pub(crate) type LedgerRow = (Uuid, Uuid, Uuid, String, String, i64, String, Option<i64>);

const SELECT_DUE: &str = "SELECT id, referral_id, program_version_id, rule_id, status, amount_minor, currency,
        release_at
     FROM rewards WHERE status = 'pending' AND release_at IS NOT NULL AND released_at IS NULL AND release_at <= $1
     ORDER BY release_at, id LIMIT $2";
/// Replicas releasing at once each take rows the others have not locked.
const SELECT_DUE_PG: &str = "SELECT id, referral_id, program_version_id, rule_id, status, amount_minor, currency,
        release_at
     FROM rewards WHERE status = 'pending' AND release_at IS NOT NULL AND released_at IS NULL AND release_at <= $1
     ORDER BY release_at, id LIMIT $2 FOR UPDATE SKIP LOCKED";

pub(crate) const SELECT_REFERRAL_REWARDS: &str = "SELECT id, referral_id, program_version_id, rule_id, status,
        amount_minor, currency, release_at
     FROM rewards WHERE referral_id = $1 ORDER BY id";
pub(crate) const SELECT_REFERRAL_REWARDS_PG: &str = "SELECT id, referral_id, program_version_id, rule_id, status,
        amount_minor, currency, release_at
     FROM rewards WHERE referral_id = $1 ORDER BY id FOR UPDATE";

/// Takes the row lock of the referrer a reward is for (Postgres; a no-op write).
const LOCK_REWARD_REFERRER: &str =
    "UPDATE participants SET name = name WHERE id = (SELECT participant_id FROM rewards WHERE id = $1)";
/// Takes the row lock of a referral's referrer.
pub(crate) const LOCK_REFERRAL_REFERRER: &str =
    "UPDATE participants SET name = name WHERE id = (SELECT participant_id FROM referrals WHERE id = $1)";

const SELECT_STATUS: &str = "SELECT status, release_at FROM rewards WHERE id = $1";
const SELECT_STATUS_PG: &str = "SELECT status, release_at FROM rewards WHERE id = $1 FOR UPDATE";

/// A reward whose hold has ended but was not released yet: referral_id,
/// program_version_id, rule_id, release_at.
const SELECT_UNRELEASED: &str = "SELECT referral_id, program_version_id, rule_id, release_at FROM rewards
     WHERE id = $1 AND status = 'pending' AND release_at IS NOT NULL AND released_at IS NULL AND release_at <= $2";

pub(crate) const SELECT_DEFINITION: &str = "SELECT definition FROM program_versions WHERE id = $1";

/// id, type, occurred_at
pub(crate) const SELECT_REVERSALS: &str = "SELECT id, type, occurred_at FROM facts
     WHERE referral_id = $1 AND type IN ('churned', 'refunded') ORDER BY occurred_at, id";

/// referral_id, id, type, occurred_at of the reversals of several referrals
/// (the caller closes the list).
const SELECT_REVERSALS_OF: &str = "SELECT referral_id, id, type, occurred_at FROM facts
     WHERE type IN ('churned', 'refunded') AND referral_id IN (";

/// Ends a hold: the status it leads to, the reason of a void, and when.
const RELEASE: &str = "UPDATE rewards SET status = $2, void_reason = $3, released_at = $4, updated_at = $4
     WHERE id = $1 AND status = 'pending' AND released_at IS NULL";

pub(crate) const VOID: &str = "UPDATE rewards SET status = 'voided', void_reason = $3, updated_at = $4
     WHERE id = $1 AND status = $2";

const APPROVE: &str = "UPDATE rewards SET status = 'approved', released_at = COALESCE(released_at, $2), updated_at = $2
     WHERE id = $1 AND status = 'pending'";

/// amount_minor, kind
pub(crate) const SELECT_ADJUSTMENT_AMOUNTS: &str =
    "SELECT amount_minor, kind FROM reward_adjustments WHERE reward_id = $1";

pub(crate) const INSERT_ADJUSTMENT: &str = "INSERT INTO reward_adjustments (id, reward_id, amount_minor, currency,
        kind, cause, explanation, actor, at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT DO NOTHING";

pub(crate) const INSERT_LEDGER_EVENT: &str =
    "INSERT INTO reward_events (id, reward_id, status_from, status_to, actor, reason, at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const SELECT_ADJUSTMENTS: &str = "SELECT id, reward_id, amount_minor, currency, kind, cause, explanation, actor, at,
        (SELECT l.item_id FROM payout_item_adjustments l
         WHERE l.adjustment_id = reward_adjustments.id AND l.state <> 'failed' AND l.state = 'paid') AS settled_in
     FROM reward_adjustments";

/// The statement that opens a ledger transaction. SQLite must take the write
/// lock before reading: a read transaction that later writes fails at once if
/// another process wrote in between.
fn begin<DB: sqlx::Database>(_: &sqlx::Pool<DB>) -> &'static str {
    if DB::NAME == "SQLite" { "BEGIN IMMEDIATE" } else { "BEGIN" }
}

pub(crate) fn ledger_status(s: &str) -> Result<LedgerStatus> {
    match RewardStatus::parse(s) {
        Some(RewardStatus::Pending) => Ok(LedgerStatus::Pending),
        Some(RewardStatus::Approved) => Ok(LedgerStatus::Approved),
        Some(RewardStatus::Paid) => Ok(LedgerStatus::Paid),
        Some(RewardStatus::Voided) => Ok(LedgerStatus::Voided),
        None => Err(StoreError::Corrupt(format!("reward status {s}"))),
    }
}

pub(crate) fn reversal_kind(kind: FactKind) -> Option<VoidOn> {
    match kind {
        FactKind::Churned => Some(VoidOn::Churned),
        FactKind::Refunded => Some(VoidOn::Refunded),
        _ => None,
    }
}

pub(crate) fn reversals(rows: &[(Uuid, String, i64)]) -> Result<Vec<Reversal>> {
    rows.iter()
        .filter_map(|(id, kind, at)| {
            let kind = FactKind::parse(kind).and_then(reversal_kind)?;
            Some(timestamp(*at).map(|occurred_at| Reversal { kind, occurred_at, fact: *id }))
        })
        .collect()
}

/// Program versions read once per transaction.
#[derive(Default)]
pub(crate) struct Definitions(HashMap<Uuid, ProgramDefinition>);

impl Definitions {
    pub(crate) fn known(&self, version: Uuid) -> bool {
        self.0.contains_key(&version)
    }

    pub(crate) fn insert(&mut self, version: Uuid, json: &str) -> Result<()> {
        let definition =
            serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("program version {version}: {e}")))?;
        self.0.insert(version, definition);
        Ok(())
    }

    pub(crate) fn rule(&self, version: Uuid, rule: &str) -> Result<&RewardRule> {
        self.0
            .get(&version)
            .and_then(|d| d.rule(rule))
            .ok_or_else(|| StoreError::Corrupt(format!("program version {version} has no rule {rule}")))
    }
}

/// Voids or claws back the rewards of `$referral` that a `churned` or
/// `refunded` fact reverses, inside the open transaction `$tx` of
/// `record_fact` (which holds the referral's row lock). Any other kind of fact
/// does nothing. Evaluates to `Result<Reversed, StoreError>`.
macro_rules! reverse_late {
    ($tx:expr, $referral:expr, $kind:expr, $fact_id:expr, $occurred_at:expr, $actor:expr, $now:expr) => {
        async {
            use $crate::ledger::*;
            let referral: vouch_domain::referral::ReferralId = $referral;
            let now: jiff::Timestamp = $now;
            let actor: &str = $actor;
            let mut done = Reversed::default();
            let Some(kind) = reversal_kind($kind) else {
                return Ok::<_, $crate::StoreError>(done);
            };
            let fact = vouch_domain::reward::ledger::Reversal { kind, occurred_at: $occurred_at, fact: $fact_id };
            // The referrer's lock before the rewards', as awarding takes them:
            // a void re-prices the referrer's other rewards.
            $crate::sql::query(LOCK_REFERRAL_REFERRER).bind(referral.0).execute(&mut *$tx).await?;
            let select = if $crate::sql::on_postgres(&*$tx) { SELECT_REFERRAL_REWARDS_PG } else { SELECT_REFERRAL_REWARDS };
            let rows: Vec<LedgerRow> = $crate::sql::query_as(select).bind(referral.0).fetch_all(&mut *$tx).await?;
            let mut definitions = Definitions::default();
            for (id, _, version, rule_id, status, amount_minor, currency, release_at) in rows {
                if !definitions.known(version) {
                    let (json,): (String,) =
                        $crate::sql::query_as(SELECT_DEFINITION).bind(version).fetch_one(&mut *$tx).await?;
                    definitions.insert(version, &json)?;
                }
                let rule = definitions.rule(version, &rule_id)?;
                let status = ledger_status(&status)?;
                let release_at = release_at.map($crate::timestamp).transpose()?;
                match vouch_domain::reward::ledger::late_reversal(status, rule, release_at, &fact) {
                    vouch_domain::reward::ledger::LateReversal::Nothing => {}
                    vouch_domain::reward::ledger::LateReversal::Void => {
                        let Some(release_at) = release_at else { continue };
                        let reason = fact.void_reason(release_at);
                        let from = stored_status(status);
                        // A reward in an open payout batch is not voided from
                        // under finance (the batch may be at the bank): it is
                        // recorded, and voided by hand once its item is failed.
                        let batch: Option<(uuid::Uuid,)> = $crate::sql::query_as($crate::payouts::SELECT_OPEN_BATCH)
                            .bind(id)
                            .fetch_optional(&mut *$tx)
                            .await?;
                        if let Some((batch,)) = batch {
                            let note = format!("not voided: in open payout batch {batch}; {reason}");
                            tracing::warn!(reward = %id, %batch, "a late reversal did not void a batched reward");
                            $crate::sql::query(INSERT_LEDGER_EVENT)
                                .bind(uuid::Uuid::now_v7())
                                .bind(id)
                                .bind(Some(from))
                                .bind(from)
                                .bind(actor)
                                .bind(Some(note.as_str()))
                                .bind($crate::micros(now))
                                .execute(&mut *$tx)
                                .await?;
                            continue;
                        }
                        let changed = $crate::sql::query(VOID)
                            .bind(id)
                            .bind(from)
                            .bind(&reason)
                            .bind($crate::micros(now))
                            .execute(&mut *$tx)
                            .await?
                            .rows_affected()
                            == 1;
                        if changed {
                            $crate::sql::query(INSERT_LEDGER_EVENT)
                                .bind(uuid::Uuid::now_v7())
                                .bind(id)
                                .bind(Some(from))
                                .bind("voided")
                                .bind(actor)
                                .bind(Some(reason.as_str()))
                                .bind($crate::micros(now))
                                .execute(&mut *$tx)
                                .await?;
                            // Its units no longer count toward the referrer's tiers.
                            $crate::rewards::reprice_after_void!($tx, id, actor, now).await?;
                            done.voided += 1;
                        }
                    }
                    vouch_domain::reward::ledger::LateReversal::Clawback => {
                        let currency = vouch_domain::Currency::parse(&currency)
                            .map_err(|_| $crate::StoreError::Corrupt(format!("reward {id}: currency")))?;
                        let entries: Vec<(i64, String)> =
                            $crate::sql::query_as(SELECT_ADJUSTMENT_AMOUNTS).bind(id).fetch_all(&mut *$tx).await?;
                        let repriced: Vec<vouch_domain::Money> = entries
                            .iter()
                            .filter(|(_, k)| k == "reprice")
                            .map(|(m, _)| vouch_domain::Money::new(*m, currency))
                            .collect();
                        let clawed_back = entries.iter().any(|(_, k)| k == "clawback");
                        let amount = vouch_domain::reward::ledger::clawback_amount(
                            vouch_domain::Money::new(amount_minor, currency),
                            &repriced,
                            clawed_back,
                        )
                        .map_err(|e| $crate::StoreError::Corrupt(format!("reward {id}: clawback: {e}")))?;
                        let Some(amount) = amount else { continue };
                        let explanation = format!(
                            "{} {} at {} (fact {}) after the reward was paid: the program claws it back",
                            vouch_domain::reward::format_amount(amount),
                            kind.as_str(),
                            fact.occurred_at,
                            fact.fact
                        );
                        let inserted = $crate::sql::query(INSERT_ADJUSTMENT)
                            .bind(uuid::Uuid::now_v7())
                            .bind(id)
                            .bind(amount.amount_minor)
                            .bind(amount.currency.code())
                            .bind("clawback")
                            .bind(fact.fact.to_string())
                            .bind(&explanation)
                            .bind(actor)
                            .bind($crate::micros(now))
                            .execute(&mut *$tx)
                            .await?
                            .rows_affected()
                            == 1;
                        if inserted {
                            done.clawed_back += 1;
                        }
                    }
                }
            }
            Ok(done)
        }
    };
}
pub(crate) use reverse_late;

/// The stored word for a ledger status.
pub(crate) fn stored_status(s: LedgerStatus) -> &'static str {
    match s {
        LedgerStatus::Pending => RewardStatus::Pending.as_str(),
        LedgerStatus::Approved => RewardStatus::Approved.as_str(),
        LedgerStatus::Paid => RewardStatus::Paid.as_str(),
        LedgerStatus::Voided => RewardStatus::Voided.as_str(),
    }
}

type AdjustmentRow = (Uuid, Uuid, i64, String, String, String, String, String, i64, Option<Uuid>);

/// status_from, status_to, actor, reason, at
type EventRow = (Option<String>, String, String, Option<String>, i64);

/// currency, status, sum of amount_minor
type StatusSum = (String, String, i64);

fn adjustment(r: AdjustmentRow) -> Result<AdjustmentRecord> {
    let (id, reward_id, amount_minor, currency, kind, cause, explanation, actor, at, settled_in) = r;
    let currency = Currency::parse(&currency).map_err(|_| StoreError::Corrupt(format!("adjustment {id}: currency")))?;
    Ok(AdjustmentRecord {
        id,
        reward_id,
        amount: Money::new(amount_minor, currency),
        kind,
        cause,
        explanation,
        actor,
        at: timestamp(at)?,
        settled_in,
    })
}

/// What ending a hold leads to, and the reason recorded.
fn release_outcome(release: Release, release_at: Timestamp) -> (ReleaseOutcome, String) {
    match release {
        Release::Void(r) => (ReleaseOutcome::Voided, r.void_reason(release_at)),
        Release::Approve => {
            (ReleaseOutcome::Approved, format!("the hold ended at {release_at}: approved automatically"))
        }
        Release::AwaitFinance => {
            (ReleaseOutcome::AwaitingApproval, format!("the hold ended at {release_at}: awaiting approval by finance"))
        }
    }
}

fn released_status(outcome: ReleaseOutcome) -> RewardStatus {
    match outcome {
        ReleaseOutcome::Approved => RewardStatus::Approved,
        ReleaseOutcome::AwaitingApproval => RewardStatus::Pending,
        ReleaseOutcome::Voided => RewardStatus::Voided,
    }
}

/// Ends the hold of one due reward inside the open transaction `$tx` (see
/// [`Store::release_due_holds`]); `None` when it was released already.
/// Evaluates to `Result<Option<Released>, StoreError>`.
macro_rules! release_one {
    ($tx:expr, $definitions:expr, $id:expr, $referral:expr, $version:expr, $rule_id:expr, $release_at:expr, $now:expr) => {
        async {
            let (id, referral, version, release_at, now): (Uuid, Uuid, Uuid, Timestamp, Timestamp) =
                ($id, $referral, $version, $release_at, $now);
            let definitions: &mut Definitions = $definitions;
            if !definitions.known(version) {
                let (json,): (String,) = sqlx::query_as(SELECT_DEFINITION).bind(version).fetch_one(&mut *$tx).await?;
                definitions.insert(version, &json)?;
            }
            let rule = definitions.rule(version, $rule_id)?;
            let facts: Vec<(Uuid, String, i64)> =
                sqlx::query_as(SELECT_REVERSALS).bind(referral).fetch_all(&mut *$tx).await?;
            let (outcome, reason) = release_outcome(ledger::release(rule, release_at, &reversals(&facts)?), release_at);
            let to = released_status(outcome);
            let void_reason = (outcome == ReleaseOutcome::Voided).then_some(reason.as_str());
            let changed = sqlx::query(RELEASE)
                .bind(id)
                .bind(to.as_str())
                .bind(void_reason)
                .bind(micros(now))
                .execute(&mut *$tx)
                .await?
                .rows_affected()
                == 1;
            if !changed {
                return Ok::<_, StoreError>(None);
            }
            sqlx::query(INSERT_LEDGER_EVENT)
                .bind(Uuid::now_v7())
                .bind(id)
                .bind(Some(RewardStatus::Pending.as_str()))
                .bind(to.as_str())
                .bind(HOLDS_ACTOR)
                .bind(Some(reason.as_str()))
                .bind(micros(now))
                .execute(&mut *$tx)
                .await?;
            if outcome == ReleaseOutcome::Voided {
                crate::rewards::reprice_after_void!($tx, id, HOLDS_ACTOR, now).await?;
            }
            Ok(Some(Released { reward_id: id, referral_id: ReferralId(referral), outcome, reason }))
        }
    };
}

impl Store {
    /// Ends the holds due at `now`, `limit` at most, oldest first: each reward
    /// whose referral has a churn or refund (of a kind its rule lists) dated
    /// before its `release_at` is voided; the others are approved, or left
    /// pending for finance under `manual` approval. Each is released once, however
    /// many replicas run this at once. Call again until the report is empty.
    pub async fn release_due_holds(&self, now: Timestamp, limit: u32) -> Result<ReleaseReport> {
        on_write!(self, p => {
            let mut tx = p.begin_with(begin(p)).await?;
            let select = if crate::sql::on_postgres(&*tx) { SELECT_DUE_PG } else { SELECT_DUE };
            let due: Vec<LedgerRow> =
                sqlx::query_as(select).bind(micros(now)).bind(i64::from(limit)).fetch_all(&mut *tx).await?;
            if due.is_empty() {
                tx.commit().await?;
                return Ok(ReleaseReport::default());
            }
            // A batch is judged with a handful of statements, whatever its size:
            // one read of the reversals of all its referrals, one update per
            // outcome (voids aside: each has its own reason), one insert of events.
            let mut definitions = Definitions::default();
            let mut referrals: Vec<Uuid> = due.iter().map(|r| r.1).collect();
            referrals.sort();
            referrals.dedup();
            let mut q = sqlx::QueryBuilder::new(SELECT_REVERSALS_OF);
            let mut ids = q.separated(", ");
            for r in &referrals {
                ids.push_bind(*r);
            }
            q.push(")");
            let rows: Vec<(Uuid, Uuid, String, i64)> = q.build_query_as().fetch_all(&mut *tx).await?;
            let mut known: HashMap<Uuid, Vec<(Uuid, String, i64)>> = HashMap::new();
            for (referral, id, kind, at) in rows {
                known.entry(referral).or_default().push((id, kind, at));
            }
            let mut planned = Vec::with_capacity(due.len());
            for (id, referral, version, rule_id, _, _, _, release_at) in due {
                let Some(release_at) = release_at.map(timestamp).transpose()? else { continue };
                if !definitions.known(version) {
                    let (json,): (String,) = sqlx::query_as(SELECT_DEFINITION).bind(version).fetch_one(&mut *tx).await?;
                    definitions.insert(version, &json)?;
                }
                let rule = definitions.rule(version, &rule_id)?;
                let facts = reversals(known.get(&referral).map(Vec::as_slice).unwrap_or_default())?;
                let (outcome, reason) = release_outcome(ledger::release(rule, release_at, &facts), release_at);
                planned.push(Released { reward_id: id, referral_id: ReferralId(referral), outcome, reason });
            }
            let mut report = ReleaseReport::default();
            for outcome in [ReleaseOutcome::Approved, ReleaseOutcome::AwaitingApproval] {
                let these: Vec<&Released> = planned.iter().filter(|r| r.outcome == outcome).collect();
                if these.is_empty() {
                    continue;
                }
                let mut q = sqlx::QueryBuilder::new("UPDATE rewards SET status = ");
                q.push_bind(released_status(outcome).as_str());
                q.push(", released_at = ").push_bind(micros(now));
                q.push(", updated_at = ").push_bind(micros(now));
                q.push(" WHERE status = 'pending' AND released_at IS NULL AND id IN (");
                let mut ids = q.separated(", ");
                for r in &these {
                    ids.push_bind(r.reward_id);
                }
                q.push(") RETURNING id");
                let changed: Vec<(Uuid,)> = q.build_query_as().fetch_all(&mut *tx).await?;
                let changed: std::collections::HashSet<Uuid> = changed.into_iter().map(|(id,)| id).collect();
                report.entries.extend(these.into_iter().filter(|r| changed.contains(&r.reward_id)).cloned());
            }
            if !report.entries.is_empty() {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO reward_events (id, reward_id, status_from, status_to, actor, reason, at) ",
                );
                q.push_values(&report.entries, |mut row, r| {
                    row.push_bind(Uuid::now_v7())
                        .push_bind(r.reward_id)
                        .push_bind(RewardStatus::Pending.as_str())
                        .push_bind(released_status(r.outcome).as_str())
                        .push_bind(HOLDS_ACTOR)
                        .push_bind(r.reason.as_str())
                        .push_bind(micros(now));
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            // A void re-prices the referrer's other rewards under the referrer's
            // row lock, which awarding takes before it touches rewards: each
            // void takes it first, in a transaction of its own, never while
            // this batch's rows are locked (that order could deadlock).
            for r in planned.into_iter().filter(|r| r.outcome == ReleaseOutcome::Voided) {
                let mut tx = p.begin_with(begin(p)).await?;
                sqlx::query(LOCK_REWARD_REFERRER).bind(r.reward_id).execute(&mut *tx).await?;
                let changed = sqlx::query(RELEASE)
                    .bind(r.reward_id)
                    .bind(RewardStatus::Voided.as_str())
                    .bind(&r.reason)
                    .bind(micros(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if changed {
                    sqlx::query(INSERT_LEDGER_EVENT)
                        .bind(Uuid::now_v7())
                        .bind(r.reward_id)
                        .bind(Some(RewardStatus::Pending.as_str()))
                        .bind(RewardStatus::Voided.as_str())
                        .bind(HOLDS_ACTOR)
                        .bind(Some(r.reason.as_str()))
                        .bind(micros(now))
                        .execute(&mut *tx)
                        .await?;
                    crate::rewards::reprice_after_void!(tx, r.reward_id, HOLDS_ACTOR, now).await?;
                    report.entries.push(r);
                }
                tx.commit().await?;
            }
            Ok(report)
        })
    }

    /// Finance approves a pending reward whose hold has ended (or that has
    /// none). Approving an approved reward again changes nothing.
    pub async fn approve_reward(
        &self,
        id: Uuid,
        actor: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> std::result::Result<RewardRecord, RewardActionError> {
        on_write!(self, p => {
            let mut tx = p.begin_with(begin(p)).await?;
            // The referrer's lock before the reward's, as awarding takes them.
            sqlx::query(LOCK_REWARD_REFERRER).bind(id).execute(&mut *tx).await?;
            let select = if crate::sql::on_postgres(&*tx) { SELECT_STATUS_PG } else { SELECT_STATUS };
            let row: Option<(String, Option<i64>)> = sqlx::query_as(select).bind(id).fetch_optional(&mut *tx).await?;
            let (mut status, release_at) = row.ok_or(RewardActionError::NotFound)?;
            let release_at = release_at.map(timestamp).transpose()?;
            // A hold that ended but was not released yet is released first: a
            // churn dated before it ended voids the reward, whoever asks.
            let unreleased: Option<(Uuid, Uuid, String, i64)> =
                sqlx::query_as(SELECT_UNRELEASED).bind(id).bind(micros(now)).fetch_optional(&mut *tx).await?;
            if let Some((referral, version, rule_id, at)) = unreleased {
                let mut definitions = Definitions::default();
                let released =
                    release_one!(tx, &mut definitions, id, referral, version, &rule_id, timestamp(at)?, now).await?;
                match released.map(|r| r.outcome) {
                    Some(ReleaseOutcome::Voided) => {
                        tx.commit().await?;
                        return Err(RewardActionError::Refused(Refusal::Voided));
                    }
                    Some(ReleaseOutcome::Approved) => status = RewardStatus::Approved.as_str().to_string(),
                    _ => {}
                }
            }
            match ledger::approve(ledger_status(&status)?, release_at, now).map_err(RewardActionError::Refused)? {
                // Released just now under `auto`: the approval is done.
                Action::AlreadyDone => tx.commit().await?,
                Action::Now => {
                    sqlx::query(APPROVE).bind(id).bind(micros(now)).execute(&mut *tx).await?;
                    sqlx::query(INSERT_LEDGER_EVENT)
                        .bind(Uuid::now_v7())
                        .bind(id)
                        .bind(Some(RewardStatus::Pending.as_str()))
                        .bind(RewardStatus::Approved.as_str())
                        .bind(actor)
                        .bind(Some(note.unwrap_or("approved by finance")))
                        .bind(micros(now))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
            }
        });
        Ok(self.reward(id).await?)
    }

    /// Finance voids a pending or approved reward, with the reason. Voiding a
    /// voided reward again changes nothing (it keeps its first reason).
    pub async fn void_reward(
        &self,
        id: Uuid,
        actor: &str,
        reason: &str,
        now: Timestamp,
    ) -> std::result::Result<RewardRecord, RewardActionError> {
        on_write!(self, p => {
            let mut tx = p.begin_with(begin(p)).await?;
            // The referrer's lock before the reward's, as awarding takes them.
            sqlx::query(LOCK_REWARD_REFERRER).bind(id).execute(&mut *tx).await?;
            let select = if crate::sql::on_postgres(&*tx) { SELECT_STATUS_PG } else { SELECT_STATUS };
            let row: Option<(String, Option<i64>)> = sqlx::query_as(select).bind(id).fetch_optional(&mut *tx).await?;
            let (status, _) = row.ok_or(RewardActionError::NotFound)?;
            match ledger::void(ledger_status(&status)?).map_err(RewardActionError::Refused)? {
                Action::AlreadyDone => tx.rollback().await?,
                Action::Now => {
                    sqlx::query(VOID).bind(id).bind(&status).bind(reason).bind(micros(now)).execute(&mut *tx).await?;
                    sqlx::query(INSERT_LEDGER_EVENT)
                        .bind(Uuid::now_v7())
                        .bind(id)
                        .bind(Some(status.as_str()))
                        .bind(RewardStatus::Voided.as_str())
                        .bind(actor)
                        .bind(Some(reason))
                        .bind(micros(now))
                        .execute(&mut *tx)
                        .await?;
                    crate::rewards::reprice_after_void!(tx, id, actor, now).await?;
                    tx.commit().await?;
                }
            }
        });
        Ok(self.reward(id).await?)
    }

    /// A reward's adjustment entries, oldest first.
    pub async fn reward_adjustments(&self, reward: Uuid) -> Result<Vec<AdjustmentRecord>> {
        let rows: Vec<AdjustmentRow> = on_read!(self, p => {
            let mut q = sqlx::QueryBuilder::new(SELECT_ADJUSTMENTS);
            q.push(" WHERE reward_id = ").push_bind(reward).push(" ORDER BY at, id");
            q.build_query_as().fetch_all(p).await?
        });
        rows.into_iter().map(adjustment).collect()
    }

    /// The adjustment entries of several rewards (a page of them), oldest first.
    pub async fn adjustments_of(&self, rewards: &[Uuid]) -> Result<HashMap<Uuid, Vec<AdjustmentRecord>>> {
        if rewards.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<AdjustmentRow> = on_read!(self, p => {
            let mut q = sqlx::QueryBuilder::new(SELECT_ADJUSTMENTS);
            q.push(" WHERE reward_id IN (");
            let mut ids = q.separated(", ");
            for id in rewards {
                ids.push_bind(*id);
            }
            q.push(") ORDER BY at, id");
            q.build_query_as().fetch_all(p).await?
        });
        let mut by_reward: HashMap<Uuid, Vec<AdjustmentRecord>> = HashMap::new();
        for row in rows {
            let a = adjustment(row)?;
            by_reward.entry(a.reward_id).or_default().push(a);
        }
        Ok(by_reward)
    }

    /// Every status change of a reward, oldest first.
    pub async fn reward_events(&self, reward: Uuid) -> Result<Vec<RewardEventRecord>> {
        let rows: Vec<EventRow> = on_read!(self, p => sqlx::query_as(
            "SELECT status_from, status_to, actor, reason, at FROM reward_events WHERE reward_id = $1 ORDER BY at, id",
        )
        .bind(reward)
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(status_from, status_to, actor, reason, at)| {
                Ok(RewardEventRecord { status_from, status_to, actor, reason, at: timestamp(at)? })
            })
            .collect()
    }

    /// A beneficiary's pending, approved and paid rewards and their adjustments,
    /// per currency (ordered by code), summed from the entries. An adjustment
    /// entry settled by a paid payout item counts as paid (even if its reward
    /// was returned and voided since: the money moved); one not settled counts
    /// as an adjustment while its reward is not voided.
    pub async fn reward_balance(&self, participant: ParticipantId) -> Result<Vec<RewardBalance>> {
        let (by_status, adjusted): (Vec<StatusSum>, Vec<StatusSum>) = on_read!(self, p => {
            let by_status = sqlx::query_as(
                "SELECT currency, status, CAST(SUM(amount_minor) AS BIGINT) FROM rewards
                 WHERE participant_id = $1 AND status <> 'voided' GROUP BY currency, status",
            )
            .bind(participant.0)
            .fetch_all(p)
            .await?;
            let adjusted = sqlx::query_as(
                "SELECT currency, settled, CAST(SUM(amount_minor) AS BIGINT) FROM (
                     SELECT a.currency, a.amount_minor,
                            CASE WHEN l.adjustment_id IS NOT NULL THEN 'paid' ELSE 'open' END AS settled,
                            r.status
                     FROM reward_adjustments a JOIN rewards r ON r.id = a.reward_id
                          LEFT JOIN payout_item_adjustments l
                            ON l.adjustment_id = a.id AND l.state <> 'failed' AND l.state = 'paid'
                     WHERE r.participant_id = $1
                 ) t
                 WHERE settled = 'paid' OR status <> 'voided'
                 GROUP BY currency, settled",
            )
            .bind(participant.0)
            .fetch_all(p)
            .await?;
            (by_status, adjusted)
        });
        let mut balances: Vec<RewardBalance> = Vec::new();
        let mut entry = |code: &str| -> Result<usize> {
            let currency = Currency::parse(code).map_err(|_| StoreError::Corrupt(format!("currency {code}")))?;
            if let Some(i) = balances.iter().position(|b| b.currency == currency) {
                return Ok(i);
            }
            let zero = Money::new(0, currency);
            balances.push(RewardBalance { currency, pending: zero, approved: zero, paid: zero, adjustments: zero });
            Ok(balances.len() - 1)
        };
        let mut placed = Vec::new();
        for (code, status, sum) in &by_status {
            placed.push((entry(code)?, Some(status.as_str()), *sum));
        }
        for (code, settled, sum) in &adjusted {
            let status = (settled == "paid").then_some(RewardStatus::Paid.as_str());
            placed.push((entry(code)?, status, *sum));
        }
        let overflow = |_| StoreError::Corrupt("a balance overflows".into());
        for (i, status, sum) in placed {
            let b = &mut balances[i];
            let add = Money::new(sum, b.currency);
            let slot = match status.map(RewardStatus::parse) {
                None => &mut b.adjustments,
                Some(Some(RewardStatus::Pending)) => &mut b.pending,
                Some(Some(RewardStatus::Approved)) => &mut b.approved,
                Some(Some(RewardStatus::Paid)) => &mut b.paid,
                Some(_) => continue,
            };
            *slot = slot.checked_add(add).map_err(overflow)?;
        }
        balances.sort_by_key(|b| b.currency.code());
        Ok(balances)
    }
}
