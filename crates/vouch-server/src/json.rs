//! JSON request bodies whose every failure is a problem document naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Like `axum::Json`, but a body of the wrong shape answers 422 with a pointer
/// to the field (`/prospect/email`), and an oversized one 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than the limit",
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", rejection.body_text())
            }
        })?;
        // Every body of this API is an object; serde would otherwise take a JSON
        // array as a struct by position.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'[') {
            return Err(ApiError::field("invalid_field", "", "the body must be a JSON object, not an array"));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut *de) {
            // Anything after the value (`{...} junk`) makes the body malformed.
            Ok(value) => match de.end() {
                Ok(()) => Ok(ApiJson(value)),
                Err(e) => Err(ApiError::field("malformed_json", "", e.to_string())),
            },
            Err(err) => {
                let mut pointer = to_pointer(&err.path().to_string());
                let inner = err.into_inner();
                let code = if inner.is_syntax() || inner.is_eof() { "malformed_json" } else { "invalid_field" };
                // serde names a missing field only in its message: point at the field.
                let message = inner.to_string();
                if let Some(field) = message.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
                    pointer = format!("{pointer}/{field}");
                }
                Err(ApiError::field(code, &pointer, message))
            }
        }
    }
}

/// `prospect.email` / `items[2].email` → `/prospect/email` / `/items/2/email`.
fn to_pointer(path: &str) -> String {
    if path == "." || path.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push('/');
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                out.push('/');
                out.push_str(&rest[1..end]);
                rest = &rest[end + 1..];
            }
        } else {
            out.push('/');
            out.push_str(rest);
        }
    }
    out.replace("//", "/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_become_json_pointers() {
        assert_eq!(super::to_pointer("email"), "/email");
        assert_eq!(super::to_pointer("prospect.email"), "/prospect/email");
        assert_eq!(super::to_pointer("items[2].email"), "/items/2/email");
        assert_eq!(super::to_pointer("."), "");
    }
}
