use axum::Json;
use axum::extract::State;
use serde::Serialize;
use vouch_domain::api_key::Area;
use vouch_domain::program::ProgramSlug;
use vouch_store::{StoreError, StoredProgram};

use super::{ApiPath, Page, rfc3339};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// A program and the version in force.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProgramBody {
    slug: String,
    name: String,
    version: i64,
    applied_at: String,
    currency: &'static str,
    timezone: String,
    landing_url: String,
    /// The whole definition in force, as JSON (the program file's fields).
    #[schema(value_type = Object)]
    definition: serde_json::Value,
}

impl From<&StoredProgram> for ProgramBody {
    fn from(p: &StoredProgram) -> Self {
        let d = &p.definition;
        ProgramBody {
            slug: d.slug().as_str().to_string(),
            name: d.name().to_string(),
            version: p.version,
            applied_at: rfc3339(p.applied_at),
            currency: d.currency().code(),
            timezone: d.timezone().to_string(),
            landing_url: d.landing_url().to_string(),
            definition: serde_json::to_value(d).unwrap_or_default(),
        }
    }
}

/// Programs with the version in force.
#[utoipa::path(get, path = "/api/v1/programs", tag = "programs",
    responses((status = 200, body = Page<ProgramBody>), (status = 401, body = crate::openapi::Problem)))]
pub async fn list_programs(State(state): State<AppState>, caller: Caller) -> Result<Json<Page<ProgramBody>>, ApiError> {
    caller.require(Area::Programs, false)?;
    let programs = state.store.programs().await?;
    Ok(Json(Page { items: programs.iter().map(ProgramBody::from).collect(), next_cursor: None }))
}

/// One program.
#[utoipa::path(get, path = "/api/v1/programs/{slug}", tag = "programs", params(("slug" = String, Path)),
    responses((status = 200, body = ProgramBody), (status = 404, body = crate::openapi::Problem)))]
pub async fn get_program(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath,
) -> Result<Json<ProgramBody>, ApiError> {
    caller.require(Area::Programs, false)?;
    let program = program_by_slug(&state, &slug).await?;
    Ok(Json(ProgramBody::from(&program)))
}

/// The program a path names. What cannot be a slug (`%00`, upper case) is not
/// looked up: no program has it, and Postgres refuses NUL in text outright.
pub async fn program_by_slug(state: &AppState, slug: &str) -> Result<StoredProgram, ApiError> {
    let not_found = || ApiError::not_found(&format!("the program `{slug}`"));
    ProgramSlug::parse(slug).map_err(|_| not_found())?;
    state.store.program(slug).await.map_err(|e| match e {
        StoreError::NotFound => not_found(),
        e => e.into(),
    })
}
