//! Vouch's storage: one [`Store`] handle with domain-typed methods, over SQLite
//! (the embedded default) or Postgres (production). Both run the same SQL text
//! (`$1` placeholders work on both); the `on_write!`/`on_read!` macros expand each
//! query once per engine so the compiler checks both. The hot write paths
//! (events, Idempotency-Key records) are written with the [`sql`] module
//! instead, which on SQLite runs them on the writer's own connection (decision
//! 0015).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

mod api_keys;
pub mod bulk;
mod clicks;
mod customers;
mod events;
mod idempotency;
pub mod ledger;
pub mod liability;
pub mod outbox;
mod participants;
pub mod payouts;
mod preferences;
mod programs;
pub mod referrals;
pub mod rewards;
pub mod simulate;
mod sql;
pub mod testing;

pub use api_keys::ApiKeyRecord;
pub use bulk::{BulkEarner, BulkEnrollment, BulkParticipant, BulkReferral, BulkReward, BulkWon, plan_bulk_rewards};
pub use clicks::{ClickRecord, ClickStats, NewClick};
pub use customers::{AddedCustomers, NewCustomer};
pub use events::{
    ClickSeen, ConvertedEnrollment, ConvertedParticipant, FactOutcome, FactProspect, NewFact, RecordFactError,
    SignupReferral,
};
pub use idempotency::IdempotencyClaim;
pub use ledger::{
    AdjustmentRecord, ReleaseOutcome, ReleaseReport, Released, RewardActionError, RewardBalance, RewardEventRecord,
};
pub use liability::{LiabilityLine, LiabilityReport};
pub use outbox::{MailPayload, OutboxItem, OutboxRetry, OutboxStatus};
pub use participants::{
    CodeRecord, CodeTarget, EnrollError, Enrolled, EnrollmentRecord, NewEnrollment, ParticipantRecord,
};
pub use payouts::{
    CreatePayoutError, FulfilError, GiftCardDue, PayeeTotal, PayoutActionError, PayoutItemRecord, PayoutRecord,
    PayoutSelection, PayoutStatus,
};
pub use programs::{ApplyOutcome, StoredProgram};
pub use referrals::{
    AttributionFacts, Consent, CreateReferralError, NewProspect, NewReferral, ReferralActionError, ReferralEvent,
    ReferralEventKind, ReferralFilter, ReferralRecord, ReviewDecision,
};
pub use referrals::{InviteMail, ReferralMail};
pub use rewards::{Awarded, RewardFilter, RewardRecord, RewardStatus, SupplyUnitsError};
pub use simulate::{SimulateError, Simulation, SimulationPeriod};

/// Where the data lives.
#[derive(Clone)]
pub enum DatabaseConfig {
    /// A folder holding `vouch.db` (created if missing).
    Sqlite {
        dir: PathBuf,
    },
    Postgres {
        url: String,
        max_connections: u32,
    },
}

impl std::fmt::Debug for DatabaseConfig {
    // A Postgres URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { dir } => write!(f, "Sqlite({})", dir.display()),
            Self::Postgres { .. } => f.write_str("Postgres(<redacted url>)"),
        }
    }
}

impl DatabaseConfig {
    /// Picks the engine from the URL scheme: `postgres://` or `postgresql://` is
    /// Postgres; without a URL, SQLite in `data_dir`.
    pub fn from_parts(database_url: Option<&str>, data_dir: PathBuf) -> Result<Self, String> {
        match database_url {
            None => Ok(Self::Sqlite { dir: data_dir }),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Self::Postgres { url: url.to_string(), max_connections: 16 })
            }
            Some(url) if url.starts_with("sqlite:") => Ok(Self::Sqlite {
                dir: PathBuf::from(url.trim_start_matches("sqlite://").trim_start_matches("sqlite:")),
            }),
            Some(_) => Err("the database URL must start with postgres:// (or sqlite: followed by a folder)".into()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule held: the server turns this into a 409, never reading
    /// backend error codes itself.
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Backend(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Sorts a unique violation into `Conflict`, naming the column (`codes.code`)
    /// or, on Postgres, the constraint (`codes_pkey`).
    fn classify(err: sqlx::Error) -> Self {
        if let Some(db) = err.as_database_error()
            && db.is_unique_violation()
        {
            let constraint = db
                .constraint()
                .map(str::to_string)
                .unwrap_or_else(|| db.message().rsplit(": ").next().unwrap_or_default().to_string());
            return StoreError::Conflict { constraint };
        }
        StoreError::Backend(err)
    }

    /// The database is away (pool timeout, connection refused), as opposed to
    /// refusing this particular request.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Backend(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)))
    }

    /// The store was closed: a background worker should stop.
    pub fn is_closed(&self) -> bool {
        matches!(self, StoreError::Backend(sqlx::Error::PoolClosed))
    }

    pub fn is_conflict_on(&self, table: &str) -> bool {
        matches!(self, StoreError::Conflict { constraint } if constraint.starts_with(table))
    }
}

#[derive(Clone)]
enum Backend {
    /// One writer connection (SQLite allows one writer at a time; queueing in our
    /// pool beats SQLITE_BUSY retries) and a few readers, which WAL lets run beside it.
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
        /// The writer: the hot paths' own connection and the lock (see
        /// [`sql::Lite`]): every write in this process takes it first.
        writer: std::sync::Arc<sql::Writer>,
        /// The hot paths' read connections ([`on_fast_read!`]).
        readers: std::sync::Arc<sql::Readers>,
    },
    Postgres(PgPool),
}

/// The storage handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

/// Runs `$body` with `$p` bound to the pool that may write.
/// `From<sqlx::Error>` for an operation's error enum with a `Store(StoreError)`
/// variant, classifying the error as [`StoreError`] does (unique violations
/// become conflicts), so `?` works on queries inside its bodies.
macro_rules! store_error_from_sqlx {
    ($error:ident) => {
        impl From<sqlx::Error> for $error {
            fn from(e: sqlx::Error) -> Self {
                $error::Store($crate::StoreError::classify(e))
            }
        }
    };
}
pub(crate) use store_error_from_sqlx;

macro_rules! on_write {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { write: $p, writer, .. } => {
                let _writer = writer.exclusive().await;
                $body
            }
            $crate::Backend::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` with `$p` bound to a pool for reading.
macro_rules! on_read {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { read: $p, .. } => $body,
            $crate::Backend::Postgres($p) => $body,
        }
    };
}
/// As [`on_read!`], for a body written with [`sql`] only: `$conn` is one of
/// SQLite's inline read connections, or a pooled Postgres connection.
macro_rules! on_fast_read {
    ($store:expr, $conn:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { readers, writer, .. } => {
                writer.check_open()?;
                let mut lite = readers.get().await;
                let $conn: &mut $crate::sql::Lite = &mut lite;
                $body
            }
            $crate::Backend::Postgres(p) => {
                let mut pooled = p.acquire().await?;
                let $conn: &mut sqlx::PgConnection = &mut pooled;
                $body
            }
        }
    };
}
/// Runs `$body` in a write transaction `$tx` and commits it when the body
/// answers `Ok` (an `Err` rolls it back); the body neither commits nor rolls
/// back itself, so bodies compose: a `signup` creates its referral and records
/// itself in one transaction. On SQLite the transaction takes the write lock at
/// once (`BEGIN IMMEDIATE`), so a `vouch jobs run` beside the server waits its
/// turn instead of failing on a lock upgrade. `$err` is the body's error type.
macro_rules! on_write_tx {
    ($store:expr, $tx:ident, $err:ty => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { write, writer, .. } => {
                let _writer = writer.exclusive().await;
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let result: std::result::Result<_, $err> = async { $body }.await;
                match result {
                    Ok(v) => {
                        $tx.commit().await?;
                        Ok(v)
                    }
                    Err(e) => Err(e),
                }
            }
            $crate::Backend::Postgres(p) => {
                let mut $tx = p.begin().await?;
                let result: std::result::Result<_, $err> = async { $body }.await;
                match result {
                    Ok(v) => {
                        $tx.commit().await?;
                        Ok(v)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    };
}
/// Runs `$body` as one member of a batch on the SQLite writer's own connection
/// (`$tx` is the [`sql::Lite`]), behind the [`sql::Writer`] `$writer`: its
/// statements are kept when it answers `Ok` and undone when it answers `Err`,
/// and an `Ok` is answered only once the batch holding it is committed.
macro_rules! lite_tx {
    ($writer:expr, $tx:ident, $err:ty => $body:expr) => {{
        let writer: &$crate::sql::Writer = $writer;
        writer.check_open()?;
        let mut state = writer.lock().await;
        let batch = writer.enter(&mut state).await?;
        let result: std::result::Result<_, $err> = {
            let $tx: &mut $crate::sql::Lite = &mut state.lite;
            async { $body }.await
        };
        let left = writer.leave(&mut state, result.is_ok());
        drop(state);
        match result {
            Ok(v) => {
                left?;
                writer.committed(batch).await?;
                Ok(v)
            }
            Err(e) => Err(e),
        }
    }};
}
/// As [`on_write_tx!`], for a body written with [`sql`] only: on SQLite it
/// runs whole on the writer's own connection (`$tx` a [`sql::Lite`]), with
/// no hand-off between threads from its first statement to its commit.
macro_rules! on_fast_tx {
    ($store:expr, $tx:ident, $err:ty => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite { writer, .. } => $crate::lite_tx!(writer, $tx, $err => $body),
            $crate::Backend::Postgres(p) => {
                let mut $tx = p.begin().await?;
                let result: std::result::Result<_, $err> = async { $body }.await;
                match result {
                    Ok(v) => {
                        $tx.commit().await?;
                        Ok(v)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    };
}
/// Runs `$body`, written with [`sql`] only, on a write connection `$conn`: on
/// Postgres each statement stands alone (autocommitted); on SQLite the body is
/// one transaction on the writer's own connection. `$err` is the body's error
/// type.
macro_rules! on_fast_each {
    ($store:expr, $conn:ident, $err:ty => $body:expr) => {
        match &$store.backend {
            // One transaction: its statements run back to back under the writer
            // lock anyway, and only BEGIN waits for another process.
            $crate::Backend::Sqlite { writer, .. } => $crate::lite_tx!(writer, $conn, $err => $body),
            $crate::Backend::Postgres(p) => {
                let mut pooled = p.acquire().await?;
                let $conn: &mut sqlx::PgConnection = &mut pooled;
                let result: std::result::Result<_, $err> = async { $body }.await;
                result
            }
        }
    };
}
pub(crate) use {lite_tx, on_fast_each, on_fast_read, on_fast_tx, on_read, on_write, on_write_tx};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens the database (without migrating it).
    pub async fn connect(config: &DatabaseConfig) -> Result<Store> {
        let backend = match config {
            DatabaseConfig::Sqlite { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))?;
                let options = SqliteConnectOptions::new()
                    .filename(dir.join("vouch.db"))
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // NORMAL in WAL mode survives a killed process (only power loss
                    // can drop the last commits), at a fraction of FULL's fsyncs.
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                // Checkpoints run beside the writer, not inside whichever commit
                // crosses the WAL threshold: that commit's visitors would wait.
                let write_options = options.clone().pragma("wal_autocheckpoint", "0");
                let write = SqlitePoolOptions::new().max_connections(1).connect_with(write_options).await?;
                let read = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
                let lite = sql::Lite::open(&dir.join("vouch.db"))?;
                let readers = std::sync::Arc::new(sql::Readers::open(&dir.join("vouch.db"), 4)?);
                tokio::spawn(checkpoint_wal(read.clone()));
                Backend::Sqlite { write, read, writer: std::sync::Arc::new(sql::Writer::new(lite)), readers }
            }
            DatabaseConfig::Postgres { url, max_connections } => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(*max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                Backend::Postgres(pool)
            }
        };
        Ok(Store { backend })
    }

    /// Opens and brings the schema up to date.
    pub async fn open(config: &DatabaseConfig) -> Result<Store> {
        let store = Store::connect(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite { write, writer, .. } => {
                let _writer = writer.exclusive().await;
                SQLITE_MIGRATIONS.run(write).await?
            }
            Backend::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub fn engine(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        on_read!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { write, read, writer, .. } => {
                writer.close();
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Returns the stored value of `key`, storing `value` first if there is none.
    /// Every replica sharing a database thus agrees on, say, the IP-hashing key.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        on_write!(self, p => {
            sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(p)
                .await?;
            let (v,): (String,) = sqlx::query_as("SELECT value FROM settings WHERE key = $1").bind(key).fetch_one(p).await?;
            Ok(v)
        })
    }

    /// A number that changes whenever a program, participant or code changes in a
    /// way a cached redirect must see.
    pub async fn cache_epoch(&self) -> Result<i64> {
        let (epoch,): (i64,) =
            on_read!(self, p => sqlx::query_as("SELECT epoch FROM cache_epoch WHERE id = 1").fetch_one(p).await?);
        Ok(epoch)
    }

    /// Whether anything has been stored yet (the demo fills only an empty database).
    pub async fn has_programs(&self) -> Result<bool> {
        let (n,): (i64,) = on_read!(self, p => sqlx::query_as("SELECT COUNT(*) FROM programs").fetch_one(p).await?);
        Ok(n > 0)
    }
}

/// Copies the SQLite write-ahead log back into the database every second, in
/// PASSIVE mode (never blocks the writer), until the pool closes.
async fn checkpoint_wal(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if pool.is_closed() {
                break;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

const BUMP_EPOCH: &str = "UPDATE cache_epoch SET epoch = epoch + 1 WHERE id = 1";

pub(crate) fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(crate) fn timestamp(micros: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(micros).map_err(|e| StoreError::Corrupt(format!("time {micros}: {e}")))
}
