//! Referrals: leads handed over for a referrer, referrals created by staff, the
//! list and one referral with its timeline, and the staff actions on them
//! (stage moves, assignment, overriding a rejection, deciding a review).

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use vouch_domain::api_key::Area;
use vouch_domain::referral::{ReferralId, Source, Stage, Status};
use vouch_domain::{Email, ParticipantId, ReferralCode};
use vouch_store::{
    Consent, NewProspect, ReferralActionError, ReferralEventKind, ReferralFilter, ReferralRecord, ReviewDecision,
};

use super::{ApiPath, Page, rfc3339};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldProblem};
use crate::json::ApiJson;
use crate::refer::{Submission, refer, refer_with_mail};
use vouch_store::ReferralMail;

/// A note (on a lead, a stage move) or a reason (override, review): at most this many characters.
pub const MAX_NOTE: usize = 2000;
/// Names and companies.
const MAX_TEXT: usize = 200;
const MAX_PHONE: usize = 40;
/// The consent wording a caller may send.
const MAX_CONSENT_TEXT: usize = 1000;
/// Assignees: a sales rep's name or email.
const MAX_ASSIGNEE: usize = 200;

/// The consent wording stored when the caller confirms consent without its own.
pub const DEFAULT_CONSENT: &str =
    "The referrer confirmed that the prospect agreed to be contacted about this referral program.";

/// Who is referred.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProspectInput {
    email: String,
    name: Option<String>,
    company: Option<String>,
    phone: Option<String>,
}

/// A lead handed over on a referrer's behalf.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadBody {
    referrer_code: String,
    prospect: ProspectInput,
    /// Up to 2,000 characters for the sales team.
    note: Option<String>,
    /// Must be `true`: the referrer confirms that the prospect agreed to be contacted.
    consent: Option<bool>,
    /// The wording the referrer confirmed, when the form showed its own (stored with the time).
    consent_text: Option<String>,
}

/// A referral entered by staff.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffReferralBody {
    /// The program's slug.
    program: String,
    referrer_code: String,
    prospect: ProspectInput,
    note: Option<String>,
}

/// Collects field problems and answers them all at once.
#[derive(Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn add(&mut self, pointer: &str, detail: impl Into<String>) {
        self.0.push(FieldProblem { pointer: pointer.into(), detail: detail.into() });
    }

    fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let detail = self.0.iter().map(|p| format!("{}: {}", p.pointer, p.detail)).collect::<Vec<_>>().join("; ");
        Err(ApiError {
            errors: self.0,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{detail}; nothing was stored"))
        })
    }
}

/// Trimmed, `None` when empty; a problem when longer than `max` characters.
fn text(problems: &mut Problems, pointer: &str, value: Option<String>, max: usize) -> Option<String> {
    let value = value.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())?;
    if value.chars().count() > max {
        problems.add(pointer, format!("at most {max} characters, not {}", value.chars().count()));
    }
    Some(value)
}

fn code(problems: &mut Problems, raw: &str) -> Option<ReferralCode> {
    // A code that cannot exist is unknown, whatever makes it malformed.
    match ReferralCode::parse(raw) {
        Ok(c) => Some(c),
        Err(_) => {
            problems
                .add("/referrer_code", format!("`{}` is no referrer's code", raw.chars().take(40).collect::<String>()));
            None
        }
    }
}

impl ProspectInput {
    fn parse(self, problems: &mut Problems) -> Option<NewProspect> {
        let email = Email::parse(&self.email).map_err(|e| problems.add("/prospect/email", e.to_string())).ok();
        let name = text(problems, "/prospect/name", self.name, MAX_TEXT);
        let company = text(problems, "/prospect/company", self.company, MAX_TEXT);
        let phone = text(problems, "/prospect/phone", self.phone, MAX_PHONE);
        if let Some(p) = &phone
            && !p.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
        {
            problems.add("/prospect/phone", "a phone number has digits, spaces and + - ( ) . only");
        }
        Some(NewProspect { email: Some(email?), name, company, phone, external_id: None })
    }
}

fn unknown_code_problem(problems: &Problems) -> Option<ApiError> {
    // A malformed code alone is `unknown_code`, like a well-formed one nobody has.
    match problems.0.as_slice() {
        [only] if only.pointer == "/referrer_code" => {
            Some(ApiError::field("unknown_code", "/referrer_code", only.detail.clone()))
        }
        _ => None,
    }
}

impl LeadBody {
    fn parse(self, actor: String, now: jiff::Timestamp) -> Result<Submission, ApiError> {
        let mut problems = Problems::default();
        let code = code(&mut problems, &self.referrer_code);
        let prospect = self.prospect.parse(&mut problems);
        let note = text(&mut problems, "/note", self.note, MAX_NOTE);
        let consent_text = text(&mut problems, "/consent_text", self.consent_text, MAX_CONSENT_TEXT);
        if self.consent != Some(true) {
            problems.add(
                "/consent",
                "the referrer must confirm (`\"consent\": true`) that the prospect agreed to be contacted",
            );
        }
        if let Some(e) = unknown_code_problem(&problems) {
            return Err(e);
        }
        problems.into_result()?;
        let (Some(code), Some(prospect)) = (code, prospect) else {
            return Err(ApiError::field("invalid_field", "", "the lead could not be read"));
        };
        Ok(Submission {
            code,
            source: Source::Lead,
            prospect,
            consent: Some(Consent { text: consent_text.unwrap_or_else(|| DEFAULT_CONSENT.to_string()), at: now }),
            note,
            actor,
        })
    }
}

impl StaffReferralBody {
    fn parse(self, actor: String) -> Result<(String, Submission), ApiError> {
        let mut problems = Problems::default();
        let code = code(&mut problems, &self.referrer_code);
        let prospect = self.prospect.parse(&mut problems);
        let note = text(&mut problems, "/note", self.note, MAX_NOTE);
        if let Some(e) = unknown_code_problem(&problems) {
            return Err(e);
        }
        problems.into_result()?;
        let (Some(code), Some(prospect)) = (code, prospect) else {
            return Err(ApiError::field("invalid_field", "", "the referral could not be read"));
        };
        Ok((self.program, Submission { code, source: Source::Staff, prospect, consent: None, note, actor }))
    }
}

// ------------------------------------------------------------------- answers

/// A referral: who referred whom in which program, how far sales got (`stage`),
/// whether it counts (`status`, `rejection_reason`), and why.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReferralBody {
    id: String,
    program: String,
    /// The program version the referral was judged by: the one in force at creation.
    program_version: i64,
    referrer: ReferrerBody,
    /// lead, invite, signup_with_code, signup_with_click or staff
    source: String,
    prospect: ProspectBody,
    consent: Option<ConsentBody>,
    note: Option<String>,
    /// new, contacted, qualified, won, lost or churned
    stage: &'static str,
    /// active, in_review or rejected
    status: &'static str,
    /// existing_customer, already_referred, self_referral, same_team, ineligible or staff
    rejection_reason: Option<&'static str>,
    review_signals: Vec<&'static str>,
    /// The referral holding the prospect, for `already_referred`.
    holder_referral_id: Option<String>,
    /// Why the referral has its status now (after overrides and reviews too).
    explanation: String,
    assignee: Option<String>,
    /// A `won` lacked the units a per-unit rule needs: send them with `PATCH {units}`.
    units_missing: bool,
    created_at: String,
    updated_at: String,
    /// The decision taken when the referral was created (one referral only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    attribution: Option<serde_json::Value>,
    /// Every change, oldest first (one referral only).
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<TimelineEntry>>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ReferrerBody {
    participant_id: String,
    enrollment_id: String,
    code: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ProspectBody {
    email: Option<String>,
    name: Option<String>,
    company: Option<String>,
    phone: Option<String>,
    external_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ConsentBody {
    text: String,
    at: String,
}

/// One change in a referral's life.
#[derive(Serialize, utoipa::ToSchema)]
struct TimelineEntry {
    seq: i64,
    /// created, decision, stage, fact, override, review, note or assign
    kind: &'static str,
    stage_from: Option<&'static str>,
    stage_to: Option<&'static str>,
    actor: String,
    note: Option<String>,
    #[schema(value_type = Object)]
    data: serde_json::Value,
    occurred_at: String,
    recorded_at: String,
}

impl ReferralBody {
    pub(crate) fn new(r: ReferralRecord, detailed: bool) -> Self {
        let attribution = detailed
            .then(|| r.timeline.iter().find(|e| e.kind == ReferralEventKind::Decision).map(|e| e.data.clone()))
            .flatten()
            .map(|mut d| {
                // The decision's rule, by its stable name, beside what the domain recorded.
                let code = d["rejection_reason"].as_str().or(d["status"].as_str()).map(str::to_string);
                if let (Some(obj), Some(code)) = (d.as_object_mut(), code) {
                    obj.insert("decision".into(), code.into());
                }
                d
            });
        let timeline = detailed.then(|| {
            r.timeline
                .iter()
                .map(|e| TimelineEntry {
                    seq: e.seq,
                    kind: e.kind.as_str(),
                    stage_from: e.stage_from.map(Stage::as_str),
                    stage_to: e.stage_to.map(Stage::as_str),
                    actor: e.actor.clone(),
                    note: e.note.clone(),
                    data: e.data.clone(),
                    occurred_at: rfc3339(e.occurred_at),
                    recorded_at: rfc3339(e.recorded_at),
                })
                .collect()
        });
        ReferralBody {
            id: r.id.to_string(),
            program: r.program_slug,
            program_version: r.program_version,
            referrer: ReferrerBody {
                participant_id: r.participant_id.to_string(),
                enrollment_id: r.enrollment_id.to_string(),
                code: r.code,
            },
            source: r.source,
            prospect: ProspectBody {
                email: r.prospect.email.map(|e| e.as_str().to_string()),
                name: r.prospect.name,
                company: r.prospect.company,
                phone: r.prospect.phone,
                external_id: r.prospect.external_id,
            },
            consent: r.consent.map(|c| ConsentBody { text: c.text, at: rfc3339(c.at) }),
            note: r.note,
            stage: r.stage.as_str(),
            status: r.status.as_str(),
            rejection_reason: r.rejection_reason.map(|x| x.as_str()),
            review_signals: r.review_signals.iter().map(|s| s.as_str()).collect(),
            holder_referral_id: r.holder.map(|h| h.to_string()),
            explanation: r.explanation,
            assignee: r.assignee,
            units_missing: r.units_missing,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            attribution,
            timeline,
        }
    }
}

// ------------------------------------------------------------------ handlers

/// Hand over a lead for a referrer. 201 with the referral, which may be stored
/// `rejected` with its reason; 422 when the request itself is invalid.
#[utoipa::path(post, path = "/api/v1/programs/{slug}/leads", tag = "referrals",
    params(("slug" = String, Path)), request_body = LeadBody,
    responses((status = 201, body = ReferralBody), (status = 404, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn submit_lead(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiPath(slug): ApiPath,
    ApiJson(body): ApiJson<LeadBody>,
) -> Result<(StatusCode, Json<ReferralBody>), ApiError> {
    caller.require(Area::Referrals, true)?;
    let now = state.clock.now();
    let submission = body.parse(caller.actor(), now)?;
    let program = super::programs::program_by_slug(&state, &slug).await?;
    // The referrer hears that their lead arrived (when it counts).
    let record = refer_with_mail(&state.store, &program, submission, ReferralMail::LeadReceived, now).await?;
    super::participants::remember_ip(&state, record.participant_id, peer).await;
    Ok((StatusCode::CREATED, Json(ReferralBody::new(record, true))))
}

/// Enter a referral as staff (no review signals: staff have looked at it).
#[utoipa::path(post, path = "/api/v1/referrals", tag = "referrals", request_body = StaffReferralBody,
    responses((status = 201, body = ReferralBody), (status = 422, body = crate::openapi::Problem)))]
pub async fn create_referral(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<StaffReferralBody>,
) -> Result<(StatusCode, Json<ReferralBody>), ApiError> {
    caller.require(Area::Referrals, true)?;
    let (slug, submission) = body.parse(caller.actor())?;
    let program = super::programs::program_by_slug(&state, &slug)
        .await
        .map_err(|_| ApiError::field("unknown_program", "/program", format!("no program has the slug `{slug}`")))?;
    let record = refer(&state.store, &program, submission, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(ReferralBody::new(record, true))))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReferralsQuery {
    /// A program's slug.
    program: Option<String>,
    stage: Option<String>,
    status: Option<String>,
    /// The referrer's participant id.
    referrer: Option<String>,
    source: Option<String>,
    assignee: Option<String>,
    /// Created at or after (RFC 3339).
    created_from: Option<String>,
    /// Created before (RFC 3339).
    created_to: Option<String>,
    cursor: Option<String>,
    /// 1 to 500, 50 by default.
    limit: Option<u32>,
}

const SOURCES: [&str; 5] = ["lead", "invite", "signup_with_code", "signup_with_click", "staff"];

/// Referrals, newest first, filtered and paginated.
#[utoipa::path(get, path = "/api/v1/referrals", tag = "referrals", params(ReferralsQuery),
    responses((status = 200, body = Page<ReferralBody>), (status = 422, body = crate::openapi::Problem)))]
pub async fn list_referrals(
    State(state): State<AppState>,
    caller: Caller,
    super::ApiQuery(q): super::ApiQuery<ReferralsQuery>,
) -> Result<Json<Page<ReferralBody>>, ApiError> {
    caller.require(Area::Referrals, false)?;
    let bad = |pointer: &str, detail: String| ApiError::field("invalid_query", pointer, detail);
    let program = match q.program.as_deref() {
        None => None,
        Some(slug) => Some(
            super::programs::program_by_slug(&state, slug)
                .await
                .map_err(|_| bad("/program", format!("no program has the slug `{slug}`")))?
                .id,
        ),
    };
    let named = |pointer: &str, raw: Option<&str>, all: &[&str]| -> Result<(), ApiError> {
        match raw {
            Some(v) if !all.contains(&v) => Err(bad(pointer, format!("`{v}` is not one of {}", all.join(", ")))),
            _ => Ok(()),
        }
    };
    named("/stage", q.stage.as_deref(), &Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>())?;
    named("/status", q.status.as_deref(), &Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>())?;
    named("/source", q.source.as_deref(), &SOURCES)?;
    let time = |pointer: &str, raw: Option<&str>| -> Result<Option<jiff::Timestamp>, ApiError> {
        raw.map(|t| t.parse::<jiff::Timestamp>().map_err(|_| bad(pointer, format!("`{t}` is not an RFC 3339 time"))))
            .transpose()
    };
    let participant = q
        .referrer
        .as_deref()
        .map(|r| ParticipantId::parse(r).ok_or_else(|| bad("/referrer", format!("`{r}` is not a participant id"))))
        .transpose()?;
    let filter = ReferralFilter {
        program,
        stage: q.stage.as_deref().and_then(Stage::parse),
        status: q.status.as_deref().and_then(Status::parse),
        participant,
        source: q.source,
        assignee: q.assignee,
        created_from: time("/created_from", q.created_from.as_deref())?,
        created_to: time("/created_to", q.created_to.as_deref())?,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("/limit", "limit is between 1 and 500".into()));
    }
    let before = q
        .cursor
        .as_deref()
        .map(|c| ReferralId::parse(c).ok_or_else(|| bad("/cursor", "not a cursor from a previous page".into())))
        .transpose()?;
    let records = state.store.referrals(&filter, before, limit).await?;
    let next_cursor = (records.len() == limit as usize).then(|| records.last().map(|r| r.id.to_string())).flatten();
    Ok(Json(Page { items: records.into_iter().map(|r| ReferralBody::new(r, false)).collect(), next_cursor }))
}

fn referral_id(raw: &str) -> Result<ReferralId, ApiError> {
    ReferralId::parse(raw).ok_or_else(|| ApiError::not_found(&format!("the referral `{raw}`")))
}

fn action_error(e: ReferralActionError, raw: &str) -> ApiError {
    match e {
        ReferralActionError::NotFound => ApiError::not_found(&format!("the referral `{raw}`")),
        ReferralActionError::Stage(refusal) => ApiError::field(refusal.code(), "/stage", refusal.to_string()),
        ReferralActionError::NotRejected(status) => ApiError::new(
            StatusCode::CONFLICT,
            "not_rejected",
            format!("only a rejected referral can be overridden; this one is `{status}`"),
        ),
        ReferralActionError::NotInReview(status) => ApiError::new(
            StatusCode::CONFLICT,
            "not_in_review",
            format!("only a referral in review can be decided; this one is `{status}`"),
        ),
        ReferralActionError::ProspectHeld(holder) => ApiError::new(
            StatusCode::CONFLICT,
            "prospect_held",
            match holder {
                Some(h) => format!("referral {h} holds this prospect in the program: there cannot be two holders"),
                None => "another referral holds this prospect in the program: there cannot be two holders".into(),
            },
        ),
        ReferralActionError::Store(e) => e.into(),
    }
}

/// One referral with its attribution decision and timeline.
#[utoipa::path(get, path = "/api/v1/referrals/{id}", tag = "referrals", params(("id" = String, Path)),
    responses((status = 200, body = ReferralBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn get_referral(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
) -> Result<Json<ReferralBody>, ApiError> {
    caller.require(Area::Referrals, false)?;
    let record =
        state.store.referral(referral_id(&raw)?).await.map_err(ApiError::missing(format!("the referral `{raw}`")))?;
    Ok(Json(ReferralBody::new(record, true)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageBody {
    /// new, contacted, qualified, won, lost or churned
    stage: String,
    note: Option<String>,
}

/// Move a referral along the pipeline; a move the pipeline forbids is 422 `stage_not_allowed`.
#[utoipa::path(post, path = "/api/v1/referrals/{id}/stage", tag = "referrals", params(("id" = String, Path)),
    request_body = StageBody,
    responses((status = 200, body = ReferralBody), (status = 404, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn move_stage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<StageBody>,
) -> Result<Json<ReferralBody>, ApiError> {
    caller.require(Area::Referrals, true)?;
    let id = referral_id(&raw)?;
    let mut problems = Problems::default();
    let stage = Stage::parse(&body.stage);
    if stage.is_none() {
        let all = Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        problems.add("/stage", format!("`{}` is not a stage; stages are {all}", body.stage));
    }
    let note = text(&mut problems, "/note", body.note, MAX_NOTE);
    problems.into_result()?;
    let stage = stage.ok_or_else(|| ApiError::field("invalid_field", "/stage", "no stage"))?;
    let record = state
        .store
        .move_stage(id, stage, &caller.actor(), note.as_deref(), state.clock.now())
        .await
        .map_err(|e| action_error(e, &raw))?;
    Ok(Json(ReferralBody::new(record, true)))
}

/// `{"assignee": null}` unassigns; a missing `assignee` leaves it as it is.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchReferralBody {
    /// The sales rep working the referral; `null` unassigns.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    assignee: Option<Option<String>>,
    /// The units (technicians, seats) of a `won` that lacked them; accepted only
    /// while the referral is `units_missing`, and creates the rewards that waited.
    units: Option<i64>,
}

/// Change a referral's assignee, or send the units its `won` lacked.
#[utoipa::path(patch, path = "/api/v1/referrals/{id}", tag = "referrals", params(("id" = String, Path)),
    request_body = PatchReferralBody,
    responses((status = 200, body = ReferralBody), (status = 404, body = crate::openapi::Problem),
        (status = 409, body = crate::openapi::Problem), (status = 422, body = crate::openapi::Problem)))]
pub async fn patch_referral(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<PatchReferralBody>,
) -> Result<Json<ReferralBody>, ApiError> {
    caller.require(Area::Referrals, true)?;
    let id = referral_id(&raw)?;
    if let Some(units) = body.units {
        super::rewards::supply_units(&state, id, &raw, units, &caller.actor()).await?;
    }
    let Some(assignee) = body.assignee else {
        let record = state.store.referral(id).await.map_err(|e| action_error(e.into(), &raw))?;
        return Ok(Json(ReferralBody::new(record, true)));
    };
    let mut problems = Problems::default();
    let assignee = text(&mut problems, "/assignee", assignee, MAX_ASSIGNEE);
    problems.into_result()?;
    let record = state
        .store
        .assign_referral(id, assignee.as_deref(), &caller.actor(), state.clock.now())
        .await
        .map_err(|e| action_error(e, &raw))?;
    Ok(Json(ReferralBody::new(record, true)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    /// Why staff overturn the rejection (kept in the timeline).
    reason: String,
}

fn reason(raw: String) -> Result<String, ApiError> {
    let mut problems = Problems::default();
    let reason = text(&mut problems, "/reason", Some(raw), MAX_NOTE);
    if reason.is_none() {
        problems.add("/reason", "say why, in a few words");
    }
    problems.into_result()?;
    Ok(reason.unwrap_or_default())
}

/// Overturn a rejection: the referral becomes `active`, unless another referral holds the prospect.
#[utoipa::path(post, path = "/api/v1/referrals/{id}/override", tag = "referrals", params(("id" = String, Path)),
    request_body = OverrideBody,
    responses((status = 200, body = ReferralBody), (status = 404, body = crate::openapi::Problem),
        (status = 409, body = crate::openapi::Problem), (status = 422, body = crate::openapi::Problem)))]
pub async fn override_referral(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<OverrideBody>,
) -> Result<Json<ReferralBody>, ApiError> {
    caller.require(Area::Referrals, true)?;
    let id = referral_id(&raw)?;
    let reason = reason(body.reason)?;
    let record = state
        .store
        .override_rejection(id, &reason, &caller.actor(), state.clock.now())
        .await
        .map_err(|e| action_error(e, &raw))?;
    tracing::info!(referral = %record.id, by = %caller.actor(), "rejection overridden");
    Ok(Json(ReferralBody::new(record, true)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// accept or reject
    decision: String,
    reason: String,
}

/// Decide a referral in review: `accept` makes it active, `reject` rejects it (`staff`).
#[utoipa::path(post, path = "/api/v1/referrals/{id}/review", tag = "referrals", params(("id" = String, Path)),
    request_body = ReviewBody,
    responses((status = 200, body = ReferralBody), (status = 404, body = crate::openapi::Problem),
        (status = 409, body = crate::openapi::Problem), (status = 422, body = crate::openapi::Problem)))]
pub async fn review_referral(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<ReviewBody>,
) -> Result<Json<ReferralBody>, ApiError> {
    caller.require(Area::Referrals, true)?;
    let id = referral_id(&raw)?;
    let decision = ReviewDecision::parse(&body.decision).ok_or_else(|| {
        ApiError::field(
            "invalid_field",
            "/decision",
            format!("`{}` is not a decision; say accept or reject", body.decision),
        )
    })?;
    let reason = reason(body.reason)?;
    let record = state
        .store
        .review(id, decision, &reason, &caller.actor(), state.clock.now())
        .await
        .map_err(|e| action_error(e, &raw))?;
    tracing::info!(referral = %record.id, decision = decision.as_str(), by = %caller.actor(), "review decided");
    Ok(Json(ReferralBody::new(record, true)))
}
