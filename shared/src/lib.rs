//! The pure core of pve-rebalancer: the cluster model, the rules that tags, pools and config put on
//! guests, the balancing engine and the types the HTTP API speaks.
//!
//! Invariants of this crate:
//! - No I/O, no clocks, no threads, no randomness: every function is a pure function of its inputs,
//!   so the same snapshot and request always give the same plan. The crate also compiles to
//!   `wasm32-unknown-unknown`, where the panel runs the engine for what-if.
//! - Guests are keyed by `vmid`, never by name (names are not unique in PVE).
//! - Sizes are bytes (`u64`), CPU is in cores (`f64`), percentages are 0–100.

pub mod api;
pub mod backtest;
pub mod best_node;
pub mod engine;
pub mod evacuate;
pub mod model;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod rules;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use model::{ClusterSnapshot, Guest, GuestKind, GuestStatus, Node, NodeStatus};
pub use plan::{Method, MigrationKind, Mode, NodeLoad, Plan, PlanRequest, PlanStep};
