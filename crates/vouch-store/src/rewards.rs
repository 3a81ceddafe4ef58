//! The rewards ledger: rewards created when a referral earns them, and reading them.
//!
//! [`award!`] runs inside the transaction that changed the referral (with its
//! row locked): `record_fact`, a staff move (`move_stage`), or staff sending the
//! units a `won` lacked (`Store::supply_units`). It judges the referral by the
//! program version it was created under and creates, for each rule whose trigger
//! was reached — `qualified` (a `won` that skipped it counts), `won`, each
//! `payment` of a won referral — at most one reward per trigger occurrence
//! (`qualified`, `won`, or the payment fact's id; the unique index on referral,
//! rule, beneficiary and occurrence makes a repeat change nothing). Only
//! `active` referrals earn. A per-unit rule without units creates nothing and
//! sets the referral's `units_missing` flag.
//!
//! Caps (`max_per_referral`, `max_per_beneficiary`) reduce a reward to what is
//! left, possibly zero: a zero reward is stored all the same, with a sentence
//! saying which cap was reached, so the occurrence is recorded once and
//! explained.
//!
//! Per-unit rewards are priced in contract-date order among the referrer's
//! rewards under the rule, never in order of arrival: a late `won` with an
//! earlier contract date prices the rewards after it again
//! ([`reprice_referrer!`], also for callers that void a per-unit reward). A
//! pending reward is updated (its history records the old and new amount); an
//! approved or paid one is never edited — the difference becomes a `reprice`
//! entry in `reward_adjustments`. Awarding takes the referrer's row lock first
//! when tiers or a per-person cap count their other rewards, so two of their
//! referrals are rewarded one after the other.
//!
//! Not yet here: a referral accepted from review after its `won`, releasing holds.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use uuid::Uuid;
use vouch_domain::program::{
    Approval, Beneficiary, Computation, HoldStart, PerUnit, PercentOf, ProgramDefinition, RewardKind, RewardRule,
    Trigger,
};
use vouch_domain::referral::{FactKind, Stage, Status};
use vouch_domain::reward::{
    CapUse, HeldReward, InOrder, ReferralKey, UnitCaps, YearLabel, apply_caps, counting_date, delta, earned_in_period,
    explain_cap, explain_flat, explain_percentage, explain_reprice, flat, percentage, price_each_in_order, release_at,
    within_payment_window,
};
use vouch_domain::{Currency, Money, ParticipantId, ProgramId, ProgramVersionId, ReferralId};

use crate::{Result, Store, StoreError, micros, on_read, on_write, timestamp};

/// A reward's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RewardStatus {
    Pending,
    Approved,
    Paid,
    Voided,
}

impl RewardStatus {
    pub const ALL: [RewardStatus; 4] = [Self::Pending, Self::Approved, Self::Paid, Self::Voided];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Paid => "paid",
            Self::Voided => "voided",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One stored reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardRecord {
    pub id: Uuid,
    pub referral_id: ReferralId,
    pub program_id: ProgramId,
    pub program_version_id: ProgramVersionId,
    pub rule_id: String,
    /// `referrer` or `referee`
    pub beneficiary: String,
    pub participant_id: Option<ParticipantId>,
    /// The trigger occurrence: `won`, `qualified`, or a payment fact's id.
    pub occurrence: String,
    pub kind: String,
    pub amount: Money,
    pub plan: Option<String>,
    pub months: Option<i64>,
    pub units: Option<i64>,
    pub status: RewardStatus,
    pub void_reason: Option<String>,
    pub release_at: Option<Timestamp>,
    pub explanation: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Filters of [`Store::rewards`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct RewardFilter {
    pub referral: Option<ReferralId>,
    pub participant: Option<ParticipantId>,
    pub status: Option<RewardStatus>,
}

/// What awarding a won referral did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Awarded {
    /// Rewards created now (a repeat creates none).
    pub created: u32,
    /// A per-unit rule is waiting for units.
    pub units_missing: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SupplyUnitsError {
    #[error("not found")]
    NotFound,
    /// The referral is not waiting for units.
    #[error("the referral is not waiting for units")]
    NotMissing,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(SupplyUnitsError);

#[derive(sqlx::FromRow)]
struct RewardRow {
    id: Uuid,
    referral_id: Uuid,
    program_id: Uuid,
    program_version_id: Uuid,
    rule_id: String,
    beneficiary: String,
    participant_id: Option<Uuid>,
    occurrence: String,
    kind: String,
    amount_minor: i64,
    currency: String,
    plan: Option<String>,
    months: Option<i64>,
    units: Option<i64>,
    status: String,
    void_reason: Option<String>,
    release_at: Option<i64>,
    explanation: String,
    created_at: i64,
    updated_at: i64,
}

const SELECT_REWARDS: &str = "SELECT id, referral_id, program_id, program_version_id, rule_id, beneficiary,
        participant_id, occurrence, kind, amount_minor, currency, plan, months, units, status, void_reason,
        release_at, explanation, created_at, updated_at
     FROM rewards";

impl TryFrom<RewardRow> for RewardRecord {
    type Error = StoreError;
    fn try_from(r: RewardRow) -> Result<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("reward {}: {what}", r.id));
        Ok(RewardRecord {
            id: r.id,
            referral_id: ReferralId(r.referral_id),
            program_id: ProgramId(r.program_id),
            program_version_id: ProgramVersionId(r.program_version_id),
            rule_id: r.rule_id,
            beneficiary: r.beneficiary,
            participant_id: r.participant_id.map(ParticipantId),
            occurrence: r.occurrence,
            kind: r.kind,
            amount: Money::new(r.amount_minor, Currency::parse(&r.currency).map_err(|_| corrupt("currency"))?),
            plan: r.plan,
            months: r.months,
            units: r.units,
            status: RewardStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            void_reason: r.void_reason,
            release_at: r.release_at.map(timestamp).transpose()?,
            explanation: r.explanation,
            created_at: timestamp(r.created_at)?,
            updated_at: timestamp(r.updated_at)?,
        })
    }
}

/// What the referral's `won` facts say: when it was first won, and the first
/// units, contract date and value reported.
pub(crate) struct WonInputs {
    pub won_at: Timestamp,
    pub units: Option<i64>,
    pub contract_date: Option<Date>,
    pub value: Option<(i64, String)>,
}

/// What just happened to a referral, as far as its rewards care: the stage it
/// was at and is at now, whether it counts, the fact that caused it (none for a
/// staff action) and the units staff sent for a `won` that lacked them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AwardCause {
    pub before: Stage,
    pub after: Stage,
    pub active: bool,
    pub fact: Option<FactKind>,
    pub units: Option<i64>,
}

impl AwardCause {
    /// A fact recorded for the referral.
    pub(crate) fn fact(before: Stage, after: Stage, status: Status, kind: FactKind) -> Self {
        Self { before, after, active: status == Status::Active, fact: Some(kind), units: None }
    }

    /// A staff move; `status` as stored.
    pub(crate) fn staff_move(before: Stage, after: Stage, status: &str) -> Self {
        Self { before, after, active: Status::parse(status) == Some(Status::Active), fact: None, units: None }
    }

    /// Staff sending the units a `won` lacked (the referral is won and waiting).
    pub(crate) fn units(units: i64) -> Self {
        Self { before: Stage::Won, after: Stage::Won, active: true, fact: None, units: Some(units) }
    }

    fn changed(&self) -> bool {
        self.before != self.after
    }

    /// Rules triggered by `qualified`: a referral that reached `qualified` or
    /// beyond (a `won` that skipped it counts; `churned` comes after `won`).
    fn qualified(&self) -> bool {
        matches!(self.after, Stage::Qualified | Stage::Won | Stage::Churned)
            && (self.changed() || matches!(self.fact, Some(FactKind::Qualified | FactKind::Won)))
    }

    /// Whether the referral has been won: `won` now, or `churned` (which comes
    /// only after a `won`). A `won` reported after a later churn lands on a
    /// referral already `churned`, and earns what it earned in time order: the
    /// hold and its void rules then judge the reward by the facts' dates.
    fn was_won(&self) -> bool {
        matches!(self.after, Stage::Won | Stage::Churned)
    }

    /// The referral became won with this change (not a churn of a won one).
    fn became_won(&self) -> bool {
        self.changed() && !matches!(self.before, Stage::Won | Stage::Churned)
    }

    /// Rules triggered by `won`; a repeated `won` may bring the units the first lacked.
    fn won(&self) -> bool {
        self.was_won() && (self.became_won() || self.fact == Some(FactKind::Won) || self.units.is_some())
    }

    /// Rules triggered by each `payment` of a won referral; a payment that came
    /// before the `won` is paid for when the `won` arrives.
    fn payments(&self) -> bool {
        self.was_won() && (self.became_won() || matches!(self.fact, Some(FactKind::Payment | FactKind::Won)))
    }

    pub(crate) fn triggers(&self, trigger: Trigger) -> bool {
        self.active
            && match trigger {
                Trigger::Qualified => self.qualified(),
                Trigger::Won => self.won(),
                Trigger::Payment => self.payments(),
            }
    }

    /// Whether any rule could be earned now: cheap, before reading anything.
    pub(crate) fn any(&self) -> bool {
        [Trigger::Qualified, Trigger::Won, Trigger::Payment].into_iter().any(|t| self.triggers(t))
    }
}

/// occurred_at, units, contract_date, value_minor, value_currency; oldest first.
pub(crate) type WonFactRow = (i64, Option<i64>, Option<String>, Option<i64>, Option<String>);

pub(crate) const SELECT_WON_FACTS: &str = "SELECT occurred_at, units, contract_date, value_minor, value_currency
     FROM facts WHERE referral_id = $1 AND type = 'won' ORDER BY occurred_at, recorded_at, id";

/// id, occurred_at, value_minor, value_currency; oldest first.
pub(crate) type PaymentRow = (Uuid, i64, Option<i64>, Option<String>);

pub(crate) const SELECT_PAYMENTS: &str = "SELECT id, occurred_at, value_minor, value_currency
     FROM facts WHERE referral_id = $1 AND type = 'payment' ORDER BY occurred_at, recorded_at, id";

/// When the referral first qualified, as far as facts tell (a `won` qualifies too).
pub(crate) const SELECT_QUALIFIED_AT: &str = "SELECT occurred_at FROM facts
     WHERE referral_id = $1 AND type IN ('qualified', 'won') ORDER BY occurred_at, recorded_at, id LIMIT 1";

pub(crate) const SELECT_AWARD_REFERRAL: &str = "SELECT r.program_id, r.program_version_id, r.participant_id,
        v.definition
     FROM referrals r JOIN program_versions v ON v.id = r.program_version_id WHERE r.id = $1";

pub(crate) const SELECT_OCCURRENCE: &str = "SELECT id FROM rewards
     WHERE referral_id = $1 AND rule_id = $2 AND beneficiary = $3 AND occurrence = $4";

/// What the referral earned under the rule so far (for its per-referral cap).
pub(crate) const SELECT_EARNED_ON_REFERRAL: &str = "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM rewards
     WHERE referral_id = $1 AND rule_id = $2 AND beneficiary = $3 AND status <> 'voided'";

/// counting_date, amount_minor of a referrer's non-voided rewards under the rule
/// (for their per-beneficiary cap).
pub(crate) const SELECT_EARNED_BY_REFERRER: &str = "SELECT counting_date, amount_minor FROM rewards
     WHERE program_id = $1 AND rule_id = $2 AND participant_id = $3 AND beneficiary = 'referrer'
       AND status <> 'voided' AND counting_date IS NOT NULL";

/// The same for a referee, who is known by their referral.
pub(crate) const SELECT_EARNED_BY_REFEREE: &str = "SELECT counting_date, amount_minor FROM rewards
     WHERE referral_id = $1 AND rule_id = $2 AND beneficiary = 'referee'
       AND status <> 'voided' AND counting_date IS NOT NULL";

/// id, referral_id, units, counting_date, won_at, status, amount_minor, the
/// sum of its re-price adjustments (with the amount, what the reward comes to
/// now), explanation.
pub(crate) type HeldRow = (Uuid, Uuid, i64, String, i64, String, i64, i64, String, Uuid);

/// The referrer's non-voided per-unit rewards under the rule, in the program.
pub(crate) const SELECT_HELD: &str = "SELECT r.id, r.referral_id, r.units, r.counting_date, r.won_at, r.status,
        r.amount_minor,
        CAST(COALESCE((SELECT SUM(a.amount_minor) FROM reward_adjustments a
                        WHERE a.reward_id = r.id AND a.kind = 'reprice'), 0) AS BIGINT),
        r.explanation, r.program_version_id
     FROM rewards r
     WHERE r.program_id = $1 AND r.rule_id = $2 AND r.participant_id = $3 AND r.beneficiary = 'referrer'
       AND r.status <> 'voided' AND r.units IS NOT NULL AND r.counting_date IS NOT NULL AND r.won_at IS NOT NULL";

pub(crate) const UPDATE_PENDING_PRICE: &str = "UPDATE rewards SET amount_minor = $2, explanation = $3, updated_at = $4
     WHERE id = $1 AND status = 'pending'";

pub(crate) const INSERT_ADJUSTMENT: &str = "INSERT INTO reward_adjustments (id, reward_id, amount_minor, currency,
        kind, cause, explanation, actor, at)
     VALUES ($1, $2, $3, $4, 'reprice', $5, $6, $7, $8)
     ON CONFLICT DO NOTHING";

/// A no-op write that takes the referrer's row lock.
pub(crate) const LOCK_REFERRER: &str = "UPDATE participants SET name = name WHERE id = $1";

pub(crate) const INSERT_REWARD: &str = "INSERT INTO rewards (id, referral_id, program_id, program_version_id,
        rule_id, beneficiary, participant_id, occurrence, kind, amount_minor, currency, plan, months, units,
        counting_date, won_at, status, void_reason, release_at, explanation, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, NULL, $18, $19, $20, $20)
     ON CONFLICT DO NOTHING";

pub(crate) const INSERT_REWARD_EVENT: &str =
    "INSERT INTO reward_events (id, reward_id, status_from, status_to, actor, reason, at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) fn won_inputs(rows: &[WonFactRow], units_override: Option<i64>, now: Timestamp) -> Result<WonInputs> {
    let won_at = match rows.first() {
        Some(r) => timestamp(r.0)?,
        None => now,
    };
    let contract_date = rows.iter().find_map(|r| r.2.as_deref()).map(parse_date).transpose()?;
    Ok(WonInputs {
        won_at,
        units: units_override.or_else(|| rows.iter().find_map(|r| r.1)),
        contract_date,
        value: rows.iter().find_map(|r| r.3.zip(r.4.clone())),
    })
}

fn parse_date(d: &str) -> Result<Date> {
    d.parse::<Date>().map_err(|e| StoreError::Corrupt(format!("date {d}: {e}")))
}

/// One occurrence of a rule's trigger: `won`, `qualified`, or one payment.
pub(crate) struct Occurrence {
    /// What the unique index knows it by: `won`, `qualified`, or the payment fact's id.
    pub name: String,
    /// When it happened.
    pub at: Timestamp,
    /// The date the reward counts on: the contract date for `won`, else the day
    /// it happened in the program's time zone.
    pub date: Date,
    /// The payment's value (minor units, currency code).
    pub value: Option<(i64, String)>,
    /// For a payment: within the rule's months of the first payment.
    pub in_window: bool,
}

/// The occurrences of `rule`'s trigger the referral has had.
pub(crate) fn occurrences(
    rule: &RewardRule,
    inputs: &WonInputs,
    qualified_at: Timestamp,
    payments: &[PaymentRow],
    tz: &TimeZone,
) -> Result<Vec<Occurrence>> {
    let day = |at: Timestamp| counting_date(None, at, tz);
    Ok(match rule.trigger {
        Trigger::Qualified => {
            vec![Occurrence {
                name: "qualified".into(),
                at: qualified_at,
                date: day(qualified_at),
                value: None,
                in_window: true,
            }]
        }
        Trigger::Won => vec![Occurrence {
            name: "won".into(),
            at: inputs.won_at,
            date: counting(inputs, tz),
            value: inputs.value.clone(),
            in_window: true,
        }],
        Trigger::Payment => {
            let months = match &rule.computation {
                Computation::Percentage(p) => match p.of {
                    PercentOf::Payments { months } => Some(months),
                    PercentOf::ContractValue => None,
                },
                _ => None,
            };
            let first = payments.first().map(|p| timestamp(p.1)).transpose()?;
            payments
                .iter()
                .map(|(id, at, minor, currency)| {
                    let at = timestamp(*at)?;
                    let in_window = match (months, first) {
                        (Some(m), Some(first)) => within_payment_window(first, m, at, tz).map_err(reward_error)?,
                        _ => true,
                    };
                    Ok(Occurrence {
                        name: id.to_string(),
                        at,
                        date: day(at),
                        value: minor.zip(currency.clone()),
                        in_window,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }
    })
}

/// A reward ready to insert.
pub(crate) struct PlannedReward {
    pub kind: RewardKind,
    pub amount: Money,
    pub plan: Option<String>,
    pub months: Option<i64>,
    pub units: Option<i64>,
    pub status: RewardStatus,
    pub release_at: Option<Timestamp>,
    pub explanation: String,
}

pub(crate) enum Plan {
    Reward(PlannedReward),
    /// A per-unit rule without units.
    UnitsMissing,
    /// Nothing to compute (a percentage without a value in the program's
    /// currency, a payment outside the rule's months).
    Nothing,
}

/// Whether the rule prices against the beneficiary's other rewards (tiers).
pub(crate) fn needs_earlier(rule: &RewardRule) -> bool {
    matches!(rule.computation, Computation::PerUnit(_)) && rule.beneficiary == Beneficiary::Referrer
}

/// Whether awarding the rule must take the referrer's row lock: tiers or a
/// per-beneficiary cap count their other rewards.
pub(crate) fn needs_lock(rule: &RewardRule) -> bool {
    rule.beneficiary == Beneficiary::Referrer && (needs_earlier(rule) || rule.caps.per_beneficiary.is_some())
}

fn reward_error(e: vouch_domain::reward::RewardError) -> StoreError {
    StoreError::Corrupt(format!("reward computation: {e}"))
}

/// The date a referral counts on, for ordering tiers.
pub(crate) fn counting(inputs: &WonInputs, tz: &TimeZone) -> Date {
    counting_date(inputs.contract_date, inputs.won_at, tz)
}

/// One of the referrer's held per-unit rewards: as the domain prices it, and as stored.
pub(crate) struct Held {
    pub held: HeldReward,
    pub id: Uuid,
    pub status: RewardStatus,
    /// The amount with its re-price adjustments.
    pub comes_to: i64,
    pub explanation: String,
    /// The program version it was made under, whose rule prices it.
    pub version: Uuid,
}

pub(crate) fn held_rewards(rows: &[HeldRow]) -> Result<Vec<Held>> {
    rows.iter()
        .map(|(id, referral, units, date, won_at, status, amount, adjusted, explanation, version)| {
            let key = ReferralKey {
                contract_date: parse_date(date)?,
                won_at: timestamp(*won_at)?,
                referral: ReferralId(*referral),
            };
            let units = u32::try_from(*units).map_err(|_| StoreError::Corrupt(format!("units {units}")))?;
            let status =
                RewardStatus::parse(status).ok_or_else(|| StoreError::Corrupt(format!("reward {id}: status")))?;
            let comes_to =
                amount.checked_add(*adjusted).ok_or_else(|| StoreError::Corrupt(format!("reward {id}: amount")))?;
            Ok(Held {
                held: HeldReward { key, units },
                id: *id,
                status,
                comes_to,
                explanation: explanation.clone(),
                version: *version,
            })
        })
        .collect()
}

/// What one earlier reward of the beneficiary needs after a re-price.
pub(crate) enum Reprice {
    /// A pending reward takes the new amount and sentence; the reason goes on its history.
    Update { reward: Uuid, amount: Money, explanation: String, reason: String },
    /// An approved or paid one keeps its amount: the difference is an adjustment.
    Adjust { reward: Uuid, delta: Money, explanation: String },
}

/// The rule each of a referrer's per-unit rewards is priced by: the rule of
/// the program version it was made under. `current` is the version being
/// acted on; `older` the others the rewards name, read by [`version_rules!`].
pub(crate) struct VersionRules<'a> {
    pub current: (Uuid, &'a RewardRule),
    pub older: HashMap<Uuid, RewardRule>,
}

impl VersionRules<'_> {
    /// The per-unit pricing of `version`'s rule. A version whose rule of that
    /// id is not per-unit (the program changed its kind) is counted under the
    /// current rule; its reward is left as it is by the caller's comparison.
    fn pricing(&self, version: Uuid, currency: Currency) -> Option<(&PerUnit, UnitCaps)> {
        let current = self.current.1;
        let rule = if version == self.current.0 { current } else { self.older.get(&version).unwrap_or(current) };
        let per_unit = match (&rule.computation, &current.computation) {
            (Computation::PerUnit(p), _) => Some((p, rule)),
            (_, Computation::PerUnit(p)) => Some((p, current)),
            _ => None,
        };
        per_unit.map(|(p, r)| (p, UnitCaps::new(r.caps.per_referral_minor, r.caps.per_beneficiary, currency)))
    }

    /// Prices `list` in order, each by its version's rule (`versions[i]`).
    pub(crate) fn price(
        &self,
        versions: &[Uuid],
        currency: Currency,
        list: &[HeldReward],
    ) -> Result<Vec<vouch_domain::reward::InOrder>> {
        let mut pricing = Vec::with_capacity(versions.len());
        for v in versions {
            pricing.push(
                self.pricing(*v, currency).ok_or_else(|| {
                    StoreError::Corrupt(format!("rule {} is not per unit", self.current.1.id.as_str()))
                })?,
            );
        }
        price_each_in_order(|i| pricing[i], currency, list).map_err(reward_error)
    }
}

/// Reads the rule `$rule.id` of every program version named by `$rows`
/// ([`HeldRow`]s) other than `$version`, whose rule is `$rule`, inside `$tx`.
/// Evaluates to `Result<VersionRules, StoreError>`.
macro_rules! version_rules {
    ($tx:expr, $rows:expr, $rule:expr, $version:expr) => {
        async {
            let rule: &vouch_domain::program::RewardRule = $rule;
            let version: uuid::Uuid = $version;
            let mut older = std::collections::HashMap::new();
            for row in $rows.iter() {
                let v: uuid::Uuid = row.9;
                if v == version || older.contains_key(&v) {
                    continue;
                }
                let (definition,): (String,) =
                    $crate::sql::query_as("SELECT definition FROM program_versions WHERE id = $1")
                        .bind(v)
                        .fetch_one(&mut *$tx)
                        .await?;
                let definition: vouch_domain::program::ProgramDefinition = serde_json::from_str(&definition)
                    .map_err(|e| $crate::StoreError::Corrupt(format!("program version {v}: {e}")))?;
                if let Some(r) = definition.rule(rule.id.as_str()) {
                    older.insert(v, r.clone());
                }
            }
            Ok::<_, $crate::StoreError>($crate::rewards::VersionRules { current: (version, rule), older })
        }
    };
}
pub(crate) use version_rules;

/// Prices the referrer's per-unit rewards in order, each under its version's
/// rule, and says what changes for each of them.
pub(crate) fn reprices(rules: &VersionRules<'_>, currency: Currency, rows: &[HeldRow]) -> Result<Vec<Reprice>> {
    if !matches!(rules.current.1.computation, Computation::PerUnit(_)) {
        return Ok(Vec::new());
    }
    let held = held_rewards(rows)?;
    let list: Vec<HeldReward> = held.iter().map(|h| h.held).collect();
    let versions: Vec<Uuid> = held.iter().map(|h| h.version).collect();
    let priced = rules.price(&versions, currency, &list)?;
    let mut out = Vec::new();
    for (h, should) in held.iter().zip(priced) {
        let now = Money::new(h.comes_to, currency);
        // A pending reward's sentence follows its count even when the amount
        // stays (an earlier referral moved it within the same tier).
        let pending = h.status == RewardStatus::Pending;
        if now == should.amount && !(pending && h.explanation != should.explanation) {
            continue;
        }
        let sentence = explain_reprice(now, &should).map_err(reward_error)?;
        match h.status {
            RewardStatus::Pending => out.push(Reprice::Update {
                reward: h.id,
                amount: should.amount,
                explanation: should.explanation,
                reason: sentence,
            }),
            RewardStatus::Approved | RewardStatus::Paid if now != should.amount => out.push(Reprice::Adjust {
                reward: h.id,
                delta: delta(now, should.amount).map_err(reward_error)?,
                explanation: sentence,
            }),
            RewardStatus::Approved | RewardStatus::Paid | RewardStatus::Voided => {}
        }
    }
    Ok(out)
}

/// What caps need to know about the beneficiary's earlier rewards.
pub(crate) struct CapInputs {
    /// Earned on this referral under the rule, for the same beneficiary.
    pub on_referral: i64,
    /// (date, amount) of the beneficiary's non-voided rewards under the rule.
    pub by_beneficiary: Vec<(String, i64)>,
}

/// Computes what `rule` pays for one occurrence of its trigger. A per-unit
/// rule's price comes from `in_order` (see [`price_each_in_order`]).
pub(crate) fn plan_reward(
    rule: &RewardRule,
    definition: &ProgramDefinition,
    inputs: &WonInputs,
    occurrence: &Occurrence,
    caps: &CapInputs,
    in_order: Option<InOrder>,
    tz: &TimeZone,
) -> Result<Plan> {
    let currency = definition.currency();
    if !occurrence.in_window {
        return Ok(Plan::Nothing);
    }
    let per_beneficiary = || -> Result<Option<(CapUse, YearLabel)>> {
        let Some(cap) = rule.caps.per_beneficiary else {
            return Ok(None);
        };
        let earned = caps
            .by_beneficiary
            .iter()
            .map(|(d, m)| Ok((parse_date(d)?, Money::new(*m, currency))))
            .collect::<Result<Vec<_>>>()?;
        let max = Money::new(cap.amount_minor, currency);
        Ok(Some(earned_in_period(cap.period, max, occurrence.date, &earned).map_err(reward_error)?))
    };
    let per_referral = rule
        .caps
        .per_referral_minor
        .map(|max| CapUse { max: Money::new(max, currency), earned: Money::new(caps.on_referral, currency) });
    let (amount, plan, months, units, explanation) = match &rule.computation {
        Computation::Flat { amount_minor } => {
            let amount = flat(Money::new(*amount_minor, currency)).map_err(reward_error)?;
            let capped = apply_caps(amount, per_referral, per_beneficiary()?).map_err(reward_error)?;
            (capped.amount, None, None, None, format!("{}{}", explain_flat(amount), explain_cap(&capped)))
        }
        Computation::PerUnit(_) => {
            let Some(units) = inputs.units else {
                return Ok(Plan::UnitsMissing);
            };
            let priced = in_order.ok_or_else(|| StoreError::Corrupt("per-unit reward priced out of order".into()))?;
            (priced.amount, None, None, Some(units), priced.explanation)
        }
        Computation::Percentage(p) => {
            let Some((minor, code)) = occurrence.value.as_ref() else {
                return Ok(Plan::Nothing);
            };
            if Currency::parse(code).ok() != Some(currency) {
                return Ok(Plan::Nothing);
            }
            let base = Money::new(*minor, currency);
            // The contract value's percentage keeps its own maximum (one reward
            // per referral); payments share the maximum across the referral's
            // payment rewards.
            let (priced, per_referral) = match p.of {
                PercentOf::ContractValue => {
                    let max = rule.caps.per_referral_minor.map(|m| Money::new(m, currency));
                    (percentage(p.percent, base, max).map_err(reward_error)?, None)
                }
                PercentOf::Payments { .. } => (percentage(p.percent, base, None).map_err(reward_error)?, per_referral),
            };
            let capped = apply_caps(priced.amount, per_referral, per_beneficiary()?).map_err(reward_error)?;
            let explanation = format!("{}{}", explain_percentage(&priced, p.of), explain_cap(&capped));
            (capped.amount, None, None, None, explanation)
        }
        Computation::PlanUpgrade { plan, months } => {
            let explanation = format!("{months} months of the {plan} plan");
            (Money::new(0, currency), Some(plan.clone()), Some(i64::from(*months)), None, explanation)
        }
    };
    let (status, release) = match &rule.hold {
        Some(hold) => {
            let start = match hold.after {
                HoldStart::ContractDate => occurrence.date,
                HoldStart::Won => counting_date(None, inputs.won_at, tz),
                HoldStart::Event => counting_date(None, occurrence.at, tz),
            };
            let at = release_at(start, hold.months, hold.days, tz).map_err(reward_error)?;
            (RewardStatus::Pending, Some(at))
        }
        None => match rule.approval {
            Approval::Auto => (RewardStatus::Approved, None),
            Approval::Manual => (RewardStatus::Pending, None),
        },
    };
    Ok(Plan::Reward(PlannedReward {
        kind: rule.kind,
        amount,
        plan,
        months,
        units,
        status,
        release_at: release,
        explanation,
    }))
}

/// Prices the referrer's per-unit rewards under `$rule` again, in contract-date
/// order, inside the open transaction `$tx` (which should hold the referrer's
/// row lock, [`LOCK_REFERRER`]): a pending reward whose price changed is updated
/// and its history records the old and new amount; an approved or paid one is
/// never edited, the difference becomes a `reprice` entry in
/// `reward_adjustments`, once per `$cause` (the referral or fact id that caused
/// it, or a voided reward's id). Call it after anything that changes which
/// rewards count — a late `won`, a void — with the rule of the version in force.
/// `$program`, `$participant`: `Uuid`s; `$rule`: `&RewardRule`; `$currency`:
/// the program's. Rules that are not per-unit change nothing. Evaluates to
/// `Result<u32, StoreError>`: how many rewards were re-priced or adjusted.
macro_rules! reprice_referrer {
    ($tx:expr, $program:expr, $rule:expr, $version:expr, $currency:expr, $participant:expr, $cause:expr, $actor:expr, $now:expr) => {
        async {
            use $crate::rewards::*;
            let rule: &vouch_domain::program::RewardRule = $rule;
            let (program, participant): (uuid::Uuid, uuid::Uuid) = ($program, $participant);
            let (cause, actor, now): (&str, &str, jiff::Timestamp) = ($cause, $actor, $now);
            let mut changed = 0u32;
            if needs_earlier(rule) {
                let rows: Vec<HeldRow> = $crate::sql::query_as(SELECT_HELD)
                    .bind(program)
                    .bind(rule.id.as_str())
                    .bind(participant)
                    .fetch_all(&mut *$tx)
                    .await?;
                let rules = $crate::rewards::version_rules!($tx, rows, rule, $version).await?;
                for change in reprices(&rules, $currency, &rows)? {
                    match change {
                        Reprice::Update { reward, amount, explanation, reason } => {
                            let updated = $crate::sql::query(UPDATE_PENDING_PRICE)
                                .bind(reward)
                                .bind(amount.amount_minor)
                                .bind(&explanation)
                                .bind($crate::micros(now))
                                .execute(&mut *$tx)
                                .await?
                                .rows_affected();
                            if updated == 1 {
                                changed += 1;
                                $crate::sql::query(INSERT_REWARD_EVENT)
                                    .bind(uuid::Uuid::now_v7())
                                    .bind(reward)
                                    .bind(Some("pending"))
                                    .bind("pending")
                                    .bind(actor)
                                    .bind(Some(reason.as_str()))
                                    .bind($crate::micros(now))
                                    .execute(&mut *$tx)
                                    .await?;
                            }
                        }
                        Reprice::Adjust { reward, delta, explanation } => {
                            changed += $crate::sql::query(INSERT_ADJUSTMENT)
                                .bind(uuid::Uuid::now_v7())
                                .bind(reward)
                                .bind(delta.amount_minor)
                                .bind(delta.currency.code())
                                .bind(cause)
                                .bind(&explanation)
                                .bind(actor)
                                .bind($crate::micros(now))
                                .execute(&mut *$tx)
                                .await?
                                .rows_affected() as u32;
                        }
                    }
                }
            }
            Ok::<u32, $crate::StoreError>(changed)
        }
    };
}
pub(crate) use reprice_referrer;

/// program_id, rule_id, participant_id, beneficiary, the version's definition, its id.
pub(crate) type VoidedRow = (Uuid, String, Option<Uuid>, String, String, Uuid);

pub(crate) const SELECT_VOIDED: &str = "SELECT r.program_id, r.rule_id, r.participant_id, r.beneficiary, v.definition,
        r.program_version_id
     FROM rewards r JOIN program_versions v ON v.id = r.program_version_id WHERE r.id = $1";

/// After `$reward` (a `Uuid`) was voided inside the open transaction `$tx`:
/// its units no longer count, so the referrer's other per-unit rewards under
/// its rule are priced again ([`reprice_referrer!`], with the voided reward's
/// id as the cause), under the rule of the version the voided reward was made
/// under. Takes the referrer's row lock. Anything but a referrer's per-unit
/// reward changes nothing. Evaluates to `Result<u32, StoreError>`.
macro_rules! reprice_after_void {
    ($tx:expr, $reward:expr, $actor:expr, $now:expr) => {
        async {
            use $crate::rewards::*;
            let reward: uuid::Uuid = $reward;
            let row: Option<VoidedRow> =
                $crate::sql::query_as(SELECT_VOIDED).bind(reward).fetch_optional(&mut *$tx).await?;
            let Some((program, rule_id, Some(participant), beneficiary, definition, version)) = row else {
                return Ok::<u32, $crate::StoreError>(0);
            };
            if beneficiary != vouch_domain::program::Beneficiary::Referrer.as_str() {
                return Ok(0);
            }
            let definition: vouch_domain::program::ProgramDefinition = serde_json::from_str(&definition)
                .map_err(|e| $crate::StoreError::Corrupt(format!("reward {reward}: program version: {e}")))?;
            let Some(rule) = definition.rule(&rule_id).filter(|r| needs_earlier(r)) else {
                return Ok(0);
            };
            $crate::sql::query(LOCK_REFERRER).bind(participant).execute(&mut *$tx).await?;
            let cause = reward.to_string();
            $crate::rewards::reprice_referrer!(
                $tx,
                program,
                rule,
                version,
                definition.currency(),
                participant,
                &cause,
                $actor,
                $now
            )
            .await
        }
    };
}
pub(crate) use reprice_after_void;

/// Creates the rewards `$cause` earns `$referral` (an [`AwardCause`]), inside
/// the open transaction `$tx`, with the referral's row locked by the caller:
/// for each rule whose trigger the cause reaches — `qualified` (once), `won`
/// (once), `payment` (once per payment fact) — at most one reward per
/// occurrence (the unique index; an occurrence rewarded already is skipped, so
/// a repeat changes nothing). Caps reduce what would pass them. A per-unit
/// reward is priced in contract-date order among the referrer's rewards, and
/// those after it are priced again ([`reprice_referrer!`]). When `won` rules
/// were looked at, sets the referral's `units_missing` flag. Only `active`
/// referrals earn. Evaluates to `Result<Awarded, StoreError>`.
macro_rules! award {
    ($tx:expr, $referral:expr, $cause:expr, $actor:expr, $now:expr) => {
        async {
            use $crate::rewards::*;
            let referral_id: vouch_domain::ReferralId = $referral;
            let cause: AwardCause = $cause;
            let now: jiff::Timestamp = $now;
            let actor: &str = $actor;
            let mut awarded = Awarded::default();
            if !cause.any() {
                return Ok::<_, $crate::StoreError>(awarded);
            }
            let (program_id, version_id, participant_id, definition): (uuid::Uuid, uuid::Uuid, uuid::Uuid, String) =
                $crate::sql::query_as(SELECT_AWARD_REFERRAL).bind(referral_id.0).fetch_one(&mut *$tx).await?;
            let definition: vouch_domain::program::ProgramDefinition = serde_json::from_str(&definition)
                .map_err(|e| $crate::StoreError::Corrupt(format!("program version {version_id}: {e}")))?;
            let rules: Vec<vouch_domain::program::RewardRule> =
                definition.rewards().iter().filter(|r| cause.triggers(r.trigger)).cloned().collect();
            if rules.is_empty() {
                return Ok(awarded);
            }
            let tz = jiff::tz::TimeZone::get(definition.timezone())
                .map_err(|e| $crate::StoreError::Corrupt(format!("time zone: {e}")))?;
            let currency = definition.currency();
            let facts: Vec<WonFactRow> =
                $crate::sql::query_as(SELECT_WON_FACTS).bind(referral_id.0).fetch_all(&mut *$tx).await?;
            let inputs = won_inputs(&facts, cause.units, now)?;
            let payments: Vec<PaymentRow> =
                if rules.iter().any(|r| r.trigger == vouch_domain::program::Trigger::Payment) {
                    $crate::sql::query_as(SELECT_PAYMENTS).bind(referral_id.0).fetch_all(&mut *$tx).await?
                } else {
                    Vec::new()
                };
            let qualified_at: Option<(i64,)> =
                if rules.iter().any(|r| r.trigger == vouch_domain::program::Trigger::Qualified) {
                    $crate::sql::query_as(SELECT_QUALIFIED_AT).bind(referral_id.0).fetch_optional(&mut *$tx).await?
                } else {
                    None
                };
            // A staff move has no fact: it qualified now.
            let qualified_at = qualified_at.map(|(at,)| $crate::timestamp(at)).transpose()?.unwrap_or(now);
            // Tiers and per-person caps count the referrer's other rewards: take
            // the referrer's row lock (Postgres) so two of their referrals are
            // rewarded one after the other.
            if rules.iter().any(needs_lock) {
                $crate::sql::query(LOCK_REFERRER).bind(participant_id).execute(&mut *$tx).await?;
            }
            for rule in &rules {
                let beneficiary_participant = match rule.beneficiary {
                    vouch_domain::program::Beneficiary::Referrer => Some(participant_id),
                    vouch_domain::program::Beneficiary::Referee => None,
                };
                for occurrence in occurrences(rule, &inputs, qualified_at, &payments, &tz)? {
                    let seen: Option<(uuid::Uuid,)> = $crate::sql::query_as(SELECT_OCCURRENCE)
                        .bind(referral_id.0)
                        .bind(rule.id.as_str())
                        .bind(rule.beneficiary.as_str())
                        .bind(&occurrence.name)
                        .fetch_optional(&mut *$tx)
                        .await?;
                    if seen.is_some() {
                        continue;
                    }
                    let mut caps = CapInputs { on_referral: 0, by_beneficiary: Vec::new() };
                    if rule.caps.per_referral_minor.is_some() {
                        let (sum,): (i64,) = $crate::sql::query_as(SELECT_EARNED_ON_REFERRAL)
                            .bind(referral_id.0)
                            .bind(rule.id.as_str())
                            .bind(rule.beneficiary.as_str())
                            .fetch_one(&mut *$tx)
                            .await?;
                        caps.on_referral = sum;
                    }
                    let per_unit = matches!(rule.computation, vouch_domain::program::Computation::PerUnit(_));
                    if rule.caps.per_beneficiary.is_some() && !per_unit {
                        caps.by_beneficiary = match beneficiary_participant {
                            Some(p) => {
                                $crate::sql::query_as(SELECT_EARNED_BY_REFERRER)
                                    .bind(program_id)
                                    .bind(rule.id.as_str())
                                    .bind(p)
                                    .fetch_all(&mut *$tx)
                                    .await?
                            }
                            None => {
                                $crate::sql::query_as(SELECT_EARNED_BY_REFEREE)
                                    .bind(referral_id.0)
                                    .bind(rule.id.as_str())
                                    .fetch_all(&mut *$tx)
                                    .await?
                            }
                        };
                    }
                    // A per-unit reward is priced where its contract date puts it
                    // among the referrer's rewards (a referee's among none).
                    let in_order = match (&rule.computation, inputs.units) {
                        (vouch_domain::program::Computation::PerUnit(_), Some(units)) => {
                            let rows: Vec<HeldRow> = if needs_earlier(rule) {
                                $crate::sql::query_as(SELECT_HELD)
                                    .bind(program_id)
                                    .bind(rule.id.as_str())
                                    .bind(participant_id)
                                    .fetch_all(&mut *$tx)
                                    .await?
                            } else {
                                Vec::new()
                            };
                            let held = held_rewards(&rows)?;
                            let mut versions: Vec<uuid::Uuid> = held.iter().map(|h| h.version).collect();
                            versions.push(version_id);
                            let mut list: Vec<vouch_domain::reward::HeldReward> =
                                held.into_iter().map(|h| h.held).collect();
                            list.push(vouch_domain::reward::HeldReward {
                                key: vouch_domain::reward::ReferralKey {
                                    contract_date: occurrence.date,
                                    won_at: inputs.won_at,
                                    referral: referral_id,
                                },
                                units: u32::try_from(units)
                                    .map_err(|_| $crate::StoreError::Corrupt(format!("units {units}")))?,
                            });
                            let rules = $crate::rewards::version_rules!($tx, rows, rule, version_id).await?;
                            rules.price(&versions, currency, &list)?.pop()
                        }
                        _ => None,
                    };
                    let planned = match plan_reward(rule, &definition, &inputs, &occurrence, &caps, in_order, &tz)? {
                        Plan::Reward(r) => r,
                        Plan::UnitsMissing => {
                            awarded.units_missing = true;
                            continue;
                        }
                        Plan::Nothing => continue,
                    };
                    let reward_id = uuid::Uuid::now_v7();
                    let won_at = (rule.trigger == vouch_domain::program::Trigger::Won).then_some(inputs.won_at);
                    let inserted = $crate::sql::query(INSERT_REWARD)
                        .bind(reward_id)
                        .bind(referral_id.0)
                        .bind(program_id)
                        .bind(version_id)
                        .bind(rule.id.as_str())
                        .bind(rule.beneficiary.as_str())
                        .bind(beneficiary_participant)
                        .bind(&occurrence.name)
                        .bind(planned.kind.as_str())
                        .bind(planned.amount.amount_minor)
                        .bind(planned.amount.currency.code())
                        .bind(planned.plan.as_deref())
                        .bind(planned.months)
                        .bind(planned.units)
                        .bind(occurrence.date.to_string())
                        .bind(won_at.map($crate::micros))
                        .bind(planned.status.as_str())
                        .bind(planned.release_at.map($crate::micros))
                        .bind(&planned.explanation)
                        .bind($crate::micros(now))
                        .execute(&mut *$tx)
                        .await?
                        .rows_affected()
                        == 1;
                    if !inserted {
                        continue;
                    }
                    awarded.created += 1;
                    let reason = match (planned.status, planned.release_at) {
                        (RewardStatus::Approved, _) => "approved at once",
                        (_, Some(_)) => "on hold",
                        _ => "awaiting approval",
                    };
                    $crate::sql::query(INSERT_REWARD_EVENT)
                        .bind(uuid::Uuid::now_v7())
                        .bind(reward_id)
                        .bind(None::<&str>)
                        .bind(planned.status.as_str())
                        .bind(actor)
                        .bind(Some(reason))
                        .bind($crate::micros(now))
                        .execute(&mut *$tx)
                        .await?;
                    // The rewards after this one in the referrer's year count it now.
                    if needs_earlier(rule) {
                        let cause = referral_id.0.to_string();
                        $crate::rewards::reprice_referrer!(
                            $tx,
                            program_id,
                            rule,
                            version_id,
                            currency,
                            participant_id,
                            &cause,
                            actor,
                            now
                        )
                        .await?;
                    }
                }
            }
            if cause.triggers(vouch_domain::program::Trigger::Won) {
                $crate::sql::query("UPDATE referrals SET units_missing = $2 WHERE id = $1")
                    .bind(referral_id.0)
                    .bind(awarded.units_missing)
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<_, $crate::StoreError>(awarded)
        }
    };
}
pub(crate) use award;

impl Store {
    /// Rewards matching `filter`, newest first, `limit` at most, after the reward
    /// `before` (the last one of the previous page).
    pub async fn rewards(&self, filter: &RewardFilter, before: Option<Uuid>, limit: u32) -> Result<Vec<RewardRecord>> {
        let rows: Vec<RewardRow> = on_read!(self, p => {
            let mut q = sqlx::QueryBuilder::new(SELECT_REWARDS);
            q.push(" WHERE 1 = 1");
            if let Some(referral) = filter.referral {
                q.push(" AND referral_id = ").push_bind(referral.0);
            }
            if let Some(participant) = filter.participant {
                q.push(" AND participant_id = ").push_bind(participant.0);
            }
            if let Some(status) = filter.status {
                q.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some(before) = before {
                q.push(" AND id < ").push_bind(before);
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
            q.build_query_as().fetch_all(p).await?
        });
        rows.into_iter().map(RewardRecord::try_from).collect()
    }

    /// One reward.
    pub async fn reward(&self, id: Uuid) -> Result<RewardRecord> {
        let row: Option<RewardRow> = on_read!(self, p => {
            let mut q = sqlx::QueryBuilder::new(SELECT_REWARDS);
            q.push(" WHERE id = ").push_bind(id);
            q.build_query_as().fetch_optional(p).await?
        });
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// The units a `won` lacked, sent by staff: creates the rewards that waited
    /// for them and clears the referral's `units_missing` flag.
    pub async fn supply_units(
        &self,
        referral: ReferralId,
        units: i64,
        actor: &str,
        now: Timestamp,
    ) -> std::result::Result<Awarded, SupplyUnitsError> {
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            let locked: Option<(bool,)> =
                sqlx::query_as("UPDATE referrals SET updated_at = $2 WHERE id = $1 RETURNING units_missing")
                    .bind(referral.0)
                    .bind(micros(now))
                    .fetch_optional(&mut *tx)
                    .await?;
            match locked {
                None => return Err(SupplyUnitsError::NotFound),
                Some((false,)) => return Err(SupplyUnitsError::NotMissing),
                Some((true,)) => {}
            }
            let awarded = award!(tx, referral, AwardCause::units(units), actor, now).await?;
            tx.commit().await?;
            Ok(awarded)
        })
    }
}
