//! The OpenAPI 3.1 document of the API, generated from the handlers' annotations
//! and served at `GET /api/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::api;

/// An RFC 9457 problem document, as every error of the API is.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the shape `error.rs` writes
pub struct Problem {
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable, for programs to match on (`invalid_field`, `code_taken`, ...).
    code: String,
    errors: Option<Vec<crate::error::FieldProblem>>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Vouch API", description = "Referral programs: programs, participants, links and clicks."),
    paths(
        api::programs::list_programs,
        api::programs::get_program,
        api::participants::enroll_participant,
        api::participants::get_participant,
        api::participants::patch_participant,
        api::participants::suspend_participant,
        api::codes::list_clicks,
        api::codes::revoke_code,
        api::referrals::submit_lead,
        api::invites::send_invite,
        api::referrals::create_referral,
        api::referrals::list_referrals,
        api::referrals::get_referral,
        api::referrals::move_stage,
        api::referrals::patch_referral,
        api::referrals::override_referral,
        api::referrals::review_referral,
        api::rewards::list_rewards,
        api::rewards::get_reward,
        api::rewards::approve_reward,
        api::rewards::void_reward,
        api::payouts::put_payout_details,
        api::payouts::create_payout,
        api::payouts::get_payout,
        api::payouts::export_payout,
        api::payouts::mark_paid,
        api::payouts::fail_item,
        api::payouts::gift_card_queue,
        api::payouts::fulfil_gift_card,
        api::payouts::mark_applied,
        api::payouts::payee_report,
        api::reports::liability_report,
        api::reports::simulate_program,
        api::customers::add_customers,
        api::events::post_event,
    ),
    modifiers(&BearerKey),
    security(("api_key" = []))
)]
struct ApiDoc;

/// `Authorization: Bearer KEY` with a key from `vouch api-key create`.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        // Cargo has no license field for this workspace: say nothing rather than "".
        doc.info.license = None;
        let components = doc.components.get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn get_openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
