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
use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{PgConnection, Postgres, Row as _, Sqlite, SqliteConnection};
use tokio::sync::{MutexGuard, watch};
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

/// Defines a row struct (with its attributes, such as sqlx's own derive) and
/// its [`FromRow`]: its fields are named as the columns it reads.
macro_rules! lite_row {
    (
        $(#[$attr:meta])*
        $vis:vis struct $row:ident { $($(#[$fattr:meta])* $fvis:vis $field:ident: $ty:ty),+ $(,)? }
    ) => {
        $(#[$attr])*
        $vis struct $row { $($(#[$fattr])* $fvis $field: $ty),+ }

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

/// The SQLite writer's own connection. The store holds it in its [`Writer`],
/// whose lock every SQLite write (this connection's or sqlx's) takes first:
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
        // [`Lite::begin_immediate`] waits for it by yielding instead.
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

    /// A connection for reading only, opened as [`Lite::open`] does.
    pub(crate) fn open_reader(path: &Path) -> Result<Lite, sqlx::Error> {
        let conn = rusqlite::Connection::open(path).map_err(from_lite)?;
        conn.pragma_update(None, "query_only", "ON").map_err(from_lite)?;
        conn.pragma_update(None, "cache_size", -8_000).map_err(from_lite)?;
        conn.pragma_update(None, "mmap_size", 1_i64 << 30).map_err(from_lite)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Lite { conn })
    }

    fn run(&self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn.execute_batch(sql).map_err(from_lite)
    }

    /// A statement without parameters or rows, kept prepared.
    fn run_cached(&self, sql: &str) -> Result<(), sqlx::Error> {
        self.rows(sql, &[], |rows| rows.next().map(|_| ()))
    }

    /// Ends whatever transaction is open, keeping nothing of it.
    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.run("ROLLBACK");
        }
    }

    /// `BEGIN IMMEDIATE`: the write lock at once, as the sqlx writer takes it.
    /// Waits, yielding, while another connection (another process, or another
    /// store in this one) holds it: up to [`BUSY_TIMEOUT`], as the sqlx
    /// connections' busy timeout.
    async fn begin_immediate(&mut self) -> Result<(), sqlx::Error> {
        let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_micros(500);
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(()),
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

/// Connections for the hot paths' reads (the API key, the program, the
/// holder and registry checks of an event), run inline as the writer's
/// statements are: through sqlx each read is two hand-offs between threads,
/// which cost more CPU than the read itself.
pub(crate) struct Readers {
    lites: Vec<tokio::sync::Mutex<Lite>>,
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn open(path: &Path, count: usize) -> Result<Readers, sqlx::Error> {
        let lites =
            (0..count).map(|_| Lite::open_reader(path).map(tokio::sync::Mutex::new)).collect::<Result<_, _>>()?;
        Ok(Readers { lites, next: AtomicUsize::new(0) })
    }

    /// A free connection, or the next one in turn when all are busy.
    pub(crate) async fn get(&self) -> MutexGuard<'_, Lite> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.lites.len() {
            if let Ok(lite) = self.lites[(first + i) % self.lites.len()].try_lock() {
                return lite;
            }
        }
        self.lites[first % self.lites.len()].lock().await
    }
}

/// How long a write waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite writer: its own connection, behind the lock every write in this
/// process takes, committing in batches.
///
/// Group commit: a member (one request's transaction) that finds others queued
/// for the lock leaves the transaction open for them, each in a savepoint of
/// its own, and the last of the queue commits for all; nobody is answered
/// before the commit that holds their writes. A commit writes every page the
/// batch changed once, where committing each member writes the same index
/// pages again and again (decision 0015 measured ~90 µs a commit).
pub(crate) struct Writer {
    state: tokio::sync::Mutex<WriterState>,
    /// Tasks queued for the lock: a member leaves the batch open only for them.
    waiting: AtomicUsize,
    finished: watch::Sender<Finished>,
    /// Set when the store closes: the inline connections then refuse work as
    /// sqlx's closed pools do, so background workers stop.
    closed: AtomicBool,
}

pub(crate) struct WriterState {
    pub(crate) lite: Lite,
    open: Option<Batch>,
    last_id: u64,
}

struct Batch {
    id: u64,
    members: usize,
}

/// The last batch committed (or failed), and the recent failures.
#[derive(Default)]
struct Finished {
    last: u64,
    failures: VecDeque<(u64, String)>,
}

/// A batch larger than this commits even with others queued: it bounds how
/// long the first member waits for its answer.
const MAX_MEMBERS: usize = 64;

/// A member waiting this long for its batch's commit commits it itself: the
/// task it was left open for may have been cancelled while queued.
const STRANDED: Duration = Duration::from_millis(20);

impl Writer {
    pub(crate) fn new(lite: Lite) -> Writer {
        Writer {
            state: tokio::sync::Mutex::new(WriterState { lite, open: None, last_id: 0 }),
            waiting: AtomicUsize::new(0),
            finished: watch::Sender::new(Finished::default()),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// `Err(PoolClosed)` once the store is closed.
    pub(crate) fn check_open(&self) -> Result<(), sqlx::Error> {
        if self.closed.load(Ordering::SeqCst) { Err(sqlx::Error::PoolClosed) } else { Ok(()) }
    }

    /// The lock, counted as queued while waiting for it.
    pub(crate) async fn lock(&self) -> MutexGuard<'_, WriterState> {
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _queued = Queued(&self.waiting);
        self.state.lock().await
    }

    /// The lock for a write through sqlx: the open batch is committed first,
    /// so that connection does not find the database locked by this one.
    pub(crate) async fn exclusive(&self) -> MutexGuard<'_, WriterState> {
        let mut state = self.lock().await;
        self.commit(&mut state);
        state
    }

    /// Starts a member: joins the open batch or begins one, and opens the
    /// member's savepoint. Answers the batch's id.
    pub(crate) async fn enter(&self, state: &mut WriterState) -> Result<u64, sqlx::Error> {
        if state.open.is_none() {
            state.lite.begin_immediate().await?;
            state.last_id += 1;
            state.open = Some(Batch { id: state.last_id, members: 0 });
        }
        state.lite.run_cached("SAVEPOINT member")?;
        let batch = state.open.as_mut().expect("a batch was just opened");
        batch.members += 1;
        Ok(batch.id)
    }

    /// Ends a member: keeps its statements (`keep`) or undoes them, then
    /// commits the batch unless others are queued to join it.
    pub(crate) fn leave(&self, state: &mut WriterState, keep: bool) -> Result<(), sqlx::Error> {
        let kept = if keep { state.lite.run_cached("RELEASE member") } else { Ok(()) };
        if !keep || kept.is_err() {
            // Undo this member only; the batch's other members stay.
            let undone =
                state.lite.run_cached("ROLLBACK TO member").and_then(|()| state.lite.run_cached("RELEASE member"));
            if undone.is_err() {
                state.lite.rollback();
                self.fail_open(state, "a member could not be undone");
            }
        }
        let full = state.open.as_ref().is_some_and(|b| b.members >= MAX_MEMBERS);
        if full || self.waiting.load(Ordering::SeqCst) == 0 {
            self.commit(state);
        }
        kept
    }

    /// Commits the open batch, if any, and tells its members.
    fn commit(&self, state: &mut WriterState) {
        let Some(batch) = state.open.take() else { return };
        let outcome = state.lite.run("COMMIT");
        if outcome.is_err() {
            state.lite.rollback();
        }
        self.finish(batch.id, outcome.err().map(|e| e.to_string()));
    }

    /// Ends the open batch with nothing kept (it was rolled back).
    fn fail_open(&self, state: &mut WriterState, why: &str) {
        if let Some(batch) = state.open.take() {
            self.finish(batch.id, Some(why.to_string()));
        }
    }

    /// Tells the members of batch `id` it ended, and how.
    fn finish(&self, id: u64, failure: Option<String>) {
        self.finished.send_modify(|f| {
            f.last = id;
            if let Some(why) = failure {
                f.failures.push_back((id, why));
                if f.failures.len() > 16 {
                    f.failures.pop_front();
                }
            }
        });
    }

    /// Waits until `batch` is committed: `Err` if its commit failed (nothing
    /// of it was kept).
    pub(crate) async fn committed(&self, batch: u64) -> Result<(), sqlx::Error> {
        let mut finished = self.finished.subscribe();
        loop {
            {
                let f = finished.borrow_and_update();
                if f.last >= batch {
                    return match f.failures.iter().find(|(id, _)| *id == batch) {
                        Some((_, e)) => Err(sqlx::Error::Protocol(format!("the write was not committed: {e}"))),
                        None => Ok(()),
                    };
                }
            }
            tokio::select! {
                _ = finished.changed() => {}
                () = tokio::time::sleep(STRANDED) => {
                    let mut state = self.state.lock().await;
                    if state.open.as_ref().is_some_and(|b| b.id == batch) {
                        self.commit(&mut state);
                    }
                }
            }
        }
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
    async fn a_unique_violation_is_a_conflict_naming_the_column() {
        let (_dir, mut lite) = lite();
        query("CREATE TABLE codes (code TEXT PRIMARY KEY)").execute(&mut lite).await.unwrap();
        query("INSERT INTO codes (code) VALUES ($1)").bind("abc").execute(&mut lite).await.unwrap();
        let err = query("INSERT INTO codes (code) VALUES ($1)").bind("abc").execute(&mut lite).await.unwrap_err();
        let err = crate::StoreError::classify(err);
        assert!(err.is_conflict_on("codes"), "{err:?}");
    }

    /// A writer over a table `t (n)`, and a second connection to read what
    /// was committed.
    async fn writer() -> (tempfile::TempDir, std::sync::Arc<Writer>, rusqlite::Connection) {
        let (dir, mut lite) = lite();
        query("CREATE TABLE t (n INTEGER PRIMARY KEY)").execute(&mut lite).await.unwrap();
        let reader = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        (dir, std::sync::Arc::new(Writer::new(lite)), reader)
    }

    fn committed_rows(reader: &rusqlite::Connection) -> Vec<i64> {
        let mut stmt = reader.prepare("SELECT n FROM t ORDER BY n").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    async fn insert(writer: &Writer, n: i64) -> Result<(), crate::StoreError> {
        crate::lite_tx!(writer, tx, crate::StoreError => {
            query("INSERT INTO t (n) VALUES ($1)").bind(n).execute(&mut *tx).await?;
            Ok(())
        })
    }

    #[tokio::test]
    async fn members_queued_together_commit_in_one_batch_and_a_failed_member_is_undone_alone() {
        let (_dir, writer, reader) = writer().await;
        insert(&writer, 7).await.unwrap();
        assert_eq!(committed_rows(&reader), vec![7]);
        let before = writer.finished.borrow().last;
        // Hold the lock while twenty members queue behind it; one of them
        // fails (7 is taken).
        let held = writer.lock().await;
        let members: Vec<_> = (0..20_i64)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { insert(&writer, if i == 10 { 7 } else { 100 + i }).await })
            })
            .collect();
        while writer.waiting.load(Ordering::SeqCst) < 20 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let mut outcomes = Vec::new();
        for m in members {
            outcomes.push(m.await.unwrap().is_ok());
        }
        assert_eq!(outcomes.iter().filter(|ok| !**ok).count(), 1, "{outcomes:?}");
        assert!(!outcomes[10]);
        // Every member that answered Ok is committed, the failed one left nothing.
        let mut expected: Vec<i64> = std::iter::once(7).chain((0..20).filter(|i| *i != 10).map(|i| 100 + i)).collect();
        expected.sort_unstable();
        assert_eq!(committed_rows(&reader), expected);
        // One commit for the whole queue.
        assert_eq!(writer.finished.borrow().last, before + 1);
    }

    #[tokio::test]
    async fn a_batch_left_open_for_a_member_that_went_away_is_committed_by_its_own_member() {
        let (_dir, writer, reader) = writer().await;
        // Someone queued, so the member leaves the batch open for them...
        writer.waiting.fetch_add(1, Ordering::SeqCst);
        let member = tokio::spawn({
            let writer = writer.clone();
            async move { insert(&writer, 1).await }
        });
        while writer.finished.borrow().last == 0 && writer.state.try_lock().map(|s| s.open.is_none()).unwrap_or(true) {
            tokio::task::yield_now().await;
        }
        // ... and they were cancelled before taking the lock.
        writer.waiting.fetch_sub(1, Ordering::SeqCst);
        member.await.unwrap().unwrap();
        assert_eq!(committed_rows(&reader), vec![1]);
    }

    #[tokio::test]
    async fn a_closed_store_refuses_inline_work_as_a_closed_pool_does() {
        let db = crate::testing::TestDatabase::sqlite().await;
        let store = crate::Store::open(&db.config).await.unwrap();
        store.api_key_by_hash("nothing").await.unwrap();
        store.close().await;
        let now = jiff::Timestamp::now();
        let claimed = store.claim_due_outbox(now, 10, jiff::SignedDuration::from_secs(60)).await;
        assert!(claimed.is_err_and(|e| e.is_closed()), "the mail worker stops on a closed store");
        assert!(store.api_key_by_hash("nothing").await.is_err_and(|e| e.is_closed()));
    }

    #[tokio::test]
    async fn a_write_through_sqlx_finds_the_open_batch_committed() {
        let (_dir, writer, reader) = writer().await;
        writer.waiting.fetch_add(1, Ordering::SeqCst);
        let member = tokio::spawn({
            let writer = writer.clone();
            async move { insert(&writer, 2).await }
        });
        while writer.state.try_lock().map(|s| s.open.is_none()).unwrap_or(true) {
            tokio::task::yield_now().await;
        }
        let state = writer.exclusive().await;
        assert!(state.open.is_none());
        assert_eq!(committed_rows(&reader), vec![2]);
        drop(state);
        writer.waiting.fetch_sub(1, Ordering::SeqCst);
        member.await.unwrap().unwrap();
    }
}
