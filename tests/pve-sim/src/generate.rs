//! Seeded generator for large clusters (up to 500 nodes × 100,000 guests).
#![allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace MSRV is 1.85

use crate::scenario::*;
use crate::state::{hash2, unit};

const NODE_SIZES: &[(u32, f64)] = &[(32, 128.0), (48, 256.0), (64, 512.0), (16, 64.0), (96, 1024.0)];
const GUEST_MEM: &[f64] = &[0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

/// A reproducible cluster: `nodes` nodes of mixed sizes, `guests` guests spread unevenly so that
/// memory use is imbalanced but no node is over-committed.
pub fn generate(seed: u64, nodes: usize, guests: usize) -> Scenario {
    let nodes = nodes.max(1);
    let mut ns = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let (cpus, mem) = NODE_SIZES[(hash2(seed, i as u64) % NODE_SIZES.len() as u64) as usize];
        ns.push(NodeSpec {
            name: format!("pve{}", i + 1),
            cpus,
            memory_gib: mem,
            disk_gib: 200.0,
            status: NodeStatus::Online,
            maintenance: false,
            overhead: Overhead::default(),
            ip: None,
            sockets: 2,
            qemu_version: None,
        });
    }
    // scale guest sizes so that the cluster ends up ~55% full on average
    let total_mem: f64 = ns.iter().map(|n| n.memory_gib - n.overhead.memory_gib).sum();
    let avg_guest: f64 = GUEST_MEM.iter().sum::<f64>() / GUEST_MEM.len() as f64 * 0.6;
    let wanted = total_mem * 0.55;
    let scale = if guests > 0 { (wanted / (guests as f64 * avg_guest)).clamp(0.01, 4.0) } else { 1.0 };
    // skewed node weights → imbalance
    let weights: Vec<f64> = (0..nodes).map(|i| 0.3 + 1.4 * unit(seed ^ 0x5EED, i as u64)).collect();
    let mut free: Vec<f64> = ns.iter().map(|n| (n.memory_gib - n.overhead.memory_gib) * 0.92).collect();
    let pools = ["prod", "dev", "infra"];
    let mut gs = Vec::with_capacity(guests);
    let wsum: f64 = weights.iter().sum();
    for j in 0..guests {
        let h = hash2(seed, 1_000_000 + j as u64);
        let base_mem = GUEST_MEM[(h % GUEST_MEM.len() as u64) as usize];
        let mem = ((base_mem * scale * 4.0).round() / 4.0).max(0.25);
        let used_ratio = 0.3 + 0.6 * unit(seed, 2_000_000 + j as u64);
        let stopped = h % 23 == 0;
        let need = if stopped { 0.0 } else { mem * used_ratio };
        // weighted pick, falling back to the node with most free memory
        let mut r = unit(seed, 3_000_000 + j as u64) * wsum;
        let mut pick = 0;
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                pick = i;
                break;
            }
            r -= w;
        }
        if free[pick] < need {
            pick = (0..nodes).max_by(|a, b| free[*a].total_cmp(&free[*b])).unwrap_or(0);
        }
        free[pick] -= need;
        let is_ct = h % 5 == 0;
        let mut tags = Vec::new();
        if h % 97 == 0 {
            tags.push(format!("plb_anti_affinity_grp{}", (h >> 8) % 50));
        }
        if h % 211 == 0 {
            tags.push("plb_ignore_guest".to_string());
        }
        gs.push(GuestSpec {
            vmid: 100 + j as u32,
            name: Some(format!("{}-{}", if is_ct { "ct" } else { "vm" }, 100 + j)),
            kind: if is_ct { GuestType::Lxc } else { GuestType::Qemu },
            node: ns[pick].name.clone(),
            status: if stopped { GuestStatus::Stopped } else { GuestStatus::Running },
            cores: [1, 2, 4, 8][((h >> 4) % 4) as usize],
            sockets: 1,
            memory_gib: mem,
            memory_used: Some(used_ratio),
            memory_used_gib: None,
            cpu: (0.02 + 0.6 * unit(seed, 4_000_000 + j as u64)).min(1.0),
            disk_gib: [8.0, 16.0, 32.0, 64.0][((h >> 6) % 4) as usize],
            disk_used: 0.4,
            storage: None,
            tags,
            pool: if h % 7 == 0 { Some(pools[((h >> 10) % 3) as usize].to_string()) } else { None },
            local_resources: vec![],
            template: false,
            lock: None,
            ha: None,
            net_bps: None,
        });
    }
    Scenario {
        cluster: format!("gen-{seed}"),
        version: "9.1.2".into(),
        nodes: ns,
        guests: gs,
        storages: vec![],
        pools: pools.iter().map(|p| PoolSpec { id: p.to_string(), comment: None }).collect(),
        users: vec![],
        acls: vec![],
        ha_rules: vec![],
        migration: MigrationSpec::default(),
        auth: AuthSpec::default(),
        options: None,
        faults: vec![],
        seed,
        dynamics: None,
        past_migrations: vec![],
    }
}
