//! Vouch's HTTP server: the redirect, the JSON API, health and metrics, and the
//! background workers they need. `serve` is the one entry for `main` and tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use vouch_store::Store;

pub mod api_keys;
mod auth;
mod click_writer;
pub mod clock;
mod code_cache;
pub mod demo;
pub mod enroll;
mod error;
pub mod events;
pub mod fulfilment;
pub mod holds;
mod idempotency;
mod json;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod refer;
mod routes;
pub mod unsubscribe;

pub use click_writer::ClickWriter;
pub use clock::Clock;
pub use code_cache::CodeCache;
pub use error::ApiError;

/// What the server needs to know beyond the database. Its `Debug` leaves out the
/// SMTP URL, which may carry a password.
#[derive(Clone)]
pub struct ServerConfig {
    /// The base of every link handed out (`https://refer.example.com`).
    pub public_url: url::Url,
    /// How long a visitor waits for their click to commit before being sent on
    /// without a click id.
    pub click_deadline: Duration,
    /// How often each server asks the database whether cached codes went stale.
    pub cache_refresh: Duration,
    /// Clicks waiting for the writer before new ones are turned away unrecorded.
    pub click_queue: usize,
    /// Concurrent click writers; `None` picks by engine (always 1 on SQLite, which
    /// has one writer connection; on Postgres, one per two cores, at least 1).
    pub click_writers: Option<usize>,
    /// Where email goes (`smtp://host:2525`, `smtps://user:pass@host`); without
    /// one, messages are written as `.eml` files into `mailbox_dir`.
    pub smtp_url: Option<String>,
    /// The sender of every email.
    pub mail_from: String,
    /// The development mailbox (used only without `smtp_url`).
    pub mailbox_dir: std::path::PathBuf,
    /// How often the mail worker delivers due outbox rows; `None` runs no worker
    /// (tests that call `mail::deliver_due` themselves).
    pub mail_interval: Option<Duration>,
    /// How often the holds worker releases due holds; `None` runs no worker
    /// (tests that call `holds::release_all_due` themselves).
    pub holds_interval: Option<Duration>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("public_url", &self.public_url.as_str())
            .field("click_deadline", &self.click_deadline)
            .field("cache_refresh", &self.cache_refresh)
            .field("click_queue", &self.click_queue)
            .field("click_writers", &self.click_writers)
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "<redacted>"))
            .field("mail_from", &self.mail_from)
            .field("mailbox_dir", &self.mailbox_dir)
            .field("mail_interval", &self.mail_interval)
            .field("holds_interval", &self.holds_interval)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    pub fn new(public_url: url::Url) -> Self {
        Self {
            public_url,
            click_deadline: Duration::from_millis(500),
            cache_refresh: Duration::from_secs(1),
            click_queue: 16_384,
            click_writers: None,
            smtp_url: None,
            mail_from: "Vouch <no-reply@localhost>".into(),
            mailbox_dir: std::path::PathBuf::from("vouch-data/mailbox"),
            mail_interval: Some(Duration::from_secs(1)),
            holds_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// Shared by every handler: one `Arc`, so the per-request clone is a single
/// atomic increment (it showed in the redirect's profile as seven).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    pub config: ServerConfig,
    pub clock: Clock,
    pub clicks: ClickWriter,
    pub codes: CodeCache,
    pub mailer: mail::Mailer,
    mail: mail::MailWorker,
    holds: holds::HoldsWorker,
    /// Key for hashing visitors' IP addresses: shared by all replicas through the
    /// database, so the same visitor hashes alike everywhere.
    ip_hash_key: Vec<u8>,
    /// Key of the unsubscribe links' HMAC, shared through the database like `ip_hash_key`.
    unsubscribe_key: Vec<u8>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Builds the state and starts its workers (click writer, cache refresher).
    pub async fn start(store: Store, config: ServerConfig, clock: Clock) -> Result<AppState, vouch_store::StoreError> {
        // Install the recorder before anything is counted: until it exists, every
        // `metrics::counter!` is a no-op, and the first scrape would show nothing.
        crate::metrics::handle();
        let fresh_key = hex::encode(rand::random::<[u8; 32]>());
        let ip_hash_key = hex::decode(store.setting_or_insert("ip_hash_key", &fresh_key).await?)
            .map_err(|e| vouch_store::StoreError::Corrupt(format!("ip_hash_key: {e}")))?;
        let fresh_key = hex::encode(rand::random::<[u8; 32]>());
        let unsubscribe_key = hex::decode(store.setting_or_insert("unsubscribe_key", &fresh_key).await?)
            .map_err(|e| vouch_store::StoreError::Corrupt(format!("unsubscribe_key: {e}")))?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        // Measured on 2 cores: one Postgres writer beat 2 and 4 (docs/benchmarks.md).
        let writers = match store.engine() {
            "postgres" => config.click_writers.unwrap_or((cores / 2).max(1)),
            _ => 1,
        };
        let clicks = ClickWriter::start(store.clone(), config.click_queue, writers);
        let codes = CodeCache::start(store.clone(), config.cache_refresh);
        let mailer = mail::Mailer::from_config(&config);
        let mail = mail::MailWorker::start(store.clone(), mailer.clone(), clock.clone(), config.mail_interval);
        fulfilment::spawn(store.clone(), clock.clone(), fulfilment::INTERVAL);
        let holds = holds::HoldsWorker::start(store.clone(), clock.clone(), config.holds_interval);
        Ok(AppState(Arc::new(Shared {
            store,
            config,
            clock,
            clicks,
            codes,
            mailer,
            mail,
            holds,
            ip_hash_key,
            unsubscribe_key,
        })))
    }

    /// Link for a code: `{public_url}/r/{code}`.
    pub fn link(&self, code: &vouch_domain::ReferralCode) -> String {
        let base = self.config.public_url.as_str().trim_end_matches('/');
        format!("{base}/r/{code}")
    }
}

pub fn app(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Serves until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish, and drains the click writer so no answered click is lost.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let writer = state.clicks.clone();
    let codes = state.codes.clone();
    let mail = state.mail.clone();
    let holds = state.holds.clone();
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    codes.stop();
    holds.stop().await;
    writer.drain().await;
    // After the click writer: a last pass sends what the last requests queued.
    mail.stop().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled, so a signal sent the moment the server
/// says it is serving already stops it gracefully instead of killing it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for a signal");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = wait(interrupt) => {},
            () = wait(terminate) => {},
        }
        tracing::info!("shutting down: finishing requests in flight and draining the click writer");
    }
}
