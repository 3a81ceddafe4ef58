//! Unsubscribe links: `{public_url}/unsubscribe/{token}` in every invite. The
//! token is the normalised address (hex) and an HMAC of it under a key kept in
//! the `settings` table, so a link names one address and cannot be forged for
//! another. `GET` shows a confirmation page with a form; `POST` puts the address
//! on the suppression list (idempotent), which every later invite honours.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use hmac::{KeyInit, Mac};
use vouch_domain::Email;

use crate::AppState;

/// Bytes of the HMAC kept in a token (128 bits).
const MAC_BYTES: usize = 16;

fn mac(key: &[u8], email_norm: &str) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"unsubscribe\0");
    mac.update(email_norm.as_bytes());
    mac.finalize().into_bytes()[..MAC_BYTES].to_vec()
}

/// The token for an address.
pub fn token(key: &[u8], email: &Email) -> String {
    let norm = email.normalized();
    format!("{}.{}", hex::encode(norm.as_bytes()), hex::encode(mac(key, &norm)))
}

/// The address a token names, when its HMAC is right.
pub fn verify(key: &[u8], token: &str) -> Option<Email> {
    let (address, tag) = token.split_once('.')?;
    let norm = String::from_utf8(hex::decode(address).ok()?).ok()?;
    let tag = hex::decode(tag).ok()?;
    let mut check = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    check.update(b"unsubscribe\0");
    check.update(norm.as_bytes());
    // Constant-time comparison of the truncated tag.
    check.verify_truncated_left(&tag).ok()?;
    (tag.len() == MAC_BYTES).then_some(())?;
    Email::parse(&norm).ok()
}

impl AppState {
    /// The unsubscribe token for an address (for invites).
    pub fn unsubscribe_token(&self, email: &Email) -> String {
        token(&self.unsubscribe_key, email)
    }
}

#[derive(Template)]
#[template(path = "unsubscribe.html")]
struct Page<'a> {
    /// `confirm`, `done` or `invalid`.
    state: &'a str,
    email: &'a str,
    action: &'a str,
}

fn page(status: StatusCode, state: &str, email: &str, action: &str) -> Response {
    match (Page { state, email, action }).render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the unsubscribe page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the page\n").into_response()
        }
    }
}

/// `GET /unsubscribe/{token}`: asks for confirmation (a link prefetched by a
/// mail scanner must not unsubscribe anyone).
pub async fn show_unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match verify(&state.unsubscribe_key, &token) {
        Some(email) => page(StatusCode::OK, "confirm", email.as_str(), &format!("/unsubscribe/{token}")),
        None => page(StatusCode::NOT_FOUND, "invalid", "", ""),
    }
}

/// `POST /unsubscribe/{token}`: suppresses the address (again is fine).
pub async fn confirm_unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(email) = verify(&state.unsubscribe_key, &token) else {
        return page(StatusCode::NOT_FOUND, "invalid", "", "");
    };
    match state.store.suppress_email(&email, "unsubscribed", state.clock.now()).await {
        Ok(()) => {
            tracing::info!("an address unsubscribed from invites");
            page(StatusCode::OK, "done", email.as_str(), "")
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record an unsubscribe");
            (StatusCode::SERVICE_UNAVAILABLE, "please try again in a moment\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_address_and_cannot_be_forged() {
        let key = b"0123456789abcdef";
        let ada = Email::parse("Ada@Example.com").unwrap();
        let t = token(key, &ada);
        assert_eq!(verify(key, &t).map(|e| e.normalized()), Some(ada.normalized()));
        assert_eq!(verify(b"another key", &t), None);
        let bob = Email::parse("bob@example.com").unwrap();
        let forged = format!("{}.{}", hex::encode(bob.normalized()), t.split_once('.').unwrap().1);
        assert_eq!(verify(key, &forged), None);
        assert_eq!(verify(key, "nonsense"), None);
        assert_eq!(verify(key, &t[..t.len() - 2]), None, "a shortened tag is refused");
    }
}
