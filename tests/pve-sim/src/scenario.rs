//! Scenario files: the YAML description of a simulated cluster (see `SCENARIOS.md`).
//!
//! Everything here is plain data; `state.rs` turns a scenario into a live cluster.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A whole simulated cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Cluster name (`clustername` in the login answer, `/cluster/status`).
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// PVE version string, e.g. `9.1.2`, `8.4.1`, `7.4-17`. Selects the version mode.
    #[serde(default = "default_version")]
    pub version: String,
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub guests: Vec<GuestSpec>,
    /// Storages; when empty, `local` (dir, node-local) and `ceph` (rbd, shared) exist.
    #[serde(default)]
    pub storages: Vec<StorageSpec>,
    #[serde(default)]
    pub pools: Vec<PoolSpec>,
    /// Users; when empty, `root@pam` with password `demo`.
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub acls: Vec<AclSpec>,
    #[serde(default)]
    pub ha_rules: Vec<HaRuleSpec>,
    #[serde(default)]
    pub migration: MigrationSpec,
    #[serde(default)]
    pub auth: AuthSpec,
    /// `datacenter.cfg` options served by `GET /cluster/options` (free-form JSON object).
    #[serde(default)]
    pub options: Option<serde_json::Value>,
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Seed for the deterministic noise in RRD data.
    #[serde(default)]
    pub seed: u64,
    /// Time-varying guest load (diurnal curve, noise, bursts); absent = static load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamics: Option<DynamicsSpec>,
    /// Migrations that finished before the simulator started: served by `/cluster/tasks` and
    /// placing the guest on `from` in the RRD history before them (the back-test's "actual").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past_migrations: Vec<PastMigrationSpec>,
}

/// One finished migration in the past: guest `vmid` left node `from` `hours_ago` hours before
/// the start. Its target is where the guest went next: the `from` of its next past migration,
/// else its `node`. This is all PVE's task list says too (source node, guest, time).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PastMigrationSpec {
    pub vmid: u32,
    pub from: String,
    pub hours_ago: f64,
}

/// How guest load varies over (simulated) time. See SCENARIOS.md, *dynamics*.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamicsSpec {
    /// Relative swing of guest CPU over a day, 0..1 (0 = flat): factor `1 + a·cos(2π(h − peak)/24)`.
    #[serde(default)]
    pub diurnal_amplitude: f64,
    /// Hour of day (UTC, simulated clock) of the peak.
    #[serde(default = "default_peak_hour")]
    pub peak_hour: f64,
    /// Each guest's peak is shifted by a seeded offset in ±this many hours.
    #[serde(default = "default_phase_jitter")]
    pub phase_jitter_h: f64,
    /// CPU factor on Saturdays and Sundays (UTC).
    #[serde(default = "default_one_f")]
    pub weekend_factor: f64,
    /// Amplitude of smooth per-guest noise, 0..1 (factor `1 ± noise`).
    #[serde(default)]
    pub noise: f64,
    /// Seconds between noise control points (values are interpolated between them).
    #[serde(default = "default_noise_period")]
    pub noise_period_s: f64,
    /// How much used memory follows the CPU factor, 0..1 (0 = memory stays constant).
    #[serde(default)]
    pub memory_follow: f64,
    /// Seeded random bursts per guest.
    #[serde(default)]
    pub random_bursts: Option<RandomBurstSpec>,
    /// Scheduled bursts.
    #[serde(default)]
    pub bursts: Vec<BurstSpec>,
}

fn default_peak_hour() -> f64 {
    14.0
}
fn default_phase_jitter() -> f64 {
    2.0
}
fn default_one_f() -> f64 {
    1.0
}
fn default_noise_period() -> f64 {
    300.0
}

/// Random bursts: each guest bursts in a window of `duration_s` with probability
/// `per_day · duration_s / 86400`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RandomBurstSpec {
    /// Expected bursts per guest and day.
    pub per_day: f64,
    #[serde(default = "default_burst_duration")]
    pub duration_s: f64,
    /// Guest CPU (fraction of its vCPUs) during a burst.
    #[serde(default = "default_burst_cpu")]
    pub cpu: f64,
}

fn default_burst_duration() -> f64 {
    900.0
}
fn default_burst_cpu() -> f64 {
    0.9
}

/// A scheduled burst of one guest (`vmid`) or of every guest on a node (`node`), or of all guests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BurstSpec {
    #[serde(default)]
    pub vmid: Option<u32>,
    #[serde(default)]
    pub node: Option<String>,
    /// Start, in simulated seconds after the simulator started (negative = in the RRD past).
    pub start_s: f64,
    pub duration_s: f64,
    /// Repeat every this many seconds (e.g. 86400 for a nightly batch job).
    #[serde(default)]
    pub every_s: Option<f64>,
    /// Guest CPU during the burst (fraction of its vCPUs).
    #[serde(default = "default_burst_cpu")]
    pub cpu: f64,
    /// Used memory during the burst as a fraction of `memory_gib` (unchanged when absent).
    #[serde(default)]
    pub memory_used: Option<f64>,
}

fn default_cluster() -> String {
    "sim".into()
}
fn default_version() -> String {
    "9.1.2".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    #[default]
    Online,
    Offline,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    /// Logical CPUs (`maxcpu`).
    pub cpus: u32,
    /// RAM in GiB (`maxmem`).
    pub memory_gib: f64,
    /// Root file system size in GiB (`maxdisk`).
    #[serde(default = "default_node_disk")]
    pub disk_gib: f64,
    #[serde(default)]
    pub status: NodeStatus,
    /// HA node maintenance (`hastate: maintenance`, lrm "maintenance mode").
    #[serde(default)]
    pub maintenance: bool,
    #[serde(default)]
    pub overhead: Overhead,
    /// Node address for `/cluster/status`; default `10.0.0.<index+1>` (never contacted).
    #[serde(default)]
    pub ip: Option<String>,
    /// Sockets for `cpuinfo` (default 1).
    #[serde(default = "one")]
    pub sockets: u32,
    /// Installed `pve-qemu-kvm` (e.g. `9.0.2-4`, as `apt/versions` shows it); default: what the
    /// scenario's PVE release ships. A VM runs the QEMU of the node it started on.
    #[serde(default)]
    pub qemu_version: Option<String>,
}

fn default_node_disk() -> f64 {
    100.0
}
fn one() -> u32 {
    1
}

/// What the host uses itself, independent of guests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Overhead {
    #[serde(default = "default_overhead_mem")]
    pub memory_gib: f64,
    /// Fraction of the node's CPUs (0..1).
    #[serde(default = "default_overhead_cpu")]
    pub cpu: f64,
    #[serde(default = "default_overhead_disk")]
    pub disk_gib: f64,
}

impl Default for Overhead {
    fn default() -> Self {
        Overhead {
            memory_gib: default_overhead_mem(),
            cpu: default_overhead_cpu(),
            disk_gib: default_overhead_disk(),
        }
    }
}
fn default_overhead_mem() -> f64 {
    2.0
}
fn default_overhead_cpu() -> f64 {
    0.02
}
fn default_overhead_disk() -> f64 {
    8.0
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    #[default]
    Qemu,
    Lxc,
}

impl GuestType {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu",
            GuestType::Lxc => "lxc",
        }
    }
    /// HA resource prefix (`vm:` / `ct:`).
    pub fn ha_prefix(self) -> &'static str {
        match self {
            GuestType::Qemu => "vm",
            GuestType::Lxc => "ct",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum GuestStatus {
    #[default]
    Running,
    Stopped,
}

impl GuestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestStatus::Running => "running",
            GuestStatus::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    pub vmid: u32,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: GuestType,
    pub node: String,
    #[serde(default)]
    pub status: GuestStatus,
    #[serde(default = "one")]
    pub cores: u32,
    #[serde(default = "one")]
    pub sockets: u32,
    /// Configured memory in GiB (`maxmem`).
    #[serde(default = "default_guest_mem")]
    pub memory_gib: f64,
    /// Used memory as a fraction of `memory_gib` (default 0.6); ignored if `memory_used_gib` is set.
    #[serde(default)]
    pub memory_used: Option<f64>,
    #[serde(default)]
    pub memory_used_gib: Option<f64>,
    /// CPU usage as a fraction of the guest's own vCPUs (0..1), like `/cluster/resources` `cpu`.
    #[serde(default = "default_guest_cpu")]
    pub cpu: f64,
    /// Size of the boot disk in GiB (`maxdisk`).
    #[serde(default = "default_guest_disk")]
    pub disk_gib: f64,
    /// Used fraction of the disk (`disk`, reported for CTs; VMs report 0 like real PVE).
    #[serde(default = "default_disk_used")]
    pub disk_used: f64,
    /// Storage of the boot disk (default: the first shared storage).
    #[serde(default)]
    pub storage: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub pool: Option<String>,
    /// Local resources that block migration, e.g. `hostpci0=0000:01:00.0`, `usb0=host=1-2`.
    #[serde(default)]
    pub local_resources: Vec<String>,
    #[serde(default)]
    pub template: bool,
    /// A config lock, e.g. `backup`, `snapshot`.
    #[serde(default)]
    pub lock: Option<String>,
    #[serde(default)]
    pub ha: Option<HaSpec>,
    /// Network traffic in bytes/s (in, out) used for netin/netout counters and RRD.
    #[serde(default)]
    pub net_bps: Option<(f64, f64)>,
}

fn default_guest_mem() -> f64 {
    2.0
}
fn default_guest_cpu() -> f64 {
    0.1
}
fn default_guest_disk() -> f64 {
    32.0
}
fn default_disk_used() -> f64 {
    0.4
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HaSpec {
    /// started | stopped | enabled | disabled | ignored
    #[serde(default = "default_ha_state")]
    pub state: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default = "one")]
    pub max_restart: u32,
    #[serde(default = "one")]
    pub max_relocate: u32,
    #[serde(default = "default_true")]
    pub failback: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

fn default_ha_state() -> String {
    "started".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    pub id: String,
    /// Plugin type: dir, lvmthin, rbd, nfs, zfspool, ...
    #[serde(rename = "type", default = "default_storage_type")]
    pub kind: String,
    #[serde(default)]
    pub shared: bool,
    #[serde(default = "default_content")]
    pub content: String,
    /// Capacity in GiB (per node for local storages, total for shared ones).
    #[serde(default = "default_storage_size")]
    pub size_gib: f64,
    /// Restrict to these nodes (empty = all).
    #[serde(default)]
    pub nodes: Vec<String>,
}

fn default_storage_type() -> String {
    "dir".into()
}
fn default_content() -> String {
    "images,rootdir".into()
}
fn default_storage_size() -> f64 {
    1024.0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub id: String,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// `user@realm`
    pub userid: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    #[serde(default = "default_true")]
    pub enable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Token name (the part after `!`).
    pub id: String,
    pub secret: String,
    /// Privilege separation: token privileges = user's ∩ token ACLs.
    #[serde(default)]
    pub privsep: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AclSpec {
    pub path: String,
    /// User id (`u@realm`) or token id (`u@realm!tok`).
    pub ugid: String,
    /// Administrator, PVEAuditor, PVEVMAdmin, PVEVMUser, NoAccess, or a custom list in `privs`.
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub privs: Vec<String>,
    #[serde(default = "default_true")]
    pub propagate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HaRuleSpec {
    pub rule: String,
    /// node-affinity | resource-affinity
    #[serde(rename = "type")]
    pub kind: String,
    /// HA sids, e.g. `[vm:100, ct:101]`.
    pub resources: Vec<String>,
    /// node-affinity: `n1:2`, `n2`.
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub strict: bool,
    /// resource-affinity: positive | negative
    #[serde(default)]
    pub affinity: Option<String>,
    #[serde(default)]
    pub disable: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    /// Migration network bandwidth in MiB/s (simulated seconds).
    #[serde(default = "default_bw")]
    pub bandwidth_mib_s: f64,
    /// Fixed set-up cost of every migration, simulated seconds.
    #[serde(default = "default_setup")]
    pub setup_seconds: f64,
    /// Simulated seconds a container needs to shut down and start again (restart mode).
    #[serde(default = "default_restart")]
    pub restart_seconds: f64,
}

impl Default for MigrationSpec {
    fn default() -> Self {
        MigrationSpec {
            bandwidth_mib_s: default_bw(),
            setup_seconds: default_setup(),
            restart_seconds: default_restart(),
        }
    }
}
fn default_bw() -> f64 {
    1024.0
}
fn default_setup() -> f64 {
    2.0
}
fn default_restart() -> f64 {
    6.0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// Ticket lifetime in seconds (PVE: 7200).
    #[serde(default = "default_ticket_lifetime")]
    pub ticket_lifetime_s: u64,
}

impl Default for AuthSpec {
    fn default() -> Self {
        AuthSpec { ticket_lifetime_s: default_ticket_lifetime() }
    }
}
fn default_ticket_lifetime() -> u64 {
    7200
}

/// A fault armed at start; see SCENARIOS.md. The same shapes are accepted by `POST /_sim/faults`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// The next `count` migration tasks (optionally only for `vmid`) end with `TASK ERROR: <message>`.
    TaskError {
        #[serde(default)]
        vmid: Option<u32>,
        #[serde(default = "default_count")]
        count: u32,
        #[serde(default = "default_task_error")]
        message: String,
    },
    /// The next `count` migration tasks (optionally only for `vmid`) never finish until stopped.
    TaskHang {
        #[serde(default)]
        vmid: Option<u32>,
        #[serde(default = "default_count")]
        count: u32,
    },
    /// Every API request matching `path_prefix` (default all) waits `ms` before being answered.
    Latency {
        ms: u64,
        #[serde(default)]
        path_prefix: Option<String>,
    },
    /// The next `count` API requests matching `path_prefix` answer HTTP `status` (default 500).
    ErrorBurst {
        count: u32,
        #[serde(default = "default_burst_status")]
        status: u16,
        #[serde(default)]
        path_prefix: Option<String>,
    },
    /// Take a node offline (or bring it back with `online: true`).
    NodeOffline {
        node: String,
        #[serde(default)]
        online: bool,
    },
    /// Put a config lock on a guest (`lock: null` removes it).
    GuestLock {
        vmid: u32,
        #[serde(default)]
        lock: Option<String>,
    },
    /// Delete a guest.
    GuestDelete { vmid: u32 },
    /// Invalidate every ticket issued so far.
    ExpireTickets,
}

fn default_count() -> u32 {
    1
}
fn default_task_error() -> String {
    "migration aborted (simulated fault)".into()
}
fn default_burst_status() -> u16 {
    500
}

impl Scenario {
    pub fn from_file(p: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading scenario {}", p.display()))?;
        Self::from_yaml(&text).with_context(|| format!("in scenario {}", p.display()))
    }

    pub fn from_yaml(s: &str) -> anyhow::Result<Self> {
        let sc: Scenario = serde_norway::from_str(s).context("parsing scenario YAML")?;
        sc.validate()?;
        Ok(sc)
    }

    pub fn to_yaml(&self) -> anyhow::Result<String> {
        Ok(serde_norway::to_string(self)?)
    }

    /// Storages actually in effect (the defaults when none are given).
    pub fn effective_storages(&self) -> Vec<StorageSpec> {
        if !self.storages.is_empty() {
            return self.storages.clone();
        }
        vec![
            StorageSpec {
                id: "local".into(),
                kind: "dir".into(),
                shared: false,
                content: "iso,vztmpl,backup,images,rootdir".into(),
                size_gib: 500.0,
                nodes: vec![],
            },
            StorageSpec {
                id: "ceph".into(),
                kind: "rbd".into(),
                shared: true,
                content: "images,rootdir".into(),
                size_gib: 20480.0,
                nodes: vec![],
            },
        ]
    }

    /// Users actually in effect (the default `root@pam`/`demo` when none are given).
    pub fn effective_users(&self) -> Vec<UserSpec> {
        if !self.users.is_empty() {
            return self.users.clone();
        }
        vec![UserSpec {
            userid: "root@pam".into(),
            password: Some("demo".into()),
            tokens: vec![],
            enable: true,
        }]
    }

    /// Checks references and value ranges.
    /// Past migrations sorted oldest first, each with its target (see [`PastMigrationSpec`]).
    pub fn past_migrations_with_targets(&self) -> Vec<(&PastMigrationSpec, String)> {
        let mut sorted: Vec<&PastMigrationSpec> = self.past_migrations.iter().collect();
        sorted.sort_by(|a, b| b.hours_ago.total_cmp(&a.hours_ago).then(a.vmid.cmp(&b.vmid)));
        let mut out = Vec::new();
        for (i, m) in sorted.iter().enumerate() {
            let next = sorted[i + 1..].iter().find(|n| n.vmid == m.vmid).map(|n| n.from.clone());
            let current = self.guests.iter().find(|g| g.vmid == m.vmid).map(|g| g.node.clone());
            out.push((*m, next.or(current).unwrap_or_default()));
        }
        out
    }

    fn validate_past_migrations(&self) -> anyhow::Result<()> {
        for (m, to) in self.past_migrations_with_targets() {
            let what = format!("past_migrations: guest {} {} h ago", m.vmid, m.hours_ago);
            if !self.guests.iter().any(|g| g.vmid == m.vmid) {
                bail!("{what}: no such guest in `guests`");
            }
            if !self.nodes.iter().any(|n| n.name == m.from) {
                bail!("{what}: `from` {:?} is not a node of the scenario", m.from);
            }
            if !(m.hours_ago.is_finite() && m.hours_ago > 0.0) {
                bail!("{what}: `hours_ago` must be > 0");
            }
            if to == m.from {
                bail!(
                    "{what}: leaves {:?} for the same node (its next location); drop it or fix `from`",
                    m.from
                );
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.nodes.is_empty() {
            bail!("scenario has no nodes");
        }
        crate::state::PveVersion::parse(&self.version)?;
        let mut names = BTreeSet::new();
        for n in &self.nodes {
            if !valid_node_name(&n.name) {
                bail!("invalid node name {:?}", n.name);
            }
            if !names.insert(n.name.as_str()) {
                bail!("duplicate node {}", n.name);
            }
            if n.cpus == 0 || n.memory_gib <= 0.0 {
                bail!("node {}: cpus and memory_gib must be > 0", n.name);
            }
        }
        self.validate_past_migrations()?;
        let storages = self.effective_storages();
        let pools: BTreeSet<&str> = self.pools.iter().map(|p| p.id.as_str()).collect();
        let mut vmids = BTreeSet::new();
        for g in &self.guests {
            if !(100..=999_999_999).contains(&g.vmid) {
                bail!("guest vmid {} out of range 100..999999999", g.vmid);
            }
            if !vmids.insert(g.vmid) {
                bail!("duplicate vmid {}", g.vmid);
            }
            if !names.contains(g.node.as_str()) {
                bail!("guest {}: unknown node {}", g.vmid, g.node);
            }
            if !(0.0..=1.0).contains(&g.cpu) {
                bail!("guest {}: cpu must be a fraction 0..1", g.vmid);
            }
            if let Some(r) = g.memory_used {
                if !(0.0..=1.0).contains(&r) {
                    bail!(
                        "guest {}: memory_used must be a fraction 0..1 (use memory_used_gib for GiB)",
                        g.vmid
                    );
                }
            }
            if let Some(s) = &g.storage {
                if !storages.iter().any(|st| &st.id == s) {
                    bail!("guest {}: unknown storage {}", g.vmid, s);
                }
            }
            if let Some(p) = &g.pool {
                if !pools.contains(p.as_str()) {
                    bail!("guest {}: unknown pool {}", g.vmid, p);
                }
            }
            if g.template && g.status == GuestStatus::Running {
                bail!("guest {}: a template cannot be running", g.vmid);
            }
        }
        if let Some(d) = &self.dynamics {
            let frac = |x: f64| (0.0..=1.0).contains(&x);
            if !frac(d.diurnal_amplitude) || !frac(d.noise) || !frac(d.memory_follow) {
                bail!("dynamics: diurnal_amplitude, noise and memory_follow must be fractions 0..1");
            }
            if !(0.0..=10.0).contains(&d.weekend_factor)
                || d.noise_period_s.partial_cmp(&1.0) == Some(std::cmp::Ordering::Less)
                || d.noise_period_s.is_nan()
            {
                bail!("dynamics: weekend_factor must be 0..10 and noise_period_s >= 1");
            }
            if let Some(r) = &d.random_bursts {
                if !(r.per_day.is_finite() && r.per_day >= 0.0 && r.duration_s >= 1.0 && frac(r.cpu)) {
                    bail!("dynamics.random_bursts: per_day >= 0, duration_s >= 1, cpu 0..1");
                }
            }
            for b in &d.bursts {
                if !(b.duration_s > 0.0 && frac(b.cpu) && b.memory_used.is_none_or(frac)) {
                    bail!("dynamics.bursts: duration_s > 0, cpu and memory_used fractions 0..1");
                }
                if b.every_s.is_some_and(|e| e < b.duration_s) {
                    bail!("dynamics.bursts: every_s must be >= duration_s");
                }
                if let Some(n) = &b.node {
                    if !names.contains(n.as_str()) {
                        bail!("dynamics.bursts: unknown node {n}");
                    }
                }
                if let Some(v) = b.vmid {
                    if !vmids.contains(&v) {
                        bail!("dynamics.bursts: unknown vmid {v}");
                    }
                }
            }
        }
        for u in &self.effective_users() {
            if !u.userid.contains('@') {
                bail!("user id {:?} must be user@realm", u.userid);
            }
        }
        Ok(())
    }
}

pub fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
