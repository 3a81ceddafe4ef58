//! The one place errors become HTTP: RFC 9457 problem documents with a stable
//! `code` and, for bad input, a JSON pointer to each field at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vouch_store::StoreError;

/// One field at fault: a JSON pointer into the request (`/prospect/email`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldProblem {
    pub pointer: String,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldProblem>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldProblem],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), errors: Vec::new() }
    }

    /// Bad input in one field: 422 with a pointer such as `/email`.
    pub fn field(code: &'static str, pointer: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            errors: vec![FieldProblem { pointer: pointer.to_string(), detail: detail.clone() }],
            detail,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} was not found"))
    }

    /// For `map_err` on a store call about one thing: its absence is a 404
    /// naming `what` ("the reward `…`"); any other error maps as usual.
    pub fn missing(what: String) -> impl FnOnce(StoreError) -> ApiError {
        move |e| match e {
            StoreError::NotFound => ApiError::not_found(&what),
            e => e.into(),
        }
    }

    pub fn conflict(code: &'static str, pointer: &str, detail: impl Into<String>) -> Self {
        Self { status: StatusCode::CONFLICT, ..Self::field(code, pointer, detail) }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        let request = uuid::Uuid::now_v7();
        tracing::error!(request_id = %request, error = %err, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("something went wrong on our side; quote request {request} when reporting it"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("the resource"),
            StoreError::Conflict { constraint } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", format!("this would duplicate {constraint}"))
            }
            ref e if e.is_unavailable() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is not answering; try again",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = Problem {
            kind: format!("urn:vouch:problem:{}", self.code),
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        res
    }
}
