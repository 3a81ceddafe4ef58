//! Simulating a draft program version: the referrals of a period replayed under
//! the draft and under the version in force, side by side. Nothing is written.
//!
//! The replay runs the ledger's own computation — [`occurrences`] for the
//! triggers, [`plan_reward`] for flat amounts, percentages, caps and plan
//! upgrades, [`price_in_order`] for tiers in contract-date order — so the
//! simulation and the ledger cannot drift: replaying the version that was in
//! force reproduces the amounts its rules computed (each reward with its
//! re-price adjustments), human approvals and voids aside.
//!
//! Which referrals: the program's `active` referrals with a reward trigger
//! (`qualified`, `won`, a payment) whose date falls in the period (the date a
//! reward counts on: a `won`'s contract date, else the day it happened in the
//! program's time zone). Each is replayed whole; only the rewards dated in the
//! period are reported. The referrer's other rewards (outside the replay) are
//! taken from the ledger as they stand, for tiers and per-person caps.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use uuid::Uuid;
use vouch_domain::program::{Beneficiary, Computation, ProgramDefinition, Trigger};
use vouch_domain::referral::Stage;
use vouch_domain::reward::simulate::{Comparison, SimulatedReward, compare};
use vouch_domain::reward::{HeldReward, InOrder, ReferralKey, UnitCaps, price_in_order};
use vouch_domain::{Currency, ParticipantId, ReferralId};

use crate::rewards::{CapInputs, PaymentRow, Plan, WonFactRow, needs_earlier, occurrences, plan_reward, won_inputs};
use crate::{Result, Store, StoreError, on_read, timestamp};

/// The period a simulation replays: `since` to `until`, both included, as
/// dates in the program's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulationPeriod {
    pub since: Date,
    pub until: Date,
}

/// The two replays and their comparison.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub slug: String,
    pub currency: Currency,
    pub period: SimulationPeriod,
    /// The version in force, replayed.
    pub current_version: i64,
    pub current: Vec<SimulatedReward>,
    pub draft: Vec<SimulatedReward>,
    pub comparison: Comparison,
    /// The referrers named in the comparison: id → email.
    pub referrers: HashMap<ParticipantId, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// No program has the draft's slug.
    #[error("no program `{0}`")]
    UnknownProgram(String),
    /// The draft pays in another currency than the version in force: the two
    /// cannot be compared.
    #[error("the draft pays in {draft}, the program in {current}")]
    CurrencyChanged { current: &'static str, draft: &'static str },
    #[error("`until` ({until}) is before `since` ({since})")]
    EmptyPeriod { since: Date, until: Date },
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(SimulateError);

/// One referral as the replay needs it.
#[derive(Debug, Clone)]
pub struct ReplayReferral {
    pub id: ReferralId,
    pub referrer: ParticipantId,
    pub stage: Stage,
    /// Its `won` facts, oldest first.
    pub won: Vec<WonFactRow>,
    /// Its payment facts, oldest first.
    pub payments: Vec<PaymentRow>,
    /// Its first `qualified` or `won` fact, else a staff move there.
    pub qualified_at: Option<Timestamp>,
    /// A staff move to `won`, for a referral won without a fact.
    pub staff_won_at: Option<Timestamp>,
    /// Units staff sent for a `won` that lacked them.
    pub staff_units: Option<i64>,
}

/// A referrer's reward outside the replay, as the ledger holds it.
#[derive(Debug, Clone)]
pub struct LedgerContext {
    pub rule_id: String,
    pub referrer: ParticipantId,
    pub referral: ReferralId,
    pub date: Date,
    pub amount_minor: i64,
    /// For a per-unit reward of a `won` rule: its place in the tiers.
    pub held: Option<HeldReward>,
}

/// Replays `referrals` under `definition`: the rewards its rules compute, in
/// the order of the occurrences that earn them. `context` is the referrers'
/// other rewards (not in `referrals`). Pure.
pub fn replay(
    definition: &ProgramDefinition,
    referrals: &[ReplayReferral],
    context: &[LedgerContext],
) -> Result<Vec<SimulatedReward>> {
    let tz = TimeZone::get(definition.timezone()).map_err(|e| StoreError::Corrupt(format!("time zone: {e}")))?;
    let currency = definition.currency();
    let corrupt = |e: vouch_domain::reward::RewardError| StoreError::Corrupt(format!("reward computation: {e}"));

    // Every occurrence of every rule, before anything is priced.
    struct Pending<'a> {
        referral: &'a ReplayReferral,
        rule: usize,
        inputs: std::rc::Rc<crate::rewards::WonInputs>,
        occurrence: crate::rewards::Occurrence,
    }
    let mut pending: Vec<Pending> = Vec::new();
    for referral in referrals {
        let won = matches!(referral.stage, Stage::Won | Stage::Churned);
        let qualified = won || referral.stage == Stage::Qualified;
        let won_at = referral.staff_won_at.or(referral.qualified_at).unwrap_or(Timestamp::UNIX_EPOCH);
        let units = if referral.won.iter().any(|r| r.1.is_some()) { None } else { referral.staff_units };
        let inputs = std::rc::Rc::new(won_inputs(&referral.won, units, won_at)?);
        let qualified_at = referral.qualified_at.unwrap_or(inputs.won_at);
        for (i, rule) in definition.rewards().iter().enumerate() {
            let reached = match rule.trigger {
                Trigger::Qualified => qualified,
                Trigger::Won | Trigger::Payment => won,
            };
            if !reached {
                continue;
            }
            for occurrence in occurrences(rule, &inputs, qualified_at, &referral.payments, &tz)? {
                pending.push(Pending { referral, rule: i, inputs: inputs.clone(), occurrence });
            }
        }
    }
    // The ledger awards in the order things happened.
    pending.sort_by_key(|p| (p.occurrence.at, p.referral.id, p.rule));

    // Per-unit rewards are priced where their contract dates put them among
    // the referrer's rewards under the rule, as the ledger's re-pricing leaves them.
    // (rule, referrer) for tiers, (rule, referral) for a reward priced alone →
    // (index in `pending`, the reward).
    type Group = (usize, Option<ParticipantId>, Option<ReferralId>);
    let mut groups: BTreeMap<Group, Vec<(usize, HeldReward)>> = BTreeMap::new();
    for (n, p) in pending.iter().enumerate() {
        let rule = &definition.rewards()[p.rule];
        let (Computation::PerUnit(_), Some(units)) = (&rule.computation, p.inputs.units) else {
            continue;
        };
        let key = ReferralKey { contract_date: p.occurrence.date, won_at: p.inputs.won_at, referral: p.referral.id };
        let units = u32::try_from(units).map_err(|_| StoreError::Corrupt(format!("units {units}")))?;
        // Tiers count a referrer's `won` rewards; anything else is priced alone.
        let group = if needs_earlier(rule) && rule.trigger == Trigger::Won {
            (p.rule, Some(p.referral.referrer), None)
        } else {
            (p.rule, None, Some(p.referral.id))
        };
        groups.entry(group).or_default().push((n, HeldReward { key, units }));
    }
    let mut in_order: HashMap<usize, InOrder> = HashMap::new();
    for ((rule, referrer, _), members) in groups {
        let rule = &definition.rewards()[rule];
        let Computation::PerUnit(per_unit) = &rule.computation else { continue };
        let mut list: Vec<HeldReward> = match referrer {
            Some(referrer) => context
                .iter()
                .filter(|c| c.referrer == referrer && c.rule_id == rule.id.as_str())
                .filter_map(|c| c.held)
                .collect(),
            None => Vec::new(),
        };
        let first = list.len();
        list.extend(members.iter().map(|(_, h)| *h));
        let caps = UnitCaps::new(rule.caps.per_referral_minor, rule.caps.per_beneficiary, currency);
        let priced = price_in_order(per_unit, caps, currency, &list).map_err(corrupt)?;
        for ((n, _), p) in members.iter().zip(priced.into_iter().skip(first)) {
            in_order.insert(*n, p);
        }
    }

    // What each beneficiary earned so far, for caps: (rule, referrer) and
    // (rule, referral, beneficiary).
    let mut by_referrer: HashMap<(usize, ParticipantId), Vec<(String, i64)>> = HashMap::new();
    let mut by_referee: HashMap<(usize, ReferralId), Vec<(String, i64)>> = HashMap::new();
    let mut on_referral: HashMap<(usize, ReferralId, Beneficiary), i64> = HashMap::new();
    let mut out = Vec::new();
    for (n, p) in pending.iter().enumerate() {
        let rule = &definition.rewards()[p.rule];
        let referrer = p.referral.referrer;
        let earned_by = match rule.beneficiary {
            Beneficiary::Referrer => by_referrer.entry((p.rule, referrer)).or_insert_with(|| {
                context
                    .iter()
                    .filter(|c| c.referrer == referrer && c.rule_id == rule.id.as_str())
                    .map(|c| (c.date.to_string(), c.amount_minor))
                    .collect()
            }),
            Beneficiary::Referee => by_referee.entry((p.rule, p.referral.id)).or_default(),
        };
        let earned_here = on_referral.entry((p.rule, p.referral.id, rule.beneficiary)).or_default();
        let per_unit = matches!(rule.computation, Computation::PerUnit(_));
        let caps = CapInputs {
            on_referral: *earned_here,
            by_beneficiary: if rule.caps.per_beneficiary.is_some() && !per_unit {
                earned_by.clone()
            } else {
                Vec::new()
            },
        };
        let planned = match plan_reward(rule, definition, &p.inputs, &p.occurrence, &caps, in_order.remove(&n), &tz)? {
            Plan::Reward(r) => r,
            Plan::UnitsMissing | Plan::Nothing => continue,
        };
        *earned_here = earned_here
            .checked_add(planned.amount.amount_minor)
            .ok_or_else(|| StoreError::Corrupt("a simulated amount overflows".into()))?;
        earned_by.push((p.occurrence.date.to_string(), planned.amount.amount_minor));
        out.push(SimulatedReward {
            referral: p.referral.id,
            referrer,
            rule_id: rule.id.as_str().to_string(),
            beneficiary: rule.beneficiary,
            occurrence: p.occurrence.name.clone(),
            date: p.occurrence.date,
            kind: planned.kind,
            amount: planned.amount,
            months: planned.months,
            explanation: planned.explanation,
        });
    }
    Ok(out)
}

/// referral id, participant id, stage.
type ReferralRow = (Uuid, Uuid, String);
/// referral id, fact id, type, occurred_at, units, contract_date, value_minor, value_currency.
type FactRow = (Uuid, Uuid, String, i64, Option<i64>, Option<String>, Option<i64>, Option<String>);
/// referral id, stage_to, occurred_at.
type MoveRow = (Uuid, String, i64);
/// rule_id, participant_id, referral_id, units, counting_date, won_at, amount_minor.
type ContextRow = (String, Uuid, Uuid, Option<i64>, String, Option<i64>, i64);

/// Everything a simulation reads, in one snapshot.
type Loaded = (Vec<ReferralRow>, Vec<FactRow>, Vec<MoveRow>, Vec<(Uuid, i64)>, Vec<ContextRow>);

const SELECT_REFERRALS: &str = "SELECT id, participant_id, stage FROM referrals
     WHERE program_id = $1 AND status = 'active' AND stage IN ('qualified', 'won', 'churned')";

const SELECT_FACTS: &str = "SELECT f.referral_id, f.id, f.type, f.occurred_at, f.units, f.contract_date,
        f.value_minor, f.value_currency
     FROM facts f JOIN referrals r ON r.id = f.referral_id
     WHERE r.program_id = $1 AND r.status = 'active' AND f.type IN ('qualified', 'won', 'payment')
     ORDER BY f.occurred_at, f.recorded_at, f.id";

/// Staff moves, which carry no fact.
const SELECT_MOVES: &str = "SELECT e.referral_id, e.stage_to, e.occurred_at
     FROM referral_events e JOIN referrals r ON r.id = e.referral_id
     WHERE r.program_id = $1 AND r.status = 'active' AND e.kind = 'stage' AND e.stage_to IN ('qualified', 'won')
     ORDER BY e.occurred_at, e.seq";

const SELECT_STAFF_UNITS: &str = "SELECT referral_id, units FROM rewards
     WHERE program_id = $1 AND units IS NOT NULL AND status <> 'voided'";

/// Every referrer's non-voided rewards in the program (the caller keeps those
/// outside the replay). A per-unit reward comes to its re-priced amount.
const SELECT_CONTEXT: &str = "SELECT rule_id, participant_id, referral_id, units, counting_date, won_at,
        amount_minor
     FROM rewards
     WHERE program_id = $1 AND beneficiary = 'referrer' AND participant_id IS NOT NULL
       AND status <> 'voided' AND counting_date IS NOT NULL";

impl Store {
    /// Replays the referrals of `period` under `draft` and under the version of
    /// its program in force now, and compares them. Stores nothing.
    pub async fn simulate(
        &self,
        draft: &ProgramDefinition,
        period: SimulationPeriod,
    ) -> std::result::Result<Simulation, SimulateError> {
        if period.until < period.since {
            return Err(SimulateError::EmptyPeriod { since: period.since, until: period.until });
        }
        let slug = draft.slug().as_str().to_string();
        let current = match self.program(&slug).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => return Err(SimulateError::UnknownProgram(slug)),
            Err(e) => return Err(e.into()),
        };
        if current.definition.currency() != draft.currency() {
            return Err(SimulateError::CurrencyChanged {
                current: current.definition.currency().code(),
                draft: draft.currency().code(),
            });
        }
        let program = current.id.0;
        // One snapshot, so the replay sees one state of the ledger.
        let (referrals, facts, moves, units, context): Loaded = on_read!(self, p => {
            let mut tx = p.begin().await?;
            let referrals = sqlx::query_as(SELECT_REFERRALS).bind(program).fetch_all(&mut *tx).await?;
            let facts = sqlx::query_as(SELECT_FACTS).bind(program).fetch_all(&mut *tx).await?;
            let moves = sqlx::query_as(SELECT_MOVES).bind(program).fetch_all(&mut *tx).await?;
            let units = sqlx::query_as(SELECT_STAFF_UNITS).bind(program).fetch_all(&mut *tx).await?;
            let context = sqlx::query_as(SELECT_CONTEXT).bind(program).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            (referrals, facts, moves, units, context)
        });
        let mut all: BTreeMap<Uuid, ReplayReferral> = BTreeMap::new();
        for (id, participant, stage) in referrals {
            let stage = Stage::parse(&stage).ok_or_else(|| StoreError::Corrupt(format!("referral {id}: stage")))?;
            all.insert(
                id,
                ReplayReferral {
                    id: ReferralId(id),
                    referrer: ParticipantId(participant),
                    stage,
                    won: Vec::new(),
                    payments: Vec::new(),
                    qualified_at: None,
                    staff_won_at: None,
                    staff_units: None,
                },
            );
        }
        for (referral, id, kind, at, units, contract_date, minor, currency) in facts {
            let Some(r) = all.get_mut(&referral) else { continue };
            match kind.as_str() {
                "won" => r.won.push((at, units, contract_date, minor, currency)),
                "payment" => r.payments.push((id, at, minor, currency)),
                _ => {}
            }
            if kind != "payment" && r.qualified_at.is_none() {
                r.qualified_at = Some(timestamp(at)?);
            }
        }
        for (referral, stage_to, at) in moves {
            let Some(r) = all.get_mut(&referral) else { continue };
            let at = timestamp(at)?;
            if r.qualified_at.is_none() {
                r.qualified_at = Some(at);
            }
            if stage_to == "won" && r.staff_won_at.is_none() {
                r.staff_won_at = Some(at);
            }
        }
        for (referral, n) in units {
            if let Some(r) = all.get_mut(&referral) {
                r.staff_units.get_or_insert(n);
            }
        }

        // The referrals with an occurrence in the period, under either version.
        let in_period = |d: Date| period.since <= d && d <= period.until;
        let everyone: Vec<ReplayReferral> = all.into_values().collect();
        let mut chosen: HashSet<ReferralId> = HashSet::new();
        for definition in [&current.definition, draft] {
            for r in replay(definition, &everyone, &[])? {
                if in_period(r.date) {
                    chosen.insert(r.referral);
                }
            }
        }
        let replayed: Vec<ReplayReferral> = everyone.into_iter().filter(|r| chosen.contains(&r.id)).collect();
        let context = context
            .into_iter()
            .filter(|row| !chosen.contains(&ReferralId(row.2)))
            .map(|(rule_id, participant, referral, units, date, won_at, amount_minor)| {
                let date: Date = date.parse().map_err(|e| StoreError::Corrupt(format!("date {date}: {e}")))?;
                let held = match (units, won_at) {
                    (Some(units), Some(won_at)) => Some(HeldReward {
                        key: ReferralKey {
                            contract_date: date,
                            won_at: timestamp(won_at)?,
                            referral: ReferralId(referral),
                        },
                        units: u32::try_from(units).map_err(|_| StoreError::Corrupt(format!("units {units}")))?,
                    }),
                    _ => None,
                };
                Ok(LedgerContext {
                    rule_id,
                    referrer: ParticipantId(participant),
                    referral: ReferralId(referral),
                    date,
                    amount_minor,
                    held,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let keep = |list: Vec<SimulatedReward>| -> Vec<SimulatedReward> {
            list.into_iter().filter(|r| in_period(r.date)).collect()
        };
        let current_rewards = keep(replay(&current.definition, &replayed, &context)?);
        let draft_rewards = keep(replay(draft, &replayed, &context)?);
        let currency = draft.currency();
        let comparison = compare(currency, &current_rewards, &draft_rewards)
            .map_err(|e| StoreError::Corrupt(format!("simulation: {e}")))?;
        let ids: Vec<Uuid> = replayed.iter().map(|r| r.referrer.0).collect::<HashSet<_>>().into_iter().collect();
        let referrers = self.participant_emails(&ids).await?;
        Ok(Simulation {
            slug,
            currency,
            period,
            current_version: current.version,
            current: current_rewards,
            draft: draft_rewards,
            comparison,
            referrers,
        })
    }

    async fn participant_emails(&self, ids: &[Uuid]) -> Result<HashMap<ParticipantId, String>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let rows: Vec<(Uuid, String)> = on_read!(self, p => {
                let mut q = sqlx::QueryBuilder::new("SELECT id, email FROM participants WHERE id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build_query_as().fetch_all(p).await?
            });
            out.extend(rows.into_iter().map(|(id, email)| (ParticipantId(id), email)));
        }
        Ok(out)
    }
}
