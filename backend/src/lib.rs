//! The pve-rebalancer service: the imperative shell around `shared`'s pure engine.
//!
//! Layers, each using only those below it (checked by `backend/tests/layers.rs`; see
//! ARCHITECTURE.md):
//!
//! 1. CLI: [`cli_proxlb`], [`maintenance_cli`], [`status_watch`] (and `main.rs`).
//! 2. [`http`]: the `/api/v1` JSON API, CORS, the server.
//! 3. Application: [`app`] (the shared state, the one plan pipeline, the policy, the audit log),
//!    [`scheduler`], [`notify`], [`maintenance`].
//! 4. Services: [`policy`] (the one place a plan request is made from configuration),
//!    [`execute`], [`collect`], [`settings`] and [`store`], [`config`], [`auth`],
//!    [`preflight`], [`recent`], [`sampler`], [`snapshot_cache`], [`state_file`], [`windows`],
//!    [`metrics`].
//! 5. [`pve`]: the PVE API client. Below everything: `shared`, the pure core.
//!
//! Invariant: all planning happens in `shared`; this crate only gathers inputs and carries out
//! decisions.

// 1. CLI
pub mod backtest_cli;
pub mod cli_proxlb;
pub mod maintenance_cli;
pub mod status_watch;
// 2. HTTP
pub mod http;
// 3. Application
pub mod app;
pub mod maintenance;
pub mod notify;
pub mod scheduler;
// 4. Services
pub mod auth;
pub mod collect;
pub mod config;
pub mod execute;
pub mod history;
pub mod metrics;
pub mod policy;
pub mod preflight;
pub mod recent;
pub mod sampler;
pub mod settings;
pub mod snapshot_cache;
pub mod state_file;
pub mod store;
pub mod windows;
// 5. PVE
pub mod pve;

/// Seconds since the Unix epoch on this machine's clock (0 if the clock is before 1970). PVE's
/// clock may differ: see `pve::PveClient::server_now`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// This host's name (the node a lock, a mark's job or a claimed run belongs to).
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
