//! The replay's grid (guests and nodes by index, the actual placement and each node's own
//! overhead per sample) and the figures of a run measured on it.

use std::collections::HashMap;

use super::{reversals_within_day, BacktestRequest, History, Move, Placements, Resource, RunKind, RunReport};
use crate::model::{ClusterSnapshot, GuestKind, RecentMigration};
use crate::plan::{PlanRequest, PlanStep};
use crate::rules::{self, RuleConfig, Strength};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub(crate) struct Grid<'h> {
    h: &'h History,
    node_at: HashMap<&'h str, usize>,
    guest_at: HashMap<u32, usize>,
    /// Per guest of `now`: (cpu cores, memory bytes) per sample, `None` = absent.
    load: Vec<Vec<Option<(f64, f64)>>>,
    /// Per sample: where each guest really was.
    actual: Vec<Vec<Option<usize>>>,
    /// Per sample and node: recorded usage minus the guests really on it (cpu, memory).
    overhead: Vec<Vec<(f64, f64)>>,
}

impl<'h> Grid<'h> {
    pub fn new(h: &'h History) -> Grid<'h> {
        let node_at = h.now.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        let guest_at = h.now.guests.iter().enumerate().map(|(i, g)| (g.vmid, i)).collect();
        let mut grid =
            Grid { h, node_at, guest_at, load: Vec::new(), actual: Vec::new(), overhead: Vec::new() };
        grid.load = grid.guest_loads();
        grid.actual = (0..h.times.len()).map(|i| grid.actual_placement(i)).collect();
        grid.overhead = (0..h.times.len()).map(|i| grid.overhead_at(i)).collect();
        grid
    }

    pub fn len(&self) -> usize {
        self.h.times.len()
    }

    pub fn time(&self, i: usize) -> u64 {
        self.h.times[i]
    }

    fn guest_loads(&self) -> Vec<Vec<Option<(f64, f64)>>> {
        let by_vmid: HashMap<u32, &super::GuestHistory> = self.h.guests.iter().map(|g| (g.vmid, g)).collect();
        self.h
            .now
            .guests
            .iter()
            .map(|g| match by_vmid.get(&g.vmid) {
                Some(s) => s.cpu.iter().zip(&s.mem).map(|(c, m)| c.zip(*m)).collect(),
                None => vec![None; self.len()],
            })
            .collect()
    }

    fn actual_placement(&self, i: usize) -> Vec<Option<usize>> {
        let t = self.time(i);
        (0..self.h.now.guests.len())
            .map(|g| {
                self.load[g][i]?;
                let node = self.h.node_at(self.h.now.guests[g].vmid, t)?;
                self.node_at.get(node).copied()
            })
            .collect()
    }

    fn overhead_at(&self, i: usize) -> Vec<(f64, f64)> {
        // a node without a recorded value then has no overhead: its guests alone
        let mut recorded: Vec<Option<(f64, f64)>> = vec![None; self.h.now.nodes.len()];
        for s in &self.h.nodes {
            if let (Some(&n), Some(cpu), Some(mem)) = (self.node_at.get(s.node.as_str()), s.cpu[i], s.mem[i])
            {
                recorded[n] = Some((cpu, mem));
            }
        }
        let guests = self.usage_of_guests(&self.actual[i], i);
        recorded.iter().zip(guests).map(|(r, g)| r.map_or((0.0, 0.0), |r| (r.0 - g.0, r.1 - g.1))).collect()
    }

    fn usage_of_guests(&self, placement: &[Option<usize>], i: usize) -> Vec<(f64, f64)> {
        let mut out = vec![(0.0, 0.0); self.h.now.nodes.len()];
        for (g, node) in placement.iter().enumerate() {
            if let (Some(n), Some((cpu, mem))) = (node, self.load[g][i]) {
                out[*n].0 += cpu;
                out[*n].1 += mem;
            }
        }
        out
    }

    /// Each node's (cpu cores, memory bytes) at sample `i` with `placement`: its own overhead plus
    /// the guests placed there (never below zero).
    pub fn usage(&self, placement: &[Option<usize>], i: usize) -> Vec<(f64, f64)> {
        let guests = self.usage_of_guests(placement, i);
        self.overhead[i]
            .iter()
            .zip(guests)
            .map(|(o, g)| ((o.0 + g.0).max(0.0), (o.1 + g.1).max(0.0)))
            .collect()
    }

    pub fn actual_at(&self, i: usize) -> Vec<Option<usize>> {
        self.actual[i].clone()
    }

    /// Guests with data at `i` and no place yet (created later) go where they really were.
    pub fn admit_new_guests(&self, current: &mut [Option<usize>], i: usize) {
        for (g, slot) in current.iter_mut().enumerate() {
            if slot.is_none() && self.load[g][i].is_some() {
                *slot = self.actual[i][g];
            }
        }
    }

    /// The cluster at sample `i` with `placement`: present guests with their recorded usage,
    /// nodes at overhead plus their guests.
    pub fn snapshot(
        &self,
        placement: &[Option<usize>],
        i: usize,
        recent: Vec<RecentMigration>,
    ) -> ClusterSnapshot {
        let mut s = self.h.now.clone();
        let usage = self.usage(placement, i);
        for (node, (cpu, mem)) in s.nodes.iter_mut().zip(&usage) {
            node.cpu_used = *cpu;
            node.mem_used = mem.round() as u64;
        }
        let mut index = 0;
        s.guests.retain_mut(|guest| {
            let g = index;
            index += 1;
            let (Some(n), Some((cpu, mem))) = (placement[g], self.load[g][i]) else { return false };
            guest.node = self.h.now.nodes[n].name.clone();
            guest.cpu_used = cpu;
            guest.mem_used = mem.round() as u64;
            // today's locks and percentiles say nothing about the past
            guest.lock = None;
            (guest.cpu_p95, guest.mem_p95) = (None, None);
            true
        });
        s.collected_at = self.time(i);
        s.recent_migrations = recent;
        s
    }

    /// Applies one plan step to `placement` at sample `i`; the move, if the guest really moved.
    pub fn apply_step(&self, placement: &mut [Option<usize>], step: &PlanStep, i: usize) -> Option<Move> {
        let g = *self.guest_at.get(&step.vmid)?;
        let to = *self.node_at.get(step.to.as_str())?;
        let from = placement[g].replace(to)?;
        (from != to).then(|| Move {
            at: self.time(i),
            vmid: step.vmid,
            from: self.h.now.nodes[from].name.clone(),
            to: step.to.clone(),
            bytes: step.mem_bytes + step.disk_bytes,
            restart: false,
        })
    }

    /// Nobody balancing: the start placement kept; guests created later stay where they appeared.
    pub fn nobody(&self) -> Placements {
        let mut current = self.actual_at(0);
        let mut at = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            self.admit_new_guests(&mut current, i);
            at.push(current.clone());
        }
        Placements { at, moves: Vec::new() }
    }

    /// What happened: the task log's placement, with a move wherever a guest changed node.
    pub fn actual(&self) -> Placements {
        let mut moves = Vec::new();
        for i in 1..self.len() {
            for (g, guest) in self.h.now.guests.iter().enumerate() {
                let (Some(a), Some(b)) = (self.actual[i - 1][g], self.actual[i][g]) else { continue };
                if a != b {
                    let mem = self.load[g][i].map_or(0.0, |l| l.1);
                    moves.push(Move {
                        at: self.time(i),
                        vmid: guest.vmid,
                        from: self.h.now.nodes[a].name.clone(),
                        to: self.h.now.nodes[b].name.clone(),
                        bytes: mem.round() as u64 + guest.local_disk_bytes,
                        restart: guest.kind == GuestKind::Lxc && guest.is_running(),
                    });
                }
            }
        }
        Placements { at: self.actual.clone(), moves }
    }

    /// The figures of one run (`rules` gives the configured rules for the hard-rule count).
    pub fn report(
        &self,
        name: &str,
        kind: RunKind,
        p: &Placements,
        rules: &PlanRequest,
        req: &BacktestRequest,
    ) -> RunReport {
        let hours = self.h.step_secs() as f64 / 3600.0;
        let (mut over_mem, mut over_cpu, mut spread) = (0.0, 0.0, Vec::with_capacity(self.len()));
        for (i, placement) in p.at.iter().enumerate() {
            let pct = self.percents(placement, i);
            over_mem += pct.iter().filter(|x| x.1 > req.memory_threshold).count() as f64 * hours;
            over_cpu += pct.iter().filter(|x| x.0 > req.cpu_threshold).count() as f64 * hours;
            let on: Vec<f64> =
                pct.iter().map(|x| if req.spread_on == Resource::Cpu { x.0 } else { x.1 }).collect();
            spread.push(spread_of(&on));
        }
        RunReport {
            name: name.into(),
            kind,
            migrations: p.moves.len(),
            migrations_per_day: 0.0,
            // + 0.0: an empty float sum is −0.0, which prints as "-0.0"
            gib_moved: p.moves.iter().map(|m| m.bytes as f64).sum::<f64>() / GIB + 0.0,
            node_hours_over_memory: over_mem,
            node_hours_over_cpu: over_cpu,
            spread_mean: spread.iter().sum::<f64>() / spread.len().max(1) as f64,
            spread_worst: spread.iter().copied().fold(0.0, f64::max),
            reversals_24h: reversals_within_day(&p.moves),
            ct_restarts: p.moves.iter().filter(|m| m.restart).count(),
            hard_violations: self.violations(p, &rules.rules, req.interval_secs),
            spread,
            moves: p.moves.clone(),
        }
    }

    /// Per node (cpu %, memory %) at sample `i`.
    fn percents(&self, placement: &[Option<usize>], i: usize) -> Vec<(f64, f64)> {
        let usage = self.usage(placement, i);
        self.h
            .now
            .nodes
            .iter()
            .zip(usage)
            .map(|(n, (cpu, mem))| (pct(cpu, n.cpus as f64), pct(mem, n.mem_total as f64)))
            .collect()
    }

    /// Hard-rule breaches summed over the balancing times.
    fn violations(&self, p: &Placements, rules: &RuleConfig, interval: u64) -> usize {
        let mut next_run = self.time(0);
        let mut total = 0;
        for i in 0..self.len() {
            if self.time(i) >= next_run {
                next_run = self.time(i) + interval;
                total += hard_violations(&self.snapshot(&p.at[i], i, Vec::new()), rules);
            }
        }
        total
    }
}

impl RunReport {
    pub(crate) fn with_rate(mut self, days: f64) -> RunReport {
        self.migrations_per_day = if days > 0.0 { self.migrations as f64 / days } else { 0.0 };
        self
    }
}

fn pct(used: f64, total: f64) -> f64 {
    if total > 0.0 {
        used / total * 100.0
    } else {
        0.0
    }
}

/// max − min of the values (0 for none).
pub fn spread_of(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    if values.is_empty() {
        0.0
    } else {
        max - min
    }
}

/// How many hard rules `snapshot` breaks: guests outside their hard pin, guests of a hard
/// anti-affinity group beyond one per node, extra nodes of a hard affinity group.
pub fn hard_violations(snapshot: &ClusterSnapshot, config: &RuleConfig) -> usize {
    let policies = rules::policies(snapshot, config);
    let node_of: HashMap<u32, &str> = snapshot.guests.iter().map(|g| (g.vmid, g.node.as_str())).collect();
    let pins = policies
        .guests
        .iter()
        .filter(|(vmid, p)| {
            let on = node_of.get(vmid);
            p.allowed.as_ref().is_some_and(|nodes| on.is_some_and(|n| !nodes.iter().any(|a| a == n)))
        })
        .count();
    let nodes_of = |vmids: &[u32]| {
        let mut ns: Vec<&str> = vmids.iter().filter_map(|v| node_of.get(v).copied()).collect();
        let present = ns.len();
        ns.sort_unstable();
        ns.dedup();
        (present, ns.len())
    };
    let apart: usize = policies
        .apart
        .iter()
        .filter(|g| g.strength == Strength::Hard)
        .map(|g| nodes_of(&g.vmids))
        .map(|(present, distinct)| present - distinct)
        .sum();
    let together: usize = policies
        .together
        .iter()
        .filter(|g| g.strength == Strength::Hard)
        .map(|g| nodes_of(&g.vmids).1.saturating_sub(1))
        .sum();
    pins + apart + together
}
