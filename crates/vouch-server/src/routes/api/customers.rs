use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vouch_domain::api_key::Area;
use vouch_domain::customer::{CustomerEntry, CustomerId, CustomerSource};
use vouch_store::NewCustomer;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldProblem};
use crate::json::ApiJson;

/// Items per call: a larger registry is loaded in several calls.
pub const MAX_ITEMS: usize = 1000;

/// Problems listed in one answer at most; the detail counts them all.
const MAX_PROBLEMS: usize = 100;

/// Entries for the customer registry: people and companies who already are
/// customers or have signed up.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomersBody {
    /// Up to 1,000 entries.
    items: Vec<CustomerItem>,
}

/// One entry: at least one of its fields, the others absent, null or empty.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerItem {
    email: Option<String>,
    /// The company's domain (`example.com`).
    domain: Option<String>,
    /// The company's own id for the customer.
    external_id: Option<String>,
}

/// What the load did: `added + already_known` is the number of items.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CustomersAdded {
    /// Items that brought an email, domain or external id the registry did not know.
    added: u64,
    /// Items whose every identifier was known already (loading again is harmless).
    already_known: u64,
}

impl CustomersBody {
    /// Checks every item and reports all that are wrong at once.
    fn parse(self) -> Result<Vec<CustomerEntry>, ApiError> {
        if self.items.len() > MAX_ITEMS {
            return Err(ApiError::field(
                "too_many_items",
                "/items",
                format!("at most {MAX_ITEMS} items per call, not {}: send the rest in further calls", self.items.len()),
            ));
        }
        let mut entries = Vec::with_capacity(self.items.len());
        let mut problems = Vec::new();
        for (i, item) in self.items.into_iter().enumerate() {
            match CustomerEntry::parse(item.email.as_deref(), item.domain.as_deref(), item.external_id.as_deref()) {
                Ok(entry) => entries.push(entry),
                Err(errs) => problems.extend(errs.into_iter().map(|p| FieldProblem {
                    pointer: match p.field {
                        Some(field) => format!("/items/{i}/{}", field.as_str()),
                        None => format!("/items/{i}"),
                    },
                    detail: p.detail,
                })),
            }
        }
        if problems.is_empty() {
            return Ok(entries);
        }
        let total = problems.len();
        problems.truncate(MAX_PROBLEMS);
        let mut detail = problems.iter().take(5).map(|p| format!("{}: {}", p.pointer, p.detail)).collect::<Vec<_>>();
        if total > detail.len() {
            detail.push(format!("{total} problems in all"));
        }
        let detail = format!("{}; nothing was stored", detail.join("; "));
        Err(ApiError { errors: problems, ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail) })
    }
}

/// Load entries into the customer registry, all or nothing; entries already known are skipped.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", request_body = CustomersBody,
    responses((status = 200, body = CustomersAdded), (status = 422, body = crate::openapi::Problem)))]
pub async fn add_customers(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CustomersBody>,
) -> Result<Json<CustomersAdded>, ApiError> {
    caller.require(Area::Customers, true)?;
    let customers: Vec<NewCustomer> = body
        .parse()?
        .into_iter()
        .map(|entry| NewCustomer { id: CustomerId(uuid::Uuid::now_v7()), entry, source: CustomerSource::Api })
        .collect();
    let done = state.store.add_customers(&customers, state.clock.now()).await?;
    tracing::info!(added = done.added, already_known = done.already_known, by = %caller.actor(), "customers loaded");
    Ok(Json(CustomersAdded { added: done.added, already_known: done.already_known }))
}
