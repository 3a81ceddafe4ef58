//! `GET /r/{code}`: the link every referrer shares. The visitor always lands on
//! the program's landing page (taken only from the program, never from the
//! request); a click id goes along only once the click is committed.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use hmac::{KeyInit, Mac};
use vouch_domain::click::{ClickRef, Utm, derive_channel, is_bot};
use vouch_domain::{ClickId, ReferralCode};
use vouch_store::NewClick;

use crate::AppState;
use crate::code_cache::Target;

pub async fn follow_link(
    State(state): State<AppState>,
    raw: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    // A path that does not even decode (`%FF`) is a malformed code like any other.
    let Ok(code) = raw.map_err(|_| ()).and_then(|Path(raw)| ReferralCode::parse(&raw).map_err(|_| ())) else {
        return not_found();
    };
    let target = match state.codes.lookup(&code).await {
        Ok(Some(target)) => target,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "code lookup failed");
            return unavailable();
        }
    };
    let Target::Known { landing_url, attributes } = &*target else {
        return not_found();
    };
    if !attributes {
        // Revoked code or suspended referrer: the visitor still reaches the
        // company, but no attribution and no click.
        return found(landing_url.as_str());
    }

    let header_str = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let user_agent = header_str(header::USER_AGENT);
    let referer = header_str(header::REFERER);
    let utm = utm_from(query.as_deref());
    let referer_host =
        referer.as_deref().and_then(|r| url::Url::parse(r).ok()).and_then(|u| u.host_str().map(str::to_owned));
    let bot = user_agent.as_deref().is_some_and(is_bot);
    let now = state.clock.now();
    let click = NewClick {
        id: new_click_id(now),
        code: code.clone(),
        occurred_at: now,
        ip_hash: Some(state.hash_ip(peer.ip())),
        channel: derive_channel(referer_host.as_deref(), &utm),
        user_agent,
        referer,
        utm,
        is_bot: bot,
    };
    let click_ref = ClickRef { code: code.clone(), id: click.id };

    let mut to = landing_url.clone();
    to.query_pairs_mut().append_pair("ref", code.as_str());
    if bot {
        // Link-preview fetchers are logged but never attributed.
        let _ = state.clicks.submit_unacknowledged(click);
        return found(to.as_str());
    }
    let outcome = match state.clicks.submit(click) {
        Ok(done) => match tokio::time::timeout(state.config.click_deadline, done).await {
            Ok(Ok(true)) => Ok(()),
            Ok(_) => Err("commit failed"),
            Err(_) => Err("deadline passed"),
        },
        Err(why) => Err(match why {
            crate::click_writer::NotRecorded::QueueFull => "writer queue full",
            _ => "writer stopped",
        }),
    };
    match outcome {
        Ok(()) => {
            to.query_pairs_mut().append_pair("vclid", &click_ref.to_string());
        }
        Err(reason) => {
            metrics::counter!("vouch_clicks_unrecorded_total", "reason" => reason).increment(1);
            tracing::warn!(code = %code, reason, "click not recorded; redirecting without a click id");
        }
    }
    found(to.as_str())
}

/// A UUIDv7 from the request's time and the thread's CSPRNG (no system call per
/// click, unlike the uuid crate's own generator).
fn new_click_id(now: jiff::Timestamp) -> ClickId {
    let millis = u64::try_from(now.as_millisecond()).unwrap_or(0);
    ClickId(uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid())
}

fn found(location: &str) -> Response {
    // 302, as integrators expect from a tracking link (Redirect::to is 303).
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned()), (header::CACHE_CONTROL, "no-store".to_owned())])
        .into_response()
}

fn utm_from(query: Option<&str>) -> Utm {
    let mut utm = Utm::default();
    let Some(query) = query else { return utm };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        // Bounded: these end up in the click table.
        let v = Some(v.chars().take(200).collect::<String>());
        match &*k {
            "utm_source" => utm.source = v,
            "utm_medium" => utm.medium = v,
            "utm_campaign" => utm.campaign = v,
            "utm_term" => utm.term = v,
            "utm_content" => utm.content = v,
            _ => {}
        }
    }
    utm
}

const NOT_FOUND_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Link not found</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:15vh auto;padding:0 1rem;color:#222}h1{font-size:1.5rem}</style>
</head><body>
<h1>This referral link doesn't work</h1>
<p>The link may have been mistyped or shortened along the way. Check it with the person who shared it, or ask them to send it again.</p>
</body></html>
"#;

/// `/r/` and `/r/{code}/...`: no code of ours, so the same friendly page.
pub async fn malformed_link() -> Response {
    not_found()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Html(NOT_FOUND_PAGE)).into_response()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Html("<!doctype html><title>Try again</title><p>We could not open this link just now. Please try again in a moment.</p>"))
        .into_response()
}

impl AppState {
    /// Keyed hash of a visitor's address: comparable between clicks, never reversible
    /// to the address without the key.
    pub(crate) fn hash_ip(&self, ip: std::net::IpAddr) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.ip_hash_key).expect("HMAC takes any key length");
        mac.update(ip.to_string().as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}
