//! Live cluster state: nodes, guests, storages, pools, HA; usage derived from guests; invariants.

use std::collections::BTreeMap;

use anyhow::bail;

use crate::scenario::*;
use crate::tasks::TaskTable;

/// PVE version of the simulated cluster; selects behaviour differences (7.4 / 8.x / 9.x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PveVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// As given, e.g. `9.1.2`.
    pub text: String,
}

impl PveVersion {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = s.split(['.', '-']).collect();
        let num = |i: usize| -> anyhow::Result<u32> {
            match parts.get(i) {
                None => Ok(0),
                Some(p) => p.parse().map_err(|_| anyhow::anyhow!("bad PVE version {s:?}")),
            }
        };
        let major = num(0)?;
        if !(7..=9).contains(&major) {
            bail!("unsupported PVE version {s:?} (7.x, 8.x and 9.x are simulated)");
        }
        Ok(PveVersion { major, minor: num(1)?, patch: num(2)?, text: s.to_string() })
    }
    /// `release` as in `/version` (`9.1`).
    pub fn release(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
    /// PVE 9: PSI pressure fields, HA rules, `with-conntrack-state`, lxc migrate precondition.
    pub fn is9(&self) -> bool {
        self.major >= 9
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub spec: NodeSpec,
    pub online: bool,
    pub maintenance: bool,
    pub nodeid: u32,
    pub ip: String,
    /// Unix time of the last boot.
    pub boot_time: i64,
}

/// An in-flight migration of a guest.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub target: String,
    pub upid: String,
    /// Live migration: memory is held on both nodes.
    pub online: bool,
    /// HA `relocate` (stop, move, start): the CRM state reads `relocate` instead of `migrate`.
    pub relocate: bool,
}

#[derive(Debug, Clone)]
pub struct Guest {
    pub spec: GuestSpec,
    pub node: String,
    pub status: GuestStatus,
    pub lock: Option<String>,
    /// Unix time the guest was last started.
    pub start_time: i64,
    pub migration: Option<Migration>,
    pub storage: String,
    /// Current CPU (fraction of vCPUs) from the load dynamics; `spec.cpu` when static.
    pub cur_cpu: f64,
    /// Current factor on used memory from the load dynamics; 1 when static.
    pub mem_factor: f64,
    /// HA: the node this guest was moved off for maintenance (it returns when maintenance ends).
    pub maintenance_node: Option<String>,
}

impl Guest {
    pub fn name(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| match self.spec.kind {
            GuestType::Qemu => format!("VM {}", self.spec.vmid),
            GuestType::Lxc => format!("CT{}", self.spec.vmid),
        })
    }
    pub fn vcpus(&self) -> u32 {
        self.spec.cores.max(1) * self.spec.sockets.max(1)
    }
    pub fn maxmem(&self) -> u64 {
        (self.spec.memory_gib * GIB) as u64
    }
    pub fn running(&self) -> bool {
        self.status == GuestStatus::Running
    }
    /// Configured used memory in bytes, before the load dynamics.
    pub fn base_mem_bytes(&self) -> f64 {
        match (self.spec.memory_used_gib, self.spec.memory_used) {
            (Some(g), _) => g * GIB,
            (None, Some(r)) => r * self.spec.memory_gib * GIB,
            (None, None) => 0.6 * self.spec.memory_gib * GIB,
        }
    }
    /// Used memory in bytes (0 when stopped).
    pub fn mem(&self) -> u64 {
        if !self.running() {
            return 0;
        }
        ((self.base_mem_bytes() * self.mem_factor) as u64).min(self.maxmem())
    }
    /// CPU usage as a fraction of the guest's vCPUs (0 when stopped).
    pub fn cpu(&self) -> f64 {
        if self.running() {
            self.cur_cpu
        } else {
            0.0
        }
    }
    pub fn maxdisk(&self) -> u64 {
        (self.spec.disk_gib * GIB) as u64
    }
    /// Used disk bytes of the boot volume (what CTs report as `disk`).
    pub fn disk_used(&self) -> u64 {
        (self.spec.disk_gib * self.spec.disk_used * GIB) as u64
    }
    pub fn sid(&self) -> String {
        format!("{}:{}", self.spec.kind.ha_prefix(), self.spec.vmid)
    }
    pub fn uptime(&self, now: i64) -> i64 {
        if self.running() {
            (now - self.start_time).max(0)
        } else {
            0
        }
    }
    pub fn tags_string(&self) -> String {
        self.spec.tags.join(";")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeUsage {
    /// Fraction of `maxcpu` (0..1).
    pub cpu: f64,
    pub maxcpu: u32,
    pub mem: u64,
    pub maxmem: u64,
    pub disk: u64,
    pub maxdisk: u64,
}

#[derive(Debug, Clone)]
pub struct User {
    pub spec: UserSpec,
}

/// The whole simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub version: PveVersion,
    pub nodes: BTreeMap<String, Node>,
    pub guests: BTreeMap<u32, Guest>,
    pub storages: Vec<StorageSpec>,
    pub pools: Vec<PoolSpec>,
    pub users: Vec<UserSpec>,
    pub acls: Vec<AclSpec>,
    pub ha_rules: Vec<HaRuleSpec>,
    pub options: serde_json::Value,
    pub migration: MigrationSpec,
    pub auth: AuthSpec,
    pub seed: u64,
    pub tasks: TaskTable,
    /// Unix time the simulator started (RRD history extends before it).
    pub started_at: i64,
    /// Tickets issued before this time are rejected (fault `expire_tickets`).
    pub tickets_valid_after: i64,
    /// Load dynamics of the scenario (None = static load).
    pub dynamics: Option<DynamicsSpec>,
    /// Simulated time of the last [`Cluster::update_load`].
    pub load_updated_at: f64,
    /// Unscaled clock used for tickets and CSRF tokens (wall clock + `/_sim/clock` advances).
    pub auth_now: i64,
}

impl Cluster {
    pub fn from_scenario(sc: &Scenario, now: i64) -> anyhow::Result<Self> {
        sc.validate()?;
        let version = PveVersion::parse(&sc.version)?;
        let storages = sc.effective_storages();
        let default_storage = storages
            .iter()
            .find(|s| s.shared)
            .or_else(|| storages.first())
            .map(|s| s.id.clone())
            .unwrap_or_else(|| "local".into());
        let mut nodes = BTreeMap::new();
        for (i, n) in sc.nodes.iter().enumerate() {
            let days = 3 + (hash2(sc.seed, i as u64) % 40) as i64;
            nodes.insert(
                n.name.clone(),
                Node {
                    spec: n.clone(),
                    online: n.status == NodeStatus::Online,
                    maintenance: n.maintenance,
                    nodeid: i as u32 + 1,
                    ip: n
                        .ip
                        .clone()
                        .unwrap_or_else(|| format!("10.0.{}.{}", (i + 1) / 250, (i + 1) % 250 + 1)),
                    boot_time: now - days * 86400 - (hash2(sc.seed, 1000 + i as u64) % 86400) as i64,
                },
            );
        }
        let mut guests = BTreeMap::new();
        for g in &sc.guests {
            let boot = nodes[&g.node].boot_time;
            let up = (hash2(sc.seed, g.vmid as u64) % ((now - boot).max(1) as u64)) as i64;
            guests.insert(
                g.vmid,
                Guest {
                    spec: g.clone(),
                    node: g.node.clone(),
                    status: g.status,
                    lock: g.lock.clone(),
                    start_time: now - up.max(60),
                    migration: None,
                    storage: g.storage.clone().unwrap_or_else(|| default_storage.clone()),
                    cur_cpu: g.cpu,
                    mem_factor: 1.0,
                    maintenance_node: None,
                },
            );
        }
        let options = sc.options.clone().unwrap_or_else(|| {
            serde_json::json!({
                "crs": {"ha": "static", "ha-rebalance-on-start": 1},
                "migration": {"type": "secure"},
                "ha": {"shutdown_policy": "conditional"},
                "keyboard": "en-us",
            })
        });
        let mut cluster = Cluster {
            name: sc.cluster.clone(),
            version,
            nodes,
            guests,
            storages,
            pools: sc.pools.clone(),
            users: sc.effective_users(),
            acls: sc.acls.clone(),
            ha_rules: sc.ha_rules.clone(),
            options,
            migration: sc.migration.clone(),
            auth: sc.auth.clone(),
            seed: sc.seed,
            tasks: TaskTable::default(),
            started_at: now,
            tickets_valid_after: 0,
            dynamics: sc.dynamics.clone(),
            load_updated_at: f64::NEG_INFINITY,
            auth_now: now,
        };
        // Each past migration took what a migration of that guest takes here (set-up, memory,
        // local disk at the scenario's bandwidth), so its task shows a measurable duration; it
        // ended a minute after `hours_ago`, as before durations were modelled.
        for (m, to) in sc.past_migrations_with_targets() {
            let lxc = cluster.guests[&m.vmid].spec.kind == GuestType::Lxc;
            let kind = if lxc { "vzmigrate" } else { "qmigrate" };
            let end = now - (m.hours_ago * 3600.0).round() as i64 + 60;
            let secs = cluster.migration_seconds(m.vmid, !lxc, lxc).ceil() as i64;
            cluster.tasks.record_past_migration(m.vmid, kind, &m.from, &to, end - secs.max(1), end);
        }
        Ok(cluster)
    }

    pub fn storage(&self, id: &str) -> Option<&StorageSpec> {
        self.storages.iter().find(|s| s.id == id)
    }

    /// Storages visible on a node.
    pub fn node_storages(&self, node: &str) -> impl Iterator<Item = &StorageSpec> {
        let node = node.to_string();
        self.storages.iter().filter(move |s| s.nodes.is_empty() || s.nodes.contains(&node))
    }

    pub fn guest_has_local_disk(&self, g: &Guest) -> bool {
        self.storage(&g.storage).map(|s| !s.shared).unwrap_or(false)
    }

    /// Node usage derived from host overhead plus the guests on it (and live migrations into it).
    pub fn node_usage(&self, name: &str) -> NodeUsage {
        let Some(n) = self.nodes.get(name) else { return NodeUsage::default() };
        let maxcpu = n.spec.cpus;
        let maxmem = (n.spec.memory_gib * GIB) as u64;
        let maxdisk = (n.spec.disk_gib * GIB) as u64;
        if !n.online {
            return NodeUsage { cpu: 0.0, maxcpu, mem: 0, maxmem, disk: 0, maxdisk };
        }
        let mut cpu_cores = n.spec.overhead.cpu * maxcpu as f64;
        let mut mem = n.spec.overhead.memory_gib * GIB;
        let disk = n.spec.overhead.disk_gib * GIB;
        for g in self.guests.values() {
            let here = g.node == name;
            let incoming = g.migration.as_ref().is_some_and(|m| m.online && m.target == name);
            if here || incoming {
                mem += g.mem() as f64;
                if here {
                    cpu_cores += g.cpu() * g.vcpus() as f64;
                } else {
                    // the receiving side of a live migration burns a little CPU
                    cpu_cores += 0.1;
                }
            }
        }
        NodeUsage {
            cpu: (cpu_cores / maxcpu as f64).clamp(0.0, 1.0),
            maxcpu,
            mem: mem as u64,
            maxmem,
            disk: (disk as u64).min(maxdisk),
            maxdisk,
        }
    }

    /// Usage of every node, computed in one pass over the guests (O(guests + nodes)).
    pub fn usage_map(&self) -> BTreeMap<String, NodeUsage> {
        let mut acc: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for g in self.guests.values() {
            if !g.running() {
                continue;
            }
            let e = acc.entry(g.node.as_str()).or_default();
            e.0 += g.cpu() * g.vcpus() as f64;
            e.1 += g.mem() as f64;
            if let Some(m) = g.migration.as_ref().filter(|m| m.online) {
                let t = acc.entry(m.target.as_str()).or_default();
                t.0 += 0.1;
                t.1 += g.mem() as f64;
            }
        }
        self.nodes
            .iter()
            .map(|(name, n)| {
                let maxcpu = n.spec.cpus;
                let maxmem = (n.spec.memory_gib * GIB) as u64;
                let maxdisk = (n.spec.disk_gib * GIB) as u64;
                let u = if !n.online {
                    NodeUsage { cpu: 0.0, maxcpu, mem: 0, maxmem, disk: 0, maxdisk }
                } else {
                    let (c, m) = acc.get(name.as_str()).copied().unwrap_or_default();
                    NodeUsage {
                        cpu: ((n.spec.overhead.cpu * maxcpu as f64 + c) / maxcpu as f64).clamp(0.0, 1.0),
                        maxcpu,
                        mem: (n.spec.overhead.memory_gib * GIB + m) as u64,
                        maxmem,
                        disk: ((n.spec.overhead.disk_gib * GIB) as u64).min(maxdisk),
                        maxdisk,
                    }
                };
                (name.clone(), u)
            })
            .collect()
    }

    /// Used bytes of a storage on a node (for shared storages: cluster-wide).
    pub fn storage_usage(&self, st: &StorageSpec, node: &str) -> (u64, u64) {
        let used: f64 = self
            .guests
            .values()
            .filter(|g| g.storage == st.id && (st.shared || g.node == node))
            .map(|g| g.spec.disk_gib * GIB)
            .sum();
        let total = st.size_gib * GIB;
        ((used.min(total)) as u64, total as u64)
    }

    /// The HA-managed state of a guest, if it is an HA resource (`hastate`).
    pub fn ha_state(&self, g: &Guest) -> Option<String> {
        let ha = g.spec.ha.as_ref()?;
        if let Some(m) = &g.migration {
            return Some(if m.relocate { "relocate" } else { "migrate" }.into());
        }
        Some(match ha.state.as_str() {
            "enabled" => "started".into(),
            "disabled" => "stopped".into(),
            s => s.to_string(),
        })
    }

    /// Consistency checks; returns every violation found.
    pub fn check_invariants(&self) -> Result<(), Vec<String>> {
        let mut v = Vec::new();
        for (id, g) in &self.guests {
            if *id != g.spec.vmid {
                v.push(format!("guest key {id} != vmid {}", g.spec.vmid));
            }
            if !self.nodes.contains_key(&g.node) {
                v.push(format!("guest {id} on unknown node {}", g.node));
            }
            match (&g.migration, g.lock.as_deref()) {
                (Some(m), Some("migrate")) => {
                    if m.target == g.node {
                        v.push(format!("guest {id} migrating to its own node {}", g.node));
                    }
                    if !self.tasks.is_running(&m.upid) {
                        v.push(format!("guest {id} has lock migrate but its task {} is not running", m.upid));
                    }
                }
                (Some(_), _) => v.push(format!("guest {id} is migrating without lock 'migrate'")),
                (None, Some("migrate")) if self.tasks.running_for_vmid(*id).is_none() => {
                    // a scenario/fault may set lock: migrate deliberately; only flag if we own it
                }
                _ => {}
            }
            if g.spec.template && g.running() {
                v.push(format!("template {id} is running"));
            }
            if g.running() && self.nodes.get(&g.node).is_some_and(|n| !n.online) {
                // allowed (real PVE shows them as unknown), not a violation
            }
        }
        for (name, u) in self.usage_map() {
            if u.mem > u.maxmem {
                v.push(format!(
                    "node {name} memory over-committed: {:.1} GiB used of {:.1} GiB",
                    u.mem as f64 / GIB,
                    u.maxmem as f64 / GIB
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in self.tasks.running() {
            if let Some(vmid) = t.vmid() {
                if t.kind_is_migration() && !seen.insert(vmid) {
                    v.push(format!("guest {vmid} has more than one running migration task"));
                }
            }
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(v)
        }
    }
}

/// Small deterministic hash (splitmix64) for reproducible pseudo-random values.
pub fn hash2(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic value in [0, 1).
pub fn unit(a: u64, b: u64) -> f64 {
    (hash2(a, b) >> 11) as f64 / (1u64 << 53) as f64
}
