//! The bounded batching writer behind the redirect: many clicks per transaction
//! (group commit). While one batch commits, the next one gathers, so batches grow
//! exactly as fast as load does and an idle server commits a click at once.
//!
//! On Postgres several writers take turns at the queue: each commit waits on the
//! server's WAL flush, and overlapping commits share flushes. SQLite has one
//! writer connection, so one writer is all it can use.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use vouch_store::{NewClick, Store};

/// The most clicks in one transaction: bounds latency behind a large backlog.
const MAX_BATCH: usize = 2_000;

struct Job {
    click: NewClick,
    /// Told whether the click committed. Bot visits are not waited for.
    ack: Option<oneshot::Sender<bool>>,
}

#[derive(Clone)]
pub struct ClickWriter {
    tx: Arc<std::sync::Mutex<Option<mpsc::Sender<Job>>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    capacity: usize,
}

/// Why a click was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecorded {
    QueueFull,
    Failed,
    ShuttingDown,
}

impl ClickWriter {
    pub fn start(store: Store, capacity: usize, writers: usize) -> ClickWriter {
        let (tx, rx) = mpsc::channel(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let tasks =
            (0..writers.max(1)).map(|shard| tokio::spawn(run(store.clone(), rx.clone(), capacity, shard))).collect();
        ClickWriter { tx: Arc::new(std::sync::Mutex::new(Some(tx))), tasks: Arc::new(Mutex::new(tasks)), capacity }
    }

    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        self.tx.lock().expect("click writer lock").clone()
    }

    /// Queues a click and returns a receiver that says whether it committed.
    pub fn submit(&self, click: NewClick) -> Result<oneshot::Receiver<bool>, NotRecorded> {
        let (ack, done) = oneshot::channel();
        let sender = self.sender().ok_or(NotRecorded::ShuttingDown)?;
        sender.try_send(Job { click, ack: Some(ack) }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NotRecorded::QueueFull,
            mpsc::error::TrySendError::Closed(_) => NotRecorded::ShuttingDown,
        })?;
        Ok(done)
    }

    /// Queues a bot visit; nobody waits for it.
    pub fn submit_unacknowledged(&self, click: NewClick) -> Result<(), NotRecorded> {
        let sender = self.sender().ok_or(NotRecorded::ShuttingDown)?;
        sender.try_send(Job { click, ack: None }).map_err(|_| NotRecorded::QueueFull)
    }

    /// Stops taking clicks and waits until everything queued is committed.
    pub async fn drain(&self) {
        self.tx.lock().expect("click writer lock").take();
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        for task in tasks {
            let _ = task.await;
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Takes what is waiting, up to a batch; `None` once the queue is closed and empty.
async fn next_batch(rx: &Mutex<mpsc::Receiver<Job>>, capacity: usize) -> Option<Vec<Job>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut batch = Vec::with_capacity(MAX_BATCH.min(capacity));
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    metrics::gauge!("vouch_click_writer_queue_depth").set((capacity - rx.capacity()) as f64);
    Some(batch)
}

async fn run(store: Store, rx: Arc<Mutex<mpsc::Receiver<Job>>>, capacity: usize, shard: usize) {
    while let Some(batch) = next_batch(&rx, capacity).await {
        let (clicks, acks): (Vec<NewClick>, Vec<_>) = batch.into_iter().map(|j| (j.click, j.ack)).unzip();
        let started = Instant::now();
        let result = store.insert_clicks_on_shard(&clicks, shard as i64).await;
        metrics::histogram!("vouch_click_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("vouch_click_batch_size").record(clicks.len() as f64);
        let ok = match result {
            Ok(()) => {
                let bots = clicks.iter().filter(|c| c.is_bot).count();
                metrics::counter!("vouch_clicks_recorded_total").increment((clicks.len() - bots) as u64);
                metrics::counter!("vouch_bot_visits_total").increment(bots as u64);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, clicks = clicks.len(), "click batch failed to commit; visitors go on without click ids");
                false
            }
        };
        for ack in acks.into_iter().flatten() {
            let _ = ack.send(ok);
        }
    }
}
