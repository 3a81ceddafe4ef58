//! Group commit for SQLite's one writer connection.
//!
//! SQLite takes one writer at a time, and each commit costs a write of the WAL
//! frames and a round of file locks. Under load, many requests queue for the
//! writer; instead of one commit each, the requests that find the writer busy
//! join the transaction already open: each runs its statements inside a
//! savepoint of it (so a failing request undoes only its own work), and the
//! last request of the queue — or the first to find the batch full or old —
//! commits for all. Nobody is answered before the commit that holds their
//! writes: a request whose work is done waits for its batch's outcome, and a
//! failed commit fails every request in the batch.
//!
//! A request that finds the writer idle commits alone at once, so an idle
//! server answers as fast as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};
use sqlx::{Connection, Transaction};
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::time::Instant;

/// At most this many requests share one commit...
const MAX_BATCH: usize = 64;
/// ...and a batch is committed once it is this old, however long the queue:
/// a long queue would otherwise hold every answer in the batch.
const MAX_AGE: Duration = Duration::from_millis(3);
/// A request whose batch was left open by a request that went away (its client
/// disconnected) commits it after this long.
const ORPHAN_CHECK: Duration = Duration::from_millis(5);

/// The outcome of one batch's commit, for everyone in it.
type Outcome = Option<Result<(), String>>;

pub(crate) struct GroupWriter {
    pool: SqlitePool,
    open: Mutex<OpenBatch>,
    /// Requests waiting to join: while there are any, a finished request leaves
    /// the commit to them.
    waiting: AtomicUsize,
}

#[derive(Default)]
struct OpenBatch {
    tx: Option<Transaction<'static, Sqlite>>,
    done: Option<Arc<watch::Sender<Outcome>>>,
    jobs: usize,
    opened: Option<Instant>,
}

impl GroupWriter {
    pub(crate) fn new(pool: SqlitePool) -> Arc<GroupWriter> {
        Arc::new(GroupWriter { pool, open: Mutex::new(OpenBatch::default()), waiting: AtomicUsize::new(0) })
    }

    /// Joins the open batch (opening one if none is), holding the writer until
    /// [`Joined::finish`].
    pub(crate) async fn join(self: &Arc<Self>) -> Result<Joined<'_>, sqlx::Error> {
        let guard = {
            let _counted = Counted::new(&self.waiting);
            self.open.lock().await
        };
        let mut joined = Joined { writer: self.clone(), guard: Some(guard), finished: false };
        let batch = joined.batch();
        if batch.tx.is_none() {
            batch.tx = Some(self.pool.begin_with("BEGIN IMMEDIATE").await?);
            batch.done = Some(Arc::new(watch::channel(None).0));
            batch.jobs = 0;
            batch.opened = Some(Instant::now());
        }
        Ok(joined)
    }

    /// Commits the open batch if it is still `done`'s; answers whether it was.
    fn commit_if(batch: &mut OpenBatch, done: Option<&Arc<watch::Sender<Outcome>>>) -> bool {
        let ours = match (done, &batch.done) {
            (Some(d), Some(open)) => Arc::ptr_eq(d, open),
            (None, Some(_)) => true,
            _ => false,
        };
        if !ours {
            return false;
        }
        let (Some(tx), Some(done)) = (batch.tx.take(), batch.done.take()) else { return false };
        batch.jobs = 0;
        batch.opened = None;
        // In its own task, so that a request going away mid-commit cannot leave
        // the batch's outcome unknown to the others. The next batch begins when
        // this connection is back in the pool.
        tokio::spawn(async move {
            let outcome = tx.commit().await.map_err(|e| e.to_string());
            done.send_replace(Some(outcome));
        });
        true
    }

    /// Commits whatever is open (at shutdown).
    pub(crate) async fn flush(&self) {
        let mut batch = self.open.lock().await;
        let done = batch.done.clone();
        if Self::commit_if(&mut batch, None)
            && let Some(done) = done
        {
            drop(batch);
            let _ = done.subscribe().wait_for(Option::is_some).await;
        }
    }
}

/// A request's place in the open batch.
pub(crate) struct Joined<'w> {
    writer: Arc<GroupWriter>,
    guard: Option<MutexGuard<'w, OpenBatch>>,
    finished: bool,
}

impl Joined<'_> {
    fn batch(&mut self) -> &mut OpenBatch {
        self.guard.as_mut().expect("joined until finished")
    }

    /// The batch's transaction: `begin()` on it opens this request's savepoint.
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        self.batch().tx.as_mut().expect("an open batch").as_mut()
    }

    /// Savepoint for this request's statements.
    pub(crate) async fn savepoint(&mut self) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        self.conn().begin().await
    }

    /// Gives the writer up and waits until the batch holding this request's
    /// writes is committed: `Ok` once it is durable, `Err` if that commit failed.
    pub(crate) async fn finish(mut self) -> Result<(), sqlx::Error> {
        self.finished = true;
        let writer = self.writer.clone();
        let mut guard = self.guard.take().expect("joined until finished");
        guard.jobs += 1;
        let done = guard.done.clone().expect("an open batch");
        let mut outcome = done.subscribe();
        let full = guard.jobs >= MAX_BATCH || guard.opened.is_some_and(|t| t.elapsed() >= MAX_AGE);
        if full || writer.waiting.load(Ordering::Acquire) == 0 {
            GroupWriter::commit_if(&mut guard, Some(&done));
        }
        drop(guard);
        loop {
            let waited = tokio::time::timeout(ORPHAN_CHECK, outcome.wait_for(Option::is_some))
                .await
                .map(|r| r.map(|v| v.clone()));
            match waited {
                Ok(Ok(Some(Ok(())))) => return Ok(()),
                Ok(Ok(Some(Err(e)))) => return Err(sqlx::Error::Protocol(format!("group commit failed: {e}"))),
                Ok(Ok(None)) => unreachable!("waited for an outcome"),
                Ok(Err(_)) => return Err(sqlx::Error::Protocol("group commit abandoned".into())),
                Err(_) => {
                    // Nobody committed it yet: the waiters counted when this
                    // request finished may have gone away.
                    let mut guard = writer.open.lock().await;
                    if writer.waiting.load(Ordering::Acquire) == 0 {
                        GroupWriter::commit_if(&mut guard, Some(&done));
                    }
                }
            }
        }
    }
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        // A request that went away after joining (its future dropped): its
        // savepoint rolls back with the connection's next statement; make sure
        // the batch it leaves open is committed for the others.
        if !self.finished
            && let Some(mut guard) = self.guard.take()
            && self.writer.waiting.load(Ordering::Acquire) == 0
        {
            GroupWriter::commit_if(&mut guard, None);
        }
    }
}

/// Counts a request among the waiting while it waits for the writer, and no longer
/// when it got it or went away.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
