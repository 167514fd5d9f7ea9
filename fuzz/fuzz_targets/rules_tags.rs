//! Tags, pools and config rules as operators write them (ProxLB `plb_*`, ProxBalance, free text):
//! each input line is one tag on one of four guests, and the first lines double as pool rules and
//! ignore/maintenance patterns. Compiling rules and resolving per-guest policies must never panic,
//! and every diagnostic must name its source.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::model::{ClusterSnapshot, Guest, Node, NodeStatus};
use shared::rules::{self, PoolRule, RuleConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines: Vec<&str> = text.lines().take(64).collect();
    let nodes = ["pve1", "pve2", "pve3"]
        .iter()
        .map(|n| Node {
            name: (*n).into(),
            status: NodeStatus::Online,
            cpus: 8,
            mem_total: 64 << 30,
            mem_used: 8 << 30,
            disk_total: 1 << 40,
            ..Node::default()
        })
        .collect();
    let guests = (0..4u32)
        .map(|i| Guest {
            vmid: 100 + i,
            name: format!("g{i}"),
            node: format!("pve{}", 1 + i % 3),
            mem_max: 4 << 30,
            mem_used: 1 << 30,
            cpus: 2.0,
            tags: lines.iter().enumerate().filter(|(n, _)| *n as u32 % 4 == i).map(|(_, l)| l.to_string()).collect(),
            pool: lines.get(i as usize).map(|l| l.to_string()),
            ..Guest::default()
        })
        .collect();
    let snapshot = ClusterSnapshot { nodes, guests, ..ClusterSnapshot::default() };
    let first = |n: usize| lines.iter().take(n).map(|l| l.to_string()).collect::<Vec<_>>();
    let config = RuleConfig {
        pools: lines
            .iter()
            .take(2)
            .map(|l| PoolRule { pool: l.to_string(), kind: Some(l.to_string()), pin: first(2), strict: l.len() % 2 == 0 })
            .collect(),
        ignore_guests: first(1),
        ignore_vms: first(2),
        ignore_nodes: first(1),
        maintenance_nodes: first(1),
    };
    let set = rules::compile(&snapshot, &config);
    for d in &set.diagnostics {
        assert!(!d.message.is_empty(), "a diagnostic without a message: {d:?}");
    }
    let _ = rules::policies(&snapshot, &config);
    for g in &snapshot.guests {
        let r = rules::GuestRules::of(g, &snapshot);
        let _ = r.allows("pve1");
    }
    for (a, b) in lines.iter().zip(lines.iter().skip(1)) {
        let _ = rules::wildcard_match(a, b);
    }
});
