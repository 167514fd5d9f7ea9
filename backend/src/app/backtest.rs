//! The service's back-test: one at a time, started by `POST /api/v1/backtest`, followed by
//! `GET /api/v1/backtest` (progress, then the report). The import runs on the async runtime
//! (paced PVE calls), the replay on the blocking pool (it is CPU work: seconds on a large cluster).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use shared::api::{BacktestStart, BacktestState, BacktestStatus};
use shared::backtest::BacktestRequest;

use crate::history::{ImportOptions, Progress};
use crate::pve::PveClient;

/// Import pacing of the service: gentle, whatever the cluster's size.
const CONCURRENCY: usize = 4;
const CALLS_PER_SEC: f64 = 20.0;
const CACHE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// The one back-test of this service and where its history is cached.
#[derive(Default)]
pub struct Backtests {
    status: Mutex<BacktestStatus>,
    /// `None`: no cache (each back-test imports everything again).
    cache_dir: Option<PathBuf>,
}

impl Backtests {
    pub fn new(cache_dir: Option<PathBuf>) -> Backtests {
        Backtests { status: Mutex::default(), cache_dir }
    }

    pub fn status(&self) -> BacktestStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BacktestStatus> {
        // a panicked writer left a whole status behind: keep serving it
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a back-test unless one is running (`false`); `request` is already checked.
    pub fn start(
        self: &Arc<Self>,
        pve: Arc<PveClient>,
        start: &BacktestStart,
        request: BacktestRequest,
    ) -> bool {
        {
            let mut status = self.lock();
            if status.running() {
                return false;
            }
            *status = BacktestStatus { state: BacktestState::Importing, ..Default::default() };
        }
        let opts = ImportOptions {
            days: start.days,
            concurrency: CONCURRENCY,
            calls_per_sec: CALLS_PER_SEC,
            cache_dir: self.cache_dir.clone(),
            cache_limit_bytes: CACHE_LIMIT_BYTES,
        };
        let me = self.clone();
        tokio::spawn(async move {
            let result = me.run(&pve, &opts, request).await;
            let mut status = me.lock();
            match result {
                Ok(report) => (status.state, status.report) = (BacktestState::Done, Some(report)),
                Err(e) => (status.state, status.error) = (BacktestState::Failed, Some(e)),
            }
        });
        true
    }

    async fn run(
        self: &Arc<Self>,
        pve: &PveClient,
        opts: &ImportOptions,
        request: BacktestRequest,
    ) -> Result<shared::backtest::BacktestReport, String> {
        let now = crate::collect::snapshot(pve, crate::unix_now()).await.map_err(|e| e.to_string())?;
        let progress = |p: Progress| {
            let mut status = self.lock();
            (status.done, status.total, status.from_cache) = (p.done, p.total, p.from_cache);
        };
        let history = crate::history::import(pve, now, opts, progress).await.map_err(|e| e.to_string())?;
        self.lock().state = BacktestState::Replaying;
        tokio::task::spawn_blocking(move || shared::backtest::run(&history, &request))
            .await
            .map_err(|e| format!("the replay stopped: {e}"))?
    }
}
