//! Forecasting: the liability report (what the ledger still owes, by month and
//! by method) and the simulation of a draft program version over past referrals.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use vouch_domain::Money;
use vouch_domain::api_key::Area;
use vouch_domain::program::parse_program;
use vouch_domain::reward::simulate::{CompareLine, Payee, SimulatedReward};
use vouch_store::{LiabilityLine, SimulateError, SimulationPeriod, StoreError};

use super::rewards::MoneyBody;
use super::{ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldProblem};
use crate::json::ApiJson;

fn money(m: Money) -> MoneyBody {
    MoneyBody { amount_minor: m.amount_minor, currency: m.currency.code() }
}

/// What is owed in one bucket (a release month, `now`, or a reward kind), in one currency.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LiabilityLineBody {
    /// `YYYY-MM` or `now` (in `by_month`), a reward kind (in `by_method`);
    /// absent in `totals`.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// Pending rewards (on hold or awaiting approval), adjustments included.
    pending: MoneyBody,
    /// Approved rewards not paid yet, adjustments included.
    approved: MoneyBody,
    /// Adjustments of paid rewards: owed when positive, to recover when negative.
    adjustments: MoneyBody,
    total: MoneyBody,
}

impl LiabilityLineBody {
    fn new(l: LiabilityLine) -> Self {
        LiabilityLineBody {
            key: (!l.key.is_empty()).then_some(l.key),
            pending: money(l.pending),
            approved: money(l.approved),
            adjustments: money(l.adjustments),
            total: money(l.total),
        }
    }
}

/// What the ledger still owes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LiabilityBody {
    /// By the month the hold ends in the program's time zone (`now` for rewards
    /// without a hold or whose hold has ended, first), per currency.
    by_month: Vec<LiabilityLineBody>,
    /// By fulfilment method (the reward's kind), per currency.
    by_method: Vec<LiabilityLineBody>,
    /// One line per currency.
    totals: Vec<LiabilityLineBody>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LiabilityQuery {
    /// A program's slug; all programs without it.
    program: Option<String>,
}

/// Pending and approved, unpaid rewards (with their adjustments) by release
/// month and by method, per currency.
#[utoipa::path(get, path = "/api/v1/reports/liability", tag = "rewards", params(LiabilityQuery),
    responses((status = 200, body = LiabilityBody), (status = 422, body = crate::openapi::Problem)))]
pub async fn liability_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LiabilityQuery>,
) -> Result<Json<LiabilityBody>, ApiError> {
    caller.require(Area::Rewards, false)?;
    let report = match state.store.liability(q.program.as_deref(), state.clock.now()).await {
        Err(StoreError::NotFound) => {
            let slug = q.program.unwrap_or_default();
            return Err(ApiError::field("unknown_program", "/program", format!("no program `{slug}`")));
        }
        other => other?,
    };
    let lines = |l: Vec<LiabilityLine>| l.into_iter().map(LiabilityLineBody::new).collect();
    Ok(Json(LiabilityBody {
        by_month: lines(report.by_month),
        by_method: lines(report.by_method),
        totals: lines(report.totals),
    }))
}

/// A draft program version and the period to replay.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    /// The draft, as the TOML text of a program file. It is never stored.
    program: String,
    /// The first day of the period, `YYYY-MM-DD`, in the program's time zone.
    since: String,
    /// The last day of the period (included); today by default.
    until: Option<String>,
}

/// One row of the comparison: the version in force, the draft, and the
/// draft's difference (negative when it pays less).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CompareBody {
    /// `YYYY-MM` (by month), or the referrer's participant id (by referrer;
    /// `referees` for what referees earn); absent for the total.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// The referrer's email (by referrer).
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    current: MoneyBody,
    draft: MoneyBody,
    difference: MoneyBody,
}

impl CompareBody {
    fn new<K>(l: CompareLine<K>, key: Option<String>, email: Option<String>) -> Self {
        CompareBody { key, email, current: money(l.current), draft: money(l.draft), difference: money(l.difference) }
    }
}

/// One reward a version would have computed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SimulatedRewardBody {
    referral_id: String,
    /// The referral's referrer.
    referrer_id: String,
    rule: String,
    /// referrer or referee
    beneficiary: &'static str,
    /// `won`, `qualified`, or a payment's fact id.
    occurrence: String,
    /// The date it counts on (the contract date for `won`).
    date: String,
    kind: &'static str,
    amount: MoneyBody,
    months: Option<i64>,
    explanation: String,
}

impl SimulatedRewardBody {
    fn new(r: SimulatedReward) -> Self {
        SimulatedRewardBody {
            referral_id: r.referral.to_string(),
            referrer_id: r.referrer.to_string(),
            rule: r.rule_id,
            beneficiary: r.beneficiary.as_str(),
            occurrence: r.occurrence,
            date: r.date.to_string(),
            kind: r.kind.as_str(),
            amount: money(r.amount),
            months: r.months,
            explanation: r.explanation,
        }
    }
}

/// The draft beside the version in force, over the period.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SimulationBody {
    program: String,
    /// The version in force that the draft is compared with.
    current_version: i64,
    since: String,
    until: String,
    by_month: Vec<CompareBody>,
    by_referrer: Vec<CompareBody>,
    total: CompareBody,
    /// Every reward of the period under the version in force.
    current_rewards: Vec<SimulatedRewardBody>,
    /// Every reward of the period under the draft.
    draft_rewards: Vec<SimulatedRewardBody>,
}

fn date(pointer: &str, raw: &str) -> Result<Date, ApiError> {
    raw.parse::<Date>()
        .map_err(|_| ApiError::field("invalid_field", pointer, format!("`{raw}` is not a date such as 2026-01-31")))
}

/// Replays the referrals of a period under a draft version of the program and
/// under the version in force, and compares what each would have paid, per
/// month and per referrer. Nothing is stored.
#[utoipa::path(post, path = "/api/v1/programs/{slug}/simulate", tag = "programs",
    params(("slug" = String, Path)), request_body = SimulateRequest,
    responses((status = 200, body = SimulationBody), (status = 404, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn simulate_program(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath,
    ApiJson(req): ApiJson<SimulateRequest>,
) -> Result<Json<SimulationBody>, ApiError> {
    caller.require(Area::Programs, false)?;
    let draft = parse_program(&req.program).map_err(|errs| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_program",
        detail: format!("the program file has {} problem(s); nothing was simulated", errs.errors.len()),
        errors: errs
            .errors
            .iter()
            .map(|e| FieldProblem { pointer: "/program".into(), detail: e.to_string() })
            .collect(),
    })?;
    if draft.slug().as_str() != slug {
        return Err(ApiError::field(
            "program_slug_mismatch",
            "/program",
            format!("the file defines `{}`, not `{slug}`", draft.slug().as_str()),
        ));
    }
    let since = date("/since", &req.since)?;
    let until = match req.until.as_deref() {
        Some(u) => date("/until", u)?,
        None => {
            let tz = jiff::tz::TimeZone::get(draft.timezone()).map_err(ApiError::internal)?;
            tz.to_datetime(state.clock.now()).date()
        }
    };
    let sim = match state.store.simulate(&draft, SimulationPeriod { since, until }).await {
        Ok(sim) => sim,
        Err(SimulateError::UnknownProgram(_)) => return Err(ApiError::not_found(&format!("the program `{slug}`"))),
        Err(e @ SimulateError::CurrencyChanged { .. }) => {
            return Err(ApiError::field("simulation_currency_changed", "/program", e.to_string()));
        }
        Err(e @ SimulateError::EmptyPeriod { .. }) => {
            return Err(ApiError::field("invalid_period", "/until", e.to_string()));
        }
        Err(SimulateError::Store(e)) => return Err(e.into()),
    };
    let by_referrer = sim
        .comparison
        .by_referrer
        .into_iter()
        .map(|l| match l.key {
            Payee::Referrer(p) => {
                let email = sim.referrers.get(&p).cloned();
                CompareBody::new(l, Some(p.to_string()), email)
            }
            Payee::Referees => CompareBody::new(l, Some("referees".into()), None),
        })
        .collect();
    Ok(Json(SimulationBody {
        program: sim.slug,
        current_version: sim.current_version,
        since: since.to_string(),
        until: until.to_string(),
        by_month: sim.comparison.by_month.into_iter().map(|l| CompareBody::new(l.clone(), Some(l.key), None)).collect(),
        by_referrer,
        total: CompareBody::new(sim.comparison.total, None, None),
        current_rewards: sim.current.into_iter().map(SimulatedRewardBody::new).collect(),
        draft_rewards: sim.draft.into_iter().map(SimulatedRewardBody::new).collect(),
    }))
}
