//! One way to write a statement for three executors: a Postgres connection, a
//! SQLite connection through sqlx, and the SQLite writer's own connection
//! ([`Lite`], on rusqlite).
//!
//! Why the third: sqlx runs each SQLite statement on a worker thread of its own,
//! so a transaction of twenty statements is twenty hand-offs between threads, and
//! the one writer is held through all of them (decision 0014 measured ~20 µs a
//! statement that way against ~2 µs on a connection the caller drives itself).
//! The hot write paths (events, Idempotency-Key records) are written against
//! this module once and run on whichever executor the engine gives them; on
//! SQLite their whole transaction then runs in one go on [`Lite`], with
//! statements prepared once and cached.
//!
//! The SQL text is the same for all three (`$1` placeholders, which SQLite reads
//! as named parameters: [`bind_all`] maps them by number as sqlx does).

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{PgConnection, Postgres, Row as _, Sqlite, SqliteConnection};
use uuid::Uuid;

/// A bound value, owned, typed as the column it goes to (Postgres needs the
/// type of a NULL too).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Int4(Option<i32>),
    Bool(Option<bool>),
    Text(Option<String>),
    Uuid(Option<Uuid>),
}

/// What [`Query::bind`] takes.
pub(crate) trait IntoArg {
    fn into_arg(self) -> Arg;
    /// This type's NULL.
    fn null() -> Arg;
}

macro_rules! into_arg {
    ($t:ty, $variant:ident, $v:ident => $owned:expr) => {
        impl IntoArg for $t {
            fn into_arg(self) -> Arg {
                let $v = self;
                Arg::$variant(Some($owned))
            }
            fn null() -> Arg {
                Arg::$variant(None)
            }
        }
    };
}
into_arg!(i64, Int, v => v);
into_arg!(i32, Int4, v => v);
into_arg!(bool, Bool, v => v);
into_arg!(Uuid, Uuid, v => v);
into_arg!(String, Text, v => v);
into_arg!(&str, Text, v => v.to_string());
into_arg!(&String, Text, v => v.clone());
into_arg!(&&str, Text, v => (*v).to_string());

impl<T: IntoArg> IntoArg for Option<T> {
    fn into_arg(self) -> Arg {
        match self {
            Some(v) => v.into_arg(),
            None => T::null(),
        }
    }
    fn null() -> Arg {
        T::null()
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        // As sqlx stores them: booleans as 0/1, UUIDs as 16-byte blobs.
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Int(Some(v)) => ValueRef::Integer(*v),
            Arg::Int4(Some(v)) => ValueRef::Integer(i64::from(*v)),
            Arg::Bool(Some(v)) => ValueRef::Integer(i64::from(*v)),
            Arg::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Arg::Uuid(Some(v)) => ValueRef::Blob(v.as_bytes()),
            Arg::Int(None) | Arg::Int4(None) | Arg::Bool(None) | Arg::Text(None) | Arg::Uuid(None) => ValueRef::Null,
        }))
    }
}

macro_rules! bind_sqlx {
    ($query:expr, $arg:expr) => {
        match $arg {
            Arg::Int(v) => $query.bind(v),
            Arg::Int4(v) => $query.bind(v),
            Arg::Bool(v) => $query.bind(v),
            Arg::Text(v) => $query.bind(v),
            Arg::Uuid(v) => $query.bind(v),
        }
    };
}

/// A column value readable from all three executors.
pub(crate) trait Col:
    for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + rusqlite::types::FromSql
    + Send
{
}
impl<T> Col for T where
    T: for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + rusqlite::types::FromSql
        + Send
{
}

/// A result row as a Rust value: tuples by position, structs by column name
/// ([`lite_row!`]).
pub(crate) trait FromRow: Sized + Send {
    fn from_pg(row: &PgRow) -> Result<Self, sqlx::Error>;
    fn from_sqlite(row: &SqliteRow) -> Result<Self, sqlx::Error>;
    fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! tuple_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Col),+> FromRow for ($($t,)+) {
            fn from_pg(row: &PgRow) -> Result<Self, sqlx::Error> {
                Ok(($(row.try_get::<$t, _>($i)?,)+))
            }
            fn from_sqlite(row: &SqliteRow) -> Result<Self, sqlx::Error> {
                Ok(($(row.try_get::<$t, _>($i)?,)+))
            }
            fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $t>($i)?,)+))
            }
        }
    };
}
tuple_row!(A 0);
tuple_row!(A 0, B 1);
tuple_row!(A 0, B 1, C 2);
tuple_row!(A 0, B 1, C 2, D 3);
tuple_row!(A 0, B 1, C 2, D 3, E 4);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);

/// [`FromRow`] for a struct whose fields are named as the columns it reads.
macro_rules! lite_row {
    ($row:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::sql::FromRow for $row {
            fn from_pg(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),+ })
            }
            fn from_sqlite(row: &sqlx::sqlite::SqliteRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),+ })
            }
            fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(Self { $($field: row.get(stringify!($field))?),+ })
            }
        }
    };
}
pub(crate) use lite_row;

/// A statement and its bound values; `T` is what a row reads as.
pub(crate) struct Query<T> {
    sql: &'static str,
    args: Vec<Arg>,
    row: PhantomData<fn() -> T>,
}

pub(crate) fn query(sql: &'static str) -> Query<()> {
    Query { sql, args: Vec::new(), row: PhantomData }
}

pub(crate) fn query_as<T: FromRow>(sql: &'static str) -> Query<T> {
    Query { sql, args: Vec::new(), row: PhantomData }
}

/// What running a statement did.
#[derive(Debug)]
pub(crate) struct Done(u64);

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.0
    }
}

impl<T> Query<T> {
    pub(crate) fn bind(mut self, value: impl IntoArg) -> Self {
        self.args.push(value.into_arg());
        self
    }

    pub(crate) async fn execute<E: Exec + ?Sized>(self, ex: &mut E) -> Result<Done, sqlx::Error> {
        ex.execute(self.sql, self.args).await.map(Done)
    }
}

impl<T: FromRow> Query<T> {
    pub(crate) async fn fetch_optional<E: Exec + ?Sized>(self, ex: &mut E) -> Result<Option<T>, sqlx::Error> {
        Ok(ex.fetch::<T>(self.sql, self.args, true).await?.pop())
    }

    pub(crate) async fn fetch_one<E: Exec + ?Sized>(self, ex: &mut E) -> Result<T, sqlx::Error> {
        self.fetch_optional(ex).await?.ok_or(sqlx::Error::RowNotFound)
    }

    pub(crate) async fn fetch_all<E: Exec + ?Sized>(self, ex: &mut E) -> Result<Vec<T>, sqlx::Error> {
        ex.fetch::<T>(self.sql, self.args, false).await
    }
}

/// Something that runs statements: a connection, or a transaction through it.
pub(crate) trait Exec: Send {
    /// Whether this runs on Postgres, where rows are locked explicitly.
    const POSTGRES: bool;

    /// Runs the statement to its end (a `RETURNING` clause's rows are
    /// dropped) and answers the rows it changed.
    fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// The rows, or only the first when `first_only`.
    fn fetch<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
        first_only: bool,
    ) -> impl Future<Output = Result<Vec<T>, sqlx::Error>> + Send;
}

/// Whether `ex` runs on Postgres (some statements differ by engine).
pub(crate) fn on_postgres<E: Exec + ?Sized>(_: &E) -> bool {
    E::POSTGRES
}

macro_rules! exec_sqlx {
    ($conn:ty, $from_row:ident, $postgres:expr) => {
        impl Exec for $conn {
            const POSTGRES: bool = $postgres;

            async fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
                let mut q = sqlx::query(sql);
                for arg in args {
                    q = bind_sqlx!(q, arg);
                }
                Ok(q.execute(self).await?.rows_affected())
            }

            async fn fetch<T: FromRow>(
                &mut self,
                sql: &'static str,
                args: Vec<Arg>,
                first_only: bool,
            ) -> Result<Vec<T>, sqlx::Error> {
                let mut q = sqlx::query(sql);
                for arg in args {
                    q = bind_sqlx!(q, arg);
                }
                let rows = if first_only {
                    q.fetch_optional(self).await?.into_iter().collect()
                } else {
                    q.fetch_all(self).await?
                };
                rows.iter().map(T::$from_row).collect()
            }
        }
    };
}
exec_sqlx!(PgConnection, from_pg, true);
exec_sqlx!(SqliteConnection, from_sqlite, false);

/// The SQLite writer's own connection. The store holds it behind the writer
/// lock, which every SQLite write (this connection's or sqlx's) takes first:
/// two connections writing in one process would otherwise meet in SQLite's
/// busy handler, which sleeps for milliseconds.
pub(crate) struct Lite {
    conn: rusqlite::Connection,
}

impl Lite {
    /// Opens `path` as the sqlx connections do: WAL, `synchronous=NORMAL`,
    /// foreign keys on, no checkpoints inside commits (a task runs them).
    pub(crate) fn open(path: &Path) -> Result<Lite, sqlx::Error> {
        let conn = rusqlite::Connection::open(path).map_err(from_lite)?;
        // No busy handler: it would sleep on the async task's thread. Only
        // BEGIN IMMEDIATE waits for another process's writer, and
        // [`LiteTx::begin`] waits for it by yielding instead.
        conn.busy_timeout(Duration::ZERO).map_err(from_lite)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(from_lite)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(from_lite)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(from_lite)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(from_lite)?;
        // The writer re-reads the same index pages transaction after
        // transaction: keep them (32 MB rather than 2) and read the file through
        // a mapping rather than a system call per page.
        conn.pragma_update(None, "cache_size", -32_000).map_err(from_lite)?;
        conn.pragma_update(None, "mmap_size", 1_i64 << 30).map_err(from_lite)?;
        // Every statement of the hot paths stays prepared.
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Lite { conn })
    }

    fn run(&self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn.execute_batch(sql).map_err(from_lite)
    }
}

impl Exec for Lite {
    const POSTGRES: bool = false;

    async fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        self.rows(sql, &args, |rows| {
            while rows.next()?.is_some() {}
            Ok(())
        })?;
        Ok(self.conn.changes())
    }

    async fn fetch<T: FromRow>(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
        first_only: bool,
    ) -> Result<Vec<T>, sqlx::Error> {
        self.rows(sql, &args, |rows| {
            let mut out = Vec::new();
            // A DML statement's changes are all made at its first step, so
            // stopping after the first row of a RETURNING leaves nothing half done.
            while let Some(row) = rows.next()? {
                out.push(T::from_lite(row)?);
                if first_only {
                    break;
                }
            }
            Ok(out)
        })
    }
}

impl Lite {
    /// Runs the cached statement `sql` with `args` and hands its rows to `read`.
    fn rows<R>(
        &self,
        sql: &str,
        args: &[Arg],
        read: impl FnOnce(&mut rusqlite::Rows<'_>) -> rusqlite::Result<R>,
    ) -> Result<R, sqlx::Error> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(from_lite)?;
        bind_all(&mut stmt, args).map_err(from_lite)?;
        read(&mut stmt.raw_query()).map_err(from_lite)
    }
}

/// Binds `$N` (SQLite names it "$N") to `args[N - 1]`, wherever and however
/// often it appears.
fn bind_all(stmt: &mut rusqlite::Statement<'_>, args: &[Arg]) -> rusqlite::Result<()> {
    for index in 1..=stmt.parameter_count() {
        let number = stmt
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(index);
        let arg = args.get(number - 1).ok_or(rusqlite::Error::InvalidParameterCount(number, args.len()))?;
        stmt.raw_bind_parameter(index, arg)?;
    }
    Ok(())
}

/// How long a write waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A write transaction on [`Lite`]: `BEGIN IMMEDIATE` (the write lock at
/// once, as the sqlx writer takes it), rolled back when dropped uncommitted.
pub(crate) struct LiteTx<'a> {
    lite: &'a mut Lite,
    open: bool,
}

impl<'a> LiteTx<'a> {
    /// Waits, yielding, while another connection (another process, or another
    /// store in this one) holds the write lock: up to [`BUSY_TIMEOUT`], as the
    /// sqlx connections' busy timeout.
    pub(crate) async fn begin(lite: &'a mut Lite) -> Result<Self, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_micros(500);
        loop {
            match lite.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(LiteTx { lite, open: true }),
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(from_lite(e)),
            }
        }
    }

    pub(crate) fn commit(mut self) -> Result<(), sqlx::Error> {
        self.open = false;
        if let Err(e) = self.lite.run("COMMIT") {
            // A failed COMMIT may leave the transaction open: never hand the
            // connection on inside it.
            if !self.lite.conn.is_autocommit() {
                let _ = self.lite.run("ROLLBACK");
            }
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for LiteTx<'_> {
    fn drop(&mut self) {
        if self.open && !self.lite.conn.is_autocommit() {
            let _ = self.lite.run("ROLLBACK");
        }
    }
}

impl std::ops::Deref for LiteTx<'_> {
    type Target = Lite;
    fn deref(&self) -> &Lite {
        self.lite
    }
}

impl std::ops::DerefMut for LiteTx<'_> {
    fn deref_mut(&mut self) -> &mut Lite {
        self.lite
    }
}

/// A rusqlite error as sqlx reports the same failure, so callers classify both
/// alike (a unique violation is a conflict whose message names the column).
fn from_lite(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            let message = message.unwrap_or_else(|| code.to_string());
            sqlx::Error::Database(Box::new(LiteError { code, message }))
        }
        rusqlite::Error::QueryReturnedNoRows => sqlx::Error::RowNotFound,
        e @ (rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::IntegralValueOutOfRange(..)) => sqlx::Error::Decode(Box::new(e)),
        e => sqlx::Error::Protocol(e.to_string()),
    }
}

#[derive(Debug)]
struct LiteError {
    code: rusqlite::ffi::Error,
    message: String,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LiteError {}

impl DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.extended_code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lite() -> (tempfile::TempDir, Lite) {
        let dir = tempfile::tempdir().unwrap();
        let lite = Lite::open(&dir.path().join("t.db")).unwrap();
        (dir, lite)
    }

    #[tokio::test]
    async fn placeholders_bind_by_number_wherever_and_however_often_they_appear() {
        let (_dir, mut lite) = lite();
        let row: (String, i64, String, Option<String>) = query_as("SELECT $2, $1, $2, $3")
            .bind(7_i64)
            .bind("b")
            .bind(None::<&str>)
            .fetch_one(&mut lite)
            .await
            .unwrap();
        assert_eq!(row, ("b".to_string(), 7, "b".to_string(), None));
    }

    #[tokio::test]
    async fn values_are_stored_as_sqlx_stores_them() {
        let (_dir, mut lite) = lite();
        query("CREATE TABLE t (id BLOB PRIMARY KEY, flag BOOLEAN NOT NULL)").execute(&mut lite).await.unwrap();
        let id = Uuid::now_v7();
        let done =
            query("INSERT INTO t (id, flag) VALUES ($1, $2)").bind(id).bind(true).execute(&mut lite).await.unwrap();
        assert_eq!(done.rows_affected(), 1);
        // A 16-byte blob and 1, as sqlx writes a Uuid and a bool on SQLite.
        let (len, flag): (i64, i64) =
            query_as("SELECT length(id), flag FROM t WHERE typeof(id) = 'blob'").fetch_one(&mut lite).await.unwrap();
        assert_eq!((len, flag), (16, 1));
        let back: (Uuid, bool) = query_as("SELECT id, flag FROM t").fetch_one(&mut lite).await.unwrap();
        assert_eq!(back, (id, true));
    }

    #[tokio::test]
    async fn a_unique_violation_is_a_conflict_naming_the_column_and_a_failed_transaction_leaves_nothing() {
        let (_dir, mut lite) = lite();
        query("CREATE TABLE codes (code TEXT PRIMARY KEY)").execute(&mut lite).await.unwrap();
        query("INSERT INTO codes (code) VALUES ($1)").bind("abc").execute(&mut lite).await.unwrap();
        {
            let mut tx = LiteTx::begin(&mut lite).await.unwrap();
            query("INSERT INTO codes (code) VALUES ($1)").bind("new").execute(&mut *tx).await.unwrap();
            let err = query("INSERT INTO codes (code) VALUES ($1)").bind("abc").execute(&mut *tx).await.unwrap_err();
            let err = crate::StoreError::classify(err);
            assert!(err.is_conflict_on("codes"), "{err:?}");
            // Dropped uncommitted: rolled back.
        }
        let (n,): (i64,) = query_as("SELECT COUNT(*) FROM codes").fetch_one(&mut lite).await.unwrap();
        assert_eq!(n, 1);
        let none: Option<(String,)> =
            query_as("SELECT code FROM codes WHERE code = $1").bind("new").fetch_optional(&mut lite).await.unwrap();
        assert_eq!(none, None);
    }
}
