//! Creating a referral: the program version in force supplies the rules, the
//! store gathers the facts, the domain's `attribute` decides, and the store
//! persists the decision (rejections included).

use jiff::{SignedDuration, Timestamp};
use vouch_domain::ReferralCode;
use vouch_domain::referral::{
    AttributionInput, Decision, NotAttributable, ReferralId, Rules, Source, attribute, is_free_mail,
};
use vouch_store::ReferralMail;
use vouch_store::{
    AttributionFacts, Consent, CreateReferralError, NewProspect, NewReferral, ReferralRecord, Store, StoredProgram,
};

use crate::error::ApiError;

/// A referral to create, already parsed.
#[derive(Debug, Clone)]
pub struct Submission {
    pub code: ReferralCode,
    pub source: Source,
    pub prospect: NewProspect,
    pub consent: Option<Consent>,
    pub note: Option<String>,
    pub actor: String,
}

/// Creates the referral and answers it as stored. An unknown code (or one of
/// another program) and a revoked one are refused at `/referrer_code`, with
/// nothing stored; every other outcome, rejections included, is a referral.
pub async fn refer(
    store: &Store,
    program: &StoredProgram,
    submission: Submission,
    now: Timestamp,
) -> Result<ReferralRecord, ApiError> {
    refer_with_mail(store, program, submission, ReferralMail::None, now).await
}

/// [`refer`], writing `mail` in the referral's transaction when it holds the
/// prospect; an invite beyond the referrer's allowance is 429 `invite_rate_limited`.
pub async fn refer_with_mail(
    store: &Store,
    program: &StoredProgram,
    submission: Submission,
    mail: ReferralMail,
    now: Timestamp,
) -> Result<ReferralRecord, ApiError> {
    let prepared = Prepared::new(program, submission, now);
    let created = store.create_referral_with_mail(&prepared.referral, &mail, |facts| prepared.decide(facts)).await;
    match created {
        Ok(record) => {
            tracing::info!(referral = %record.id, program = %record.program_slug, status = %record.status,
                reason = record.rejection_reason.map(|r| r.as_str()), "referral created");
            Ok(record)
        }
        Err(e) => Err(refusal(e, program)),
    }
}

/// A referral ready for the store: the referral to create and the program's
/// attribution rules to decide it by.
pub struct Prepared {
    pub referral: NewReferral,
    rules: Rules,
    source: Source,
    now: Timestamp,
}

impl Prepared {
    pub fn new(program: &StoredProgram, submission: Submission, now: Timestamp) -> Prepared {
        let definition = &program.definition;
        let rules = Rules::from_program(definition);
        let window = SignedDuration::from_mins(i64::from(rules.burst_window_minutes));
        // In a business program a known company is a known customer; a free-mail
        // domain names no company.
        let registry_domain = submission
            .prospect
            .email
            .as_ref()
            .map(|e| e.domain())
            .filter(|d| definition.business() && !is_free_mail(d));
        let referral = NewReferral {
            id: ReferralId(uuid::Uuid::now_v7()),
            program_id: program.id,
            program_version_id: program.version_id,
            code: submission.code,
            source: submission.source.clone(),
            prospect: submission.prospect,
            consent: submission.consent,
            note: submission.note,
            actor: submission.actor,
            now,
            recent_since: now.checked_sub(window).unwrap_or(now),
            registry_domain,
        };
        Prepared { referral, rules, source: submission.source, now }
    }

    /// The domain's decision on what the store found.
    pub fn decide(&self, facts: &AttributionFacts) -> Result<Decision, NotAttributable> {
        attribute(&AttributionInput {
            rules: self.rules.clone(),
            referrer: facts.referrer.clone(),
            prospect: facts.prospect.clone(),
            source: self.source.clone(),
            now: self.now,
            in_registry: facts.registry_match.is_some(),
            holder: facts.holder,
            referrer_ip_hashes: facts.referrer_ip_hashes.clone(),
            recent_leads: facts.recent_leads,
        })
    }
}

pub fn created_log(id: ReferralId, program: &str, decision: &Decision) {
    tracing::info!(referral = %id, program, status = %decision.status,
        reason = decision.rejection_reason.map(|r| r.as_str()), "referral created");
}

/// Why no referral was stored, as the API answers it.
pub fn refusal(e: CreateReferralError, program: &StoredProgram) -> ApiError {
    match e {
        CreateReferralError::UnknownCode(code) => ApiError::field(
            "unknown_code",
            "/referrer_code",
            format!("no referrer has the code `{code}` in the program `{}`", program.definition.slug().as_str()),
        ),
        CreateReferralError::NotAttributable(no) => ApiError::field(no.code(), "/referrer_code", no.explanation),
        CreateReferralError::RateLimited { limit } => ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "invite_rate_limited",
            format!("this referrer has sent {limit} invites in the last day, the most allowed; nothing was stored"),
        ),
        CreateReferralError::Store(e) => e.into(),
    }
}
