//! Email: rendering outbox rows into messages and delivering them, through SMTP
//! (`lettre`, rustls) when an SMTP URL is configured, or else as `.eml` files in
//! a development mailbox folder.
//!
//! [`deliver_due`] is one pass of the worker: it claims every row due at `now`
//! and delivers it; a failure that a retry may mend (a `4xx` reply, a refused
//! connection) comes back after an exponential backoff with jitter, until the
//! attempt cap makes the row `dead`; one that no retry mends (a `5xx` reply, an
//! unusable address) makes it `dead` at once. `dead` rows stay, with their last
//! error, for staff to see. The server runs a pass every second ([`MailWorker`]);
//! `vouch jobs run` runs them until nothing is due.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;
use vouch_domain::program::EmailTemplates;
use vouch_store::{MailPayload, OutboxItem, OutboxRetry, Store, StoreError};

use crate::{Clock, ServerConfig};

pub mod mailbox;
pub(crate) mod page;
mod render;

pub use render::{Context, Rendered, render};

/// Attempts before a row is given up on.
pub const MAX_ATTEMPTS: i64 = 8;
/// How long a claimed row stays invisible to other workers: far longer than an
/// SMTP exchange may take (see [`SMTP_TIMEOUT`]).
pub const LEASE: SignedDuration = SignedDuration::from_secs(300);
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows claimed per statement.
const BATCH: u32 = 32;
/// The longest wait between two attempts, before jitter.
const MAX_BACKOFF_SECS: f64 = 3600.0;

/// The wait before the next attempt after `attempts` attempts: 30 s doubling
/// with each attempt, capped at 1 h, then spread by ±20% (`jitter` in [0, 1)),
/// so rows that failed together do not all come back at the same instant.
pub fn backoff(attempts: i64, jitter: f64) -> SignedDuration {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as i32;
    let base = (30.0 * 2f64.powi(doublings)).min(MAX_BACKOFF_SECS);
    SignedDuration::from_secs_f64(base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
}

/// Where messages go.
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// The development mailbox folder.
    Folder(PathBuf),
    /// The configuration cannot send anything (checked at start by the CLI; a
    /// server built around it marks every message dead with this reason).
    Invalid(String),
}

/// Renders and sends messages. Cheap to clone.
#[derive(Clone)]
pub struct Mailer(Arc<MailerInner>);

struct MailerInner {
    transport: Transport,
    from: Option<Mailbox>,
    /// `https://refer.example.com`, no trailing slash.
    public_url: String,
    /// The domain of our Message-IDs.
    host: String,
    max_attempts: i64,
}

/// Checks the mail settings: an SMTP URL lettre understands and a usable sender.
pub fn check_config(config: &ServerConfig) -> Result<(), String> {
    config.mail_from.parse::<Mailbox>().map_err(|e| format!("mail from `{}`: {e}", config.mail_from))?;
    if let Some(url) = &config.smtp_url {
        // Never echo the URL: it may carry a password.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("the SMTP URL is not usable (smtp://host:port, smtps://..., ?tls=required): {e}"))?;
    }
    Ok(())
}

impl Mailer {
    pub fn from_config(config: &ServerConfig) -> Mailer {
        let from = config.mail_from.parse::<Mailbox>().ok();
        let transport = match (&config.smtp_url, &from) {
            (_, None) => Transport::Invalid(format!("the sender `{}` is not a valid address", config.mail_from)),
            (Some(url), Some(_)) => match AsyncSmtpTransport::<Tokio1Executor>::from_url(url) {
                Ok(builder) => Transport::Smtp(builder.timeout(Some(SMTP_TIMEOUT)).build()),
                Err(e) => Transport::Invalid(format!("the SMTP URL is not usable: {e}")),
            },
            (None, Some(_)) => Transport::Folder(config.mailbox_dir.clone()),
        };
        Mailer(Arc::new(MailerInner {
            transport,
            from,
            public_url: config.public_url.as_str().trim_end_matches('/').to_string(),
            host: config.public_url.host_str().unwrap_or("vouch.localhost").to_string(),
            max_attempts: MAX_ATTEMPTS,
        }))
    }

    /// The mailbox folder, when messages go there instead of to an SMTP server.
    pub fn mailbox_dir(&self) -> Option<&std::path::Path> {
        match &self.0.transport {
            Transport::Folder(dir) => Some(dir),
            _ => None,
        }
    }

    /// Builds the RFC 5322 message for one outbox row.
    fn message(&self, id: Uuid, payload: &MailPayload, rendered: Rendered) -> Result<Message, Failure> {
        let from = self.0.from.clone().ok_or_else(|| Failure::permanent("no valid sender address"))?;
        let address = payload
            .to()
            .parse::<lettre::Address>()
            .map_err(|e| Failure::permanent(format!("the recipient address is unusable: {e}")))?;
        let name = payload.recipient_name().map(str::to_string);
        Message::builder()
            .from(from)
            .to(Mailbox::new(name, address))
            .subject(rendered.subject)
            .message_id(Some(format!("<{id}@{}>", self.0.host)))
            .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
            .map_err(|e| Failure::permanent(format!("cannot build the message: {e}")))
    }

    async fn send(&self, id: Uuid, message: Message) -> Result<(), Failure> {
        match &self.0.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(|e| {
                // 5xx: the server will refuse this message however often we ask.
                if e.is_permanent() { Failure::permanent(e.to_string()) } else { Failure::transient(e.to_string()) }
            }),
            Transport::Folder(dir) => mailbox::write(dir, &id.to_string(), &message.formatted())
                .await
                .map(|_| ())
                .map_err(|e| Failure::transient(format!("writing to the mailbox {}: {e}", dir.display()))),
            Transport::Invalid(why) => Err(Failure::permanent(why.clone())),
        }
    }
}

/// Why one attempt failed, and whether trying again could help.
#[derive(Debug)]
struct Failure {
    permanent: bool,
    error: String,
}

impl Failure {
    fn permanent(error: impl Into<String>) -> Self {
        Failure { permanent: true, error: error.into() }
    }
    fn transient(error: impl Into<String>) -> Self {
        Failure { permanent: false, error: error.into() }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryReport {
    pub entries: Vec<Delivery>,
}

/// One attempt at one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    /// `welcome`, … (or the row's kind, for a row that is no email).
    pub template: String,
    /// The recipient, when the row names one.
    pub to: Option<String>,
    /// Which attempt this was (1 for the first).
    pub attempt: i64,
    pub outcome: DeliveryOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; tried again at `at`.
    Retry {
        at: Timestamp,
        error: String,
    },
    /// Failed for good: the row is `dead`.
    Dead {
        error: String,
    },
}

impl DeliveryReport {
    pub fn delivered(&self) -> usize {
        self.entries.iter().filter(|d| d.outcome == DeliveryOutcome::Delivered).count()
    }
    pub fn retried(&self) -> usize {
        self.entries.iter().filter(|d| matches!(d.outcome, DeliveryOutcome::Retry { .. })).count()
    }
    pub fn dead(&self) -> usize {
        self.entries.iter().filter(|d| matches!(d.outcome, DeliveryOutcome::Dead { .. })).count()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Delivery {
    /// The recipient for logs and output: `a…@example.com`, never the whole address.
    pub fn to_masked(&self) -> String {
        match self.to.as_deref().and_then(|to| to.rsplit_once('@')) {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}…@{domain}")
            }
            None => "(no recipient)".into(),
        }
    }
}

/// Delivers every outbox row due at `now`, once each, and records the outcome of
/// each attempt. Rows that fail are due again later than `now`, so a pass ends.
pub async fn deliver_due(store: &Store, mailer: &Mailer, now: Timestamp) -> Result<DeliveryReport, StoreError> {
    let mut report = DeliveryReport::default();
    // A look on a reader first: on SQLite, claiming takes the one writer
    // connection, which the click writer needs more than an idle poll does.
    match store.next_outbox_attempt().await? {
        Some(next) if next <= now => {}
        _ => return Ok(report),
    }
    let mut program_names: HashMap<String, (String, EmailTemplates)> = HashMap::new();
    loop {
        let batch = store.claim_due_outbox(now, BATCH, LEASE).await?;
        if batch.is_empty() {
            return Ok(report);
        }
        for item in batch {
            let delivery = deliver_one(store, mailer, &item, now, &mut program_names).await?;
            match &delivery.outcome {
                DeliveryOutcome::Delivered => {
                    tracing::info!(id = %item.id, template = %delivery.template, to = %delivery.to_masked(), "mail delivered");
                    metrics::counter!("vouch_mail_delivered_total").increment(1);
                }
                DeliveryOutcome::Retry { at, error } => {
                    tracing::warn!(id = %item.id, attempt = item.attempts, retry_at = %at, error = %error, "mail delivery failed; will retry");
                    metrics::counter!("vouch_mail_retried_total").increment(1);
                }
                DeliveryOutcome::Dead { error } => {
                    tracing::error!(id = %item.id, attempt = item.attempts, error = %error, "mail delivery failed for good: dead");
                    metrics::counter!("vouch_mail_dead_total").increment(1);
                }
            }
            report.entries.push(delivery);
        }
    }
}

async fn deliver_one(
    store: &Store,
    mailer: &Mailer,
    item: &OutboxItem,
    now: Timestamp,
    program_names: &mut HashMap<String, (String, EmailTemplates)>,
) -> Result<Delivery, StoreError> {
    let mut delivery = Delivery {
        id: item.id,
        template: item.kind.clone(),
        to: None,
        attempt: item.attempts,
        outcome: DeliveryOutcome::Delivered,
    };
    let attempt = async {
        let payload = match item.mail() {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(Failure::permanent(e.to_string())),
            None => return Err(Failure::permanent(format!("no deliverer for outbox rows of kind `{}`", item.kind))),
        };
        delivery.template = payload.template().to_string();
        delivery.to = Some(payload.to().to_string());
        // An invite still waiting when its address unsubscribed is not sent.
        if let MailPayload::Invite { to, .. } = &payload {
            let suppressed = match vouch_domain::Email::parse(to) {
                Ok(email) => store.is_suppressed(&email).await,
                Err(_) => Ok(false),
            };
            match suppressed {
                Ok(false) => {}
                Ok(true) => return Err(Failure::permanent("not sent: the address unsubscribed from invites")),
                Err(e) => return Err(Failure::transient(format!("reading the suppression list: {e}"))),
            }
        }
        let slug = payload.program().to_string();
        // The wording of the program version in force when the message goes out.
        let (program_name, emails) = match program_names.get(&slug) {
            Some(known) => known.clone(),
            None => {
                let known = match store.program(&slug).await {
                    Ok(p) => (p.definition.name().to_string(), p.definition.emails().clone()),
                    Err(StoreError::NotFound) => (slug.clone(), EmailTemplates::new()),
                    Err(e) => return Err(Failure::transient(format!("reading program {slug}: {e}"))),
                };
                program_names.insert(slug, known.clone());
                known
            }
        };
        let ctx = Context { public_url: &mailer.0.public_url, program_name: &program_name, emails: Some(&emails) };
        let rendered = render(&payload, &ctx).map_err(|e| Failure::permanent(format!("rendering: {e}")))?;
        let message = mailer.message(item.id, &payload, rendered)?;
        mailer.send(item.id, message).await
    };
    let result = attempt.await;
    match result {
        Ok(()) => {
            store.outbox_delivered(item.id, now).await?;
        }
        Err(failure) => {
            let give_up = failure.permanent || item.attempts >= mailer.0.max_attempts;
            let (next, outcome) = if give_up {
                let error = if failure.permanent {
                    failure.error
                } else {
                    format!("gave up after {} attempts: {}", item.attempts, failure.error)
                };
                (OutboxRetry::Dead, DeliveryOutcome::Dead { error })
            } else {
                let at = now.saturating_add(backoff(item.attempts, rand::random::<f64>())).unwrap_or(now);
                (OutboxRetry::At(at), DeliveryOutcome::Retry { at, error: failure.error })
            };
            let error = match &outcome {
                DeliveryOutcome::Retry { error, .. } | DeliveryOutcome::Dead { error } => error.clone(),
                DeliveryOutcome::Delivered => String::new(),
            };
            store.outbox_failed(item.id, &error, next).await?;
            delivery.outcome = outcome;
        }
    }
    Ok(delivery)
}

/// The server's mail worker: a pass every `interval`, and a last one on `stop`.
#[derive(Clone)]
pub struct MailWorker(Arc<WorkerInner>);

struct WorkerInner {
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How long the last pass at shutdown may take: rows it cannot finish stay
/// leased and come back to whichever worker runs next.
const LAST_PASS: Duration = Duration::from_secs(5);

impl MailWorker {
    /// Starts the worker; with no interval, it does nothing (tests that drive
    /// [`deliver_due`] themselves).
    pub fn start(store: Store, mailer: Mailer, clock: Clock, interval: Option<Duration>) -> MailWorker {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = interval.map(|every| {
            tokio::spawn(async move {
                // False once the store is closed: nothing more to do.
                let pass = async || match deliver_due(&store, &mailer, clock.now()).await {
                    Ok(_) => true,
                    Err(e) if e.is_closed() => false,
                    Err(e) => {
                        tracing::warn!(error = %e, "mail worker: the outbox could not be read");
                        true
                    }
                };
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => if !pass().await { return },
                        _ = stopped.changed() => break,
                    }
                }
                let _ = tokio::time::timeout(LAST_PASS, pass()).await;
            })
        });
        MailWorker(Arc::new(WorkerInner { stop, task: std::sync::Mutex::new(task) }))
    }

    /// Stops the worker after a last pass, and waits for it.
    pub async fn stop(&self) {
        let _ = self.0.stop.send(true);
        let task = self.0.task.lock().map(|mut t| t.take()).unwrap_or_default();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_30_seconds_with_jitter_and_a_cap() {
        let secs = |a, j| backoff(a, j).as_secs_f64();
        assert_eq!(secs(1, 0.5), 30.0);
        assert_eq!(secs(2, 0.5), 60.0);
        assert_eq!(secs(3, 0.5), 120.0);
        assert_eq!(secs(1, 0.0), 24.0);
        assert!((secs(1, 0.999_999) - 36.0).abs() < 0.001);
        assert_eq!(secs(8, 0.5), 3600.0, "capped at an hour before jitter");
        assert_eq!(secs(1000, 0.5), 3600.0);
        assert_eq!(secs(0, 0.5), 30.0);
    }

    #[test]
    fn addresses_are_masked_in_output() {
        let d = Delivery {
            id: Uuid::nil(),
            template: "welcome".into(),
            to: Some("ada@example.com".into()),
            attempt: 1,
            outcome: DeliveryOutcome::Delivered,
        };
        assert_eq!(d.to_masked(), "a…@example.com");
    }
}
