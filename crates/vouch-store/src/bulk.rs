//! Bulk writes for demo data at scale (`vouch demo --scale N`): participants,
//! enrollments, referrals with their timelines and facts, and the rewards they
//! earned, written with multi-row INSERTs in large transactions instead of one
//! attribution or award per referral.
//!
//! The rows are the ones the normal paths write (same columns, same events, the
//! same unique indexes guard them), and every amount comes from the same domain
//! functions: [`plan_bulk_rewards`] prices each referral as `award!` would, per-unit
//! rewards in contract-date order among the referrer's rewards under the rule (as
//! in-order delivery leaves them). Deciding who refers whom is the caller's: a
//! referral arrives here with the domain's attribution decision.
//!
//! Only for an empty database, written by one process: nothing here takes the
//! row locks the normal paths take against concurrent writers.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::json;
use uuid::Uuid;
use vouch_domain::payout::PayoutDetails;
use vouch_domain::program::{Beneficiary, Computation, Trigger};
use vouch_domain::referral::{Decision, RejectionReason, Source, Stage, person_key};
use vouch_domain::reward::{HeldReward, ReferralKey, UnitCaps, price_in_order};
use vouch_domain::{Email, Money, ParticipantId, ParticipantKind, ProgramId, ReferralCode, ReferralId};

use crate::referrals::{Consent, NewProspect, ReferralEventKind, SYSTEM_ACTOR, decision_data, signals_text};
use crate::rewards::{
    CapInputs, Occurrence, Plan, RewardStatus, WonInputs, counting, needs_earlier, occurrences, plan_reward,
};
use crate::{Result, Store, StoreError, StoredProgram, micros, on_write};

/// SQLite allows 32,766 bound values per statement (Postgres 65,535): each
/// multi-row INSERT stays under the smaller.
const MAX_BINDS: usize = 32_000;

/// A participant, with where they are paid (if anywhere).
#[derive(Debug, Clone)]
pub struct BulkParticipant {
    pub id: ParticipantId,
    pub email: Email,
    pub name: String,
    pub kind: ParticipantKind,
    pub team: Option<String>,
    pub company: Option<String>,
    pub created_at: Timestamp,
    pub payout: Option<PayoutDetails>,
}

/// An enrollment with its (generated, non-vanity) code.
#[derive(Debug, Clone)]
pub struct BulkEnrollment {
    pub id: Uuid,
    pub program_id: ProgramId,
    pub participant_id: ParticipantId,
    pub code: ReferralCode,
    pub created_at: Timestamp,
}

/// The `won` fact of a referral, as the company's backend would send it.
#[derive(Debug, Clone)]
pub struct BulkWon {
    pub at: Timestamp,
    pub units: Option<u32>,
    pub contract_date: Option<Date>,
    pub value: Option<Money>,
}

/// A referral as attribution decided it, and what happened to it since: staff
/// moves (`contacted`, `qualified`, `lost`; never `won` or `churned`, which
/// come as facts), its `won` fact, and a `churned` fact after it.
#[derive(Debug, Clone)]
pub struct BulkReferral {
    pub id: ReferralId,
    /// Index into the programs given to [`Store::bulk_insert_referrals`].
    pub program: usize,
    pub enrollment_id: Uuid,
    pub participant_id: ParticipantId,
    pub code: ReferralCode,
    pub source: Source,
    pub prospect: NewProspect,
    pub consent: Option<Consent>,
    pub note: Option<String>,
    pub decision: Decision,
    pub actor: String,
    pub created_at: Timestamp,
    pub moves: Vec<(Stage, Timestamp)>,
    pub won: Option<BulkWon>,
    pub churned_at: Option<Timestamp>,
    /// A sales rep, assigned before the first move.
    pub assignee: Option<String>,
}

impl BulkReferral {
    /// The stage its facts and moves put it at.
    pub fn stage(&self) -> Stage {
        if self.churned_at.is_some() {
            Stage::Churned
        } else if self.won.is_some() {
            Stage::Won
        } else {
            self.moves.last().map_or(Stage::New, |(s, _)| *s)
        }
    }

    /// What its rewards need, when it can earn any (active and qualified or beyond).
    pub fn earner(&self) -> Option<BulkEarner> {
        let active = self.decision.status == vouch_domain::referral::Status::Active;
        let qualified_move = self.moves.iter().find(|(s, _)| *s == Stage::Qualified).map(|(_, at)| *at);
        let qualified_at = qualified_move.or(self.won.as_ref().map(|w| w.at))?;
        active.then(|| BulkEarner {
            referral: self.id,
            program: self.program,
            participant: self.participant_id,
            qualified_at,
            won: self.won.clone(),
        })
    }
}

/// A referral that earns, as [`plan_bulk_rewards`] needs it.
#[derive(Debug, Clone)]
pub struct BulkEarner {
    pub referral: ReferralId,
    pub program: usize,
    pub participant: ParticipantId,
    /// When it reached `qualified` (a staff move, or its `won`).
    pub qualified_at: Timestamp,
    pub won: Option<BulkWon>,
}

/// A reward ready to insert, with the reason its first history entry gives.
#[derive(Debug, Clone)]
pub struct BulkReward {
    pub id: Uuid,
    pub referral: ReferralId,
    pub program: usize,
    pub rule_id: String,
    pub beneficiary: Beneficiary,
    pub participant: Option<ParticipantId>,
    pub occurrence: String,
    pub kind: &'static str,
    pub amount: Money,
    pub plan: Option<String>,
    pub months: Option<i64>,
    pub units: Option<i64>,
    pub counting_date: Date,
    pub won_at: Option<Timestamp>,
    pub status: RewardStatus,
    pub release_at: Option<Timestamp>,
    pub explanation: String,
    pub created_at: Timestamp,
    pub reason: &'static str,
}

fn reward_error(e: vouch_domain::reward::RewardError) -> StoreError {
    StoreError::Corrupt(format!("reward computation: {e}"))
}

/// Prices what `earners` earned under their programs' rules, as the award path
/// would have when their triggers arrived: each referral in the order it was
/// rewarded (by when its trigger happened), per-beneficiary caps counting the
/// rewards before it, and per-unit rewards priced in contract-date order among
/// all the referrer's rewards under the rule. Payment-triggered rules earn
/// nothing here (no payments are made in bulk).
pub fn plan_bulk_rewards(programs: &[StoredProgram], earners: &[BulkEarner]) -> Result<Vec<BulkReward>> {
    let mut zones = Vec::with_capacity(programs.len());
    for p in programs {
        let tz = jiff::tz::TimeZone::get(p.definition.timezone())
            .map_err(|e| StoreError::Corrupt(format!("time zone: {e}")))?;
        zones.push(tz);
    }
    // Per-unit prices first, per (program, rule, referrer), over every won referral.
    type Group = (usize, String, ParticipantId);
    let mut groups: HashMap<Group, Vec<(usize, HeldReward)>> = HashMap::new();
    for (index, e) in earners.iter().enumerate() {
        let Some(won) = &e.won else { continue };
        let Some(units) = won.units else { continue };
        for rule in programs[e.program].definition.rewards() {
            if rule.trigger == Trigger::Won && needs_earlier(rule) {
                let key = ReferralKey {
                    contract_date: counting_date_of(won, &zones[e.program]),
                    won_at: won.at,
                    referral: e.referral,
                };
                groups
                    .entry((e.program, rule.id.as_str().to_string(), e.participant))
                    .or_default()
                    .push((index, HeldReward { key, units }));
            }
        }
    }
    let mut in_order = HashMap::new();
    for ((program, rule_id, _), list) in groups {
        let definition = &programs[program].definition;
        let Some(rule) = definition.rule(&rule_id) else { continue };
        let Computation::PerUnit(per_unit) = &rule.computation else { continue };
        let caps = UnitCaps::new(rule.caps.per_referral_minor, rule.caps.per_beneficiary, definition.currency());
        let held: Vec<HeldReward> = list.iter().map(|(_, h)| *h).collect();
        let priced = price_in_order(per_unit, caps, definition.currency(), &held).map_err(reward_error)?;
        for ((index, _), p) in list.into_iter().zip(priced) {
            in_order.insert((index, rule_id.clone()), p);
        }
    }

    // The rest in the order the triggers happened, caps counting what came before.
    let mut order: Vec<usize> = (0..earners.len()).collect();
    order.sort_by_key(|&i| (earners[i].won.as_ref().map_or(earners[i].qualified_at, |w| w.at), i));
    // (program, rule, beneficiary key) -> (date, amount) earned so far.
    let mut earned: HashMap<(usize, String, Uuid), Vec<(String, i64)>> = HashMap::new();
    let mut out = Vec::new();
    for index in order {
        let e = &earners[index];
        let program = &programs[e.program];
        let definition = &program.definition;
        let tz = &zones[e.program];
        let inputs = match &e.won {
            Some(w) => WonInputs {
                won_at: w.at,
                units: w.units.map(i64::from),
                contract_date: w.contract_date,
                value: w.value.map(|m| (m.amount_minor, m.currency.code().to_string())),
            },
            None => WonInputs { won_at: e.qualified_at, units: None, contract_date: None, value: None },
        };
        for rule in definition.rewards() {
            let reached = match rule.trigger {
                Trigger::Qualified => true,
                Trigger::Won => e.won.is_some(),
                Trigger::Payment => false,
            };
            if !reached {
                continue;
            }
            let participant = match rule.beneficiary {
                Beneficiary::Referrer => Some(e.participant),
                Beneficiary::Referee => None,
            };
            let who = participant.map_or(e.referral.0, |p| p.0);
            for occurrence in occurrences(rule, &inputs, e.qualified_at, &[], tz)? {
                let earned_key = (e.program, rule.id.as_str().to_string(), who);
                let so_far = earned.get(&earned_key).map(Vec::as_slice).unwrap_or_default();
                let caps = CapInputs {
                    on_referral: 0,
                    by_beneficiary: if rule.caps.per_beneficiary.is_some() { so_far.to_vec() } else { Vec::new() },
                };
                let priced = in_order.remove(&(index, rule.id.as_str().to_string()));
                let planned = match plan_reward(rule, definition, &inputs, &occurrence, &caps, priced, tz)? {
                    Plan::Reward(r) => r,
                    Plan::UnitsMissing | Plan::Nothing => continue,
                };
                let Occurrence { name, date, at, .. } = occurrence;
                let reason = match (planned.status, planned.release_at) {
                    (RewardStatus::Approved, _) => "approved at once",
                    (_, Some(_)) => "on hold",
                    _ => "awaiting approval",
                };
                earned.entry(earned_key).or_default().push((date.to_string(), planned.amount.amount_minor));
                out.push(BulkReward {
                    id: Uuid::now_v7(),
                    referral: e.referral,
                    program: e.program,
                    rule_id: rule.id.as_str().to_string(),
                    beneficiary: rule.beneficiary,
                    participant,
                    occurrence: name,
                    kind: planned.kind.as_str(),
                    amount: planned.amount,
                    plan: planned.plan,
                    months: planned.months,
                    units: planned.units,
                    counting_date: date,
                    won_at: (rule.trigger == Trigger::Won).then_some(inputs.won_at),
                    status: planned.status,
                    release_at: planned.release_at,
                    explanation: planned.explanation,
                    created_at: at,
                    reason,
                });
            }
        }
    }
    Ok(out)
}

fn counting_date_of(won: &BulkWon, tz: &jiff::tz::TimeZone) -> Date {
    let inputs = WonInputs { won_at: won.at, units: None, contract_date: won.contract_date, value: None };
    counting(&inputs, tz)
}

/// One `referral_events` row.
struct EventRow {
    referral: Uuid,
    seq: i64,
    kind: ReferralEventKind,
    from: Option<Stage>,
    to: Option<Stage>,
    actor: String,
    note: Option<String>,
    data: String,
    occurred_at: i64,
    recorded_at: i64,
}

/// One `facts` row.
struct FactRow {
    id: Uuid,
    program: Uuid,
    referral: Uuid,
    kind: &'static str,
    at: i64,
    email_norm: Option<String>,
    units: Option<i64>,
    value: Option<Money>,
    contract_date: Option<String>,
    raw: String,
}

/// Runs `INSERT INTO $table ($cols) VALUES ...` over `$rows` in statements of
/// as many rows as the bound-value limit allows, in the open transaction `$tx`.
/// `$push` binds one row's values onto a `Separated` builder.
macro_rules! insert_rows {
    ($tx:expr, $head:expr, $cols:expr, $rows:expr, |$b:ident, $r:ident| $push:block) => {{
        let per = (MAX_BINDS / $cols).max(1);
        for chunk in $rows.chunks(per) {
            let mut q = sqlx::QueryBuilder::new($head);
            q.push_values(chunk, |mut $b, $r| $push);
            q.build().execute(&mut *$tx).await.map_err(StoreError::classify)?;
        }
    }};
}

impl Store {
    /// Refreshes the planner's statistics after a bulk load: without them,
    /// Postgres plans the ledger's set-based statements (a payout batch's
    /// selection, the release job's reads) for empty tables; measured at
    /// 100,000 referrals, a batch of 10,000 rewards took 3.3 s instead of 1.0 s
    /// (docs/benchmarks.md, ledger).
    pub async fn analyze(&self) -> Result<()> {
        on_write!(self, p => {
            sqlx::query("ANALYZE").execute(p).await?;
        });
        Ok(())
    }

    /// Inserts participants (with their payout details) and enrollments with
    /// their codes, in one transaction.
    pub async fn bulk_insert_people(
        &self,
        participants: &[BulkParticipant],
        enrollments: &[BulkEnrollment],
    ) -> Result<()> {
        let details: Vec<(&BulkParticipant, &PayoutDetails)> =
            participants.iter().filter_map(|p| p.payout.as_ref().map(|d| (p, d))).collect();
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            insert_rows!(tx, "INSERT INTO participants (id, email, email_norm, name, kind, team, company, status, created_at) ",
                9, participants, |b, r| {
                b.push_bind(r.id.0)
                    .push_bind(r.email.as_str().to_string())
                    .push_bind(r.email.normalized())
                    .push_bind(r.name.clone())
                    .push_bind(r.kind.as_str())
                    .push_bind(r.team.clone())
                    .push_bind(r.company.clone())
                    .push_bind("active")
                    .push_bind(micros(r.created_at));
            });
            insert_rows!(tx, "INSERT INTO payout_details (participant_id, method, details, updated_at) ", 4, details,
                |b, r| {
                b.push_bind(r.0.id.0)
                    .push_bind(r.1.method().as_str())
                    .push_bind(crate::payouts::details_json(r.1))
                    .push_bind(micros(r.0.created_at));
            });
            insert_rows!(tx, "INSERT INTO enrollments (id, program_id, participant_id, created_at) ", 4, enrollments,
                |b, r| {
                b.push_bind(r.id).push_bind(r.program_id.0).push_bind(r.participant_id.0).push_bind(micros(r.created_at));
            });
            insert_rows!(tx, "INSERT INTO codes (code, enrollment_id, vanity, status, created_at) ", 5, enrollments,
                |b, r| {
                b.push_bind(r.code.as_str().to_string())
                    .push_bind(r.id)
                    .push_bind(false)
                    .push_bind("active")
                    .push_bind(micros(r.created_at));
            });
            sqlx::query(crate::BUMP_EPOCH).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })
    }

    /// Inserts referrals with their timelines (`created`, `decision`, an
    /// `assign`, each staff move, each fact) and facts, in one transaction.
    /// `programs` are the programs the referrals' indexes point into; each
    /// referral is judged under its program's current version.
    pub async fn bulk_insert_referrals(&self, programs: &[StoredProgram], referrals: &[BulkReferral]) -> Result<()> {
        let mut events = Vec::with_capacity(referrals.len() * 4);
        let mut facts = Vec::new();
        for r in referrals {
            let at = micros(r.created_at);
            let mut seq = 0;
            let mut event = |kind, from, to, actor: &str, note: Option<String>, data: String, occurred: i64| {
                seq += 1;
                events.push(EventRow {
                    referral: r.id.0,
                    seq,
                    kind,
                    from,
                    to,
                    actor: actor.to_string(),
                    note,
                    data,
                    occurred_at: occurred,
                    recorded_at: occurred,
                });
            };
            let created = json!({"source": r.source.as_str(), "code": r.code.as_str()}).to_string();
            event(ReferralEventKind::Created, None, Some(Stage::New), &r.actor, r.note.clone(), created, at);
            let decision = decision_data(&r.decision).to_string();
            event(ReferralEventKind::Decision, None, None, SYSTEM_ACTOR, None, decision, at);
            // Moves and facts in time order, each from the stage the one before left.
            let mut steps: Vec<(Timestamp, Stage, Option<&'static str>)> =
                r.moves.iter().map(|(s, at)| (*at, *s, None)).collect();
            if let Some(w) = &r.won {
                steps.push((w.at, Stage::Won, Some("won")));
            }
            if let Some(at) = r.churned_at {
                steps.push((at, Stage::Churned, Some("churned")));
            }
            steps.sort_by_key(|(at, ..)| *at);
            if let (Some(rep), Some((first, ..))) = (&r.assignee, steps.first()) {
                let at = first.checked_sub(jiff::SignedDuration::from_mins(1)).unwrap_or(*first);
                let data = json!({"from": null, "to": rep}).to_string();
                event(ReferralEventKind::Assign, None, None, &r.actor, None, data, micros(at));
            }
            let email_norm = r.prospect.email.as_ref().map(Email::normalized);
            let mut stage = Stage::New;
            for (at, to, fact) in steps {
                match fact {
                    None => {
                        event(ReferralEventKind::Stage, Some(stage), Some(to), &r.actor, None, "{}".into(), micros(at));
                    }
                    Some(kind) => {
                        let id = Uuid::now_v7();
                        let won = r.won.as_ref().filter(|_| kind == "won");
                        let units = won.and_then(|w| w.units).map(i64::from);
                        let contract_date = won.and_then(|w| w.contract_date).map(|d| d.to_string());
                        let value = won.and_then(|w| w.value);
                        let value_json =
                            value.map(|m| json!({"amount_minor": m.amount_minor, "currency": m.currency.code()}));
                        let data = json!({
                            "fact": kind, "fact_id": id.to_string(), "event_id": null,
                            "units": units, "contract_date": contract_date, "value": value_json,
                        });
                        let raw = json!({
                            "type": kind, "program": programs[r.program].definition.slug(),
                            "occurred_at": at.to_string(), "prospect": {"email": email_norm},
                            "units": units, "contract_date": contract_date, "value": value_json,
                        });
                        event(ReferralEventKind::Fact, None, None, &r.actor, None, data.to_string(), micros(at));
                        facts.push(FactRow {
                            id,
                            program: programs[r.program].id.0,
                            referral: r.id.0,
                            kind,
                            at: micros(at),
                            email_norm: email_norm.clone(),
                            units,
                            value,
                            contract_date,
                            raw: raw.to_string(),
                        });
                    }
                }
                stage = to;
            }
        }
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            insert_rows!(tx, "INSERT INTO referrals (id, program_id, program_version_id, enrollment_id,
                    participant_id, code, source, prospect_email, prospect_email_norm, prospect_person_key,
                    prospect_name, prospect_company, prospect_phone, prospect_external_id, consent_text, consent_at,
                    note, stage, status, rejection_reason, review_signals, holder_referral_id, explanation, assignee,
                    created_at, updated_at) ", 26, referrals, |b, r| {
                let program = &programs[r.program];
                let updated = [r.won.as_ref().map(|w| w.at), r.churned_at, r.moves.last().map(|(_, at)| *at)]
                    .into_iter()
                    .flatten()
                    .fold(r.created_at, Timestamp::max);
                b.push_bind(r.id.0)
                    .push_bind(program.id.0)
                    .push_bind(program.version_id.0)
                    .push_bind(r.enrollment_id)
                    .push_bind(r.participant_id.0)
                    .push_bind(r.code.as_str().to_string())
                    .push_bind(r.source.as_str())
                    .push_bind(r.prospect.email.as_ref().map(|e| e.as_str().to_string()))
                    .push_bind(r.prospect.email.as_ref().map(Email::normalized))
                    .push_bind(r.prospect.email.as_ref().map(person_key))
                    .push_bind(r.prospect.name.clone())
                    .push_bind(r.prospect.company.clone())
                    .push_bind(r.prospect.phone.clone())
                    .push_bind(r.prospect.external_id.clone())
                    .push_bind(r.consent.as_ref().map(|c| c.text.clone()))
                    .push_bind(r.consent.as_ref().map(|c| micros(c.at)))
                    .push_bind(r.note.clone())
                    .push_bind(r.stage().as_str())
                    .push_bind(r.decision.status.as_str())
                    .push_bind(r.decision.rejection_reason.map(RejectionReason::as_str))
                    .push_bind(signals_text(&r.decision.review_signals))
                    .push_bind(r.decision.holder.map(|h| h.0))
                    .push_bind(r.decision.explanation.clone())
                    .push_bind(r.assignee.clone())
                    .push_bind(micros(r.created_at))
                    .push_bind(micros(updated));
            });
            insert_rows!(tx, "INSERT INTO referral_events (id, referral_id, seq, kind, stage_from, stage_to, actor,
                    note, data, occurred_at, recorded_at) ", 11, events, |b, e| {
                b.push_bind(Uuid::now_v7())
                    .push_bind(e.referral)
                    .push_bind(e.seq)
                    .push_bind(e.kind.as_str())
                    .push_bind(e.from.map(Stage::as_str))
                    .push_bind(e.to.map(Stage::as_str))
                    .push_bind(e.actor.clone())
                    .push_bind(e.note.clone())
                    .push_bind(e.data.clone())
                    .push_bind(e.occurred_at)
                    .push_bind(e.recorded_at);
            });
            insert_rows!(tx, "INSERT INTO facts (id, program_id, referral_id, type, occurred_at, recorded_at,
                    event_id, prospect_email_norm, prospect_external_id, units, value_minor, value_currency,
                    contract_date, raw) ", 14, facts, |b, f| {
                b.push_bind(f.id)
                    .push_bind(f.program)
                    .push_bind(f.referral)
                    .push_bind(f.kind)
                    .push_bind(f.at)
                    .push_bind(f.at)
                    .push_bind(None::<String>)
                    .push_bind(f.email_norm.clone())
                    .push_bind(None::<String>)
                    .push_bind(f.units)
                    .push_bind(f.value.map(|m| m.amount_minor))
                    .push_bind(f.value.map(|m| m.currency.code().to_string()))
                    .push_bind(f.contract_date.clone())
                    .push_bind(f.raw.clone());
            });
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })
    }

    /// Inserts rewards (from [`plan_bulk_rewards`]) with the first entry of
    /// each one's history, in one transaction.
    pub async fn bulk_insert_rewards(
        &self,
        programs: &[StoredProgram],
        rewards: &[BulkReward],
        actor: &str,
    ) -> Result<()> {
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            insert_rows!(tx, "INSERT INTO rewards (id, referral_id, program_id, program_version_id, rule_id,
                    beneficiary, participant_id, occurrence, kind, amount_minor, currency, plan, months, units,
                    counting_date, won_at, status, void_reason, release_at, explanation, created_at, updated_at) ",
                22, rewards, |b, r| {
                let program = &programs[r.program];
                b.push_bind(r.id)
                    .push_bind(r.referral.0)
                    .push_bind(program.id.0)
                    .push_bind(program.version_id.0)
                    .push_bind(r.rule_id.clone())
                    .push_bind(r.beneficiary.as_str())
                    .push_bind(r.participant.map(|p| p.0))
                    .push_bind(r.occurrence.clone())
                    .push_bind(r.kind)
                    .push_bind(r.amount.amount_minor)
                    .push_bind(r.amount.currency.code().to_string())
                    .push_bind(r.plan.clone())
                    .push_bind(r.months)
                    .push_bind(r.units)
                    .push_bind(r.counting_date.to_string())
                    .push_bind(r.won_at.map(micros))
                    .push_bind(r.status.as_str())
                    .push_bind(None::<String>)
                    .push_bind(r.release_at.map(micros))
                    .push_bind(r.explanation.clone())
                    .push_bind(micros(r.created_at))
                    .push_bind(micros(r.created_at));
            });
            insert_rows!(tx, "INSERT INTO reward_events (id, reward_id, status_from, status_to, actor, reason, at) ",
                7, rewards, |b, r| {
                b.push_bind(Uuid::now_v7())
                    .push_bind(r.id)
                    .push_bind(None::<String>)
                    .push_bind(r.status.as_str())
                    .push_bind(actor.to_string())
                    .push_bind(r.reason)
                    .push_bind(micros(r.created_at));
            });
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })
    }
}
