//! Seeded cluster generator for tests and benchmarks (behind the `testkit` feature; not used by
//! the engine). A small xorshift PRNG keeps it dependency-free and deterministic.

use crate::model::{ClusterSnapshot, Guest, GuestKind, GuestStatus, Node, NodeStatus};

const GIB: u64 = 1 << 30;

/// xorshift64*: deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi` (hi exclusive; `lo` if empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }
}

/// A cluster of `nodes` × `guests` with skewed placement (a third of the nodes carry most
/// guests), mixed VM/CT sizes, some stopped guests, and node usage equal to the sum of its
/// running guests plus 2 GiB host overhead. Node memory is sized so the cluster is ~55 % full.
pub fn cluster(seed: u64, nodes: usize, guests: usize) -> ClusterSnapshot {
    let mut rng = Rng::new(seed);
    let nodes = nodes.max(1);
    let mut gs = Vec::with_capacity(guests);
    // Per node: memory and CPU of its running guests (one pass instead of one scan per node).
    let mut sums = vec![(2 * GIB, 0.0); nodes];
    for i in 0..guests {
        let hot = rng.range(0, 3) < 2;
        let at =
            if hot { rng.range(0, (nodes as u64).div_ceil(3)) } else { rng.range(0, nodes as u64) } as usize;
        let mem_gib = [1, 2, 2, 4, 4, 8, 8, 16, 32][rng.range(0, 9) as usize];
        let cpus = [1.0, 2.0, 2.0, 4.0, 8.0][rng.range(0, 5) as usize];
        let running = rng.range(0, 10) < 9;
        let kind = if rng.range(0, 4) == 0 { GuestKind::Lxc } else { GuestKind::Qemu };
        let mem_used = mem_gib * GIB * rng.range(50, 100) / 100;
        let cpu_used = cpus * rng.range(5, 80) as f64 / 100.0;
        if running {
            sums[at].0 += mem_used;
            sums[at].1 += cpu_used;
        }
        gs.push(Guest {
            vmid: 100 + i as u32,
            name: format!("g{i}"),
            kind,
            node: format!("n{at}"),
            status: if running { GuestStatus::Running } else { GuestStatus::Stopped },
            cpus,
            cpu_used,
            mem_max: mem_gib * GIB,
            mem_used,
            disk_max: 32 * GIB,
            disk_used: 0,
            ..Default::default()
        });
    }
    let total_mem: u64 = gs.iter().filter(|g| g.status == GuestStatus::Running).map(|g| g.mem_used).sum();
    let per_node = (total_mem / nodes as u64 * 100 / 55).max(64 * GIB);
    let ns = (0..nodes)
        .map(|i| {
            let name = format!("n{i}");
            let (mem, cpu) = sums[i];
            // Sizes vary: some nodes are 1.5× the others.
            let mem_total = if i % 4 == 3 { per_node * 3 / 2 } else { per_node };
            Node {
                name,
                status: NodeStatus::Online,
                cpus: 64,
                cpu_used: cpu,
                mem_total: mem_total.max(mem),
                mem_used: mem,
                disk_total: 1 << 40,
                disk_used: 0,
                ..Default::default()
            }
        })
        .collect();
    ClusterSnapshot {
        cluster_name: format!("seed{seed}"),
        quorate: true,
        nodes: ns,
        guests: gs,
        collected_at: 1_700_000_000,
        ..Default::default()
    }
}

/// A back-test history for [`cluster`]: `days` of hourly samples ending at its `collected_at`,
/// each running guest's CPU and memory swinging with the day around its current use (seeded
/// phase per guest), node usage = 2 GiB / 1 core of overhead plus the guests on it; no past
/// migrations. For benchmarks and tests of `crate::backtest`.
pub fn history(seed: u64, nodes: usize, guests: usize, days: u32) -> crate::backtest::History {
    use crate::backtest::{GuestHistory, History, NodeHistory};
    let now = cluster(seed, nodes, guests);
    let samples = days as u64 * 24;
    let times: Vec<u64> = (0..samples).map(|h| now.collected_at - (samples - 1 - h) * 3600).collect();
    let mut rng = Rng::new(seed ^ 0xB7);
    let node_index: std::collections::HashMap<&str, usize> =
        now.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut node_sums = vec![vec![(1.0, 2.0 * GIB as f64); times.len()]; now.nodes.len()];
    let mut gs = Vec::with_capacity(now.guests.len());
    for g in &now.guests {
        let phase = rng.range(0, 24) as f64;
        let running = g.status == GuestStatus::Running;
        let day =
            |t: u64| 1.0 + 0.5 * (std::f64::consts::TAU * ((t % 86400) as f64 / 3600.0 - phase) / 24.0).cos();
        let cpu: Vec<f64> = times.iter().map(|&t| if running { g.cpu_used * day(t) } else { 0.0 }).collect();
        let mem: Vec<f64> =
            times
                .iter()
                .map(|&t| {
                    if running {
                        (g.mem_used as f64 * (0.9 + 0.1 * day(t))).min(g.mem_max as f64)
                    } else {
                        0.0
                    }
                })
                .collect();
        for (i, sum) in node_sums[node_index[g.node.as_str()]].iter_mut().enumerate() {
            sum.0 += cpu[i];
            sum.1 += mem[i];
        }
        gs.push(GuestHistory {
            vmid: g.vmid,
            cpu: cpu.into_iter().map(Some).collect(),
            mem: mem.into_iter().map(Some).collect(),
        });
    }
    let ns = now
        .nodes
        .iter()
        .zip(node_sums)
        .map(|(n, sums)| NodeHistory {
            node: n.name.clone(),
            cpu: sums.iter().map(|s| Some(s.0)).collect(),
            mem: sums.iter().map(|s| Some(s.1)).collect(),
        })
        .collect();
    History { now, times, nodes: ns, guests: gs, migrations: Vec::new() }
}
