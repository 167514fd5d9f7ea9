//! Carrying out a plan: migrations submitted to PVE, tracked to the end, journaled.
//!
//! - [`decide`]: the pure decisions (scheduling, preconditions, migrate parameters, task
//!   outcomes, reconciliation after a restart), unit-tested without a server.
//! - [`executor`]: the async shell that calls PVE and applies those decisions.
//! - [`journal`]: the SQLite record of jobs and steps that survives restarts.
//! - [`lock`]: the cluster-wide single-executor lock (pmxcfs `mkdir` semantics).
//! - [`upid`]: PVE task ids.
//!
//! Invariants: a step is submitted at most once, ever (a restart reconciles, never re-submits);
//! a failed step leaves the guest where PVE left it and says so with PVE's words; steps that
//! depend on a step that did not finish are skipped with the reason.

pub mod cli;
pub mod decide;
pub mod executor;
pub mod journal;
pub mod lock;
pub mod upid;

pub use cli::ExecArgs;
pub use executor::{CancelError, ClosedTargets, ExecConfig, ExecEvent, Executor, LimitsSource, StartError};
pub use journal::{AuditFilter, AuditRecord, Journal, JournalError};
pub use lock::{ClusterLock, DirLock, Guard, LockGuard};
