//! Which keys exist where, so unknown ones can be named (ProxLB ignores them silently, which hides
//! typos such as `balanciess`). Kept next to `types.rs`: a field added there is added here.

use serde_norway::Value;

/// The shape of a YAML node.
pub(super) enum Shape {
    /// A mapping with these keys.
    Keys(&'static [(&'static str, Shape)]),
    /// A mapping whose keys are the user's (node names, pool names), each of this shape.
    AnyKeys(&'static Shape),
    /// A value we do not look into.
    Leaf,
}

use Shape::{AnyKeys, Keys, Leaf};

const PSI_THRESHOLDS: Shape =
    Keys(&[("pressure_full", Leaf), ("pressure_some", Leaf), ("pressure_spikes", Leaf)]);
const PSI_RESOURCES: Shape =
    Keys(&[("memory", PSI_THRESHOLDS), ("cpu", PSI_THRESHOLDS), ("disk", PSI_THRESHOLDS)]);
const RESERVE: Shape = Keys(&[("memory", Leaf)]);
const POOL: Shape = Keys(&[("type", Leaf), ("pin", Leaf), ("strict", Leaf)]);
const TIME: Shape = Keys(&[("interval", Leaf), ("format", Leaf)]);
const NOTIFY: Shape = Keys(&[
    ("targets", Leaf),
    (
        "alert",
        Keys(&[("percent", Leaf), ("minutes", Leaf), ("resource", Leaf), ("check_interval_secs", Leaf)]),
    ),
    ("timeout_secs", Leaf),
]);
const DELAY: Shape = Keys(&[("enable", Leaf), ("time", Leaf), ("format", Leaf)]);

pub(super) const ROOT: Shape = Keys(&[
    (
        "proxmox_api",
        Keys(&[
            ("hosts", Leaf),
            ("user", Leaf),
            ("pass", Leaf),
            ("token_id", Leaf),
            ("token_secret", Leaf),
            ("ssl_verification", Leaf),
            ("timeout", Leaf),
            ("retries", Leaf),
            ("wait_time", Leaf),
        ]),
    ),
    (
        "proxmox_cluster",
        Keys(&[
            ("maintenance_nodes", Leaf),
            (
                "maintenance_nodes_schedule",
                Keys(&[("duration", Leaf), ("pre-migration", Leaf), ("schedules", AnyKeys(&Leaf))]),
            ),
            ("ignore_nodes", Leaf),
            ("overprovisioning", Leaf),
        ]),
    ),
    (
        "balancing",
        Keys(&[
            ("enable", Leaf),
            ("enforce_affinity", Leaf),
            ("enforce_pinning", Leaf),
            ("parallel", Leaf),
            ("parallel_jobs", Leaf),
            ("live", Leaf),
            ("with_local_disks", Leaf),
            ("with_conntrack_state", Leaf),
            ("balance_types", Leaf),
            ("max_job_validation", Leaf),
            ("memory_threshold", Leaf),
            ("cpu_threshold", Leaf),
            ("disk_threshold", Leaf),
            ("balanciness", Leaf),
            ("method", Leaf),
            ("mode", Leaf),
            ("balance_larger_guests_first", Leaf),
            ("node_resource_reserve", AnyKeys(&RESERVE)),
            ("psi", Keys(&[("nodes", PSI_RESOURCES), ("guests", PSI_RESOURCES)])),
            ("pools", AnyKeys(&POOL)),
            ("ignore_guests", Leaf),
            ("cpu_overcommit", Leaf),
            ("max_node_inflow", Leaf),
        ]),
    ),
    (
        "service",
        Keys(&[
            ("daemon", Leaf),
            ("schedule", TIME),
            ("delay", DELAY),
            ("log_level", Leaf),
            ("enable_ha", Leaf),
        ]),
    ),
    (
        "solver",
        Keys(&[
            ("enable", Leaf),
            ("mode", Leaf),
            ("log_dir", Leaf),
            ("timeout_seconds", Leaf),
            ("use_reservations", Leaf),
            ("active_step_retries", Leaf),
            ("fallback_to_greedy", Leaf),
        ]),
    ),
    (
        "rebalancer",
        Keys(&[
            ("listen", Leaf),
            ("journal", Leaf),
            ("lock_dir", Leaf),
            ("ca_file", Leaf),
            ("level", Leaf),
            ("max_moves", Leaf),
            ("max_gib", Leaf),
            ("migration_bandwidth_mib_s", Leaf),
            ("max_moves_per_node", Leaf),
            ("cooldown_secs", Leaf),
            ("no_return_secs", Leaf),
            ("min_gain", Leaf),
            ("stop_spread", Leaf),
            ("max_per_node", Leaf),
            ("step_timeout_secs", Leaf),
            ("evacuate_stopped", Leaf),
            ("notify", NOTIFY),
            ("windows", Leaf),
            ("state_dir", Leaf),
            ("ui_origins", Leaf),
            ("output", Leaf),
        ]),
    ),
]);

/// An unknown key: its path (`balancing.balanciess`) and the closest known sibling, if close.
#[derive(Debug, PartialEq)]
pub(super) struct UnknownKey {
    pub path: Vec<String>,
    pub suggestion: Option<&'static str>,
}

/// Every key of `value` that `shape` does not know, in document order.
pub(super) fn unknown_keys(value: &Value, shape: &Shape) -> Vec<UnknownKey> {
    let mut out = Vec::new();
    walk(value, shape, &mut Vec::new(), &mut out);
    out
}

fn walk(value: &Value, shape: &Shape, path: &mut Vec<String>, out: &mut Vec<UnknownKey>) {
    let Value::Mapping(map) = value else { return };
    for (key, child) in map {
        let key = match key {
            Value::String(s) => s.clone(),
            other => serde_norway::to_string(other).unwrap_or_default().trim().to_owned(),
        };
        let child_shape = match shape {
            Keys(known) => match known.iter().find(|(k, _)| *k == key) {
                Some((_, s)) => s,
                None => {
                    let suggestion = closest(&key, known.iter().map(|(k, _)| *k));
                    let mut p = path.clone();
                    p.push(key);
                    out.push(UnknownKey { path: p, suggestion });
                    continue;
                }
            },
            AnyKeys(s) => *s,
            Leaf => return,
        };
        path.push(key);
        walk(child, child_shape, path, out);
        path.pop();
    }
}

/// The dotted path of every key in `value`, nested ones included.
pub(super) fn key_paths(value: &Value) -> std::collections::BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        let Value::Mapping(map) = value else { return };
        for (key, child) in map {
            let key =
                key.as_str().map_or_else(|| serde_norway::to_string(key).unwrap_or_default(), str::to_owned);
            let path =
                if prefix.is_empty() { key.trim().to_owned() } else { format!("{prefix}.{}", key.trim()) };
            walk(child, &path, out);
            out.insert(path);
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(value, "", &mut out);
    out
}

/// The known key within a small edit distance (a third of its length, at least 2).
pub(crate) fn closest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_is_found_with_a_suggestion() {
        let v: Value =
            serde_norway::from_str("balancing:\n  balanciess: 5\n  pools:\n    web: {type: affinity}\n")
                .unwrap();
        let u = unknown_keys(&v, &ROOT);
        assert_eq!(
            u,
            vec![UnknownKey {
                path: vec!["balancing".into(), "balanciess".into()],
                suggestion: Some("balanciness")
            }]
        );
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("zzzzzz", ["balanciness"].into_iter()), None);
    }
}
