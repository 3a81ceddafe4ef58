//! Invites: a referrer invites a friend by email, with a personal message. The
//! invite is a referral (source `invite`) attributed like a lead; when it holds
//! the prospect, the email is written to the outbox in the same transaction.

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use jiff::SignedDuration;
use serde::Deserialize;
use vouch_domain::api_key::Area;
use vouch_domain::referral::Source;
use vouch_domain::{Email, ReferralCode};
use vouch_store::{InviteMail, NewProspect, ReferralMail};

use super::ApiPath;
use super::referrals::ReferralBody;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldProblem};
use crate::json::ApiJson;
use crate::refer::{Submission, refer_with_mail};

/// The personal message: at most this many characters.
pub const MAX_MESSAGE: usize = 1000;
/// Invites per referrer and program in [`INVITE_WINDOW`], rejected ones included.
pub const INVITE_LIMIT: u32 = 20;
pub const INVITE_WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// An invitation a referrer sends a friend.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    referrer_code: String,
    /// Whom to invite.
    email: String,
    /// The referrer's own words, up to 1,000 characters, sent as plain text.
    message: Option<String>,
}

struct Invite {
    code: ReferralCode,
    email: Email,
    message: Option<String>,
}

impl InviteBody {
    fn parse(self) -> Result<Invite, ApiError> {
        let mut errors = Vec::new();
        let code = ReferralCode::parse(&self.referrer_code);
        let email = Email::parse(&self.email);
        if let Err(e) = &email {
            errors.push(FieldProblem { pointer: "/email".into(), detail: e.to_string() });
        }
        // Kept as written (line breaks included); only surrounding blanks go.
        let message = self.message.map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
        if let Some(m) = &message
            && m.chars().count() > MAX_MESSAGE
        {
            errors.push(FieldProblem {
                pointer: "/message".into(),
                detail: format!("at most {MAX_MESSAGE} characters, not {}", m.chars().count()),
            });
        }
        let (code, email) = match (code, email, errors.is_empty()) {
            (Ok(code), Ok(email), true) => (code, email),
            (Err(_), _, true) => {
                let shown = self.referrer_code.chars().take(40).collect::<String>();
                return Err(ApiError::field(
                    "unknown_code",
                    "/referrer_code",
                    format!("`{shown}` is no referrer's code"),
                ));
            }
            _ => {
                let detail = errors.iter().map(|p| format!("{}: {}", p.pointer, p.detail)).collect::<Vec<_>>();
                return Err(ApiError {
                    errors,
                    ..ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_field",
                        format!("{}; nothing was stored", detail.join("; ")),
                    )
                });
            }
        };
        Ok(Invite { code, email, message })
    }
}

/// Invite a friend on a referrer's behalf: 201 with the referral (source
/// `invite`), which may be stored `rejected` with its reason, in which case no
/// email is sent. 422 `email_suppressed` when the address unsubscribed; 429
/// `invite_rate_limited` past the referrer's allowance (20 a day).
#[utoipa::path(post, path = "/api/v1/programs/{slug}/invites", tag = "referrals",
    params(("slug" = String, Path)), request_body = InviteBody,
    responses((status = 201, body = ReferralBody), (status = 404, body = crate::openapi::Problem),
        (status = 422, body = crate::openapi::Problem), (status = 429, body = crate::openapi::Problem)))]
pub async fn send_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiPath(slug): ApiPath,
    ApiJson(body): ApiJson<InviteBody>,
) -> Result<(StatusCode, Json<ReferralBody>), ApiError> {
    caller.require(Area::Referrals, true)?;
    let now = state.clock.now();
    let invite = body.parse()?;
    let program = super::programs::program_by_slug(&state, &slug).await?;
    if state.store.is_suppressed(&invite.email).await? {
        return Err(ApiError::field(
            "email_suppressed",
            "/email",
            "this address asked to receive no invitations; nothing was stored or sent",
        ));
    }
    let mail = ReferralMail::Invite(InviteMail {
        message: invite.message,
        unsubscribe_token: state.unsubscribe_token(&invite.email),
        limit: INVITE_LIMIT,
        since: now.checked_sub(INVITE_WINDOW).unwrap_or(now),
    });
    let submission = Submission {
        code: invite.code,
        source: Source::Invite,
        prospect: NewProspect { email: Some(invite.email), ..NewProspect::default() },
        consent: None,
        note: None,
        actor: caller.actor(),
    };
    let record = refer_with_mail(&state.store, &program, submission, mail, now).await?;
    super::participants::remember_ip(&state, record.participant_id, peer).await;
    Ok((StatusCode::CREATED, Json(ReferralBody::new(record, true))))
}
