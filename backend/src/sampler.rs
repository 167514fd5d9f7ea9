//! The service's own usage history: one `GET /cluster/resources` every `interval`, kept in
//! bounded rings (cluster samples for the panel's sparklines, per-guest CPU/memory for the
//! percentile mode), so planning never asks PVE for per-guest RRD data.
//!
//! Memory is bounded by `SamplerConfig`: `history` cluster samples (each one number pair per
//! node) and `guest_window` samples per guest. Recording and reading are pure and tested
//! without a server; only [`Sampler::spawn`] does I/O.

use crate::collect;
use crate::pve::PveClient;
use crate::unix_now;
use serde_json::Value;
use shared::api::{HistorySample, HistoryView, NodePercentiles};
use shared::{ClusterSnapshot, GuestStatus, NodeStatus};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// Time between samples.
    pub interval: Duration,
    /// Cluster samples kept (the longest history the API can show).
    pub history: usize,
    /// Samples kept per guest for its percentiles (the percentile mode's window).
    pub guest_window: usize,
    /// Samples a guest needs before its percentiles are used (fewer say too little).
    pub min_guest_samples: usize,
}

impl Default for SamplerConfig {
    /// Every 30 s; 24 h of cluster history (2,880 samples); 1 h of guest history.
    fn default() -> Self {
        SamplerConfig {
            interval: Duration::from_secs(30),
            history: 2880,
            guest_window: 120,
            min_guest_samples: 4,
        }
    }
}

impl SamplerConfig {
    /// A config for `interval_secs` keeping `history_hours` of cluster history and one hour of
    /// guest history; bad values are refused with what is allowed.
    pub fn new(interval_secs: u64, history_hours: f64) -> Result<SamplerConfig, String> {
        if !(5..=3600).contains(&interval_secs) {
            return Err(format!("sample interval {interval_secs} s is outside 5–3600 s"));
        }
        if !(history_hours.is_finite() && (0.1..=168.0).contains(&history_hours)) {
            return Err(format!("history of {history_hours} h is outside 0.1–168 h"));
        }
        let per_hour = 3600.0 / interval_secs as f64;
        Ok(SamplerConfig {
            interval: Duration::from_secs(interval_secs),
            history: (history_hours * per_hour).ceil().max(1.0) as usize,
            guest_window: per_hour.ceil().max(1.0) as usize,
            ..SamplerConfig::default()
        })
    }
}

/// `serve` flags for the sampler.
#[derive(Clone, Debug, clap::Args)]
pub struct SamplerArgs {
    /// Seconds between usage samples (one `/cluster/resources` call each), 5–3600.
    #[arg(long, default_value_t = 30)]
    pub sample_interval: u64,
    /// Hours of usage history kept for `GET /api/v1/cluster/history`, 0.1–168.
    #[arg(long, default_value_t = 24.0)]
    pub history_hours: f64,
}

impl SamplerArgs {
    pub fn config(&self) -> Result<SamplerConfig, String> {
        SamplerConfig::new(self.sample_interval, self.history_hours)
    }
}

/// One node in one sample: percent used, or `None` when offline.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Usage {
    cpu: f32,
    memory: f32,
    /// Counted in spread and CV (online, not in maintenance).
    balanced: bool,
}

#[derive(Clone, Debug)]
struct Sample {
    at: u64,
    /// Indexed like `History::nodes`; shorter when nodes joined later.
    nodes: Vec<Option<Usage>>,
}

#[derive(Default)]
struct History {
    /// Every node name seen, in first-seen order (indices stay valid as nodes come and go).
    nodes: Vec<String>,
    samples: VecDeque<Sample>,
    /// vmid → (cpu cores, memory bytes), oldest first.
    guests: HashMap<u32, VecDeque<(f32, u64)>>,
}

pub struct Sampler {
    cfg: SamplerConfig,
    inner: Mutex<History>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        Sampler { cfg, inner: Mutex::new(History::default()) }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        // A panic while holding the lock leaves whole samples behind (each push is one call).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one sample taken from `snapshot` (at `snapshot.collected_at`).
    pub fn record(&self, snapshot: &ClusterSnapshot) {
        let mut h = self.lock();
        let mut row = vec![None; h.nodes.len()];
        for n in &snapshot.nodes {
            let i = match h.nodes.iter().position(|x| *x == n.name) {
                Some(i) => i,
                None => {
                    h.nodes.push(n.name.clone());
                    row.push(None);
                    h.nodes.len() - 1
                }
            };
            if n.status != NodeStatus::Online {
                continue;
            }
            let pct = |used: f64, total: f64| if total > 0.0 { (used / total * 100.0) as f32 } else { 0.0 };
            row[i] = Some(Usage {
                cpu: pct(n.cpu_used, f64::from(n.cpus)),
                memory: pct(n.mem_used as f64, n.mem_total as f64),
                balanced: !n.maintenance,
            });
        }
        h.samples.push_back(Sample { at: snapshot.collected_at, nodes: row });
        while h.samples.len() > self.cfg.history {
            h.samples.pop_front();
        }
        let window = self.cfg.guest_window;
        for g in &snapshot.guests {
            if g.status != GuestStatus::Running {
                continue;
            }
            let ring = h.guests.entry(g.vmid).or_default();
            ring.push_back((g.cpu_used as f32, g.mem_used));
            while ring.len() > window {
                ring.pop_front();
            }
        }
        // Guests that are gone or stopped leave: a restarted guest starts a fresh window.
        let running: std::collections::HashSet<u32> =
            snapshot.guests.iter().filter(|g| g.status == GuestStatus::Running).map(|g| g.vmid).collect();
        h.guests.retain(|vmid, _| running.contains(vmid));
    }

    /// The last `minutes` before the newest sample, oldest first.
    pub fn history(&self, minutes: u32) -> HistoryView {
        let h = self.lock();
        let newest = h.samples.back().map_or(0, |s| s.at);
        let from = newest.saturating_sub(u64::from(minutes) * 60);
        let window: Vec<&Sample> = h.samples.iter().filter(|s| s.at >= from).collect();
        let samples = window
            .iter()
            .map(|s| {
                let get = |i: usize| s.nodes.get(i).copied().flatten();
                let (cpu_spread, cpu_cv) =
                    spread_cv(s.nodes.iter().flatten().filter(|u| u.balanced).map(|u| u.cpu));
                let (memory_spread, memory_cv) =
                    spread_cv(s.nodes.iter().flatten().filter(|u| u.balanced).map(|u| u.memory));
                HistorySample {
                    at: s.at,
                    cpu_spread,
                    memory_spread,
                    cpu_cv,
                    memory_cv,
                    cpu: (0..h.nodes.len()).map(|i| get(i).map(|u| round2(u.cpu))).collect(),
                    memory: (0..h.nodes.len()).map(|i| get(i).map(|u| round2(u.memory))).collect(),
                }
            })
            .collect();
        let percentiles = h
            .nodes
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let usage: Vec<Usage> =
                    window.iter().filter_map(|s| s.nodes.get(i).copied().flatten()).collect();
                let mut cpu: Vec<f64> = usage.iter().map(|u| f64::from(u.cpu)).collect();
                let mut memory: Vec<f64> = usage.iter().map(|u| f64::from(u.memory)).collect();
                NodePercentiles {
                    node: name.clone(),
                    samples: usage.len() as u32,
                    cpu_p50: round2(percentile(&mut cpu, 50.0) as f32),
                    cpu_p95: round2(percentile(&mut cpu, 95.0) as f32),
                    memory_p50: round2(percentile(&mut memory, 50.0) as f32),
                    memory_p95: round2(percentile(&mut memory, 95.0) as f32),
                }
            })
            .collect();
        HistoryView {
            interval_secs: self.cfg.interval.as_secs(),
            minutes,
            nodes: h.nodes.clone(),
            samples,
            percentiles,
        }
    }

    /// Sets `cpu_p95` / `mem_p95` of every guest with enough samples (the percentile mode's
    /// input); guests without stay `None` and the engine uses their current use.
    pub fn fill_percentiles(&self, snapshot: &mut ClusterSnapshot) {
        let h = self.lock();
        for g in &mut snapshot.guests {
            let Some(ring) = h.guests.get(&g.vmid).filter(|r| r.len() >= self.cfg.min_guest_samples) else {
                continue;
            };
            let mut cpu: Vec<f64> = ring.iter().map(|(c, _)| f64::from(*c)).collect();
            let mut mem: Vec<f64> = ring.iter().map(|(_, m)| *m as f64).collect();
            g.cpu_p95 = Some(percentile(&mut cpu, 95.0));
            g.mem_p95 = Some(percentile(&mut mem, 95.0) as u64);
        }
    }

    /// Samples every `interval` until the task is aborted. One `/cluster/resources` call per
    /// sample; a failed call is logged and skipped (the next tick tries again).
    pub fn spawn(self: Arc<Self>, pve: Arc<PveClient>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.cfg.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match pve.get::<Vec<Value>>("/cluster/resources").await {
                    Ok(rows) => self.record(&collect::from_answers(&rows, &[], &Value::Null, unix_now())),
                    Err(e) => tracing::warn!("history sample skipped: {e}"),
                }
            }
        })
    }
}

fn round2(x: f32) -> f64 {
    (f64::from(x) * 100.0).round() / 100.0
}

/// Max − min and coefficient of variation (population standard deviation / mean) of `values`.
fn spread_cv(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let v: Vec<f64> = values.map(f64::from).collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
    (((hi - lo) * 100.0).round() / 100.0, (cv * 10_000.0).round() / 10_000.0)
}

/// Nearest-rank percentile (`p` in 0–100) of `values`; 0 for none. Sorts in place.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Guest, Node};

    const G: u64 = 1 << 30;

    fn snap(at: u64, a_mem: u64, b_online: bool, guest_cpu: f64) -> ClusterSnapshot {
        let node = |name: &str, mem_used, online| Node {
            name: name.into(),
            status: if online { NodeStatus::Online } else { NodeStatus::Offline },
            cpus: 10,
            cpu_used: 2.0,
            mem_total: 100 * G,
            mem_used,
            ..Default::default()
        };
        ClusterSnapshot {
            collected_at: at,
            nodes: vec![node("a", a_mem * G, true), node("b", 20 * G, b_online)],
            guests: vec![Guest {
                vmid: 7,
                node: "a".into(),
                status: GuestStatus::Running,
                cpu_used: guest_cpu,
                mem_used: G,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn cfg(history: usize) -> SamplerConfig {
        SamplerConfig { interval: Duration::from_secs(30), history, guest_window: 5, min_guest_samples: 3 }
    }

    #[test]
    fn samples_give_spread_cv_per_node_usage_and_percentiles_over_the_window() {
        let s = Sampler::new(cfg(100));
        for (i, mem) in [40, 60, 80].into_iter().enumerate() {
            s.record(&snap(1000 + 30 * i as u64, mem, true, 1.0));
        }
        s.record(&snap(1090, 50, false, 1.0));
        let v = s.history(60);
        assert_eq!(v.nodes, vec!["a", "b"]);
        assert_eq!(v.samples.len(), 4);
        let first = &v.samples[0];
        assert_eq!((first.at, first.memory.clone()), (1000, vec![Some(40.0), Some(20.0)]));
        assert_eq!(first.memory_spread, 20.0);
        // mean 30, population sd 10 → CV 1/3
        assert_eq!(first.memory_cv, 0.3333);
        assert_eq!((first.cpu_spread, first.cpu_cv), (0.0, 0.0));
        let last = &v.samples[3];
        assert_eq!(last.memory, vec![Some(50.0), None], "offline node: no value");
        assert_eq!(last.memory_spread, 0.0, "one balanced node left");
        let a = &v.percentiles[0];
        assert_eq!((a.samples, a.memory_p50, a.memory_p95), (4, 50.0, 80.0));
        assert_eq!(v.percentiles[1].samples, 3);
        // The window counts back from the newest sample.
        assert_eq!(s.history(1).samples.iter().map(|x| x.at).collect::<Vec<_>>(), vec![1030, 1060, 1090]);
    }

    #[test]
    fn rings_are_bounded_and_guest_percentiles_need_enough_samples() {
        let s = Sampler::new(cfg(3));
        let mut probe = snap(0, 10, true, 0.0);
        for i in 0..10u64 {
            s.record(&snap(i * 30, 10, true, i as f64));
            if i == 1 {
                s.fill_percentiles(&mut probe);
                assert_eq!(probe.guests[0].cpu_p95, None, "two samples say too little");
            }
        }
        assert_eq!(s.history(10_000).samples.len(), 3, "cluster ring bounded");
        s.fill_percentiles(&mut probe);
        // Guest ring holds the last 5 values 5..=9; p95 by nearest rank is 9.
        assert_eq!(probe.guests[0].cpu_p95, Some(9.0));
        assert_eq!(probe.guests[0].mem_p95, Some(G));
        // A stopped guest's window is dropped.
        let mut stopped = snap(400, 10, true, 0.0);
        stopped.guests[0].status = GuestStatus::Stopped;
        s.record(&stopped);
        let mut probe = snap(0, 10, true, 0.0);
        s.fill_percentiles(&mut probe);
        assert_eq!(probe.guests[0].cpu_p95, None);
    }

    #[test]
    fn config_refuses_silly_values_and_sizes_rings_from_hours() {
        let c = SamplerConfig::new(60, 2.0).unwrap();
        assert_eq!((c.history, c.guest_window), (120, 60));
        assert!(SamplerConfig::new(1, 2.0).unwrap_err().contains("5–3600"));
        assert!(SamplerConfig::new(30, 1000.0).unwrap_err().contains("0.1–168"));
    }
}
