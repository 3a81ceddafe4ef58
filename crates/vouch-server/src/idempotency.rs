//! `Idempotency-Key` on API writes: the same key with the same request answers
//! what the first one answered, without a second effect; the same key with
//! another request is refused. Keys are scoped to the API key that sent them.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use vouch_store::IdempotencyClaim;

use crate::AppState;
use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
/// How long a repeat waits for the first request with its key to finish.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(10);

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PATCH | Method::PUT | Method::DELETE) {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get(HEADER) else { return next.run(req).await };
    let key = match raw.to_str().ok().map(str::trim).filter(|k| (1..=255).contains(&k.len())) {
        Some(k) if k.bytes().all(|b| b.is_ascii_graphic()) => k.to_owned(),
        _ => {
            return ApiError::field(
                "invalid_idempotency_key",
                "",
                "the Idempotency-Key header is 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    // Only a valid API key scopes a record; anything else is the handler's 401.
    let bearer =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let record = match bearer {
        Some(k) => match state.store.api_key_by_hash(&crate::api_keys::hash(k.trim())).await {
            Ok(Some(record)) => record,
            Ok(None) => return next.run(req).await,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => return next.run(req).await,
    };

    let api_key = record.id;
    let (mut parts, body) = req.into_parts();
    // The handler's `Caller` takes the key from here instead of looking it up again.
    parts.extensions.insert(crate::auth::Checked(record));
    let Ok(bytes) = to_bytes(body, crate::routes::BODY_LIMIT).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is larger than the limit",
        )
        .into_response();
    };
    let request_hash = {
        let mut h = Sha256::new();
        h.update(parts.method.as_str().as_bytes());
        h.update(b" ");
        h.update(parts.uri.path().as_bytes());
        h.update(b"\n");
        h.update(&bytes);
        hex::encode(h.finalize())
    };

    let started = tokio::time::Instant::now();
    loop {
        let claim = state.store.claim_idempotency_key(api_key, &key, &request_hash, state.clock.now()).await;
        match claim {
            Err(e) => return ApiError::from(e).into_response(),
            Ok(IdempotencyClaim::Mismatch) => {
                return ApiError::field(
                    "idempotency_key_reused",
                    "",
                    "this Idempotency-Key was already used for a different request",
                )
                .into_response();
            }
            Ok(IdempotencyClaim::Replay { status, body }) => return replay(status, body),
            Ok(IdempotencyClaim::InFlight) if started.elapsed() < WAIT_FOR_FIRST => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(IdempotencyClaim::InFlight) => {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is still being handled; retry shortly",
                )
                .into_response();
            }
            Ok(IdempotencyClaim::New) => break,
        }
    }

    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = res.status();
    if status.is_server_error() {
        // Our failure: let a retry with the same key run again.
        if let Err(e) = state.store.release_idempotency_key(api_key, &key).await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
        return res;
    }
    let (res_parts, res_body) = res.into_parts();
    let Ok(body) = to_bytes(res_body, usize::MAX).await else {
        return ApiError::internal("could not read the response to record it").into_response();
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    if let Err(e) = state.store.complete_idempotency_key(api_key, &key, status.as_u16(), &text).await {
        tracing::warn!(error = %e, "could not record an idempotent answer");
    }
    Response::from_parts(res_parts, Body::from(body))
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() { "application/json" } else { "application/problem+json" };
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}
