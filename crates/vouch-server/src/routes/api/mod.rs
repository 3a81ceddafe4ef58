pub mod codes;
pub mod customers;
pub mod events;
pub mod invites;
pub mod participants;
pub mod payouts;
pub mod programs;
pub mod referrals;
pub mod reports;
pub mod rewards;

use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Serialize;

use crate::error::ApiError;

/// One segment of an API path, percent-decoded. A segment that does not decode
/// to UTF-8 (`%FF`) names nothing we have: 404 as a problem document, like any
/// other unknown id, instead of axum's plain-text 400.
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(ApiPath(segment)),
            Err(_) => Err(ApiError::not_found("the resource")),
        }
    }
}

/// Query parameters whose every failure is a problem document (`invalid_query`),
/// instead of axum's plain-text 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(e) => Err(ApiError::field("invalid_query", "", e.body_text())),
        }
    }
}

pub async fn unknown_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_route", "no API route has this path and method")
}

/// The list envelope of every collection.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.to_string()
}
