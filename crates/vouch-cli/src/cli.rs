use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Vouch: referral programs you run yourself.
#[derive(Debug, Parser)]
#[command(name = "vouch", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArgs,
    /// A TOML file with settings (keys as the long flags, with `_` for `-`).
    #[arg(long, env = "VOUCH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DbArgs {
    /// Folder of the embedded SQLite database [default: ./vouch-data].
    #[arg(long, env = "VOUCH_DATA", global = true)]
    pub data: Option<PathBuf>,
    /// A postgres:// URL: use Postgres instead of the embedded database.
    #[arg(long, env = "VOUCH_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve links, the API, health and metrics.
    Serve(ServeArgs),
    /// Bring the database schema up to date.
    Migrate,
    /// Programs as code.
    #[command(subcommand)]
    Program(ProgramCommand),
    /// API keys for integrations.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Fill an empty database with realistic demo data.
    Demo(DemoArgs),
    /// Background jobs (delivering email, …).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Load data from files.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "VOUCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Base of the links Vouch hands out [default: http:// + the listen address].
    #[arg(long, env = "VOUCH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Load the demo data first (adds nothing to a database that has data).
    #[arg(long)]
    pub demo: bool,
    /// Concurrent click writers on Postgres [default: one per two cores]; SQLite always uses one.
    #[arg(long, env = "VOUCH_CLICK_WRITERS", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub click_writers: Option<u16>,
    #[command(flatten)]
    pub mail: MailArgs,
}

/// Where email goes.
#[derive(Debug, Args, Clone, Default)]
pub struct MailArgs {
    /// SMTP server for outgoing email (`smtp://host:port`, `smtps://user:pass@host`,
    /// `smtp://host?tls=required`) [default: none: messages are written to the mailbox folder].
    #[arg(long, env = "VOUCH_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of every email [default: Vouch <no-reply@localhost>].
    #[arg(long, env = "VOUCH_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Folder for messages when no SMTP server is set [default: mailbox/ in the data folder].
    #[arg(long, env = "VOUCH_MAILBOX")]
    pub mailbox: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Run every due job (delivering the outbox) until none is due, then exit.
    Run(JobsArgs),
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Base of the links in messages: the same as `vouch serve`'s [default: http://127.0.0.1:8080].
    #[arg(long, env = "VOUCH_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub mail: MailArgs,
}

#[derive(Debug, Subcommand)]
pub enum ProgramCommand {
    /// Validate a program file and store it as the program's new version.
    Apply {
        file: PathBuf,
        /// Show what would change without storing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Replay the referrals of a period under a draft program file and print,
    /// beside the version in force, what it would have paid per month and per
    /// referrer. The draft is never stored.
    Simulate {
        file: PathBuf,
        /// The first day of the period, YYYY-MM-DD, in the program's time zone.
        #[arg(long)]
        since: jiff::civil::Date,
        /// The last day of the period, included [default: today].
        #[arg(long)]
        until: Option<jiff::civil::Date>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once, alone on the last line.
    Create {
        #[arg(long)]
        name: String,
        /// A scope such as `participants:write`; repeat for more. Without any, the key has every scope.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by its id.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of referrals to generate in all, across the programs and referrers, written in bulk
    /// (fast enough for millions). Without it, the small demo: 300 referrals made one by one through
    /// attribution, with clicks and every rejection reason.
    #[arg(long)]
    pub scale: Option<u64>,
    /// The seed of a `--scale` demo: the same seed makes the same demo.
    #[arg(long, default_value_t = 2026, requires = "scale")]
    pub seed: u64,
    /// Base of the links shown [default: http://127.0.0.1:8080].
    #[arg(long, env = "VOUCH_PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Load the customer registry from a CSV file (header `email,domain,external_id`).
    ///
    /// The registry holds who already is a customer or has signed up. Any field of a
    /// row may be empty, but not all. The file is checked whole first: one bad row
    /// loads nothing. Entries already known are skipped, so importing again is harmless.
    Customers { file: PathBuf },
}
