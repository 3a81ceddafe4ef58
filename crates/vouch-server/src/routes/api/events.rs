//! `POST /api/v1/events`: facts from the company's backend.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use vouch_domain::Email;
use vouch_domain::api_key::Area;
use vouch_domain::customer::ExternalId;
use vouch_domain::referral::{FactKind, ReferralId};
use vouch_store::StoredProgram;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldProblem};
use crate::events::{Ingested, Report, ingest};
use crate::json::ApiJson;

/// The sender's own ids (`event_id`): at most this many characters.
const MAX_EVENT_ID: usize = 255;

/// Who the fact is about.
#[derive(Deserialize, Serialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventProspect {
    email: Option<String>,
    /// The company's own id of the prospect.
    external_id: Option<String>,
}

/// An amount of money in minor units.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyInput {
    amount_minor: i64,
    /// ISO 4217; must be the program's currency.
    currency: String,
}

/// A fact the company's backend reports, with the time it happened.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// signup, qualified, won, payment, churned or refunded
    #[serde(rename = "type")]
    kind: String,
    /// The program's slug.
    program: String,
    /// When it happened (RFC 3339), not when it is sent.
    occurred_at: String,
    /// The sender's own id of the fact (a payment's invoice or charge id; required for `payment`).
    /// A fact seen before with this id is a duplicate, whatever its Idempotency-Key.
    event_id: Option<String>,
    #[serde(default)]
    prospect: EventProspect,
    /// A `signup` carrying a referrer's code makes a referral for an unheld prospect.
    referral_code: Option<String>,
    /// A `signup` carrying the click id (`vclid`) the landing page received.
    click_id: Option<String>,
    referral_id: Option<String>,
    /// Units bought (technicians, seats); zero or more.
    units: Option<i64>,
    value: Option<MoneyInput>,
    /// `YYYY-MM-DD`
    contract_date: Option<String>,
}

/// What a fact did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventAnswer {
    /// The stored fact (the original one, for a duplicate).
    fact_id: String,
    /// Set when this fact was received before: nothing changed.
    duplicate_of: Option<String>,
    /// The referral the fact is about, or none (the prospect went to the customer registry).
    referral_id: Option<String>,
    /// Whether this `signup` made the referral.
    referral_created: bool,
    stage_before: Option<&'static str>,
    stage_after: Option<&'static str>,
    changed: bool,
    /// What happened, and why no referral was made when none was.
    explanation: String,
    /// The new customer enrolled as a referrer (programs with `enroll_converted`).
    enrolled: Option<EnrolledAnswer>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrolledAnswer {
    participant_id: String,
    enrollment_id: String,
    code: String,
    link: String,
}

struct Problems(Vec<(&'static str, FieldProblem)>);

impl Problems {
    fn add(&mut self, code: &'static str, pointer: &str, detail: impl Into<String>) {
        self.0.push((code, FieldProblem { pointer: pointer.into(), detail: detail.into() }));
    }
}

impl EventBody {
    fn parse(self, program: Result<&StoredProgram, ApiError>) -> Result<Report, ApiError> {
        let raw = serde_json::to_value(&self).unwrap_or_default();
        let mut p = Problems(Vec::new());
        let kind = FactKind::parse(&self.kind);
        if kind.is_none() {
            let all: Vec<_> = FactKind::ALL.iter().map(|k| k.as_str()).collect();
            p.add("unknown_type", "/type", format!("`{}` is not one of {}", short(&self.kind), all.join(", ")));
        }
        if program.is_err() {
            p.add("unknown_program", "/program", format!("no program has the slug `{}`", short(&self.program)));
        }
        let occurred_at = self.occurred_at.parse::<jiff::Timestamp>().ok().filter(|_| is_rfc3339(&self.occurred_at));
        if occurred_at.is_none() {
            p.add(
                "invalid_time",
                "/occurred_at",
                format!("`{}` is not an RFC 3339 time with an offset", short(&self.occurred_at)),
            );
        }
        let event_id = self.event_id.map(|s| s.trim().to_string());
        match &event_id {
            Some(id) if id.is_empty() || id.chars().count() > MAX_EVENT_ID => {
                p.add("invalid_field", "/event_id", format!("an event id is 1 to {MAX_EVENT_ID} characters"))
            }
            None if kind.is_some_and(FactKind::requires_event_id) => p.add(
                "event_id_required",
                "/event_id",
                "a `payment` needs its `event_id` (the invoice or charge id), so that it is never counted twice",
            ),
            _ => {}
        }
        let email = self
            .prospect
            .email
            .as_deref()
            .map(|e| Email::parse(e).map_err(|err| p.add("invalid_email", "/prospect/email", err.to_string())))
            .transpose()
            .ok()
            .flatten();
        let external_id = self
            .prospect
            .external_id
            .as_deref()
            .map(|e| {
                ExternalId::parse(e).map_err(|err| p.add("invalid_field", "/prospect/external_id", err.to_string()))
            })
            .transpose()
            .ok()
            .flatten();
        let referral_id = match self.referral_id.as_deref() {
            None => None,
            Some(raw) => {
                let id = ReferralId::parse(raw.trim());
                if id.is_none() {
                    p.add("unknown_referral", "/referral_id", format!("`{}` is not a referral id", short(raw)));
                }
                id
            }
        };
        if referral_id.is_none()
            && self.referral_id.is_none()
            && self.prospect.email.is_none()
            && self.prospect.external_id.is_none()
        {
            p.add(
                "missing_prospect",
                "/prospect",
                "name the prospect by `prospect.email` or `prospect.external_id`, or the referral by `referral_id`",
            );
        }
        if let Some(units) = self.units
            && units < 0
        {
            p.add("invalid_units", "/units", format!("units are zero or more, not {units}"));
        }
        if let Some(v) = &self.value {
            if v.amount_minor < 0 {
                p.add("invalid_field", "/value/amount_minor", "an amount is zero or more");
            }
            if let Ok(program) = program {
                let currency = program.definition.currency().code();
                if v.currency != currency {
                    p.add(
                        "currency_mismatch",
                        "/value/currency",
                        format!(
                            "the program `{}` counts in {currency}, not `{}`",
                            program.definition.slug().as_str(),
                            short(&v.currency)
                        ),
                    );
                }
            }
        }
        let contract_date = match self.contract_date.as_deref() {
            None => None,
            Some(raw) => {
                let ok = raw.len() == 10 && raw.parse::<jiff::civil::Date>().is_ok();
                if !ok {
                    p.add("invalid_date", "/contract_date", format!("`{}` is not a date (YYYY-MM-DD)", short(raw)));
                }
                Some(raw.to_string())
            }
        };
        if let Some((code, _)) = p.0.first() {
            let code = *code;
            let errors: Vec<FieldProblem> = p.0.into_iter().map(|(_, f)| f).collect();
            let detail = errors.iter().map(|f| format!("{}: {}", f.pointer, f.detail)).collect::<Vec<_>>().join("; ");
            return Err(ApiError {
                errors,
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, format!("{detail}; nothing was stored"))
            });
        }
        let (Some(kind), Some(occurred_at)) = (kind, occurred_at) else {
            return Err(ApiError::field("invalid_field", "", "the event could not be read"));
        };
        Ok(Report {
            kind,
            occurred_at,
            event_id,
            email,
            external_id,
            referral_id,
            referral_code: self.referral_code.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            click_id: self.click_id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
            units: self.units,
            value: self.value.map(|v| (v.amount_minor, v.currency)),
            contract_date,
            raw,
        })
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// RFC 3339: a date, `T` (or a space), a time and an offset (`Z` or `±hh:mm`).
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && (s.ends_with('Z') || s.ends_with('z') || matches!(b[b.len() - 6], b'+' | b'-'))
}

/// Report a fact. 201 when recorded (with the referral it moved, or none: a
/// prospect no referral holds enters the customer registry and the answer says
/// why); 200 when the same fact was received before (`event_id`, or the same
/// kind at the same instant for the same referral), changing nothing. Needs an
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = EventBody,
    params(("Idempotency-Key" = String, Header, description = "required: a repeat answers what the first request answered")),
    responses((status = 201, body = EventAnswer), (status = 200, body = EventAnswer),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn post_event(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EventBody>,
) -> Result<(StatusCode, Json<EventAnswer>), ApiError> {
    caller.require(Area::Events, true)?;
    if !headers.contains_key(crate::idempotency::HEADER) {
        return Err(ApiError::field(
            "idempotency_key_required",
            "",
            "send an `Idempotency-Key` header with every event, so that a retry is never counted twice",
        ));
    }
    let now = state.clock.now();
    let program = super::programs::program_by_slug(&state, &body.program).await;
    let report = body.parse(program.as_ref().map_err(Clone::clone))?;
    let program = program?;
    let done: Ingested = ingest(&state.store, &program, report, caller.actor(), now).await?;
    let status = if done.duplicate_of.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    Ok((
        status,
        Json(EventAnswer {
            fact_id: done.fact_id.to_string(),
            duplicate_of: done.duplicate_of.map(|d| d.to_string()),
            referral_id: done.referral_id.map(|r| r.to_string()),
            referral_created: done.referral_created,
            stage_before: done.stage_before.map(|s| s.as_str()),
            stage_after: done.stage_after.map(|s| s.as_str()),
            changed: done.changed,
            explanation: done.explanation,
            enrolled: done.enrolled.map(|e| EnrolledAnswer {
                participant_id: e.participant_id.to_string(),
                enrollment_id: e.enrollment_id.to_string(),
                link: state.link(&e.code),
                code: e.code.to_string(),
            }),
        }),
    ))
}
