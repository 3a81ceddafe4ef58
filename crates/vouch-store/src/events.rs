//! Facts from the company's backend (`POST /api/v1/events`).
//!
//! [`Store::record_fact`] does everything one fact causes in one write
//! transaction: it takes the referral's row lock (Postgres; SQLite has one
//! writer), stores the fact unless it was seen before — by the sender's
//! `event_id` in the program, or, without one, as the same kind at the same
//! instant for the same referral (both unique indexes, so two replicas handling
//! one fact at once store it once) — adds a `fact` event to the referral's
//! timeline, derives the stage again from every fact and staff move in the order
//! they happened, stores it (with a `stage` event marked `derived` when it
//! changed) and, when the referral has just been won in a program that enrolls
//! converted customers, enrolls the new customer with their own code and queues
//! their welcome email.

use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;
use vouch_domain::participant::ParticipantStatus;
use vouch_domain::program::ProgramDefinition;
use vouch_domain::referral::{FactKind, ReferralId, Stage, Status, derive_stage};
use vouch_domain::{ClickId, Email, EnrollmentId, ParticipantId, ParticipantKind, ProgramId, ReferralCode};

use vouch_domain::customer::KnownBy;
use vouch_domain::referral::{Decision, NotAttributable};

use crate::referrals::{
    AttributionFacts, CreateReferralError, EventRow, INSERT_EVENT, NewReferral, ReferralEvent, ReferralEventKind,
    SELECT_EVENTS, stage_inputs,
};
use crate::{Result, Store, StoreError, micros, on_fast_tx, on_read, timestamp};

/// A fact to record. Ids and times are the caller's.
#[derive(Debug, Clone)]
pub struct NewFact {
    pub id: Uuid,
    pub program_id: ProgramId,
    pub kind: FactKind,
    pub occurred_at: Timestamp,
    pub event_id: Option<String>,
    /// The referral named by the sender (or just created for this `signup`).
    pub referral_id: Option<ReferralId>,
    pub prospect: FactProspect,
    pub units: Option<i64>,
    /// (minor units, currency code)
    pub value: Option<(i64, String)>,
    /// `YYYY-MM-DD`
    pub contract_date: Option<String>,
    /// The request as received.
    pub raw: Value,
    pub actor: String,
    pub now: Timestamp,
}

/// How a fact names its prospect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactProspect {
    /// Lower-case, as the registry compares.
    pub email_norm: Option<String>,
    /// The same person however they spell their address (`person_key`).
    pub person_key: Option<String>,
    pub external_id: Option<String>,
}

/// The enrollment of a referred customer who converts: ids and a fresh code
/// minted by the caller, used only if this fact wins the referral and the
/// program version the referral is judged by says `enroll_converted`.
#[derive(Debug, Clone)]
pub struct ConvertedEnrollment {
    pub participant_id: ParticipantId,
    pub enrollment_id: EnrollmentId,
    pub code: ReferralCode,
    /// The program's slug, for the welcome email.
    pub program_slug: String,
}

/// A referred customer enrolled by the viral loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertedParticipant {
    pub participant_id: ParticipantId,
    pub enrollment_id: EnrollmentId,
    pub code: ReferralCode,
    /// False when they were enrolled in the program already.
    pub created: bool,
}

/// What recording a fact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactOutcome {
    Recorded {
        fact_id: Uuid,
        referral_id: Option<ReferralId>,
        /// The referral's stage before and after (`None` without a referral).
        stage_before: Option<Stage>,
        stage_after: Option<Stage>,
        referral_status: Option<Status>,
        converted: Option<ConvertedParticipant>,
    },
    /// Seen before: nothing changed.
    Duplicate { original: Uuid, referral_id: Option<ReferralId>, stage: Option<Stage> },
}

#[derive(Debug, thiserror::Error)]
pub enum RecordFactError {
    /// The `referral_id` given names no referral of this program.
    #[error("no such referral in this program")]
    UnknownReferral,
    /// The freshly minted code of a converted customer is taken: mint another.
    #[error("the new participant's code is taken")]
    CodeTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(RecordFactError);

/// A stored click, as a `signup` with a click id needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickSeen {
    pub occurred_at: Timestamp,
    pub ip_hash: Option<String>,
}

/// The referral holding a prospect: by external id first, then by the person.
const FIND_HOLDER_BY_EXTERNAL_ID: &str = "SELECT id FROM referrals
     WHERE program_id = $1 AND status IN ('active', 'in_review') AND prospect_external_id = $2
     ORDER BY created_at, id LIMIT 1";
const FIND_HOLDER_BY_PERSON: &str = "SELECT id FROM referrals
     WHERE program_id = $1 AND status IN ('active', 'in_review') AND prospect_person_key = $2
     ORDER BY created_at, id LIMIT 1";

const INSERT_FACT: &str = "INSERT INTO facts (id, program_id, referral_id, type, occurred_at, recorded_at, event_id,
        prospect_email_norm, prospect_external_id, units, value_minor, value_currency, contract_date, raw)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     ON CONFLICT DO NOTHING";

/// The fact a duplicate repeats: the same sender id, or the same kind at the
/// same instant for the same referral.
const FIND_ORIGINAL: &str = "SELECT id, referral_id FROM facts
     WHERE program_id = $1
       AND ((event_id IS NOT NULL AND event_id = $2)
         OR ($2 IS NULL AND event_id IS NULL AND referral_id = $3 AND type = $4 AND occurred_at = $5))
     ORDER BY recorded_at, id LIMIT 1";

/// Locks the referral's row (Postgres) for the rest of the transaction, changing
/// nothing: a duplicate fact leaves the referral as it was.
const LOCK_REFERRAL: &str = "UPDATE referrals SET updated_at = updated_at WHERE id = $1 AND program_id = $2
     RETURNING stage, status, prospect_email, prospect_name";

/// stage, status, prospect_email, prospect_name
type LockedRow = (String, String, Option<String>, Option<String>);

macro_rules! find_holder {
    ($exec:expr, $program:expr, $prospect:expr) => {
        async {
            if let Some(ext) = $prospect.external_id.as_deref() {
                let found: Option<(Uuid,)> = $crate::sql::query_as(FIND_HOLDER_BY_EXTERNAL_ID)
                    .bind($program.0)
                    .bind(ext)
                    .fetch_optional(&mut *$exec)
                    .await?;
                if let Some((id,)) = found {
                    return Ok::<_, sqlx::Error>(Some(ReferralId(id)));
                }
            }
            if let Some(key) = $prospect.person_key.as_deref() {
                let found: Option<(Uuid,)> = $crate::sql::query_as(FIND_HOLDER_BY_PERSON)
                    .bind($program.0)
                    .bind(key)
                    .fetch_optional(&mut *$exec)
                    .await?;
                return Ok(found.map(|(id,)| ReferralId(id)));
            }
            Ok(None)
        }
    };
}

impl Store {
    /// The referral holding the prospect in the program (`active` or
    /// `in_review`), by external id, else by the person behind the email.
    pub async fn fact_holder(&self, program: ProgramId, prospect: &FactProspect) -> Result<Option<ReferralId>> {
        crate::on_fast_read!(self, conn => Ok(find_holder!(conn, program, prospect).await?))
    }

    /// A stored click of `code`, by its id (what a `vclid` names).
    pub async fn click_seen(&self, code: &ReferralCode, id: ClickId) -> Result<Option<ClickSeen>> {
        let row: Option<(i64, Option<String>)> = crate::on_fast_read!(self, conn => crate::sql::query_as(
            "SELECT occurred_at, ip_hash FROM clicks WHERE code = $1 AND id = $2",
        )
        .bind(code.as_str())
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?);
        row.map(|(at, ip_hash)| Ok(ClickSeen { occurred_at: timestamp(at)?, ip_hash })).transpose()
    }

    /// Facts stored in a program (for tests and "nothing was stored" checks).
    pub async fn count_facts(&self) -> Result<i64> {
        let (n,): (i64,) = on_read!(self, p => sqlx::query_as("SELECT COUNT(*) FROM facts").fetch_one(p).await?);
        Ok(n)
    }

    /// Records one fact and everything it causes, in one transaction (see the
    /// module's documentation). `convert` is the enrollment to make should this
    /// fact win the referral.
    pub async fn record_fact(
        &self,
        new: &NewFact,
        convert: Option<&ConvertedEnrollment>,
    ) -> std::result::Result<FactOutcome, RecordFactError> {
        self.record_fact_making(new, convert, None).await.map(|(outcome, _)| outcome)
    }

    /// A `signup` that names a referrer for a prospect nobody held: creates the
    /// referral (attributed as [`Store::create_referral`] does) and records the
    /// fact on it, in one transaction. A fact seen before (its `event_id`)
    /// creates nothing. Answers the fact's outcome and the referral's creation:
    /// `None` when nothing was attempted (a duplicate), `Some(Err)` when there
    /// was no claim to judge (an unknown code, an expired click) — the fact is
    /// then recorded without a referral.
    pub async fn record_signup(
        &self,
        signup: SignupReferral<'_>,
        new: &NewFact,
    ) -> std::result::Result<(FactOutcome, Option<Result<Decision, CreateReferralError>>), RecordFactError> {
        let registry_match = self.registry_match_for(signup.referral).await?;
        self.record_fact_making(new, None, Some((signup, registry_match))).await
    }

    async fn record_fact_making(
        &self,
        new: &NewFact,
        convert: Option<&ConvertedEnrollment>,
        signup: Option<(SignupReferral<'_>, Option<KnownBy>)>,
    ) -> std::result::Result<(FactOutcome, Option<Result<Decision, CreateReferralError>>), RecordFactError> {
        let mut created = None;
        let outcome = on_fast_tx!(self, tx, RecordFactError => {
            let mut named = new.referral_id;
            if let Some((signup, registry_match)) = &signup {
                let seen: Option<(Uuid,)> = match &new.event_id {
                    Some(id) => crate::sql::query_as("SELECT id FROM facts WHERE program_id = $1 AND event_id = $2")
                        .bind(new.program_id.0)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?,
                    None => None,
                };
                if seen.is_none() {
                    let made = crate::referrals::create_referral_tx!(tx, signup.referral, &ReferralMail::None,
                        signup.decide, *registry_match).await;
                    match made {
                        Ok(decision) => {
                            named = Some(signup.referral.id);
                            created = Some(Ok(decision));
                        }
                        Err(CreateReferralError::Store(e)) => return Err(e.into()),
                        Err(e) => created = Some(Err(e)),
                    }
                }
            }
            let referral = match named {
                Some(id) => Some(id),
                None => find_holder!(tx, new.program_id, new.prospect).await?,
            };
            let locked: Option<LockedRow> = match referral {
                Some(id) => {
                    let row: Option<LockedRow> = crate::sql::query_as(LOCK_REFERRAL)
                        .bind(id.0)
                        .bind(new.program_id.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if row.is_none() {
                        return Err(RecordFactError::UnknownReferral);
                    }
                    row
                }
                None => None,
            };
            let inserted = crate::sql::query(INSERT_FACT)
                .bind(new.id)
                .bind(new.program_id.0)
                .bind(referral.map(|r| r.0))
                .bind(new.kind.as_str())
                .bind(micros(new.occurred_at))
                .bind(micros(new.now))
                .bind(new.event_id.as_deref())
                .bind(new.prospect.email_norm.as_deref())
                .bind(new.prospect.external_id.as_deref())
                .bind(new.units)
                .bind(new.value.as_ref().map(|v| v.0))
                .bind(new.value.as_ref().map(|v| v.1.as_str()))
                .bind(new.contract_date.as_deref())
                .bind(new.raw.to_string())
                .execute(&mut *tx)
                .await?;
            if inserted.rows_affected() == 0 {
                let original: Option<(Uuid, Option<Uuid>)> = crate::sql::query_as(FIND_ORIGINAL)
                    .bind(new.program_id.0)
                    .bind(new.event_id.as_deref())
                    .bind(referral.map(|r| r.0))
                    .bind(new.kind.as_str())
                    .bind(micros(new.occurred_at))
                    .fetch_optional(&mut *tx)
                    .await?;
                let (original, original_referral) =
                    original.ok_or_else(|| StoreError::Corrupt(format!("fact {}: duplicate of nothing", new.id)))?;
                let original_referral = original_referral.map(ReferralId);
                let stage: Option<(String,)> = match original_referral {
                    Some(r) => crate::sql::query_as("SELECT stage FROM referrals WHERE id = $1")
                        .bind(r.0)
                        .fetch_optional(&mut *tx)
                        .await?,
                    None => None,
                };
                // Nothing was written: the lock took the row without changing it.
                return Ok(FactOutcome::Duplicate {
                    original,
                    referral_id: original_referral,
                    stage: stage.and_then(|(s,)| Stage::parse(&s)),
                });
            }
            let (Some(referral), Some((stored_stage, status, email, name))) = (referral, locked) else {
                return Ok(FactOutcome::Recorded {
                    fact_id: new.id,
                    referral_id: None,
                    stage_before: None,
                    stage_after: None,
                    referral_status: None,
                    converted: None,
                });
            };
            let corrupt = |what: &str| StoreError::Corrupt(format!("referral {referral}: {what}"));
            let before = Stage::parse(&stored_stage).ok_or_else(|| corrupt("stage"))?;
            let status = Status::parse(&status).ok_or_else(|| corrupt("status"))?;
            let data = json!({
                "fact": new.kind.as_str(), "fact_id": new.id.to_string(), "event_id": new.event_id,
                "units": new.units, "contract_date": new.contract_date,
                "value": new.value.as_ref().map(|(minor, currency)| json!({"amount_minor": minor, "currency": currency})),
            });
            crate::sql::query(INSERT_EVENT)
                .bind(Uuid::now_v7())
                .bind(referral.0)
                .bind(ReferralEventKind::Fact.as_str())
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(&new.actor)
                .bind(None::<&str>)
                .bind(data.to_string())
                .bind(micros(new.occurred_at))
                .bind(micros(new.now))
                .execute(&mut *tx)
                .await?;
            let rows: Vec<EventRow> = crate::sql::query_as(SELECT_EVENTS).bind(referral.0).fetch_all(&mut *tx).await?;
            let events = rows.into_iter().map(ReferralEvent::try_from).collect::<Result<Vec<_>>>()?;
            let (facts, moves) = stage_inputs(&events);
            let after = derive_stage(&facts, &moves);
            let mut converted = None;
            // The rewards the fact earns, judged by the version the referral was
            // created under; a repeat finds them made already and changes nothing.
            let cause = crate::rewards::AwardCause::fact(before, after, status, new.kind);
            let _awarded = crate::rewards::award!(tx, referral, cause, &new.actor, new.now).await?;
            crate::ledger::reverse_late!(tx, referral, new.kind, new.id, new.occurred_at, &new.actor, new.now).await?;
            crate::sql::query("UPDATE referrals SET stage = $2, updated_at = $3 WHERE id = $1")
                .bind(referral.0)
                .bind(after.as_str())
                .bind(micros(new.now))
                .execute(&mut *tx)
                .await?;
            if after != before {
                let data = json!({"derived": true, "fact": new.kind.as_str(), "fact_id": new.id.to_string()});
                crate::sql::query(INSERT_EVENT)
                    .bind(Uuid::now_v7())
                    .bind(referral.0)
                    .bind(ReferralEventKind::Stage.as_str())
                    .bind(Some(before.as_str()))
                    .bind(Some(after.as_str()))
                    .bind(crate::referrals::SYSTEM_ACTOR)
                    .bind(None::<&str>)
                    .bind(data.to_string())
                    .bind(micros(new.now))
                    .bind(micros(new.now))
                    .execute(&mut *tx)
                    .await?;
                // The referrer's news, as they want it; one per stored fact (the row bears its id).
                crate::preferences::stage_mail!(tx, referral, after, new.id, new.now).await?;
                // The viral loop: a referred customer who converts becomes a
                // referrer, when the version the referral is judged by says so.
                let definition = match (after, status, convert, &email) {
                    (Stage::Won, Status::Active, Some(_), Some(_)) => {
                        let (definition,): (String,) = crate::sql::query_as(
                            "SELECT v.definition FROM referrals r
                             JOIN program_versions v ON v.id = r.program_version_id WHERE r.id = $1",
                        )
                        .bind(referral.0)
                        .fetch_one(&mut *tx)
                        .await?;
                        let definition: ProgramDefinition = serde_json::from_str(&definition)
                            .map_err(|e| corrupt(&format!("program version: {e}")))?;
                        Some(definition).filter(ProgramDefinition::enroll_converted)
                    }
                    _ => None,
                };
                if let (Some(definition), Some(convert), Some(email)) = (definition, convert, email) {
                    let email_norm = Email::parse(&email).map_err(|_| corrupt("email"))?.normalized();
                    let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
                    // A new participant is a `customer`, if the program takes customers.
                    if definition.is_eligible(ParticipantKind::Customer) {
                        crate::sql::query(
                            "INSERT INTO participants (id, email, email_norm, name, kind, team, company, status,
                                created_at)
                             VALUES ($1, $2, $3, $4, 'customer', NULL, NULL, 'active', $5)
                             ON CONFLICT (email_norm) DO NOTHING",
                        )
                        .bind(convert.participant_id.0)
                        .bind(&email)
                        .bind(&email_norm)
                        .bind(&name)
                        .bind(micros(new.now))
                        .execute(&mut *tx)
                        .await?;
                    }
                    let known: Option<(Uuid, String, String)> =
                        crate::sql::query_as("SELECT id, kind, status FROM participants WHERE email_norm = $1")
                            .bind(&email_norm)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let (participant_id, kind, pstatus) = known.unwrap_or_default();
                    if !participant_id.is_nil() {
                        // The new customer's own rewards (a first-invoice credit)
                        // are theirs now: their balance shows them.
                        crate::sql::query(
                            "UPDATE rewards SET participant_id = $2
                             WHERE referral_id = $1 AND beneficiary = 'referee' AND participant_id IS NULL",
                        )
                        .bind(referral.0)
                        .bind(participant_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let eligible = ParticipantKind::parse(&kind).is_some_and(|k| definition.is_eligible(k));
                    if eligible && ParticipantStatus::parse(&pstatus) == Some(ParticipantStatus::Active) {
                        let enrolled = crate::sql::query(
                            "INSERT INTO enrollments (id, program_id, participant_id, created_at) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (program_id, participant_id) DO NOTHING",
                        )
                        .bind(convert.enrollment_id.0)
                        .bind(new.program_id.0)
                        .bind(participant_id)
                        .bind(micros(new.now))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1;
                        if enrolled {
                            let code = crate::sql::query(
                                "INSERT INTO codes (code, enrollment_id, vanity, status, created_at)
                                 VALUES ($1, $2, FALSE, 'active', $3)",
                            )
                            .bind(convert.code.as_str())
                            .bind(convert.enrollment_id.0)
                            .bind(micros(new.now))
                            .execute(&mut *tx)
                            .await;
                            match code.map_err(StoreError::classify) {
                                Err(e) if e.is_conflict_on("codes") => return Err(RecordFactError::CodeTaken),
                                other => other?,
                            };
                            // Their own link, in this transaction; one per enrollment (it bears its id).
                            let welcome = crate::outbox::MailPayload::Welcome {
                                to: email.clone(),
                                name: name.clone(),
                                program: convert.program_slug.clone(),
                                code: convert.code.as_str().to_string(),
                            };
                            let payload =
                                serde_json::to_value(&welcome).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                            crate::outbox::enqueue!(&mut *tx, convert.enrollment_id.0, crate::outbox::EMAIL, &payload,
                                new.now).await?;
                            converted = Some(ConvertedParticipant {
                                participant_id: ParticipantId(participant_id),
                                enrollment_id: convert.enrollment_id,
                                code: convert.code.clone(),
                                created: true,
                            });
                        }
                    }
                }
            }
            Ok(FactOutcome::Recorded {
                fact_id: new.id,
                referral_id: Some(referral),
                stage_before: Some(before),
                stage_after: Some(after),
                referral_status: Some(status),
                converted,
            })
        })?;
        Ok((outcome, created))
    }
}

/// The referral a `signup` makes: the referral to create and the program's
/// attribution (the domain's `attribute` with the version's rules).
#[derive(Clone, Copy)]
pub struct SignupReferral<'a> {
    pub referral: &'a NewReferral,
    pub decide: &'a (dyn Fn(&AttributionFacts) -> std::result::Result<Decision, NotAttributable> + Sync),
}
