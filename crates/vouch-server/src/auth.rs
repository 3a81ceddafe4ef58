//! `Authorization: Bearer KEY` on every `/api/v1` route.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use vouch_domain::api_key::{Area, Scope};
use vouch_store::ApiKeyRecord;

use crate::AppState;
use crate::error::ApiError;

/// The caller's key, checked against the database.
pub struct Caller(pub ApiKeyRecord);

/// A key a layer before the handler has already checked (the Idempotency-Key
/// layer looks it up to scope its records).
#[derive(Clone)]
pub(crate) struct Checked(pub ApiKeyRecord);

impl Caller {
    pub fn require(&self, area: Area, write: bool) -> Result<(), ApiError> {
        let needed = Scope { area, write };
        if self.0.scopes.iter().any(|s| s.grants(needed)) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this API key lacks the scope {needed}"),
            ))
        }
    }

    pub fn actor(&self) -> String {
        format!("api-key:{}", self.0.name)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(Checked(record)) = parts.extensions.remove::<Checked>() {
            return Ok(Caller(record));
        }
        let unauthorized = |code, detail: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, detail);
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized("missing_api_key", "send an API key as `Authorization: Bearer KEY`"));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized("missing_api_key", "the Authorization header must be `Bearer KEY`"))?;
        match state.store.api_key_by_hash(&crate::api_keys::hash(key)).await? {
            Some(record) => Ok(Caller(record)),
            None => Err(unauthorized("invalid_api_key", "this API key is not valid (unknown or revoked)")),
        }
    }
}
