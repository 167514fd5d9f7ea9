//! Time-varying guest load: a diurnal curve, a weekend factor, smooth seeded noise and bursts.
//!
//! The load is a pure function of (scenario, guest, simulated time), so the live values served by
//! `/cluster/resources` and the RRD history agree, and a stepped or scaled clock replays the same
//! curves. History uses the placement of its time: a guest sits on the source node of its first
//! successful migration that ended after that time (past and live migration tasks alike).

use std::collections::BTreeMap;
use std::f64::consts::TAU;

use crate::scenario::{DynamicsSpec, GIB};
use crate::state::{hash2, unit, Cluster, Guest};

/// A guest's CPU (fraction of its vCPUs, 0..1) and used-memory factor at time `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub cpu: f64,
    /// Multiplies the guest's configured used memory (capped at `maxmem` by [`Guest::mem`]).
    pub mem_factor: f64,
}

/// Load of guest `g` (sitting on `node`) at simulated time `t`; `started_at` anchors bursts.
pub fn guest_load(d: &DynamicsSpec, seed: u64, started_at: i64, g: &Guest, node: &str, t: f64) -> Load {
    let vmid = g.spec.vmid as u64;
    let mut f = 1.0;
    if d.diurnal_amplitude > 0.0 {
        let phase = (unit(seed ^ 0xD1A1, vmid) - 0.5) * 2.0 * d.phase_jitter_h;
        let hour = t.rem_euclid(86400.0) / 3600.0;
        f *= 1.0 + d.diurnal_amplitude * (TAU * (hour - d.peak_hour - phase) / 24.0).cos();
    }
    if d.weekend_factor != 1.0 {
        // 1970-01-01 was a Thursday: (days + 4) % 7 → 0 = Sunday, 6 = Saturday
        let wd = ((t / 86400.0).floor() as i64 + 4).rem_euclid(7);
        if wd == 0 || wd == 6 {
            f *= d.weekend_factor;
        }
    }
    if d.noise > 0.0 {
        let s = t / d.noise_period_s;
        let i = s.floor();
        let fr = s - i;
        let key = hash2(seed ^ 0x401E, vmid);
        let n0 = unit(key, i as i64 as u64);
        let n1 = unit(key, (i as i64 + 1) as u64);
        let sm = fr * fr * (3.0 - 2.0 * fr);
        f *= 1.0 + d.noise * (2.0 * (n0 + (n1 - n0) * sm) - 1.0);
    }
    let mut cpu = (g.spec.cpu * f).clamp(0.0, 1.0);
    let mut mem_factor = (1.0 + d.memory_follow * (f - 1.0)).clamp(0.1, 4.0);
    let rel = t - started_at as f64;
    for b in &d.bursts {
        let hit = match (b.vmid, &b.node) {
            (Some(v), _) => v == g.spec.vmid,
            (None, Some(n)) => n == node,
            (None, None) => true,
        };
        if !hit {
            continue;
        }
        let mut x = rel - b.start_s;
        if let Some(e) = b.every_s {
            x = x.rem_euclid(e);
        }
        if (0.0..b.duration_s).contains(&x) {
            cpu = cpu.max(b.cpu);
            if let Some(m) = b.memory_used {
                let base = g.base_mem_bytes().max(1.0);
                mem_factor = mem_factor.max(m * g.spec.memory_gib * GIB / base);
            }
        }
    }
    if let Some(r) = &d.random_bursts {
        let win = (t / r.duration_s).floor() as i64 as u64;
        if unit(hash2(seed ^ 0xB0B0, vmid), win) < r.per_day * r.duration_s / 86400.0 {
            cpu = cpu.max(r.cpu);
        }
    }
    Load { cpu, mem_factor }
}

/// Where each guest was at a past time, from the finished migrations in the task table.
pub struct PastPlacement(BTreeMap<u32, Vec<(i64, String)>>);

impl PastPlacement {
    /// The node guest `g` was on at time `t` (its current node after its last migration).
    pub fn node_at<'a>(&'a self, g: &'a Guest, t: f64) -> &'a str {
        self.0
            .get(&g.spec.vmid)
            .and_then(|moves| moves.iter().find(|(end, _)| *end as f64 > t))
            .map_or(g.node.as_str(), |(_, from)| from.as_str())
    }
}

impl Cluster {
    pub fn past_placement(&self) -> PastPlacement {
        PastPlacement(self.tasks.placement_history())
    }

    /// Recomputes every guest's current load for simulated time `now` (no-op without dynamics,
    /// and at most once per simulated second).
    pub fn update_load(&mut self, now: f64) {
        let Some(d) = &self.dynamics else { return };
        if (now - self.load_updated_at).abs() < 1.0 {
            return;
        }
        self.load_updated_at = now;
        for g in self.guests.values_mut() {
            let l = guest_load(d, self.seed, self.started_at, g, &g.node, now);
            g.cur_cpu = l.cpu;
            g.mem_factor = l.mem_factor;
        }
    }

    /// Node CPU (fraction) and used memory (bytes) at simulated time `t` with the *current*
    /// placement, averaged (or maxed, `max`) over `samples` points in `(t - step, t]` (what the
    /// compare harness measures right after its migrations).
    pub fn node_load_at(&self, node: &str, t: f64, step: f64, max: bool) -> Option<(f64, f64)> {
        self.node_load_with(&PastPlacement(BTreeMap::new()), node, t, step, max)
    }

    /// [`Cluster::node_load_at`] with the placement of each sample's time (`past`, computed once
    /// per RRD answer): a guest counts on the node it was on then.
    pub fn node_load_with(
        &self,
        past: &PastPlacement,
        node: &str,
        t: f64,
        step: f64,
        max: bool,
    ) -> Option<(f64, f64)> {
        let d = self.dynamics.as_ref()?;
        let n = self.nodes.get(node)?;
        let maxcpu = n.spec.cpus.max(1) as f64;
        let samples = 3;
        let (mut cpu_acc, mut mem_acc) = (0.0f64, 0.0f64);
        for k in 0..samples {
            let ts = t - step * k as f64 / samples as f64;
            let mut cores = n.spec.overhead.cpu * maxcpu;
            let mut mem = n.spec.overhead.memory_gib * GIB;
            for g in self.guests.values().filter(|g| past.node_at(g, ts) == node && g.running()) {
                let l = guest_load(d, self.seed, self.started_at, g, node, ts);
                cores += l.cpu * g.vcpus() as f64;
                mem += (g.base_mem_bytes() * l.mem_factor).min(g.maxmem() as f64);
            }
            let c = (cores / maxcpu).clamp(0.0, 1.0);
            if max {
                cpu_acc = cpu_acc.max(c);
                mem_acc = mem_acc.max(mem);
            } else {
                cpu_acc += c / samples as f64;
                mem_acc += mem / samples as f64;
            }
        }
        Some((cpu_acc, mem_acc))
    }

    /// A guest's load at `t` (its static load without dynamics), node bursts of where it was then.
    pub fn guest_load_at(&self, past: &PastPlacement, g: &Guest, t: f64) -> Load {
        match &self.dynamics {
            Some(d) if g.running() => guest_load(d, self.seed, self.started_at, g, past.node_at(g, t), t),
            Some(_) => Load { cpu: 0.0, mem_factor: 1.0 },
            None => Load { cpu: g.cpu(), mem_factor: 1.0 },
        }
    }
}
