use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;

pub(crate) mod api;
mod health;
mod redirect;

/// The API accepts bodies up to this size; bulk loads page through it.
pub const BODY_LIMIT: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/programs", get(api::programs::list_programs))
        .route("/programs/{slug}", get(api::programs::get_program))
        .route("/programs/{slug}/participants", post(api::participants::enroll_participant))
        .route(
            "/participants/{id}",
            get(api::participants::get_participant).patch(api::participants::patch_participant),
        )
        .route("/participants/{id}/suspend", post(api::participants::suspend_participant))
        .route("/codes/{code}/clicks", get(api::codes::list_clicks))
        .route("/codes/{code}/revoke", post(api::codes::revoke_code))
        .route("/customers", post(api::customers::add_customers))
        .route("/events", post(api::events::post_event))
        .route("/programs/{slug}/leads", post(api::referrals::submit_lead))
        .route("/programs/{slug}/invites", post(api::invites::send_invite))
        .route("/referrals", get(api::referrals::list_referrals).post(api::referrals::create_referral))
        .route("/referrals/{id}", get(api::referrals::get_referral).patch(api::referrals::patch_referral))
        .route("/referrals/{id}/stage", post(api::referrals::move_stage))
        .route("/referrals/{id}/override", post(api::referrals::override_referral))
        .route("/referrals/{id}/review", post(api::referrals::review_referral))
        .route("/rewards", get(api::rewards::list_rewards))
        .route("/rewards/{id}", get(api::rewards::get_reward))
        .route("/rewards/{id}/approve", post(api::rewards::approve_reward))
        .route("/rewards/{id}/void", post(api::rewards::void_reward))
        .route("/rewards/{id}/fulfil", post(api::payouts::fulfil_gift_card))
        .route("/rewards/{id}/applied", post(api::payouts::mark_applied))
        .route("/participants/{id}/payout-details", axum::routing::put(api::payouts::put_payout_details))
        .route("/payouts", post(api::payouts::create_payout))
        .route("/payouts/{id}", get(api::payouts::get_payout))
        .route("/payouts/{id}/export", get(api::payouts::export_payout))
        .route("/payouts/{id}/paid", post(api::payouts::mark_paid))
        .route("/payouts/{id}/items/{item_id}/failed", post(api::payouts::fail_item))
        .route("/fulfilment/gift-cards", get(api::payouts::gift_card_queue))
        .route("/reports/payees", get(api::payouts::payee_report))
        .route("/reports/liability", get(api::reports::liability_report))
        .route("/programs/{slug}/simulate", post(api::reports::simulate_program))
        .fallback(api::unknown_route)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::idempotency::layer))
        // The redirect has its own, much shorter deadline (the click deadline),
        // and logs only what went wrong: a span per visit costs the hot path.
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(TraceLayer::new_for_http());
    Router::new()
        .route("/r/{code}", get(redirect::follow_link))
        .route("/r/", get(redirect::malformed_link))
        .route("/r/{code}/", get(redirect::malformed_link))
        .route("/r/{code}/{*rest}", get(redirect::malformed_link))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/openapi.json", get(crate::openapi::get_openapi))
        .route("/dev/mailbox", get(crate::mail::page::show_mailbox))
        .route(
            "/unsubscribe/{token}",
            get(crate::unsubscribe::show_unsubscribe).post(crate::unsubscribe::confirm_unsubscribe),
        )
        .route("/dev/mailbox/{file}", get(crate::mail::page::show_message))
        .nest("/api/v1", api)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::new())
        .with_state(state)
}
