//! Facts from the company's backend: find the referral they are about (or make
//! one, for a `signup` carrying a code or click id), record them with what they
//! cause, and say what changed and why.
//!
//! A fact about a prospect no referral holds is accepted all the same: the
//! prospect enters the customer registry (so a later lead for them is
//! `existing_customer`) and the answer says why no referral was made.

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::click::ClickRef;
use vouch_domain::customer::{CustomerEntry, CustomerId, CustomerSource, ExternalId};
use vouch_domain::referral::{FactKind, ReferralId, Source, Stage};
use vouch_domain::{Email, EnrollmentId, ParticipantId, ReferralCode};
use vouch_store::{
    AttributionFacts, ConvertedEnrollment, ConvertedParticipant, FactOutcome, FactProspect, NewCustomer, NewFact,
    NewProspect, RecordFactError, SignupReferral, Store, StoredProgram,
};

use crate::error::ApiError;
use crate::refer::{Prepared, Submission, created_log, refusal};

/// A fact, parsed and checked against its program.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: FactKind,
    pub occurred_at: Timestamp,
    pub event_id: Option<String>,
    pub email: Option<Email>,
    pub external_id: Option<ExternalId>,
    pub referral_id: Option<ReferralId>,
    /// As sent: an unknown or malformed code makes no referral, but is no error.
    pub referral_code: Option<String>,
    pub click_id: Option<String>,
    pub units: Option<i64>,
    pub value: Option<(i64, String)>,
    pub contract_date: Option<String>,
    pub raw: serde_json::Value,
}

/// What a fact did.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub fact_id: Uuid,
    /// The fact this one repeats (nothing changed).
    pub duplicate_of: Option<Uuid>,
    pub referral_id: Option<ReferralId>,
    /// A referral made by this `signup`.
    pub referral_created: bool,
    pub stage_before: Option<Stage>,
    pub stage_after: Option<Stage>,
    pub changed: bool,
    pub explanation: String,
    pub enrolled: Option<ConvertedParticipant>,
}

/// Random codes collide about once in 10^11 per live code; a few tries are plenty.
const CODE_ATTEMPTS: usize = 5;

pub async fn ingest(
    store: &Store,
    program: &StoredProgram,
    report: Report,
    actor: String,
    now: Timestamp,
) -> Result<Ingested, ApiError> {
    let slug = program.definition.slug().as_str().to_string();
    let prospect = FactProspect {
        email_norm: report.email.as_ref().map(Email::normalized),
        person_key: report.email.as_ref().map(vouch_domain::referral::person_key),
        external_id: report.external_id.as_ref().map(|e| e.as_str().to_string()),
    };

    let mut new = NewFact {
        id: Uuid::now_v7(),
        program_id: program.id,
        kind: report.kind,
        occurred_at: report.occurred_at,
        event_id: report.event_id.clone(),
        referral_id: report.referral_id,
        prospect: prospect.clone(),
        units: report.units,
        value: report.value.clone(),
        contract_date: report.contract_date.clone(),
        raw: report.raw.clone(),
        actor: actor.clone(),
        now,
    };

    // A `signup` with a code or click id for a prospect no referral holds makes
    // one, in the transaction that records it.
    let mut created = None;
    let mut no_referral_reason = None;
    let carries_claim = report.referral_code.is_some() || report.click_id.is_some();
    let mut outcome = None;
    if report.kind == FactKind::Signup
        && report.referral_id.is_none()
        && carries_claim
        && store.fact_holder(program.id, &prospect).await?.is_none()
    {
        match claim(store, &report).await? {
            Err(reason) => no_referral_reason = Some(reason),
            Ok((code, source)) => {
                let submission = Submission {
                    code,
                    source,
                    prospect: NewProspect {
                        email: report.email.clone(),
                        external_id: prospect.external_id.clone(),
                        ..NewProspect::default()
                    },
                    consent: None,
                    note: None,
                    actor: actor.clone(),
                };
                let prepared = Prepared::new(program, submission, now);
                let decide = |facts: &AttributionFacts| prepared.decide(facts);
                let signup = SignupReferral { referral: &prepared.referral, decide: &decide };
                let (recorded, made) = store.record_signup(signup, &new).await.map_err(fact_error(&slug))?;
                match made {
                    Some(Ok(decision)) => {
                        created_log(prepared.referral.id, &slug, &decision);
                        created = Some((prepared.referral.id, decision));
                    }
                    // An unknown or revoked code, an expired click: no claim to judge.
                    Some(Err(e)) => no_referral_reason = Some(refusal(e, program).detail),
                    None => {}
                }
                outcome = Some(recorded);
            }
        }
    }
    new.referral_id = report.referral_id;

    for _ in 0..CODE_ATTEMPTS {
        if outcome.is_some() {
            break;
        }
        // Used only if this fact wins the referral and its program version
        // enrolls converted customers (the store reads that version).
        let convert = (report.kind == FactKind::Won).then(|| ConvertedEnrollment {
            participant_id: ParticipantId(Uuid::now_v7()),
            enrollment_id: EnrollmentId(Uuid::now_v7()),
            code: ReferralCode::generate(rand::random()),
            program_slug: slug.clone(),
        });
        match store.record_fact(&new, convert.as_ref()).await {
            Ok(o) => outcome = Some(o),
            Err(RecordFactError::CodeTaken) => continue,
            Err(e) => return Err(fact_error(&slug)(e)),
        }
    }
    let Some(outcome) = outcome else {
        return Err(ApiError::internal("could not mint an unused referral code"));
    };

    let kind = report.kind;
    match outcome {
        FactOutcome::Duplicate { original, referral_id, stage } => Ok(Ingested {
            fact_id: original,
            duplicate_of: Some(original),
            referral_id,
            referral_created: false,
            stage_before: stage,
            stage_after: stage,
            changed: false,
            explanation: format!("This `{kind}` fact was received before (fact {original}); nothing changed."),
            enrolled: None,
        }),
        FactOutcome::Recorded { fact_id, referral_id: None, .. } => {
            // Nobody holds the prospect: they are a customer (or signed up) now.
            let entry = CustomerEntry::new(report.email.clone(), None, report.external_id.clone());
            if let Some(entry) = entry {
                store
                    .add_customers(
                        &[NewCustomer { id: CustomerId(Uuid::now_v7()), entry, source: CustomerSource::Event }],
                        now,
                    )
                    .await?;
            }
            let why = no_referral_reason
                .unwrap_or_else(|| format!("no referral in the program `{slug}` holds this prospect"));
            Ok(Ingested {
                fact_id,
                duplicate_of: None,
                referral_id: None,
                referral_created: false,
                stage_before: None,
                stage_after: None,
                changed: false,
                explanation: format!(
                    "No referral was made or changed: {}. The prospect was entered in the customer registry.",
                    why.trim_end_matches('.')
                ),
                enrolled: None,
            })
        }
        FactOutcome::Recorded { fact_id, referral_id, stage_before, stage_after, converted, .. } => {
            let (before, after) = (stage_before.unwrap_or(Stage::New), stage_after.unwrap_or(Stage::New));
            let mut explanation = match &created {
                Some((id, decision)) => format!("The signup made referral {id} ({}). ", decision.explanation),
                None => String::new(),
            };
            if before != after {
                explanation.push_str(&format!("The `{kind}` fact moved the referral from `{before}` to `{after}`."));
            } else {
                explanation.push_str(&format!("The `{kind}` fact was recorded; the referral stays at `{after}`."));
            }
            if let Some(c) = &converted {
                explanation.push_str(&format!(
                    " The new customer was enrolled as a referrer in `{slug}` with the code `{}`.",
                    c.code
                ));
            }
            Ok(Ingested {
                fact_id,
                duplicate_of: None,
                referral_id,
                referral_created: created.is_some(),
                stage_before,
                stage_after,
                changed: before != after || created.is_some(),
                explanation,
                enrolled: converted,
            })
        }
    }
}

/// The referrer a `signup` names: by its click id (which dates the click for
/// the attribution window), else by its code. `Err` says why there is none.
async fn claim(store: &Store, report: &Report) -> Result<Result<(ReferralCode, Source), String>, ApiError> {
    if let Some(raw) = &report.click_id {
        let shown: String = raw.chars().take(80).collect();
        let Some(click) = ClickRef::parse(raw) else {
            return Ok(Err(format!("the click id `{shown}` names no click")));
        };
        return Ok(match store.click_seen(&click.code, click.id).await? {
            None => Err(format!("the click id `{shown}` names no click")),
            Some(seen) => {
                Ok((click.code, Source::SignupWithClick { click_at: seen.occurred_at, click_ip_hash: seen.ip_hash }))
            }
        });
    }
    let raw = report.referral_code.as_deref().unwrap_or_default();
    let shown: String = raw.chars().take(40).collect();
    Ok(match ReferralCode::parse(raw) {
        Ok(code) => Ok((code, Source::SignupWithCode)),
        Err(_) => Err(format!("no referrer has the code `{shown}`")),
    })
}

/// A fact the store refused, as the API answers it.
fn fact_error(slug: &str) -> impl Fn(RecordFactError) -> ApiError + '_ {
    move |e| match e {
        RecordFactError::UnknownReferral => ApiError::field(
            "unknown_referral",
            "/referral_id",
            format!("no referral of the program `{slug}` has this id; nothing was stored"),
        ),
        RecordFactError::CodeTaken => ApiError::internal("could not mint an unused referral code"),
        RecordFactError::Store(e) => e.into(),
    }
}
