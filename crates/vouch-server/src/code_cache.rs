//! An in-memory map from code to where it leads, in front of the database.
//!
//! Every server polls one number, the cache epoch, which the store bumps in the
//! same transaction as any change a redirect must see (landing URL, suspension,
//! revocation). When it moves, the whole map is dropped: such changes are rare,
//! and a full reload costs one query per live code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use vouch_domain::ReferralCode;
use vouch_store::{Store, StoreError};

/// Past this many codes the map is dropped and refilled, bounding memory against
/// a flood of distinct codes.
const MAX_ENTRIES: usize = 200_000;
/// A code not found is remembered this long: a vanity code created on another
/// server becomes reachable here within it.
const NEGATIVE_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub enum Target {
    Known { landing_url: url::Url, attributes: bool },
    Unknown { until: Instant },
}

#[derive(Clone)]
pub struct CodeCache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    map: RwLock<HashMap<ReferralCode, Arc<Target>>>,
    epoch: AtomicI64,
    refresher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl CodeCache {
    pub fn start(store: Store, refresh: Duration) -> CodeCache {
        let cache = CodeCache {
            inner: Arc::new(Inner {
                store,
                map: RwLock::new(HashMap::new()),
                epoch: AtomicI64::new(i64::MIN),
                refresher: std::sync::Mutex::new(None),
            }),
        };
        // The task holds only a weak handle, so a dropped cache ends it too.
        let weak = Arc::downgrade(&cache.inner);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                CodeCache { inner }.refresh().await;
            }
        });
        *cache.inner.refresher.lock().expect("refresher lock") = Some(task);
        cache
    }

    async fn refresh(&self) {
        match self.inner.store.cache_epoch().await {
            Ok(epoch) => {
                if self.inner.epoch.swap(epoch, Ordering::Relaxed) != epoch {
                    self.clear();
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the cache epoch"),
        }
    }

    pub fn clear(&self) {
        self.inner.map.write().expect("code cache lock").clear();
    }

    /// Stops polling (before the store closes at shutdown).
    pub fn stop(&self) {
        if let Some(task) = self.inner.refresher.lock().expect("refresher lock").take() {
            task.abort();
        }
    }

    /// Where `code` leads, from memory when possible.
    pub async fn lookup(&self, code: &ReferralCode) -> Result<Option<Arc<Target>>, StoreError> {
        if let Some(hit) = self.inner.map.read().expect("code cache lock").get(code).cloned() {
            match &*hit {
                Target::Unknown { until } if *until < Instant::now() => {}
                Target::Unknown { .. } => return Ok(None),
                Target::Known { .. } => return Ok(Some(hit)),
            }
        }
        let epoch_before = self.inner.epoch.load(Ordering::Relaxed);
        let target = match self.inner.store.code_target(code).await? {
            Some(t) => {
                let landing_url = url::Url::parse(&t.landing_url)
                    .map_err(|e| StoreError::Corrupt(format!("landing URL of {code}: {e}")))?;
                Target::Known { landing_url, attributes: t.attributes }
            }
            None => Target::Unknown { until: Instant::now() + NEGATIVE_TTL },
        };
        let target = Arc::new(target);
        let mut map = self.inner.map.write().expect("code cache lock");
        // A change seen while we read may have cleared the map after our read:
        // then what we read may be stale, so it is used once but not kept.
        if self.inner.epoch.load(Ordering::Relaxed) == epoch_before {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(code.clone(), target.clone());
        }
        Ok(matches!(*target, Target::Known { .. }).then_some(target))
    }
}
