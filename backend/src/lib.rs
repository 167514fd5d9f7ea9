//! The pve-rebalancer service: the imperative shell around `shared`'s pure engine.
//!
//! - [`pve`]: a typed client for the PVE API (login, tickets, tokens, `{data}` unwrapping, errors
//!   that carry PVE's own message).
//! - [`collect`]: turns PVE answers into a `shared::ClusterSnapshot`, in O(nodes) calls.
//! - [`auth`]: callers' PVE tickets/tokens verified with PVE; privileges checked per route.
//! - [`http`]: the `/api/v1` JSON API the panel calls, plus the panel's static files.
//! - [`serve`]: HTTP or TLS (the node's own certificate) until a shutdown signal.
//!
//! Invariant: all planning happens in `shared`; this crate only gathers inputs and carries out
//! decisions.

pub mod auth;
pub mod cli_proxlb;
pub mod collect;
pub mod config;
pub mod execute;
pub mod http;
pub mod http_admin;
pub mod http_history;
pub mod http_jobs;
pub mod http_maint;
pub mod maintenance;
pub mod maintenance_cli;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod preflight;
pub mod proxbalance;
pub mod pve;
pub mod recent;
pub mod sampler;
pub mod scheduler;
pub mod serve;
pub mod settings;
pub mod snapshot_cache;
pub mod state_file;
pub mod status_watch;
pub mod windows;

/// Seconds since the Unix epoch on this machine's clock (0 if the clock is before 1970). PVE's
/// clock may differ: see `pve::PveClient::server_now`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
