//! Armed faults: task errors and hangs, latency, 5xx bursts. State-changing faults
//! (node offline, guest lock/delete, ticket expiry) are applied to the cluster at once.

use crate::scenario::FaultSpec;
use crate::state::Cluster;

#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// (vmid filter, remaining, message)
    task_errors: Vec<(Option<u32>, u32, String)>,
    /// (vmid filter, remaining)
    task_hangs: Vec<(Option<u32>, u32)>,
    /// (path prefix, ms)
    latency: Vec<(Option<String>, u64)>,
    /// (path prefix, remaining, status)
    bursts: Vec<(Option<String>, u32, u16)>,
}

impl Faults {
    /// Arms a fault; state faults are applied to `cluster` immediately.
    pub fn arm(&mut self, f: &FaultSpec, cluster: &mut Cluster, now: i64) -> Result<(), String> {
        match f {
            FaultSpec::TaskError { vmid, count, message } => {
                self.task_errors.push((*vmid, *count, message.clone()))
            }
            FaultSpec::TaskHang { vmid, count } => self.task_hangs.push((*vmid, *count)),
            FaultSpec::Latency { ms, path_prefix } => self.latency.push((path_prefix.clone(), *ms)),
            FaultSpec::ErrorBurst { count, status, path_prefix } => {
                self.bursts.push((path_prefix.clone(), *count, *status))
            }
            FaultSpec::NodeOffline { node, online } => {
                let n = cluster.nodes.get_mut(node).ok_or_else(|| format!("no such node {node}"))?;
                n.online = *online;
                if *online {
                    n.boot_time = now;
                }
            }
            FaultSpec::GuestLock { vmid, lock } => {
                let g = cluster.guests.get_mut(vmid).ok_or_else(|| format!("no such guest {vmid}"))?;
                g.lock = lock.clone();
            }
            FaultSpec::GuestDelete { vmid } => {
                cluster.guests.remove(vmid).ok_or_else(|| format!("no such guest {vmid}"))?;
            }
            FaultSpec::ExpireTickets => cluster.tickets_valid_after = cluster.auth_now + 1,
        }
        Ok(())
    }

    /// Removes every request-level fault (latency, bursts) and pending task faults.
    pub fn clear(&mut self) {
        *self = Faults::default();
    }

    /// Consumes a task fault for `vmid`: (error message, hang).
    pub fn take_task_fault(&mut self, vmid: u32) -> (Option<String>, bool) {
        let matches = |f: &Option<u32>| f.is_none_or(|v| v == vmid);
        for e in self.task_errors.iter_mut() {
            if e.1 > 0 && matches(&e.0) {
                e.1 -= 1;
                return (Some(e.2.clone()), false);
            }
        }
        for h in self.task_hangs.iter_mut() {
            if h.1 > 0 && matches(&h.0) {
                h.1 -= 1;
                return (None, true);
            }
        }
        (None, false)
    }

    /// Total latency to add for an API path.
    pub fn latency_ms(&self, path: &str) -> u64 {
        self.latency
            .iter()
            .filter(|(p, _)| p.as_deref().is_none_or(|p| path.starts_with(p)))
            .map(|(_, ms)| *ms)
            .sum()
    }

    /// Consumes one burst error for `path`, if any is armed.
    pub fn take_burst(&mut self, path: &str) -> Option<u16> {
        for b in self.bursts.iter_mut() {
            if b.1 > 0 && b.0.as_deref().is_none_or(|p| path.starts_with(p)) {
                b.1 -= 1;
                return Some(b.2);
            }
        }
        None
    }

    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "task_errors": self.task_errors.iter().map(|(v, c, m)| serde_json::json!({"vmid": v, "remaining": c, "message": m})).collect::<Vec<_>>(),
            "task_hangs": self.task_hangs.iter().map(|(v, c)| serde_json::json!({"vmid": v, "remaining": c})).collect::<Vec<_>>(),
            "latency": self.latency.iter().map(|(p, ms)| serde_json::json!({"path_prefix": p, "ms": ms})).collect::<Vec<_>>(),
            "error_bursts": self.bursts.iter().map(|(p, c, s)| serde_json::json!({"path_prefix": p, "remaining": c, "status": s})).collect::<Vec<_>>(),
        })
    }
}
