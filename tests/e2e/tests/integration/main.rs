//! The end-to-end tests, one binary (one link) for all: each module was once its own
//! `tests/*.rs` target. A new test file goes here as a module (`mod x;`), never beside this
//! folder: `autotests = false` would leave it unbuilt (`cargo xtask self-contained` checks).
//! Tests that need the built panel (Chromium, `e2e::panel_dir()`) live in modules named
//! `browser*` or `panel*`: `cargo xtask test` runs them once the panel is built, the others
//! while it builds (`cargo xtask self-contained` checks this too).

mod panel;

mod admin_api;
mod backtest;
mod browser;
mod browser_more;
mod collect_cost;
mod demo;
mod execute_http;
mod lock_restart;
mod maintenance;
mod maintenance_truth;
mod migration_truth;
mod notify;
mod openapi;
mod panel_backtest;
mod panel_policy;
mod panel_screens;
mod panel_style;
mod panel_surfaces;
mod policy_entry_points;
mod reliability_faults;
mod scheduler;
mod schemathesis;
mod security_csrf;
mod security_routes;
mod strict_bodies;
mod thin_path;
