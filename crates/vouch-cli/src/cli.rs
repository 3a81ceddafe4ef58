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
    /// Number of referrals to generate (referrals arrive with the referral lifecycle).
    #[arg(long, default_value_t = 0)]
    pub scale: u64,
    /// Base of the links shown [default: http://127.0.0.1:8080].
    #[arg(long, env = "VOUCH_PUBLIC_URL")]
    pub public_url: Option<String>,
}
