use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use vouch_domain::api_key::Area;
use vouch_domain::click::ClickRef;
use vouch_domain::{ClickId, ReferralCode};

use super::ApiPath;
use super::participants::CodeBody;
use super::rfc3339;
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClicksQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    #[serde(default)]
    include_bots: bool,
}

/// A code's clicks, newest first, and its counts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClicksBody {
    code: String,
    /// Clicks by people; bot visits are counted apart and never attributed.
    count: i64,
    bot_visits: i64,
    last_click_at: Option<String>,
    items: Vec<ClickBody>,
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ClickBody {
    click_id: String,
    occurred_at: String,
    channel: &'static str,
    is_bot: bool,
    ip_hash: Option<String>,
    user_agent: Option<String>,
    referer: Option<String>,
    /// utm_source, utm_medium, utm_campaign, utm_term, utm_content of the visited link
    #[schema(value_type = Object)]
    utm: vouch_domain::click::Utm,
}

fn known_code(raw: &str) -> Result<ReferralCode, ApiError> {
    ReferralCode::parse(raw).map_err(|_| ApiError::not_found(&format!("the code `{raw}`")))
}

/// Clicks of a code and their count.
#[utoipa::path(get, path = "/api/v1/codes/{code}/clicks", tag = "codes", params(("code" = String, Path), ClicksQuery),
    responses((status = 200, body = ClicksBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn list_clicks(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
    super::ApiQuery(query): super::ApiQuery<ClicksQuery>,
) -> Result<Json<ClicksBody>, ApiError> {
    caller.require(Area::Codes, false)?;
    let code = known_code(&raw)?;
    state.store.code(&code).await.map_err(ApiError::missing(format!("the code `{raw}`")))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("invalid_query", "/limit", "limit is between 1 and 1000"));
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            ClickId::parse(c)
                .ok_or_else(|| ApiError::field("invalid_query", "/cursor", "not a cursor from a previous page"))?,
        ),
    };
    let stats = state.store.click_stats(&code).await?;
    let clicks = state.store.clicks(&code, before, limit, query.include_bots).await?;
    let next_cursor = (clicks.len() == limit as usize).then(|| clicks.last().map(|c| c.id.to_string())).flatten();
    let items = clicks
        .into_iter()
        .map(|c| ClickBody {
            click_id: ClickRef { code: c.code.clone(), id: c.id }.to_string(),
            occurred_at: rfc3339(c.occurred_at),
            channel: c.channel.as_str(),
            is_bot: c.is_bot,
            ip_hash: c.ip_hash,
            user_agent: c.user_agent,
            referer: c.referer,
            utm: c.utm,
        })
        .collect();
    Ok(Json(ClicksBody {
        code: code.to_string(),
        count: stats.clicks,
        bot_visits: stats.bot_visits,
        last_click_at: stats.last_click_at.map(rfc3339),
        items,
        next_cursor,
    }))
}

/// Revoke a code: its link lands without attribution.
#[utoipa::path(post, path = "/api/v1/codes/{code}/revoke", tag = "codes", params(("code" = String, Path)),
    responses((status = 200, body = super::participants::CodeBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn revoke_code(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath,
) -> Result<Json<CodeBody>, ApiError> {
    caller.require(Area::Codes, true)?;
    let code = known_code(&raw)?;
    let record = state
        .store
        .revoke_code(&code, state.clock.now())
        .await
        .map_err(ApiError::missing(format!("the code `{raw}`")))?;
    state.codes.clear();
    tracing::info!(code = %code, by = %caller.actor(), "code revoked");
    Ok(Json(CodeBody::new(&state, &record)))
}
