//! The release job in each server: ends due holds every `holds_interval`.
//! Replicas on one Postgres share the work (the store skips rows another
//! replica holds), and each reward is released once.

use std::sync::Arc;
use std::time::Duration;

use vouch_store::{ReleaseReport, Store, StoreError};

use crate::Clock;

/// Rewards released per transaction: short enough not to hold row locks long.
pub const BATCH: u32 = 500;

/// Ends every hold due at `now`, batch after batch, until none is due.
pub async fn release_all_due(store: &Store, now: jiff::Timestamp) -> Result<ReleaseReport, StoreError> {
    let mut all = ReleaseReport::default();
    loop {
        let report = store.release_due_holds(now, BATCH).await?;
        let done = report.entries.len() < BATCH as usize;
        all.entries.extend(report.entries);
        if done {
            return Ok(all);
        }
    }
}

#[derive(Clone)]
pub struct HoldsWorker(Arc<WorkerInner>);

struct WorkerInner {
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl HoldsWorker {
    /// Starts the worker; with no interval, it does nothing (tests that call
    /// [`release_all_due`] themselves).
    pub fn start(store: Store, clock: Clock, interval: Option<Duration>) -> HoldsWorker {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = interval.map(|every| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => match release_all_due(&store, clock.now()).await {
                            Ok(report) if !report.is_empty() => {
                                tracing::info!(released = report.entries.len(), "holds released");
                            }
                            Ok(_) => {}
                            Err(e) if e.is_closed() => return,
                            Err(e) => tracing::warn!(error = %e, "holds worker: releasing holds failed"),
                        },
                        _ = stopped.changed() => return,
                    }
                }
            })
        });
        HoldsWorker(Arc::new(WorkerInner { stop, task: std::sync::Mutex::new(task) }))
    }

    /// Stops the worker and waits for a pass in progress to finish.
    pub async fn stop(&self) {
        let _ = self.0.stop.send(true);
        let task = self.0.task.lock().map(|mut t| t.take()).unwrap_or_default();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
