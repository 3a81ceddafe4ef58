//! Rewards: the ledger's entries, listed and one by one, finance's approvals and
//! voids, and the units staff send for a `won` that lacked them (through
//! `PATCH /api/v1/referrals/{id}`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vouch_domain::ParticipantId;
use vouch_domain::api_key::Area;
use vouch_domain::referral::ReferralId;
use vouch_store::{AdjustmentRecord, RewardActionError, RewardFilter, RewardRecord, RewardStatus, SupplyUnitsError};

use super::{ApiPath, Page, rfc3339};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Money: integer minor units and an ISO 4217 currency.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MoneyBody {
    pub(crate) amount_minor: i64,
    pub(crate) currency: &'static str,
}

/// What one beneficiary earns from one referral under one rule.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RewardBody {
    id: String,
    referral_id: String,
    program_version_id: String,
    /// The rule of the program version that computed it.
    rule: String,
    /// referrer or referee
    beneficiary: String,
    /// The beneficiary's participant id: the referrer's, or a referee's once the viral loop
    /// enrolled them (none before).
    participant_id: Option<String>,
    /// Which occurrence of the rule's trigger earned it (`won`, `qualified`, a payment's fact id).
    occurrence: String,
    /// credit, gift_card, cash, plan_upgrade or custom
    kind: String,
    amount: MoneyBody,
    /// For a plan upgrade: the plan and the number of months.
    plan: Option<String>,
    months: Option<i64>,
    /// For a per-unit reward: the units it pays for.
    units: Option<i64>,
    /// pending, approved, paid or voided
    status: &'static str,
    void_reason: Option<String>,
    /// When the hold ends (a pending reward on hold).
    release_at: Option<String>,
    /// How it was computed, in one sentence.
    explanation: String,
    /// Entries that change what it comes to without editing it (re-pricing,
    /// clawbacks), oldest first.
    adjustments: Vec<AdjustmentBody>,
    created_at: String,
    updated_at: String,
}

/// A re-pricing or clawback entry of a reward.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdjustmentBody {
    id: String,
    /// reprice or clawback
    kind: String,
    /// Negative for a clawback.
    amount: MoneyBody,
    /// What caused it (a fact id).
    cause: String,
    explanation: String,
    actor: String,
    at: String,
}

impl AdjustmentBody {
    fn new(a: AdjustmentRecord) -> Self {
        AdjustmentBody {
            id: a.id.to_string(),
            kind: a.kind,
            amount: MoneyBody { amount_minor: a.amount.amount_minor, currency: a.amount.currency.code() },
            cause: a.cause,
            explanation: a.explanation,
            actor: a.actor,
            at: rfc3339(a.at),
        }
    }
}

impl RewardBody {
    fn new(r: RewardRecord, adjustments: Vec<AdjustmentRecord>) -> Self {
        RewardBody {
            id: r.id.to_string(),
            referral_id: r.referral_id.to_string(),
            program_version_id: r.program_version_id.to_string(),
            rule: r.rule_id,
            beneficiary: r.beneficiary,
            participant_id: r.participant_id.map(|p| p.to_string()),
            occurrence: r.occurrence,
            kind: r.kind,
            amount: MoneyBody { amount_minor: r.amount.amount_minor, currency: r.amount.currency.code() },
            plan: r.plan,
            months: r.months,
            units: r.units,
            status: r.status.as_str(),
            void_reason: r.void_reason,
            release_at: r.release_at.map(rfc3339),
            explanation: r.explanation,
            adjustments: adjustments.into_iter().map(AdjustmentBody::new).collect(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RewardsQuery {
    /// A referral's id.
    referral: Option<String>,
    /// The beneficiary's participant id.
    participant: Option<String>,
    /// pending, approved, paid or voided
    status: Option<String>,
    cursor: Option<String>,
    /// 1 to 500, 50 by default.
    limit: Option<u32>,
}

/// Rewards, newest first, filtered and paginated.
#[utoipa::path(get, path = "/api/v1/rewards", tag = "rewards", params(RewardsQuery),
    responses((status = 200, body = Page<RewardBody>), (status = 422, body = crate::openapi::Problem)))]
pub async fn list_rewards(
    State(state): State<AppState>,
    caller: Caller,
    super::ApiQuery(q): super::ApiQuery<RewardsQuery>,
) -> Result<Json<Page<RewardBody>>, ApiError> {
    caller.require(Area::Rewards, false)?;
    let bad = |pointer: &str, detail: String| ApiError::field("invalid_query", pointer, detail);
    let referral = q
        .referral
        .as_deref()
        .map(|r| ReferralId::parse(r).ok_or_else(|| bad("/referral", format!("`{r}` is not a referral id"))))
        .transpose()?;
    let participant = q
        .participant
        .as_deref()
        .map(|p| ParticipantId::parse(p).ok_or_else(|| bad("/participant", format!("`{p}` is not a participant id"))))
        .transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            RewardStatus::parse(s).ok_or_else(|| {
                let all = RewardStatus::ALL.map(RewardStatus::as_str).join(", ");
                bad("/status", format!("`{s}` is not one of {all}"))
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("/limit", "limit is between 1 and 500".into()));
    }
    let before = q
        .cursor
        .as_deref()
        .map(|c| Uuid::parse_str(c).map_err(|_| bad("/cursor", "not a cursor from a previous page".into())))
        .transpose()?;
    let filter = RewardFilter { referral, participant, status };
    let records = state.store.rewards(&filter, before, limit).await?;
    let next_cursor = (records.len() == limit as usize).then(|| records.last().map(|r| r.id.to_string())).flatten();
    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    let mut adjustments = state.store.adjustments_of(&ids).await?;
    let items = records
        .into_iter()
        .map(|r| {
            let a = adjustments.remove(&r.id).unwrap_or_default();
            RewardBody::new(r, a)
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

fn reward_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(&format!("the reward `{raw}`")))
}

async fn body_of(state: &AppState, record: RewardRecord) -> Result<RewardBody, ApiError> {
    let adjustments = state.store.reward_adjustments(record.id).await?;
    Ok(RewardBody::new(record, adjustments))
}

/// One reward with its computation and adjustments.
#[utoipa::path(get, path = "/api/v1/rewards/{id}", tag = "rewards", params(("id" = String, Path)),
    responses((status = 200, body = RewardBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn get_reward(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
) -> Result<Json<RewardBody>, ApiError> {
    caller.require(Area::Rewards, false)?;
    let record =
        state.store.reward(reward_id(&raw)?).await.map_err(ApiError::missing(format!("the reward `{raw}`")))?;
    Ok(Json(body_of(&state, record).await?))
}

/// At most this many characters in a note or reason.
const MAX_REASON: usize = 2000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Up to 2,000 characters, kept with the approval.
    note: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    /// Why it is voided (kept with the reward), up to 2,000 characters.
    reason: String,
}

/// Trims a note or reason and checks its length; empty is none.
fn text(pointer: &str, raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(text) = raw.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let n = text.chars().count();
    if n > MAX_REASON {
        return Err(ApiError::field("invalid_field", pointer, format!("at most {MAX_REASON} characters, not {n}")));
    }
    Ok(Some(text))
}

fn action_error(e: RewardActionError, raw: &str) -> ApiError {
    use vouch_domain::reward::ledger::Refusal;
    match e {
        RewardActionError::NotFound => ApiError::not_found(&format!("the reward `{raw}`")),
        RewardActionError::Refused(r) => {
            let detail = match r {
                Refusal::Voided => "the reward is voided: it can no longer be approved".to_string(),
                Refusal::Paid => "the reward is paid: only a clawback can take it back".to_string(),
                Refusal::OnHold { until } => format!("the reward is on hold until {}", rfc3339(until)),
            };
            ApiError::new(StatusCode::CONFLICT, r.code(), detail)
        }
        RewardActionError::Store(e) => e.into(),
    }
}

/// Approve a pending reward whose hold has ended (or that has none). Approving
/// an approved reward again changes nothing.
#[utoipa::path(post, path = "/api/v1/rewards/{id}/approve", tag = "rewards", params(("id" = String, Path)),
    request_body = ApproveBody,
    responses((status = 200, body = RewardBody), (status = 404, body = crate::openapi::Problem),
        (status = 409, body = crate::openapi::Problem, description = "`reward_voided`, `reward_paid` or `reward_on_hold`"),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn approve_reward(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Json<RewardBody>, ApiError> {
    caller.require(Area::Rewards, true)?;
    let id = reward_id(&raw)?;
    let note = text("/note", body.note)?;
    let record = state
        .store
        .approve_reward(id, &caller.actor(), note.as_deref(), state.clock.now())
        .await
        .map_err(|e| action_error(e, &raw))?;
    tracing::info!(reward = %record.id, by = %caller.actor(), "reward approved");
    Ok(Json(body_of(&state, record).await?))
}

/// Void a pending or approved reward, with the reason. A paid reward cannot be
/// voided; voiding a voided reward again changes nothing.
#[utoipa::path(post, path = "/api/v1/rewards/{id}/void", tag = "rewards", params(("id" = String, Path)),
    request_body = VoidBody,
    responses((status = 200, body = RewardBody), (status = 404, body = crate::openapi::Problem),
        (status = 409, body = crate::openapi::Problem, description = "`reward_paid`"),
        (status = 422, body = crate::openapi::Problem, description = "no `reason`")))]
pub async fn void_reward(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<VoidBody>,
) -> Result<Json<RewardBody>, ApiError> {
    caller.require(Area::Rewards, true)?;
    let id = reward_id(&raw)?;
    let reason = text("/reason", Some(body.reason))?
        .ok_or_else(|| ApiError::field("invalid_field", "/reason", "say why the reward is voided, in a few words"))?;
    let record = state
        .store
        .void_reward(id, &caller.actor(), &reason, state.clock.now())
        .await
        .map_err(|e| action_error(e, &raw))?;
    tracing::info!(reward = %record.id, by = %caller.actor(), "reward voided");
    Ok(Json(body_of(&state, record).await?))
}

/// The most units one referral may report.
const MAX_UNITS: i64 = 1_000_000;

/// Sends the units a `won` lacked (`PATCH /api/v1/referrals/{id}` with `units`).
pub(crate) async fn supply_units(
    state: &AppState,
    id: ReferralId,
    raw: &str,
    units: i64,
    actor: &str,
) -> Result<(), ApiError> {
    if !(0..=MAX_UNITS).contains(&units) {
        return Err(ApiError::field(
            "invalid_field",
            "/units",
            format!("units are a whole number from 0 to {MAX_UNITS}"),
        ));
    }
    match state.store.supply_units(id, units, actor, state.clock.now()).await {
        Ok(_) => Ok(()),
        Err(SupplyUnitsError::NotFound) => Err(ApiError::not_found(&format!("the referral `{raw}`"))),
        Err(SupplyUnitsError::NotMissing) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "units_not_missing",
            "this referral is not waiting for units: they are accepted only for a won that lacked them",
        )),
        Err(SupplyUnitsError::Store(e)) => Err(e.into()),
    }
}
