//! Diagnosis for the event-ingestion benchmark (docs/benchmarks.md): what one
//! SQLite statement costs through sqlx's worker thread, against the same
//! statements handed over in one piece.
//!
//!   cargo run --release -p vouch-store --example sqlite_statements [TXS] [TASKS]
//!
//! Each transaction is what an event does in shape: `BEGIN IMMEDIATE`, 17
//! inserts and 17 primary-key reads, `COMMIT`, on one writer connection in WAL
//! mode with `synchronous=NORMAL`, as the store opens it. Run four ways:
//! - baseline: the same SQL text sent as one `raw_sql` call per transaction,
//!   which crosses to sqlx's worker thread once instead of 36 times;
//! - statement by statement through sqlx from one task, then from TASKS tasks
//!   sharing the one-connection pool (as the server's requests do);
//! - a synchronous writer: one thread owning a rusqlite connection runs each
//!   whole transaction with cached prepared statements, TASKS tasks handing it
//!   transactions over a channel (one hand-off per transaction, not per statement).

use std::time::Instant;

use rusqlite::params;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

const PAIRS: usize = 17;

async fn one_by_one(pool: &Pool<Sqlite>, tx_no: usize) -> sqlx::Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for i in 0..PAIRS {
        let id = (tx_no * PAIRS + i) as i64;
        sqlx::query("INSERT INTO t (id, v, s) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(id * 7)
            .bind("some text of an event")
            .execute(&mut *tx)
            .await?;
        let _: (i64,) = sqlx::query_as("SELECT v FROM t WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
    }
    tx.commit().await
}

fn as_text(tx_no: usize) -> String {
    let mut sql = String::from("BEGIN IMMEDIATE;");
    for i in 0..PAIRS {
        let id = tx_no * PAIRS + i;
        sql.push_str(&format!(
            "INSERT INTO t (id, v, s) VALUES ({id}, {}, 'some text of an event'); SELECT v FROM t WHERE id = {id};",
            id * 7
        ));
    }
    sql.push_str("COMMIT;");
    sql
}

/// The writer thread: runs each transaction it is sent and answers when committed.
fn sync_writer(path: std::path::PathBuf) -> std::sync::mpsc::Sender<(usize, tokio::sync::oneshot::Sender<()>)> {
    let (send, receive) = std::sync::mpsc::channel::<(usize, tokio::sync::oneshot::Sender<()>)>();
    std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL").expect("synchronous");
        for (tx_no, done) in receive {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).expect("begin");
            for i in 0..PAIRS {
                let id = (tx_no * PAIRS + i) as i64;
                tx.prepare_cached("INSERT INTO t (id, v, s) VALUES (?1, ?2, ?3)")
                    .and_then(|mut q| q.execute(params![id, id * 7, "some text of an event"]))
                    .expect("insert");
                let _: i64 = tx
                    .prepare_cached("SELECT v FROM t WHERE id = ?1")
                    .and_then(|mut q| q.query_row(params![id], |r| r.get(0)))
                    .expect("select");
            }
            tx.commit().expect("commit");
            let _ = done.send(());
        }
    });
    send
}

async fn fresh(dir: &std::path::Path, name: &str) -> sqlx::Result<Pool<Sqlite>> {
    let options = SqliteConnectOptions::new()
        .filename(dir.join(name))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, s TEXT NOT NULL)").execute(&pool).await?;
    sqlx::query("CREATE INDEX t_v ON t (v)").execute(&pool).await?;
    Ok(pool)
}

fn report(name: &str, txs: usize, secs: f64) -> f64 {
    let per_tx_us = secs * 1e6 / txs as f64;
    println!(
        "{name:<28} {txs} transactions in {secs:.3} s: {:.0} tx/s, {per_tx_us:.0} µs per transaction, {:.1} µs per statement",
        txs as f64 / secs,
        per_tx_us / (2 * PAIRS + 2) as f64
    );
    secs
}

#[tokio::main]
async fn main() -> sqlx::Result<()> {
    let mut args = std::env::args().skip(1);
    let txs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let dir = std::env::temp_dir().join(format!("vouch-sqlite-statements-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let pool = fresh(&dir, "baseline.db").await?;
    let started = Instant::now();
    for n in 0..txs {
        // Literal values we made ourselves: nothing from outside.
        sqlx::raw_sql(sqlx::AssertSqlSafe(as_text(n))).execute(&pool).await?;
    }
    let baseline = report("baseline: one call per tx", txs, started.elapsed().as_secs_f64());

    let pool = fresh(&dir, "sequential.db").await?;
    let started = Instant::now();
    for n in 0..txs {
        one_by_one(&pool, n).await?;
    }
    let sequential = report("statement by statement", txs, started.elapsed().as_secs_f64());

    let pool = fresh(&dir, "concurrent.db").await?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut n = t;
            while n < txs {
                one_by_one(&pool, n).await?;
                n += tasks;
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for h in handles {
        h.await.expect("task")?;
    }
    let concurrent = report(&format!("the same from {tasks} tasks"), txs, started.elapsed().as_secs_f64());

    drop(fresh(&dir, "sync.db").await?);
    let writer = sync_writer(dir.join("sync.db"));
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            let mut n = t;
            while n < txs {
                let (done, committed) = tokio::sync::oneshot::channel();
                writer.send((n, done)).expect("writer alive");
                committed.await.expect("committed");
                n += tasks;
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    let synchronous = report(&format!("sync writer, {tasks} tasks"), txs, started.elapsed().as_secs_f64());

    println!(
        "time relative to the baseline: sqlx statement by statement {:.2}×, sqlx from {tasks} tasks {:.2}×, synchronous writer {:.2}×",
        sequential / baseline,
        concurrent / baseline,
        synchronous / baseline
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
