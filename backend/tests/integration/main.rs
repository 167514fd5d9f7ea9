//! The backend's integration tests, one binary (one link) for all: each module was once its own
//! `tests/*.rs` target. A new test file goes here as a module (`mod x;`), never beside this
//! folder: `autotests = false` would leave it unbuilt (`cargo xtask self-contained` checks).

mod alerts_once;
mod collect;
mod collect_ha_groups;
mod config;
mod config_cli;
mod config_depth;
mod config_keys;
mod execute;
mod fakepve;
mod history;
mod layers;
mod proxlb_output;
mod pve_client;
mod serve_tls;
mod status_watch;
