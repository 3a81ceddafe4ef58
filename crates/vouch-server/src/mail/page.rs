//! `GET /dev/mailbox`: the development mailbox, when no SMTP server is
//! configured (with one, the page does not exist). It lists the messages Vouch
//! wrote instead of sending them, each readable as it would have been sent.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::mailbox::{self, Entry};
use crate::AppState;

#[derive(Template)]
#[template(path = "dev/mailbox.html")]
struct MailboxPage {
    dir: String,
    messages: Vec<Entry>,
}

fn not_here() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

pub async fn show_mailbox(State(state): State<AppState>) -> Response {
    let Some(dir) = state.mailer.mailbox_dir() else { return not_here() };
    let page = match mailbox::list(dir).await {
        Ok(messages) => MailboxPage { dir: dir.display().to_string(), messages }.render(),
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "cannot read the mailbox");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the mailbox\n").into_response();
        }
    };
    match page {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the mailbox page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the mailbox page\n").into_response()
        }
    }
}

/// One message, as raw RFC 5322 text.
pub async fn show_message(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(dir) = state.mailer.mailbox_dir() else { return not_here() };
    if !mailbox::is_message_name(&file) {
        return not_here();
    }
    match tokio::fs::read(dir.join(&file)).await {
        Ok(raw) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], raw).into_response(),
        Err(_) => not_here(),
    }
}
