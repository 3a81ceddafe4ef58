//! Fulfilment and payouts: participants' payout details, payout batches of cash
//! rewards (create, read, export as CSV, mark paid, mark an item failed), the
//! gift-card queue and its completion, credits and plan upgrades marked applied
//! by billing, and the yearly paid totals per payee for tax reporting.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vouch_domain::api_key::Area;
use vouch_domain::payout::{BatchRefusal, Iban, PayoutDetails, PayoutMethod};
use vouch_domain::{Currency, Email, Money, ParticipantId};
use vouch_store::{
    CreatePayoutError, FulfilError, PayoutActionError, PayoutRecord, PayoutSelection, RewardRecord, StoreError,
};

use super::{ApiPath, ApiQuery, rfc3339};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldProblem};
use crate::json::ApiJson;

/// Free-text references and reasons: long enough for any bank's, short enough to store.
const MAX_TEXT: usize = 200;

/// Money: integer minor units and an ISO 4217 currency.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountBody {
    amount_minor: i64,
    currency: String,
}

impl AmountBody {
    fn of(m: Money) -> Self {
        AmountBody { amount_minor: m.amount_minor, currency: m.currency.code().to_string() }
    }
}

/// `12.34` for 1234 minor units of a currency with two decimals.
fn decimal(m: Money) -> String {
    let exp = m.currency.exponent();
    let sign = if m.amount_minor < 0 { "-" } else { "" };
    let abs = m.amount_minor.unsigned_abs();
    if exp == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u64.pow(exp);
    format!("{sign}{}.{:0width$}", abs / unit, abs % unit, width = exp as usize)
}

/// Text typed by people (names, emails) as a CSV cell: one starting like a
/// formula is prefixed with `'`, so a spreadsheet shows it instead of running it.
fn text_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() }
}

fn invalid(problems: Vec<FieldProblem>) -> ApiError {
    let detail = problems.iter().map(|p| format!("{}: {}", p.pointer, p.detail)).collect::<Vec<_>>().join("; ");
    ApiError { errors: problems, ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail) }
}

/// A required short text: trimmed, 1 to [`MAX_TEXT`] characters.
fn text(value: &str, pointer: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > MAX_TEXT {
        return Err(ApiError::field("invalid_field", pointer, format!("1 to {MAX_TEXT} characters")));
    }
    Ok(v.to_string())
}

fn csv_response(filename: &str, header_row: &[&str], rows: Vec<Vec<String>>) -> Result<Response, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header_row).map_err(ApiError::internal)?;
    for row in rows {
        w.write_record(&row).map_err(ApiError::internal)?;
    }
    let bytes = w.into_inner().map_err(ApiError::internal)?;
    let mut res = (StatusCode::OK, bytes).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

// ---- payout details -------------------------------------------------------

/// Where a participant is paid: `bank_transfer` with `iban` and
/// `account_holder`, or `paypal` with `email`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutDetailsInput {
    /// bank_transfer or paypal
    method: String,
    iban: Option<String>,
    account_holder: Option<String>,
    email: Option<String>,
}

/// Payout details as the API shows them: the destination masked.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PayoutDetailsBody {
    /// bank_transfer or paypal
    pub method: &'static str,
    /// `DE…3000` or `a***@example.org`
    pub destination: String,
    pub account_holder: Option<String>,
}

impl PayoutDetailsBody {
    pub fn new(d: &PayoutDetails) -> Self {
        PayoutDetailsBody {
            method: d.method().as_str(),
            destination: d.masked(),
            account_holder: d.account_holder().map(str::to_string),
        }
    }
}

impl PayoutDetailsInput {
    fn parse(self) -> Result<PayoutDetails, ApiError> {
        let mut problems = Vec::new();
        let mut problem = |p: &str, d: String| problems.push(FieldProblem { pointer: p.into(), detail: d });
        let unused = |problem: &mut dyn FnMut(&str, String), pointer: &str, present: bool, method: &str| {
            if present {
                problem(pointer, format!("not used by {method}"));
            }
        };
        let details = match PayoutMethod::parse(&self.method) {
            Some(PayoutMethod::BankTransfer) => {
                unused(&mut problem, "/email", self.email.is_some(), "bank_transfer");
                let iban = match self.iban.as_deref() {
                    None => {
                        problem("/iban", "bank_transfer needs an IBAN".into());
                        None
                    }
                    Some(raw) => Iban::parse(raw).map_err(|e| problem("/iban", e.to_string())).ok(),
                };
                let holder = self.account_holder.as_deref().map(str::trim).unwrap_or_default().to_string();
                if holder.is_empty() || holder.chars().count() > MAX_TEXT {
                    problem("/account_holder", format!("the account holder's name, 1 to {MAX_TEXT} characters"));
                }
                iban.map(|iban| PayoutDetails::BankTransfer { iban, account_holder: holder })
            }
            Some(PayoutMethod::Paypal) => {
                unused(&mut problem, "/iban", self.iban.is_some(), "paypal");
                unused(&mut problem, "/account_holder", self.account_holder.is_some(), "paypal");
                match self.email.as_deref() {
                    None => {
                        problem("/email", "paypal needs the PayPal account's email".into());
                        None
                    }
                    Some(raw) => Email::parse(raw)
                        .map_err(|e| problem("/email", e.to_string()))
                        .ok()
                        .map(|email| PayoutDetails::Paypal { email }),
                }
            }
            None => {
                let all = PayoutMethod::ALL.map(PayoutMethod::as_str).join(", ");
                problem("/method", format!("`{}` is not a payout method; methods are {all}", self.method));
                None
            }
        };
        match details {
            Some(d) if problems.is_empty() => Ok(d),
            _ => Err(invalid(problems)),
        }
    }
}

/// Set where a participant is paid (replacing what they had).
#[utoipa::path(put, path = "/api/v1/participants/{id}/payout-details", tag = "payouts",
    params(("id" = String, Path)), request_body = PayoutDetailsInput,
    responses((status = 200, body = PayoutDetailsBody), (status = 404, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn put_payout_details(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<PayoutDetailsInput>,
) -> Result<Json<PayoutDetailsBody>, ApiError> {
    caller.require(Area::Payouts, true)?;
    let not_found = || ApiError::not_found(&format!("the participant `{raw}`"));
    let id = ParticipantId::parse(&raw).ok_or_else(not_found)?;
    let details = body.parse()?;
    state.store.set_payout_details(id, &details, state.clock.now()).await.map_err(|e| match e {
        StoreError::NotFound => not_found(),
        e => e.into(),
    })?;
    Ok(Json(PayoutDetailsBody::new(&details)))
}

// ---- payout batches -------------------------------------------------------

/// Create a batch from chosen rewards (`reward_ids`), or from every approved
/// cash reward of payees paid by `method` in `currency`, leaving out payees
/// owed less than `min_amount`. Each item also settles its payee's unsettled
/// re-pricing and clawback entries in the batch's currency and pays the net.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayoutBody {
    reward_ids: Option<Vec<String>>,
    /// bank_transfer or paypal
    method: Option<String>,
    currency: Option<String>,
    min_amount: Option<AmountBody>,
}

/// One participant's item of a batch.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PayoutItemBody {
    id: String,
    participant_id: String,
    payee: String,
    /// Masked; the CSV export has it in full.
    destination: String,
    account_holder: Option<String>,
    /// What the payee is paid: their rewards plus the adjustment entries, net.
    amount: AmountBody,
    /// open, paid or failed
    status: String,
    failure_reason: Option<String>,
    reward_ids: Vec<String>,
    /// Re-pricing and clawback entries of the payee's cash rewards settled by this item.
    adjustment_ids: Vec<String>,
    /// The sum of those entries (negative when they take back more than they add).
    adjustments: AmountBody,
}

/// A payout batch.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PayoutBody {
    id: String,
    method: &'static str,
    /// open or paid
    status: &'static str,
    /// The sum of the items not failed.
    total: AmountBody,
    external_reference: Option<String>,
    created_by: String,
    created_at: String,
    paid_by: Option<String>,
    paid_at: Option<String>,
    items: Vec<PayoutItemBody>,
}

impl PayoutBody {
    fn new(p: PayoutRecord) -> Self {
        let method = p.method;
        PayoutBody {
            id: p.id.to_string(),
            method: method.as_str(),
            status: p.status.as_str(),
            total: AmountBody::of(p.total),
            external_reference: p.external_reference,
            created_by: p.created_by,
            created_at: rfc3339(p.created_at),
            paid_by: p.paid_by,
            paid_at: p.paid_at.map(rfc3339),
            items: p
                .items
                .into_iter()
                .map(|i| PayoutItemBody {
                    id: i.id.to_string(),
                    participant_id: i.participant_id.to_string(),
                    destination: i.masked_destination(method),
                    payee: i.payee_name,
                    account_holder: i.account_holder,
                    amount: AmountBody::of(i.amount),
                    status: i.status,
                    failure_reason: i.failure_reason,
                    reward_ids: i.reward_ids.iter().map(Uuid::to_string).collect(),
                    adjustment_ids: i.adjustment_ids.iter().map(Uuid::to_string).collect(),
                    adjustments: AmountBody::of(i.adjustments),
                })
                .collect(),
        }
    }
}

impl CreatePayoutBody {
    fn parse(self) -> Result<PayoutSelection, ApiError> {
        let by_method = self.method.is_some() || self.currency.is_some() || self.min_amount.is_some();
        match (self.reward_ids, by_method) {
            (Some(_), true) => Err(ApiError::field(
                "invalid_field",
                "/reward_ids",
                "send either reward_ids, or method and currency, not both",
            )),
            (None, false) => Err(ApiError::field(
                "invalid_field",
                "/reward_ids",
                "send reward_ids, or method and currency (and min_amount if you like)",
            )),
            (Some(ids), false) => {
                if ids.is_empty() {
                    return Err(ApiError::field("invalid_field", "/reward_ids", "name at least one reward"));
                }
                let ids = ids
                    .iter()
                    .enumerate()
                    .map(|(i, raw)| {
                        Uuid::parse_str(raw).map_err(|_| {
                            ApiError::field("unknown_reward", &format!("/reward_ids/{i}"), format!("no reward `{raw}`"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(PayoutSelection::Rewards(ids))
            }
            (None, true) => {
                let mut problems = Vec::new();
                let mut problem = |p: &str, d: String| problems.push(FieldProblem { pointer: p.into(), detail: d });
                let method = match self.method.as_deref() {
                    None => {
                        problem("/method", "a batch by method names the method".into());
                        None
                    }
                    Some(m) => PayoutMethod::parse(m).or_else(|| {
                        let all = PayoutMethod::ALL.map(PayoutMethod::as_str).join(", ");
                        problem("/method", format!("`{m}` is not a payout method; methods are {all}"));
                        None
                    }),
                };
                let currency = match self.currency.as_deref() {
                    None => {
                        problem("/currency", "a batch by method names the currency".into());
                        None
                    }
                    Some(c) => Currency::parse(c).map_err(|e| problem("/currency", e)).ok(),
                };
                let min_amount = self.min_amount.map(|m| {
                    if currency.is_some_and(|c| c.code() != m.currency) {
                        problem("/min_amount/currency", "the minimum is in the batch's currency".into());
                    }
                    if m.amount_minor < 0 {
                        problem("/min_amount/amount_minor", "the minimum is not negative".into());
                    }
                    m.amount_minor
                });
                match (method, currency) {
                    (Some(method), Some(currency)) if problems.is_empty() => {
                        Ok(PayoutSelection::Method { method, currency, min_amount })
                    }
                    _ => Err(invalid(problems)),
                }
            }
        }
    }
}

fn create_error(e: CreatePayoutError, by_ids: bool) -> ApiError {
    let at = |index: usize| if by_ids { format!("/reward_ids/{index}") } else { String::new() };
    match e {
        CreatePayoutError::UnknownReward { index } => {
            ApiError::field("unknown_reward", &at(index), "no reward has this id")
        }
        CreatePayoutError::Duplicate { index } => {
            ApiError::field("duplicate_reward", &at(index), "this reward is listed twice")
        }
        CreatePayoutError::InOpenBatch { index, batch } => {
            let detail = if batch.is_nil() {
                "this reward was just put in another open payout batch".to_string()
            } else {
                format!("this reward is already in the open payout batch {batch}")
            };
            ApiError::conflict("reward_in_open_batch", &at(index), detail)
        }
        CreatePayoutError::AdjustmentInOpenBatch => ApiError::new(
            StatusCode::CONFLICT,
            "adjustment_in_open_batch",
            "an adjustment entry of these payees was just put in another open payout batch: nothing was made; try again",
        ),
        CreatePayoutError::Refused(r) => {
            let pointer = match (&r, r.index()) {
                (BatchRefusal::Empty, _) => {
                    if by_ids {
                        "/reward_ids".into()
                    } else {
                        String::new()
                    }
                }
                (_, Some(index)) => at(index),
                (_, None) => String::new(),
            };
            ApiError::field(r.code(), &pointer, r.to_string())
        }
        CreatePayoutError::Store(e) => e.into(),
    }
}

/// Create a payout batch of approved cash rewards: one item per participant.
#[utoipa::path(post, path = "/api/v1/payouts", tag = "payouts", request_body = CreatePayoutBody,
    responses((status = 201, body = PayoutBody), (status = 409, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn create_payout(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreatePayoutBody>,
) -> Result<(StatusCode, Json<PayoutBody>), ApiError> {
    caller.require(Area::Payouts, true)?;
    let selection = body.parse()?;
    let by_ids = matches!(selection, PayoutSelection::Rewards(_));
    let record = state
        .store
        .create_payout(&selection, &caller.actor(), state.clock.now())
        .await
        .map_err(|e| create_error(e, by_ids))?;
    tracing::info!(payout = %record.id, by = %caller.actor(), items = record.items.len(), "payout batch created");
    Ok((StatusCode::CREATED, Json(PayoutBody::new(record))))
}

fn payout_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(&format!("the payout `{raw}`")))
}

async fn load_payout(state: &AppState, raw: &str) -> Result<PayoutRecord, ApiError> {
    state.store.payout(payout_id(raw)?).await.map_err(ApiError::missing(format!("the payout `{raw}`")))
}

/// A payout batch with its items.
#[utoipa::path(get, path = "/api/v1/payouts/{id}", tag = "payouts", params(("id" = String, Path)),
    responses((status = 200, body = PayoutBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn get_payout(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
) -> Result<Json<PayoutBody>, ApiError> {
    caller.require(Area::Payouts, false)?;
    Ok(Json(PayoutBody::new(load_payout(&state, &raw).await?)))
}

/// The batch as CSV for the bank or PayPal: one row per item not failed, with
/// the destination in full and the net amount (rewards plus adjustment entries).
#[utoipa::path(get, path = "/api/v1/payouts/{id}/export", tag = "payouts", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/csv", body = String),
        (status = 404, body = crate::openapi::Problem)))]
pub async fn export_payout(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
) -> Result<Response, ApiError> {
    caller.require(Area::Payouts, false)?;
    let p = load_payout(&state, &raw).await?;
    let rows = p
        .items
        .iter()
        .filter(|i| i.status != "failed")
        .map(|i| {
            vec![
                i.id.to_string(),
                text_cell(&i.payee_name),
                text_cell(&i.payee_email),
                p.method.as_str().to_string(),
                i.destination.clone(),
                text_cell(i.account_holder.as_deref().unwrap_or_default()),
                i.amount.amount_minor.to_string(),
                decimal(i.amount),
                i.amount.currency.code().to_string(),
                i.reward_ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(" "),
                decimal(i.adjustments),
                i.adjustment_ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(" "),
            ]
        })
        .collect();
    csv_response(
        &format!("payout-{}.csv", p.id),
        &[
            "item_id",
            "payee",
            "email",
            "method",
            "destination",
            "account_holder",
            "amount_minor",
            "amount",
            "currency",
            "reward_ids",
            "adjustments",
            "adjustment_ids",
        ],
        rows,
    )
}

/// `{external_reference}`: the bank's or PayPal's reference of the transfer.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaidBody {
    external_reference: String,
}

fn action_error(e: PayoutActionError, raw: &str) -> ApiError {
    match e {
        PayoutActionError::NotFound => ApiError::not_found(&format!("the payout `{raw}`")),
        PayoutActionError::ItemNotFound => ApiError::not_found("the item in this payout"),
        PayoutActionError::RewardChanged(r) => ApiError::new(
            StatusCode::CONFLICT,
            "reward_not_approved",
            format!("the reward {r} in this batch is no longer approved: mark its item failed first"),
        ),
        PayoutActionError::Store(e) => e.into(),
    }
}

/// Mark a batch paid: its items and their rewards become paid. Marking it paid
/// again changes nothing and answers the batch as it is.
#[utoipa::path(post, path = "/api/v1/payouts/{id}/paid", tag = "payouts", params(("id" = String, Path)),
    request_body = PaidBody,
    responses((status = 200, body = PayoutBody), (status = 404, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn mark_paid(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<PaidBody>,
) -> Result<Json<PayoutBody>, ApiError> {
    caller.require(Area::Payouts, true)?;
    let id = payout_id(&raw)?;
    let reference = text(&body.external_reference, "/external_reference")?;
    let record = state
        .store
        .mark_payout_paid(id, &reference, &caller.actor(), state.clock.now())
        .await
        .map_err(|e| action_error(e, &raw))?;
    Ok(Json(PayoutBody::new(record)))
}

/// `{reason}`: why the transfer failed or came back.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailedBody {
    reason: String,
}

/// Mark one item failed or returned: its rewards leave the batch and are
/// approved again, and its adjustment entries are unsettled again, to be
/// batched anew.
#[utoipa::path(post, path = "/api/v1/payouts/{id}/items/{item_id}/failed", tag = "payouts",
    params(("id" = String, Path), ("item_id" = String, Path)), request_body = FailedBody,
    responses((status = 200, body = PayoutBody), (status = 404, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn fail_item(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<axum::extract::Path<(String, String)>, axum::extract::rejection::PathRejection>,
    ApiJson(body): ApiJson<FailedBody>,
) -> Result<Json<PayoutBody>, ApiError> {
    caller.require(Area::Payouts, true)?;
    // A segment that does not decode names nothing we have, as with `ApiPath`.
    let axum::extract::Path((raw, raw_item)) = path.map_err(|_| ApiError::not_found("the resource"))?;
    let id = payout_id(&raw)?;
    let item = Uuid::parse_str(&raw_item).map_err(|_| ApiError::not_found("the item in this payout"))?;
    let reason = text(&body.reason, "/reason")?;
    let record = state
        .store
        .fail_payout_item(id, item, &reason, &caller.actor(), state.clock.now())
        .await
        .map_err(|e| action_error(e, &raw))?;
    Ok(Json(PayoutBody::new(record)))
}

// ---- gift cards and billing ----------------------------------------------

/// An approved gift-card reward waiting for its card.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GiftCardDueBody {
    reward_id: String,
    referral_id: String,
    program: String,
    participant_id: Option<String>,
    payee: Option<String>,
    email: Option<String>,
    amount: AmountBody,
    created_at: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// json (the default) or csv
    format: Option<String>,
}

/// The gift-card fulfilment queue, oldest first: JSON, or CSV with `?format=csv`.
#[utoipa::path(get, path = "/api/v1/fulfilment/gift-cards", tag = "payouts", params(QueueQuery),
    responses((status = 200, body = super::Page<GiftCardDueBody>), (status = 422, body = crate::openapi::Problem)))]
pub async fn gift_card_queue(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> Result<Response, ApiError> {
    caller.require(Area::Payouts, false)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::field("invalid_query", "/format", format!("`{other}` is neither json nor csv")));
        }
    };
    let due = state.store.gift_card_queue().await?;
    if csv {
        let rows = due
            .iter()
            .map(|d| {
                vec![
                    d.reward_id.to_string(),
                    d.program.clone(),
                    text_cell(d.payee_name.as_deref().unwrap_or_default()),
                    text_cell(d.payee_email.as_deref().unwrap_or_default()),
                    d.amount.amount_minor.to_string(),
                    decimal(d.amount),
                    d.amount.currency.code().to_string(),
                    rfc3339(d.created_at),
                ]
            })
            .collect();
        return csv_response(
            "gift-cards.csv",
            &["reward_id", "program", "payee", "email", "amount_minor", "amount", "currency", "created_at"],
            rows,
        );
    }
    let items = due
        .into_iter()
        .map(|d| GiftCardDueBody {
            reward_id: d.reward_id.to_string(),
            referral_id: d.referral_id.to_string(),
            program: d.program,
            participant_id: d.participant_id.map(|p| p.to_string()),
            payee: d.payee_name,
            email: d.payee_email,
            amount: AmountBody::of(d.amount),
            created_at: rfc3339(d.created_at),
        })
        .collect();
    Ok(Json(super::Page { items, next_cursor: None }).into_response())
}

/// A reward after fulfilment.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FulfilledBody {
    id: String,
    kind: String,
    /// paid
    status: &'static str,
    amount: AmountBody,
    updated_at: String,
}

impl FulfilledBody {
    fn new(r: RewardRecord) -> Self {
        FulfilledBody {
            id: r.id.to_string(),
            kind: r.kind,
            status: r.status.as_str(),
            amount: AmountBody::of(r.amount),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

fn fulfil_error(e: FulfilError, raw: &str, wants: &str) -> ApiError {
    match e {
        FulfilError::NotFound => ApiError::not_found(&format!("the reward `{raw}`")),
        FulfilError::WrongKind(kind) => ApiError::new(
            StatusCode::CONFLICT,
            "wrong_reward_kind",
            format!("this is a {kind} reward; this action completes {wants} rewards"),
        ),
        FulfilError::NotApproved(status) => ApiError::new(
            StatusCode::CONFLICT,
            "reward_not_approved",
            format!("the reward is {status}: only approved rewards are fulfilled"),
        ),
        FulfilError::AlreadyFulfilled => ApiError::new(
            StatusCode::CONFLICT,
            "already_fulfilled",
            "the reward was already fulfilled with another reference",
        ),
        FulfilError::Store(e) => e.into(),
    }
}

/// `{card_reference}`: the delivered card's reference.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfilBody {
    card_reference: String,
}

/// Complete an approved gift-card reward with the card's reference: it is paid.
#[utoipa::path(post, path = "/api/v1/rewards/{id}/fulfil", tag = "payouts", params(("id" = String, Path)),
    request_body = FulfilBody,
    responses((status = 200, body = FulfilledBody), (status = 404, body = crate::openapi::Problem),
        (status = 409, body = crate::openapi::Problem), (status = 422, body = crate::openapi::Problem)))]
pub async fn fulfil_gift_card(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<FulfilBody>,
) -> Result<Json<FulfilledBody>, ApiError> {
    caller.require(Area::Payouts, true)?;
    let id = Uuid::parse_str(&raw).map_err(|_| ApiError::not_found(&format!("the reward `{raw}`")))?;
    let reference = text(&body.card_reference, "/card_reference")?;
    let r = state
        .store
        .fulfil_gift_card(id, &reference, &caller.actor(), state.clock.now())
        .await
        .map_err(|e| fulfil_error(e, &raw, "gift_card"))?;
    Ok(Json(FulfilledBody::new(r)))
}

/// `{reference?}`: billing's reference of the credit or upgrade applied.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppliedBody {
    reference: Option<String>,
}

/// Mark an approved credit or plan upgrade applied by billing: it is paid.
#[utoipa::path(post, path = "/api/v1/rewards/{id}/applied", tag = "payouts", params(("id" = String, Path)),
    request_body = AppliedBody,
    responses((status = 200, body = FulfilledBody), (status = 404, body = crate::openapi::Problem),
        (status = 409, body = crate::openapi::Problem), (status = 422, body = crate::openapi::Problem)))]
pub async fn mark_applied(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    ApiJson(body): ApiJson<AppliedBody>,
) -> Result<Json<FulfilledBody>, ApiError> {
    caller.require(Area::Payouts, true)?;
    let id = Uuid::parse_str(&raw).map_err(|_| ApiError::not_found(&format!("the reward `{raw}`")))?;
    let reference = body.reference.as_deref().map(|r| text(r, "/reference")).transpose()?;
    let r = state
        .store
        .mark_applied(id, reference.as_deref(), &caller.actor(), state.clock.now())
        .await
        .map_err(|e| fulfil_error(e, &raw, "credit and plan_upgrade"))?;
    Ok(Json(FulfilledBody::new(r)))
}

// ---- tax report -----------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PayeesQuery {
    /// The calendar year, by the UTC date each reward was paid.
    year: Option<i32>,
}

/// Each payee's paid totals in a year, per currency, as CSV.
#[utoipa::path(get, path = "/api/v1/reports/payees", tag = "payouts", params(PayeesQuery),
    responses((status = 200, content_type = "text/csv", body = String),
        (status = 422, body = crate::openapi::Problem)))]
pub async fn payee_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PayeesQuery>,
) -> Result<Response, ApiError> {
    caller.require(Area::Payouts, false)?;
    let year = q
        .year
        .and_then(|y| i16::try_from(y).ok())
        .filter(|y| (2000..=9998).contains(y))
        .ok_or_else(|| ApiError::field("invalid_query", "/year", "a year from 2000 to 9998, such as year=2026"))?;
    let totals = state.store.payee_totals(year).await?;
    let rows = totals
        .into_iter()
        .map(|t| {
            vec![
                t.participant_id.to_string(),
                text_cell(&t.name),
                text_cell(&t.email),
                t.paid.currency.code().to_string(),
                t.paid.amount_minor.to_string(),
                decimal(t.paid),
                t.rewards.to_string(),
                t.adjustments.to_string(),
            ]
        })
        .collect();
    csv_response(
        &format!("payees-{year}.csv"),
        &["participant_id", "name", "email", "currency", "paid_minor", "paid", "rewards", "adjustments"],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_look_like_formulas_are_defused() {
        assert_eq!(text_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(text_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(text_cell("Ada Lovelace"), "Ada Lovelace");
    }

    #[test]
    fn decimals_follow_the_currency() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(decimal(Money::new(123_456, usd)), "1234.56");
        assert_eq!(decimal(Money::new(-5, usd)), "-0.05");
        assert_eq!(decimal(Money::new(1_234, Currency::parse("JPY").unwrap())), "1234");
    }
}
