//! The rewards ledger: rewards created when a referral is won, and reading them.
//!
//! [`award_won!`] runs inside the transaction that moved the referral to `won`
//! (`record_fact`, with the referral's row locked) or that supplies the units a
//! `won` lacked (`Store::supply_units`). It judges the referral by the program
//! version it was created under and creates, for each rule triggered by `won`,
//! at most one reward (the unique index on referral, rule, beneficiary and
//! occurrence; a repeat changes nothing). A per-unit rule without units creates
//! nothing and sets the referral's `units_missing` flag.
//!
//! A staff move to `won` (`move_stage`) awards like a `won` fact. Per-unit rules
//! take the referrer's row lock first, so two of their referrals won at once are
//! priced one after the other.
//!
//! Not yet here: caps (except a percentage's per-referral maximum), rules
//! triggered by `qualified` or `payment`, re-pricing when a late `won` lands
//! before rewards already made, a referral accepted from review after its `won`,
//! releasing holds.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use uuid::Uuid;
use vouch_domain::program::{
    Approval, Beneficiary, Computation, HoldStart, PercentOf, ProgramDefinition, RewardKind, RewardRule,
};
use vouch_domain::reward::{
    EarlierReward, ReferralKey, YearLabel, counting_date, explain_flat, explain_per_unit, explain_percentage, flat,
    percentage, price_units, prior_total, release_at,
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

impl From<sqlx::Error> for SupplyUnitsError {
    fn from(e: sqlx::Error) -> Self {
        SupplyUnitsError::Store(StoreError::classify(e))
    }
}

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

/// The referral as awarding needs it.
pub(crate) struct AwardReferral {
    pub id: ReferralId,
    pub definition: ProgramDefinition,
}

/// What the referral's `won` facts say: when it was first won, and the first
/// units, contract date and value reported.
pub(crate) struct WonInputs {
    pub won_at: Timestamp,
    pub units: Option<i64>,
    pub contract_date: Option<Date>,
    pub value: Option<(i64, String)>,
}

/// occurred_at, units, contract_date, value_minor, value_currency; oldest first.
pub(crate) type WonFactRow = (i64, Option<i64>, Option<String>, Option<i64>, Option<String>);

pub(crate) const SELECT_WON_FACTS: &str = "SELECT occurred_at, units, contract_date, value_minor, value_currency
     FROM facts WHERE referral_id = $1 AND type = 'won' ORDER BY occurred_at, recorded_at, id";

pub(crate) const SELECT_AWARD_REFERRAL: &str = "SELECT r.program_id, r.program_version_id, r.participant_id,
        v.definition
     FROM referrals r JOIN program_versions v ON v.id = r.program_version_id WHERE r.id = $1";

/// referral_id, units, counting_date, won_at
pub(crate) type EarlierRow = (Uuid, i64, String, i64);

/// The beneficiary's non-voided per-unit rewards under the rule, in the program.
pub(crate) const SELECT_EARLIER: &str = "SELECT referral_id, units, counting_date, won_at FROM rewards
     WHERE program_id = $1 AND rule_id = $2 AND participant_id = $3 AND beneficiary = 'referrer'
       AND status <> 'voided' AND units IS NOT NULL AND counting_date IS NOT NULL AND won_at IS NOT NULL";

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
    let contract_date = rows
        .iter()
        .find_map(|r| r.2.as_deref())
        .map(|d| d.parse::<Date>().map_err(|e| StoreError::Corrupt(format!("contract date {d}: {e}"))))
        .transpose()?;
    Ok(WonInputs {
        won_at,
        units: units_override.or_else(|| rows.iter().find_map(|r| r.1)),
        contract_date,
        value: rows.iter().find_map(|r| r.3.zip(r.4.clone())),
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
    /// Nothing to compute (a percentage without a contract value).
    Nothing,
}

/// Whether the rule needs the beneficiary's earlier rewards.
pub(crate) fn needs_earlier(rule: &RewardRule) -> bool {
    matches!(rule.computation, Computation::PerUnit(_)) && rule.beneficiary == Beneficiary::Referrer
}

fn reward_error(e: vouch_domain::reward::RewardError) -> StoreError {
    StoreError::Corrupt(format!("reward computation: {e}"))
}

/// The date a referral counts on, for ordering tiers.
pub(crate) fn counting(inputs: &WonInputs, tz: &TimeZone) -> Date {
    counting_date(inputs.contract_date, inputs.won_at, tz)
}

/// Computes what `rule` pays for the won referral.
pub(crate) fn plan_reward(
    rule: &RewardRule,
    referral: &AwardReferral,
    inputs: &WonInputs,
    earlier: &[EarlierRow],
    tz: &TimeZone,
) -> Result<Plan> {
    let currency = referral.definition.currency();
    let this_date = counting(inputs, tz);
    let (amount, plan, months, units, explanation) = match &rule.computation {
        Computation::Flat { amount_minor } => {
            let amount = flat(Money::new(*amount_minor, currency)).map_err(reward_error)?;
            (amount, None, None, None, explain_flat(amount))
        }
        Computation::PerUnit(per_unit) => {
            let Some(units) = inputs.units else {
                return Ok(Plan::UnitsMissing);
            };
            let units32 = u32::try_from(units).map_err(|_| StoreError::Corrupt(format!("units {units}")))?;
            let this = ReferralKey { contract_date: this_date, won_at: inputs.won_at, referral: referral.id };
            let others = earlier
                .iter()
                .map(|(id, units, date, won_at)| {
                    Ok(EarlierReward {
                        key: ReferralKey {
                            contract_date: date
                                .parse::<Date>()
                                .map_err(|e| StoreError::Corrupt(format!("counting date {date}: {e}")))?,
                            won_at: timestamp(*won_at)?,
                            referral: ReferralId(*id),
                        },
                        units: u32::try_from(*units).map_err(|_| StoreError::Corrupt(format!("units {units}")))?,
                        voided: false,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let placement = prior_total(per_unit.period, this, &others).map_err(reward_error)?;
            let priced = price_units(&per_unit.tiers, per_unit.tier_policy, placement.prior_total, units32, currency)
                .map_err(reward_error)?;
            let explanation =
                explain_per_unit(&per_unit.unit, &priced, YearLabel::new(per_unit.period, placement.start));
            (priced.amount, None, None, Some(units), explanation)
        }
        Computation::Percentage(p) => {
            let (PercentOf::ContractValue, Some((minor, code))) = (p.of, inputs.value.as_ref()) else {
                return Ok(Plan::Nothing);
            };
            let Ok(base_currency) = Currency::parse(code) else {
                return Ok(Plan::Nothing);
            };
            if base_currency != currency {
                return Ok(Plan::Nothing);
            }
            let max = rule.caps.per_referral_minor.map(|m| Money::new(m, currency));
            let priced = percentage(p.percent, Money::new(*minor, currency), max).map_err(reward_error)?;
            (priced.amount, None, None, None, explain_percentage(&priced, p.of))
        }
        Computation::PlanUpgrade { plan, months } => {
            let explanation = format!("{months} months of the {plan} plan");
            (Money::new(0, currency), Some(plan.clone()), Some(i64::from(*months)), None, explanation)
        }
    };
    let (status, release) = match &rule.hold {
        Some(hold) => {
            let won_day = counting_date(None, inputs.won_at, tz);
            let start = match hold.after {
                HoldStart::ContractDate => this_date,
                HoldStart::Won | HoldStart::Event => won_day,
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

/// Creates the rewards of the rules triggered by `won` for `$referral`, inside
/// the open transaction `$tx`, and sets the referral's `units_missing` flag.
/// `$units` overrides the units of the `won` facts (staff sending them later).
/// Evaluates to `Result<Awarded, StoreError>`.
macro_rules! award_won {
    ($tx:expr, $referral:expr, $units:expr, $actor:expr, $now:expr) => {
        async {
            use $crate::rewards::*;
            let referral_id: vouch_domain::ReferralId = $referral;
            let now: jiff::Timestamp = $now;
            let actor: &str = $actor;
            let (program_id, version_id, participant_id, definition): (uuid::Uuid, uuid::Uuid, uuid::Uuid, String) =
                sqlx::query_as(SELECT_AWARD_REFERRAL).bind(referral_id.0).fetch_one(&mut *$tx).await?;
            let definition: vouch_domain::program::ProgramDefinition = serde_json::from_str(&definition)
                .map_err(|e| $crate::StoreError::Corrupt(format!("program version {version_id}: {e}")))?;
            let tz = jiff::tz::TimeZone::get(definition.timezone())
                .map_err(|e| $crate::StoreError::Corrupt(format!("time zone: {e}")))?;
            let facts: Vec<WonFactRow> =
                sqlx::query_as(SELECT_WON_FACTS).bind(referral_id.0).fetch_all(&mut *$tx).await?;
            let inputs = won_inputs(&facts, $units, now)?;
            let referral = AwardReferral { id: referral_id, definition };
            let mut awarded = Awarded::default();
            // Per-unit tiers count the referrer's other rewards: take the
            // referrer's row lock (Postgres) so two of their referrals won at
            // once are priced one after the other.
            if referral
                .definition
                .rewards()
                .iter()
                .any(|r| r.trigger == vouch_domain::program::Trigger::Won && needs_earlier(r))
            {
                sqlx::query(LOCK_REFERRER).bind(participant_id).execute(&mut *$tx).await?;
            }
            for rule in referral.definition.rewards() {
                if rule.trigger != vouch_domain::program::Trigger::Won {
                    continue;
                }
                let earlier: Vec<EarlierRow> = if needs_earlier(rule) {
                    sqlx::query_as(SELECT_EARLIER)
                        .bind(program_id)
                        .bind(rule.id.as_str())
                        .bind(participant_id)
                        .fetch_all(&mut *$tx)
                        .await?
                } else {
                    Vec::new()
                };
                let planned = match plan_reward(rule, &referral, &inputs, &earlier, &tz)? {
                    Plan::Reward(r) => r,
                    Plan::UnitsMissing => {
                        awarded.units_missing = true;
                        continue;
                    }
                    Plan::Nothing => continue,
                };
                let reward_id = uuid::Uuid::now_v7();
                let beneficiary_participant = match rule.beneficiary {
                    vouch_domain::program::Beneficiary::Referrer => Some(participant_id),
                    vouch_domain::program::Beneficiary::Referee => None,
                };
                let inserted = sqlx::query(INSERT_REWARD)
                    .bind(reward_id)
                    .bind(referral_id.0)
                    .bind(program_id)
                    .bind(version_id)
                    .bind(rule.id.as_str())
                    .bind(rule.beneficiary.as_str())
                    .bind(beneficiary_participant)
                    .bind("won")
                    .bind(planned.kind.as_str())
                    .bind(planned.amount.amount_minor)
                    .bind(planned.amount.currency.code())
                    .bind(planned.plan.as_deref())
                    .bind(planned.months)
                    .bind(planned.units)
                    .bind(counting(&inputs, &tz).to_string())
                    .bind($crate::micros(inputs.won_at))
                    .bind(planned.status.as_str())
                    .bind(planned.release_at.map($crate::micros))
                    .bind(&planned.explanation)
                    .bind($crate::micros(now))
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected()
                    == 1;
                if inserted {
                    awarded.created += 1;
                    let reason = match (planned.status, planned.release_at) {
                        (RewardStatus::Approved, _) => "approved at once",
                        (_, Some(_)) => "on hold",
                        _ => "awaiting approval",
                    };
                    sqlx::query(INSERT_REWARD_EVENT)
                        .bind(uuid::Uuid::now_v7())
                        .bind(reward_id)
                        .bind(None::<&str>)
                        .bind(planned.status.as_str())
                        .bind(actor)
                        .bind(Some(reason))
                        .bind($crate::micros(now))
                        .execute(&mut *$tx)
                        .await?;
                }
            }
            sqlx::query("UPDATE referrals SET units_missing = $2 WHERE id = $1")
                .bind(referral_id.0)
                .bind(awarded.units_missing)
                .execute(&mut *$tx)
                .await?;
            Ok::<_, $crate::StoreError>(awarded)
        }
    };
}
pub(crate) use award_won;

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
            let awarded = award_won!(tx, referral, Some(units), actor, now).await?;
            tx.commit().await?;
            Ok(awarded)
        })
    }
}
