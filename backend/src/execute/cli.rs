//! The `serve` options of execution, and building the executor from them.

use super::{DirLock, ExecConfig, Executor, Journal};
use crate::pve::PveClient;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct ExecArgs {
    /// SQLite journal of execution jobs (created 0600).
    #[arg(long, default_value = super::journal::DEFAULT_PATH)]
    pub journal: PathBuf,
    /// Directory for the cluster-wide executor lock (pmxcfs: one holder cluster-wide).
    #[arg(long, default_value = "/etc/pve/priv/lock")]
    pub lock_dir: PathBuf,
    /// Migrations in flight at once, cluster-wide.
    #[arg(long, default_value_t = 2)]
    pub max_parallel: usize,
    /// Migrations in flight per node (as source or target).
    #[arg(long, default_value_t = 1)]
    pub max_per_node: usize,
    /// A migration still running after this many seconds is stopped and recorded failed.
    #[arg(long, default_value_t = 3600)]
    pub step_timeout_secs: u64,
    /// The node name written into the executor lock (default: this host's name). A restarted
    /// service takes back at once a lock its node's dead process left; another node's lock
    /// keeps its TTL. Tests run two "nodes" on one machine with it.
    #[arg(long, hide = true, env = "PVE_REBALANCER_LOCK_NODE")]
    pub lock_node: Option<String>,
}

impl ExecArgs {
    /// Opens the journal and builds the executor (call [`Executor::recover`] next).
    pub fn executor(&self, pve: Arc<PveClient>) -> anyhow::Result<Arc<Executor>> {
        self.executor_with(pve, ExecConfig::default())
    }

    /// [`ExecArgs::executor`] over `base` (what the configuration file says; the flags win for
    /// the limits, the timeout, the journal and the lock).
    pub fn executor_with(&self, pve: Arc<PveClient>, base: ExecConfig) -> anyhow::Result<Arc<Executor>> {
        let journal = Journal::open(&self.journal)?;
        let cfg = ExecConfig {
            max_parallel: self.max_parallel.max(1),
            max_per_node: self.max_per_node.max(1),
            step_timeout: Duration::from_secs(self.step_timeout_secs.max(1)),
            ..base
        };
        let mut lock = DirLock::new(&self.lock_dir);
        if let Some(node) = &self.lock_node {
            lock = lock.on_node(node);
        }
        Ok(Executor::new(pve, Arc::new(journal), Arc::new(lock), cfg))
    }
}
