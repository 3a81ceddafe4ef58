//! `vouch jobs run` and the mail settings shared with `vouch serve`.

use std::path::PathBuf;

use jiff::Timestamp;
use vouch_server::ServerConfig;
use vouch_server::mail::{DeliveryOutcome, DeliveryReport, Mailer, deliver_due};
use vouch_store::{ReleaseOutcome, Store};

use crate::cli::{DbArgs, MailArgs};
use crate::commands::Failure;
use crate::config::FileConfig;

pub const DEFAULT_MAIL_FROM: &str = "Vouch <no-reply@localhost>";

/// Where mail goes, from flags, variables and the file, checked.
#[derive(Clone)]
pub struct MailSettings {
    smtp_url: Option<String>,
    mail_from: String,
    mailbox_dir: PathBuf,
}

impl MailSettings {
    /// Without an SMTP URL, messages are written to `--mailbox`, else to
    /// `mailbox/` in the data folder (`./vouch-data/mailbox` for a Postgres
    /// deployment that names no data folder).
    pub fn from_args(args: &MailArgs, file: &FileConfig, db: &DbArgs) -> Result<MailSettings, String> {
        let data = db.data.clone().or_else(|| file.data.clone()).unwrap_or_else(|| PathBuf::from("vouch-data"));
        let settings = MailSettings {
            smtp_url: args.smtp_url.clone().or_else(|| file.smtp_url.clone()).filter(|u| !u.is_empty()),
            mail_from: args
                .mail_from
                .clone()
                .or_else(|| file.mail_from.clone())
                .unwrap_or_else(|| DEFAULT_MAIL_FROM.to_string()),
            mailbox_dir: args.mailbox.clone().or_else(|| file.mailbox.clone()).unwrap_or_else(|| data.join("mailbox")),
        };
        let mut check = ServerConfig::new(url::Url::parse("http://localhost/").expect("a valid URL"));
        settings.apply(&mut check);
        vouch_server::mail::check_config(&check)?;
        Ok(settings)
    }

    pub fn apply(&self, config: &mut ServerConfig) {
        config.smtp_url = self.smtp_url.clone();
        config.mail_from = self.mail_from.clone();
        config.mailbox_dir = self.mailbox_dir.clone();
    }
}

/// Idempotency records are kept at least this long (design brief §3: 24 hours).
const KEEP_IDEMPOTENCY_KEYS: jiff::SignedDuration = jiff::SignedDuration::from_hours(48);

/// Runs every due job until none is due: releasing due reward holds, handing credits and plan upgrades to
/// billing, delivering the outbox, and forgetting
/// idempotency records past their keeping time. Exits
/// 0 unless a message failed in a way no retry mends (it is then `dead`).
pub async fn run(store: &Store, config: &ServerConfig) -> Result<(), Failure> {
    let mailer = Mailer::from_config(config);
    // Holds first: a release approves rewards the hand-over and the outbox
    // then deal with in this same run.
    let released = vouch_server::holds::release_all_due(store, Timestamp::now()).await?;
    for r in &released.entries {
        let what = match r.outcome {
            ReleaseOutcome::Approved => "approved",
            ReleaseOutcome::AwaitingApproval => "awaits approval",
            ReleaseOutcome::Voided => "voided",
        };
        println!("Released reward {} (referral {}): {what}: {}.", r.reward_id, r.referral_id, r.reason);
    }
    if !released.is_empty() {
        println!(
            "Holds: {} approved, {} awaiting approval, {} voided.",
            released.count(ReleaseOutcome::Approved),
            released.count(ReleaseOutcome::AwaitingApproval),
            released.count(ReleaseOutcome::Voided)
        );
    }
    // Before delivering: the hand-over writes outbox rows (of kind `billing`,
    // which the mail delivery leaves for their own deliverer).
    let handed = vouch_server::fulfilment::hand_over_all(store, Timestamp::now()).await?;
    if handed > 0 {
        println!("Handed {handed} credit(s) and plan upgrade(s) to billing through the outbox.");
    }
    let mut all = DeliveryReport::default();
    loop {
        let report = deliver_due(store, &mailer, Timestamp::now()).await?;
        if report.is_empty() {
            break;
        }
        for d in &report.entries {
            let what = format!("{} to {}", d.template, d.to_masked());
            match &d.outcome {
                DeliveryOutcome::Delivered => println!("Delivered {what} (attempt {}).", d.attempt),
                DeliveryOutcome::Retry { at, error } => {
                    println!("Will retry {what} at {at} (attempt {} failed: {error}).", d.attempt)
                }
                DeliveryOutcome::Dead { error } => println!("Gave up on {what} (attempt {}): {error}", d.attempt),
            }
        }
        all.entries.extend(report.entries);
    }
    if let Some(dir) = mailer.mailbox_dir()
        && all.delivered() > 0
    {
        println!("No SMTP server is configured: messages were written to {}.", dir.display());
    }
    let purged = store.purge_idempotency_keys(Timestamp::now() - KEEP_IDEMPOTENCY_KEYS).await?;
    if purged > 0 {
        println!("Forgot {purged} idempotency record(s) older than 48 hours.");
    }
    if all.is_empty() && purged == 0 && handed == 0 && released.is_empty() {
        println!("No job was due.");
    } else {
        println!("Outbox: {} delivered, {} to retry later, {} dead.", all.delivered(), all.retried(), all.dead());
    }
    store.close().await;
    if all.dead() > 0 {
        return Err(Failure::Other(anyhow::anyhow!(
            "{} message(s) failed in a way a retry will not mend; they are kept as `dead` in the outbox",
            all.dead()
        )));
    }
    Ok(())
}
