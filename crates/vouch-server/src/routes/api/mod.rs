pub mod codes;
pub mod participants;
pub mod programs;

use axum::http::StatusCode;
use serde::Serialize;

use crate::error::ApiError;

pub async fn unknown_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_route", "no API route has this path and method")
}

/// The list envelope of every collection.
#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.to_string()
}
