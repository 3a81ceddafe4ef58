use std::net::SocketAddr;

use anyhow::Context;
use jiff::Timestamp;
use vouch_domain::ApiKeyId;
use vouch_domain::api_key::Scope;
use vouch_domain::program::{diff, parse_program};
use vouch_server::{AppState, Clock, ServerConfig};
use vouch_store::{ApplyOutcome, Store, StoreError};

use crate::cli::{ApiKeyCommand, Cli, Command, ImportCommand, JobsCommand, ProgramCommand, ServeArgs};
use crate::config::{FileConfig, public_url};

pub enum Failure {
    /// Bad input from the user: exit status 2.
    Invalid(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

type Outcome = Result<(), Failure>;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn run(cli: Cli) -> Outcome {
    init_logging(matches!(cli.command, Command::Serve(_)));
    let file = FileConfig::load(cli.config.as_deref()).map_err(Failure::Invalid)?;
    let db = file.database(&cli.db).map_err(Failure::Invalid)?;
    let open = || async { Store::open(&db).await.context("opening the database") };
    match cli.command {
        Command::Serve(args) => {
            // A bad --public-url is refused before the database is touched.
            if let Some(given) = args.public_url.as_deref().or(file.public_url.as_deref()) {
                public_url(Some(given), DEFAULT_LISTEN.parse().expect("valid default")).map_err(Failure::Invalid)?;
            }
            let mail = crate::jobs::MailSettings::from_args(&args.mail, &file, &cli.db).map_err(Failure::Invalid)?;
            serve(args, &file, &mail, open().await?).await
        }
        Command::Migrate => {
            let store = open().await?;
            println!("The {} database is up to date.", store.engine());
            store.close().await;
            Ok(())
        }
        Command::Program(ProgramCommand::Apply { file: path, dry_run }) => {
            let (source, definition) = read_program(&path, "Nothing was applied.")?;
            apply_program(&open().await?, definition, &source, dry_run).await
        }
        Command::Program(ProgramCommand::Simulate { file: path, since, until }) => {
            let (_, draft) = read_program(&path, "Nothing was simulated.")?;
            crate::simulate::simulate(&open().await?, &draft, since, until).await
        }
        Command::ApiKey(cmd) => api_key(&open().await?, cmd).await,
        Command::Import(ImportCommand::Customers { file: path }) => crate::import::import_customers(&path, open).await,
        Command::Demo(args) => {
            let base = public_url(
                args.public_url.as_deref().or(file.public_url.as_deref()),
                DEFAULT_LISTEN.parse().expect("valid default"),
            )
            .map_err(Failure::Invalid)?;
            demo(&open().await?, args.scale, args.seed, &base).await
        }
        Command::Jobs(JobsCommand::Run(args)) => {
            let base = public_url(
                args.public_url.as_deref().or(file.public_url.as_deref()),
                DEFAULT_LISTEN.parse().expect("valid default"),
            )
            .map_err(Failure::Invalid)?;
            let mail = crate::jobs::MailSettings::from_args(&args.mail, &file, &cli.db).map_err(Failure::Invalid)?;
            let mut config = ServerConfig::new(base);
            mail.apply(&mut config);
            crate::jobs::run(&open().await?, &config).await
        }
    }
}

/// Reads and validates a program file; every problem is reported as
/// `FILE:LINE:COLUMN: `field`: reason`, followed by `nothing`.
fn read_program(
    path: &std::path::Path,
    nothing: &str,
) -> Result<(String, vouch_domain::program::ProgramDefinition), Failure> {
    let source =
        std::fs::read_to_string(path).map_err(|e| Failure::Invalid(format!("{}: cannot read: {e}", path.display())))?;
    let definition = parse_program(&source).map_err(|errs| {
        let lines: Vec<String> = errs
            .errors
            .iter()
            .map(|e| {
                let place = match (e.line, e.column) {
                    (Some(l), Some(c)) => format!("{}:{l}:{c}", path.display()),
                    (Some(l), None) => format!("{}:{l}", path.display()),
                    _ => path.display().to_string(),
                };
                // A TOML syntax error belongs to no field.
                let field = if e.field.is_empty() { String::new() } else { format!(" `{}`:", e.field) };
                format!("{place}:{field} {}", e.reason)
            })
            .collect();
        Failure::Invalid(format!("{}\n{nothing}", lines.join("\n")))
    })?;
    Ok((source, definition))
}

fn init_logging(serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("VOUCH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        builder.init();
    } else {
        builder.json().init();
    }
}

async fn serve(args: ServeArgs, file: &FileConfig, mail: &crate::jobs::MailSettings, store: Store) -> Outcome {
    let listen: SocketAddr =
        args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr()?;
    let base =
        public_url(args.public_url.as_deref().or(file.public_url.as_deref()), bound).map_err(Failure::Invalid)?;
    if args.demo {
        let outcome = vouch_server::demo::fill(&store, Timestamp::now()).await?;
        print_demo(&outcome, &base);
    }
    let mut config =
        ServerConfig { click_writers: args.click_writers.map(usize::from), ..ServerConfig::new(base.clone()) };
    mail.apply(&mut config);
    let state = AppState::start(store.clone(), config, Clock::system()).await?;
    // Listen for signals before saying we serve (see `shutdown_signal`).
    let shutdown = vouch_server::shutdown_signal();
    println!("Vouch is serving on http://{bound} (links: {base}r/CODE). Stop with Ctrl-C.");
    if let Some(dir) = state.mailer.mailbox_dir() {
        println!(
            "No SMTP server is set (--smtp-url): email goes to {}, listed at http://{bound}/dev/mailbox.",
            dir.display()
        );
    }
    tracing::info!(listen = %bound, engine = store.engine(), "serving");
    vouch_server::serve(listener, state, shutdown).await?;
    store.close().await;
    Ok(())
}

async fn apply_program(
    store: &Store,
    definition: vouch_domain::program::ProgramDefinition,
    source: &str,
    dry_run: bool,
) -> Outcome {
    let slug = definition.slug().as_str().to_string();
    if dry_run {
        match store.program(&slug).await {
            Err(StoreError::NotFound) => println!("Would create program `{slug}` at version 1."),
            Ok(current) => {
                let changes = diff(&current.definition, &definition);
                if changes.is_empty() {
                    println!("No change: `{slug}` is already at version {} with this definition.", current.version);
                } else {
                    println!(
                        "Would change program `{slug}` from version {} to {}:",
                        current.version,
                        current.version + 1
                    );
                    print_changes(&changes);
                }
            }
            Err(e) => return Err(e.into()),
        }
        println!("Dry run: nothing was stored.");
        return Ok(());
    }
    let ids = (vouch_domain::ProgramId(uuid::Uuid::now_v7()), vouch_domain::ProgramVersionId(uuid::Uuid::now_v7()));
    match store.apply_program(&definition, source, ids, Timestamp::now()).await? {
        ApplyOutcome::Created(p) => println!("Created program `{slug}` at version {}.", p.version),
        ApplyOutcome::Updated { previous, current } => {
            println!("Updated program `{slug}` from version {} to {}:", previous.version, current.version);
            print_changes(&diff(&previous.definition, &current.definition));
        }
        ApplyOutcome::Unchanged(p) => {
            println!("No change: `{slug}` is already at version {} with this definition.", p.version)
        }
    }
    Ok(())
}

fn print_changes(changes: &[vouch_domain::program::Change]) {
    for c in changes {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        println!("  {}: {} → {}", c.field, show(&c.old), show(&c.new));
    }
}

async fn api_key(store: &Store, cmd: ApiKeyCommand) -> Outcome {
    match cmd {
        ApiKeyCommand::Create { name, scopes } => {
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err(Failure::Invalid("--name must not be empty".into()));
            }
            let scopes = if scopes.is_empty() {
                Scope::all()
            } else {
                scopes.iter().map(|s| Scope::parse(s)).collect::<Result<_, _>>().map_err(Failure::Invalid)?
            };
            let (key, record) = vouch_server::api_keys::create(store, &name, scopes, Timestamp::now()).await?;
            let scopes: Vec<String> = record.scopes.iter().map(Scope::to_string).collect();
            println!("Created API key `{}` (id {}) with scopes: {}.", record.name, record.id, scopes.join(" "));
            println!("Store it now; it is shown only this once:");
            println!("{key}");
        }
        ApiKeyCommand::List => {
            let keys = store.api_keys().await?;
            if keys.is_empty() {
                println!("No API keys. Create one with `vouch api-key create --name NAME`.");
            }
            for k in keys {
                let state = k.revoked_at.map_or("active".to_string(), |t| format!("revoked {t}"));
                let scopes: Vec<String> = k.scopes.iter().map(Scope::to_string).collect();
                println!(
                    "{}  {}  {}…  {}  created {}  {}",
                    k.id,
                    k.name,
                    k.prefix,
                    state,
                    k.created_at,
                    scopes.join(" ")
                );
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let parsed =
                ApiKeyId::parse(&id).ok_or_else(|| Failure::Invalid(format!("`{id}` is not an API key id")))?;
            match store.revoke_api_key(parsed, Timestamp::now()).await {
                Ok(()) => println!("Revoked API key {id}."),
                Err(StoreError::NotFound) => return Err(Failure::Invalid(format!("no API key has the id {id}"))),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn demo(store: &Store, scale: Option<u64>, seed: u64, base: &url::Url) -> Outcome {
    let outcome = match scale {
        Some(n) => vouch_server::demo::fill_scaled(store, Timestamp::now(), n, seed).await?,
        None => vouch_server::demo::fill(store, Timestamp::now()).await?,
    };
    print_demo(&outcome, base);
    Ok(())
}

fn print_demo(outcome: &vouch_server::demo::Outcome, base: &url::Url) {
    use vouch_server::demo::Outcome;
    match outcome {
        Outcome::AlreadyHasData => {
            println!("The database already has data: the demo added nothing.");
        }
        Outcome::Filled { programs, participants, clicks, customers, referrals, api_key, sample_code } => {
            println!("Demo data loaded: {programs} programs, {participants} participants, {clicks} clicks.");
            println!("Customer registry: {customers} existing customers.");
            let list = |counts: Vec<(&str, usize)>| {
                counts.iter().map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")
            };
            println!("Referrals: {} in all, {} assigned to sales reps.", referrals.total, referrals.assigned);
            println!("  by stage:  {}", list(referrals.by_stage.iter().map(|(s, n)| (s.as_str(), *n)).collect()));
            println!("  by status: {}", list(referrals.by_status.iter().map(|(s, n)| (s.as_str(), *n)).collect()));
            println!(
                "  rejected:  {}",
                list(referrals.by_reason.iter().filter(|(_, n)| *n > 0).map(|(s, n)| (s.as_str(), *n)).collect())
            );
            println!("Try a referral link:   {base}r/{sample_code}");
            println!("Browse the API, e.g.:  curl -H 'Authorization: Bearer {api_key}' {base}api/v1/programs");
            println!("Demo API key (all scopes):");
            println!("{api_key}");
        }
    }
}
