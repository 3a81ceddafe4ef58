use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vouch_domain::api_key::Area;
use vouch_domain::notify::StageUpdates;
use vouch_domain::{Email, ParticipantId, ParticipantKind, ReferralCode};
use vouch_store::ParticipantRecord;

use super::{ApiPath, rfc3339};
use crate::AppState;
use crate::auth::Caller;
use crate::enroll::{Enrollment, enroll};
use crate::error::{ApiError, FieldProblem};
use crate::json::ApiJson;

/// Who joins the program.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    email: String,
    name: String,
    /// customer, customer_staff, employee, partner, influencer or other
    kind: String,
    team: Option<String>,
    company: Option<String>,
    vanity_code: Option<String>,
}

/// The enrollment, its code and link.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Enrolled {
    participant_id: String,
    enrollment_id: String,
    code: String,
    link: String,
}

/// Short free-text fields: long enough for any real name, short enough to store.
const MAX_TEXT: usize = 200;

impl EnrollBody {
    /// Checks every field and reports all that are wrong at once.
    fn parse(self) -> Result<Enrollment, ApiError> {
        let mut problems = Vec::new();
        let mut problem =
            |pointer: &str, detail: String| problems.push(FieldProblem { pointer: pointer.into(), detail });
        let email = Email::parse(&self.email).map_err(|e| problem("/email", e.to_string())).ok();
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_TEXT {
            problem("/name", format!("a name is 1 to {MAX_TEXT} characters"));
        }
        let kind = ParticipantKind::parse(&self.kind);
        if kind.is_none() {
            let kinds = ParticipantKind::ALL.map(ParticipantKind::as_str).join(", ");
            problem("/kind", format!("`{}` is not a participant kind; kinds are {kinds}", self.kind));
        }
        let optional = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let (team, company) = (optional(self.team), optional(self.company));
        for (pointer, value) in [("/team", &team), ("/company", &company)] {
            if value.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT) {
                problem(pointer, format!("at most {MAX_TEXT} characters"));
            }
        }
        let vanity_code = match self.vanity_code {
            Some(raw) => ReferralCode::parse_vanity(&raw).map_err(|e| problem("/vanity_code", e.to_string())).ok(),
            None => None,
        };
        match (email, kind) {
            (Some(email), Some(kind)) if problems.is_empty() => {
                Ok(Enrollment { email, name, kind, team, company, vanity_code })
            }
            _ => Err(invalid(problems)),
        }
    }
}

fn invalid(problems: Vec<FieldProblem>) -> ApiError {
    let detail = problems.iter().map(|p| format!("{}: {}", p.pointer, p.detail)).collect::<Vec<_>>().join("; ");
    ApiError { errors: problems, ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail) }
}

/// Enroll a participant; 200 with the existing enrollment when the email is already enrolled.
#[utoipa::path(post, path = "/api/v1/programs/{slug}/participants", tag = "participants",
    params(("slug" = String, Path)), request_body = EnrollBody,
    responses((status = 201, body = Enrolled), (status = 200, body = Enrolled),
        (status = 409, body = crate::openapi::Problem), (status = 422, body = crate::openapi::Problem)))]
pub async fn enroll_participant(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath(slug): ApiPath,
    ApiJson(body): ApiJson<EnrollBody>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    caller.require(Area::Participants, true)?;
    let who = body.parse()?;
    let program = super::programs::program_by_slug(&state, &slug).await?;
    let done = enroll(&state.store, &program, who, state.clock.now()).await?;
    remember_ip(&state, done.participant_id, peer).await;
    let status = if done.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(Enrolled {
            participant_id: done.participant_id.to_string(),
            enrollment_id: done.enrollment_id.to_string(),
            link: state.link(&done.code),
            code: done.code.to_string(),
        }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ParticipantBody {
    id: String,
    email: String,
    name: String,
    kind: &'static str,
    team: Option<String>,
    company: Option<String>,
    status: &'static str,
    created_at: String,
    suspended_at: Option<String>,
    enrollments: Vec<EnrollmentBody>,
    totals: Totals,
    /// Their rewards per currency, summed from the ledger's entries.
    rewards: Vec<RewardTotals>,
    /// Where they are paid, masked (none until set).
    payout_details: Option<super::payouts::PayoutDetailsBody>,
    /// Which stage changes of their referrals they hear of by email: `all`
    /// (the default), `won_only` or `none`.
    notify_stage_updates: &'static str,
}

/// A beneficiary's rewards in one currency (voided ones left out).
#[derive(Serialize, utoipa::ToSchema)]
struct RewardTotals {
    currency: &'static str,
    /// On hold or awaiting approval, in minor units.
    pending_minor: i64,
    /// Approved, not paid yet.
    approved_minor: i64,
    paid_minor: i64,
    /// Re-pricing and clawback entries (clawbacks are negative).
    adjustments_minor: i64,
}

impl RewardTotals {
    fn new(b: vouch_store::RewardBalance) -> Self {
        RewardTotals {
            currency: b.currency.code(),
            pending_minor: b.pending.amount_minor,
            approved_minor: b.approved.amount_minor,
            paid_minor: b.paid.amount_minor,
            adjustments_minor: b.adjustments.amount_minor,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct EnrollmentBody {
    enrollment_id: String,
    program: String,
    created_at: String,
    codes: Vec<CodeBody>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CodeBody {
    pub code: String,
    pub link: String,
    pub vanity: bool,
    pub status: &'static str,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub clicks: i64,
    pub bot_visits: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Totals {
    clicks: i64,
    bot_visits: i64,
}

impl CodeBody {
    pub fn new(state: &AppState, c: &vouch_store::CodeRecord) -> Self {
        CodeBody {
            link: state.link(&c.code),
            code: c.code.to_string(),
            vanity: c.vanity,
            status: if c.active { "active" } else { "revoked" },
            created_at: rfc3339(c.created_at),
            revoked_at: c.revoked_at.map(rfc3339),
            clicks: c.clicks,
            bot_visits: c.bot_visits,
        }
    }
}

async fn participant_body(state: &AppState, p: ParticipantRecord) -> Result<ParticipantBody, ApiError> {
    let rewards = state.store.reward_balance(p.id).await?.into_iter().map(RewardTotals::new).collect();
    let payout_details = state.store.payout_details(p.id).await?.as_ref().map(super::payouts::PayoutDetailsBody::new);
    let notify_stage_updates = state.store.stage_updates(p.id).await?.as_str();
    let codes = p.enrollments.iter().flat_map(|e| &e.codes);
    let totals =
        Totals { clicks: codes.clone().map(|c| c.clicks).sum(), bot_visits: codes.map(|c| c.bot_visits).sum() };
    Ok(ParticipantBody {
        id: p.id.to_string(),
        email: p.email,
        name: p.name,
        kind: p.kind.as_str(),
        team: p.team,
        company: p.company,
        status: p.status.as_str(),
        created_at: rfc3339(p.created_at),
        suspended_at: p.suspended_at.map(rfc3339),
        enrollments: p
            .enrollments
            .iter()
            .map(|e| EnrollmentBody {
                enrollment_id: e.id.to_string(),
                program: e.program_slug.clone(),
                created_at: rfc3339(e.created_at),
                codes: e.codes.iter().map(|c| CodeBody::new(state, c)).collect(),
            })
            .collect(),
        totals,
        rewards,
        payout_details,
        notify_stage_updates,
    })
}

fn participant_id(raw: &str) -> Result<ParticipantId, ApiError> {
    ParticipantId::parse(raw).ok_or_else(|| ApiError::not_found(&format!("the participant `{raw}`")))
}

/// A participant with enrollments, codes and totals.
#[utoipa::path(get, path = "/api/v1/participants/{id}", tag = "participants", params(("id" = String, Path)),
    responses((status = 200, body = ParticipantBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn get_participant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<ParticipantBody>, ApiError> {
    caller.require(Area::Participants, false)?;
    let p = state
        .store
        .participant(participant_id(&id)?)
        .await
        .map_err(ApiError::missing(format!("the participant `{id}`")))?;
    Ok(Json(participant_body(&state, p).await?))
}

/// Suspend a participant: their links land without attribution.
#[utoipa::path(post, path = "/api/v1/participants/{id}/suspend", tag = "participants", params(("id" = String, Path)),
    responses((status = 200, body = ParticipantBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn suspend_participant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<ParticipantBody>, ApiError> {
    caller.require(Area::Participants, true)?;
    let p = state
        .store
        .suspend_participant(participant_id(&id)?, state.clock.now())
        .await
        .map_err(ApiError::missing(format!("the participant `{id}`")))?;
    state.codes.clear();
    tracing::info!(participant = %p.id, by = %caller.actor(), "participant suspended");
    Ok(Json(participant_body(&state, p).await?))
}

/// What a participant may change about themselves.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchParticipantBody {
    /// Which stage changes of their referrals they hear of by email: `all`,
    /// `won_only` or `none`.
    notify_stage_updates: Option<String>,
}

/// Change a participant's notification preferences.
#[utoipa::path(patch, path = "/api/v1/participants/{id}", tag = "participants", params(("id" = String, Path)),
    request_body = PatchParticipantBody,
    responses((status = 200, body = ParticipantBody), (status = 404, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn patch_participant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<PatchParticipantBody>,
) -> Result<Json<ParticipantBody>, ApiError> {
    caller.require(Area::Participants, true)?;
    let participant = participant_id(&id)?;
    if let Some(raw) = body.notify_stage_updates {
        let wanted = StageUpdates::parse(&raw).ok_or_else(|| {
            let choices = StageUpdates::ALL.map(StageUpdates::as_str).join(", ");
            let shown: String = raw.chars().take(40).collect();
            ApiError::field(
                "invalid_field",
                "/notify_stage_updates",
                format!("`{shown}` is not a choice; choices are {choices}"),
            )
        })?;
        state
            .store
            .set_stage_updates(participant, wanted, state.clock.now())
            .await
            .map_err(ApiError::missing(format!("the participant `{id}`")))?;
        tracing::info!(participant = %participant, by = %caller.actor(), stage_updates = wanted.as_str(),
            "notification preference changed");
    }
    let p = state.store.participant(participant).await.map_err(ApiError::missing(format!("the participant `{id}`")))?;
    Ok(Json(participant_body(&state, p).await?))
}

/// Remembers the address a referrer acted from, for the `same_ip_as_referrer`
/// review signal (docs/decisions/0011-referrer-ip-signal.md). The action itself
/// is done and answered either way: a failure here only weakens a later signal.
pub(crate) async fn remember_ip(state: &AppState, participant: ParticipantId, peer: SocketAddr) {
    let hash = state.hash_ip(peer.ip());
    if let Err(e) = state.store.record_participant_ip(participant, &hash, state.clock.now()).await {
        tracing::warn!(participant = %participant, error = %e, "could not record the referrer's IP hash");
    }
}
