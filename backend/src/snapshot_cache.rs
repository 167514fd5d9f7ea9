//! A short-lived, single-flight cache of the collected snapshot for `GET /api/v1/cluster`.
//!
//! Every panel tab polls the cluster view, and a collection costs 4 + nodes PVE calls; under
//! load (many tabs, scripts, a Prometheus-style poller) collecting per request would multiply
//! PVE's load and our latency. Within `ttl` callers share one snapshot; when it is stale,
//! exactly one caller collects while the others wait for its result (the async mutex is held
//! across the collection), so PVE never sees more than one collection per `ttl` from us.
//! `ttl` zero disables sharing (every call collects), which is what tests that change the
//! simulator and read back at once need; `serve` uses `--cluster-cache-ms` (default 1000).

use crate::pve::{PveClient, PveError};
use shared::ClusterSnapshot;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Default)]
pub struct SnapshotCache {
    ttl: Duration,
    slot: Mutex<Option<(Instant, Arc<ClusterSnapshot>)>>,
}

impl SnapshotCache {
    pub fn new(ttl: Duration) -> SnapshotCache {
        SnapshotCache { ttl, slot: Mutex::new(None) }
    }

    /// A snapshot at most `ttl` old; collects when there is none. Errors are not cached.
    pub async fn get(&self, pve: &PveClient, now_unix: u64) -> Result<Arc<ClusterSnapshot>, PveError> {
        self.get_with(|| crate::collect::snapshot(pve, now_unix)).await
    }

    async fn get_with<F, Fut>(&self, collect: F) -> Result<Arc<ClusterSnapshot>, PveError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<ClusterSnapshot, PveError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, snap)) = slot.as_ref() {
            if !self.ttl.is_zero() && at.elapsed() < self.ttl {
                return Ok(snap.clone());
            }
        }
        let snap = Arc::new(collect().await?);
        *slot = Some((Instant::now(), snap.clone()));
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn named(n: usize) -> ClusterSnapshot {
        ClusterSnapshot { cluster_name: format!("c{n}"), ..Default::default() }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_collection_within_the_ttl() {
        let cache = Arc::new(SnapshotCache::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_with(|| async {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(named(n))
                    })
                    .await
                    .unwrap()
                    .cluster_name
                    .clone()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "c0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one collection for sixteen callers");
    }

    #[tokio::test]
    async fn zero_ttl_always_collects_and_errors_are_not_kept() {
        let cache = SnapshotCache::new(Duration::ZERO);
        for n in 0..3 {
            let s = cache.get_with(|| async move { Ok(named(n)) }).await.unwrap();
            assert_eq!(s.cluster_name, format!("c{n}"));
        }
        let cache = SnapshotCache::new(Duration::from_secs(60));
        let e = cache.get_with(|| async { Err(PveError::Setup("down".into())) }).await;
        assert!(e.is_err());
        let s = cache.get_with(|| async { Ok(named(7)) }).await.unwrap();
        assert_eq!(s.cluster_name, "c7", "a failure is retried on the next call, not served");
    }
}
