//! Enrolling a participant: the one place codes are minted.

use axum::http::StatusCode;
use vouch_domain::{Email, EnrollmentId, ParticipantId, ParticipantKind, ReferralCode};
use vouch_store::{EnrollError, Enrolled, NewEnrollment, Store, StoredProgram};

use crate::error::ApiError;

/// A request to enroll, already parsed.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub email: Email,
    pub name: String,
    pub kind: ParticipantKind,
    pub team: Option<String>,
    pub company: Option<String>,
    pub vanity_code: Option<ReferralCode>,
}

/// Random codes collide about once in 10^11 per live code; a few tries are plenty.
const CODE_ATTEMPTS: usize = 5;

pub async fn enroll(
    store: &Store,
    program: &StoredProgram,
    who: Enrollment,
    now: jiff::Timestamp,
) -> Result<Enrolled, ApiError> {
    let definition = &program.definition;
    for attempt in 0..CODE_ATTEMPTS {
        let (code, vanity) = match &who.vanity_code {
            Some(c) => (c.clone(), true),
            None => (ReferralCode::generate(rand::random()), false),
        };
        let new = NewEnrollment {
            program_id: program.id,
            participant_id: ParticipantId(uuid::Uuid::now_v7()),
            enrollment_id: EnrollmentId(uuid::Uuid::now_v7()),
            email: who.email.clone(),
            name: who.name.clone(),
            kind: who.kind,
            team: who.team.clone(),
            company: who.company.clone(),
            code,
            vanity,
            now,
        };
        match store.enroll(&new, |kind| definition.is_eligible(kind)).await {
            Ok(done) => return Ok(done),
            Err(EnrollError::CodeTaken) if vanity => {
                return Err(ApiError::conflict(
                    "code_taken",
                    "/vanity_code",
                    "this code is already taken; choose another",
                ));
            }
            Err(EnrollError::CodeTaken) => continue,
            Err(EnrollError::Ineligible(kind)) => {
                return Err(ApiError::field(
                    "ineligible",
                    "/kind",
                    format!(
                        "participants of kind `{}` cannot join the program `{}`",
                        kind.as_str(),
                        definition.slug().as_str()
                    ),
                ));
            }
            Err(EnrollError::Suspended) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "participant_suspended",
                    "this participant is suspended",
                ));
            }
            // Two requests enrolling the same email at once: the loser finds the
            // winner's enrollment on the next pass.
            Err(EnrollError::Store(e)) if e.is_conflict_on("enrollments") && attempt + 1 < CODE_ATTEMPTS => continue,
            Err(EnrollError::Store(e)) => return Err(e.into()),
        }
    }
    Err(ApiError::internal("could not mint an unused referral code"))
}
