//! Fresh databases for tests, on both engines.
//!
//! SQLite: a new folder per test. Postgres (when `VOUCH_TEST_DATABASE_URL` names a
//! server): a new database per test, cloned from a template migrated once per
//! schema version, so tests run in parallel and start in milliseconds.

use std::path::PathBuf;

use sqlx::{Connection, Executor, PgConnection};

use crate::{DatabaseConfig, POSTGRES_MIGRATIONS, Store};

static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub const POSTGRES_ENV: &str = "VOUCH_TEST_DATABASE_URL";

/// A database made for one test. SQLite folders are removed on drop; Postgres
/// databases are swept by a later run once they are an hour old.
pub struct TestDatabase {
    pub config: DatabaseConfig,
    pub engine: &'static str,
    _dir: Option<tempfile_dir::TempDir>,
}

mod tempfile_dir {
    /// A folder removed on drop (std has none; this keeps `tempfile` out of the
    /// store's normal dependencies).
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestDatabase {
    pub async fn sqlite() -> TestDatabase {
        let dir = std::env::temp_dir().join(format!("vouch-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TestDatabase {
            config: DatabaseConfig::Sqlite { dir: dir.clone() },
            engine: "sqlite",
            _dir: Some(tempfile_dir::TempDir(dir)),
        }
    }

    /// A fresh Postgres database, or `None` when no server is configured. Under
    /// `CI=true` a missing server is a failure, not a skip.
    pub async fn postgres() -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but {POSTGRES_ENV} is not set: the Postgres suite must run in CI");
            }
            eprintln!("{POSTGRES_ENV} is not set: skipping the Postgres half of this test");
            return None;
        };
        let url = clone_template(&admin_url).await;
        Some(TestDatabase {
            config: DatabaseConfig::Postgres { url, max_connections: 8 },
            engine: "postgres",
            _dir: None,
        })
    }

    /// Every engine available here: SQLite always, Postgres when configured.
    pub async fn all() -> Vec<TestDatabase> {
        let mut all = vec![TestDatabase::sqlite().await];
        all.extend(TestDatabase::postgres().await);
        all
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.config).await.expect("open test store")
    }

    /// The Postgres URL, or the SQLite folder, for handing to a `vouch` process.
    pub fn cli_args(&self) -> Vec<String> {
        match &self.config {
            DatabaseConfig::Sqlite { dir } => vec!["--data".into(), dir.display().to_string()],
            DatabaseConfig::Postgres { url, .. } => vec!["--database-url".into(), url.clone()],
        }
    }

    pub fn data_dir(&self) -> Option<PathBuf> {
        match &self.config {
            DatabaseConfig::Sqlite { dir } => Some(dir.clone()),
            DatabaseConfig::Postgres { .. } => None,
        }
    }
}

fn with_database(admin_url: &str, db: &str) -> String {
    let mut url = url::Url::parse(admin_url).expect("VOUCH_TEST_DATABASE_URL is a URL");
    url.set_path(db);
    url.to_string()
}

/// Names the template after the migrations, so a schema change makes a new one.
fn template_name() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for m in POSTGRES_MIGRATIONS.iter() {
        for b in m.checksum.iter().chain(m.version.to_le_bytes().iter()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
    }
    format!("vouch_tpl_{h:016x}")
}

async fn clone_template(admin_url: &str) -> String {
    let mut admin = PgConnection::connect(admin_url).await.expect("connect to the test Postgres server");
    // One process at a time makes the template and clones it: CREATE DATABASE
    // refuses a template that another session is using.
    admin.execute("SELECT pg_advisory_lock(72201)").await.expect("advisory lock");
    let template = template_name();
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&template)
        .fetch_optional(&mut admin)
        .await
        .expect("look up template");
    if !SWEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        sweep_old_databases(&mut admin).await;
    }
    if exists.is_none() {
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {template}"))).await.expect("create template");
        let store =
            Store::open(&DatabaseConfig::Postgres { url: with_database(admin_url, &template), max_connections: 1 })
                .await
                .expect("migrate template");
        store.close().await;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    // The whole v7 id: its first hex digits are only the millisecond, its tail is random.
    let name = format!("vouch_t_{now}_{}", uuid::Uuid::now_v7().simple());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {template}")))
        .await
        .expect("clone template");
    admin.execute("SELECT pg_advisory_unlock(72201)").await.expect("advisory unlock");
    admin.close().await.ok();
    with_database(admin_url, &name)
}

/// Drops test databases of earlier runs, older than an hour (their name carries
/// their creation time), and templates of older schemas.
async fn sweep_old_databases(admin: &mut PgConnection) {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT datname FROM pg_database WHERE datname LIKE 'vouch_t\\_%' OR datname LIKE 'vouch_tpl\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    for (name,) in names {
        let old = match name.strip_prefix("vouch_t_").and_then(|r| r.split('_').next()) {
            Some(secs) => secs.parse::<u64>().is_ok_and(|t| t + 3600 < now),
            None => name != template_name(),
        };
        if old {
            let _ = admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await;
        }
    }
}
