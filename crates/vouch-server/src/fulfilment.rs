//! Hands approved credits and plan upgrades to billing, in each server every
//! [`INTERVAL`]: an outbox row of kind `billing` per reward, written with the
//! marker that makes a second hand-over impossible, so replicas may run it at
//! once. A later integration (webhook, Stripe) delivers the rows; the mail
//! worker leaves them alone.

use std::time::Duration;

use vouch_store::{Store, StoreError};

use crate::Clock;

/// Rewards handed over per transaction.
pub const BATCH: u32 = 500;

/// How often each server hands rewards over: billing applies credits to the
/// next invoice, so a minute's delay is nothing.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Hands over every approved credit and plan upgrade not yet handed over.
/// Returns how many were.
pub async fn hand_over_all(store: &Store, now: jiff::Timestamp) -> Result<u64, StoreError> {
    store.hand_over_to_billing(now, BATCH).await
}

/// Runs [`hand_over_all`] every `every` until the store is closed.
pub fn spawn(store: Store, clock: Clock, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match hand_over_all(&store, clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rewards = n, "rewards handed to billing"),
                Err(e) if e.is_closed() => return,
                Err(e) => tracing::warn!(error = %e, "handing rewards to billing failed"),
            }
        }
    });
}
