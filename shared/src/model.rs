//! The cluster as the engine sees it: a snapshot of nodes and guests taken from the PVE API.

use serde::{Deserialize, Serialize};

/// Everything the engine needs to plan, collected at one moment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    pub cluster_name: String,
    /// PVE version of the answering node, e.g. "9.1.2".
    pub pve_version: String,
    /// Unix seconds at collection; supplied by the caller (the engine reads no clock).
    pub collected_at: u64,
    pub quorate: bool,
    pub nodes: Vec<Node>,
    pub guests: Vec<Guest>,
    /// PVE 9 HA rules (`/cluster/ha/rules`), disabled ones included (the rule engine skips them).
    #[serde(default)]
    pub ha_rules: Vec<HaRule>,
    /// Migrations done recently (by us or anyone), newest last: the engine's memory against
    /// ping-pong (cooldown per guest, no quick return to a node a guest just left).
    #[serde(default)]
    pub recent_migrations: Vec<RecentMigration>,
    /// PVE's own load balancer (9.2+: `crs: ha=static|dynamic,ha-auto-rebalance=1` in
    /// `/cluster/options`), present only when it is switched on: it moves HA-managed guests
    /// itself, so balancing leaves those guests to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_balancer: Option<DynamicBalancer>,
    /// How long recent successful migrations of guests still in the cluster took (PVE's task
    /// list, newest first): the measured migration bandwidth when the admin set none
    /// (`engine::problem::measured_bandwidth`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migration_timings: Vec<MigrationTiming>,
}

/// One finished migration's duration (`qmigrate`/`vzmigrate` task, status OK).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationTiming {
    pub vmid: u32,
    /// Task end − task start, seconds.
    pub secs: u64,
}

/// PVE's automatic HA rebalancing as `datacenter.cfg` configures it (`crs` property string).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamicBalancer {
    /// `crs.ha`: the HA scheduler mode (`static` or `dynamic`; auto-rebalance needs one of them).
    pub scheduler: String,
    /// `ha-auto-rebalance-threshold`, as PVE reports it (a fraction before pve-cluster 9.1.5,
    /// percent after); `None` = PVE's default.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// `ha-auto-rebalance-margin`; `None` = PVE's default.
    #[serde(default)]
    pub margin: Option<f64>,
    /// `ha-auto-rebalance-method` (`bruteforce` or `topsis`); `None` = PVE's default.
    #[serde(default)]
    pub method: Option<String>,
}

/// One PVE 9 HA rule as `/cluster/ha/rules` returns it (strings kept raw; the rule engine parses
/// them and reports what it cannot read).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HaRule {
    /// Rule id (`rule`).
    pub rule: String,
    /// `node-affinity` or `resource-affinity` (anything else is reported and skipped).
    #[serde(rename = "type")]
    pub kind: String,
    /// `"vm:100,ct:101"`.
    pub resources: String,
    /// node-affinity: `"n1:2,n2"` (priority after the colon, default 0; higher wins).
    #[serde(default)]
    pub nodes: String,
    /// node-affinity: strict (never run elsewhere) instead of a preference.
    #[serde(default)]
    pub strict: bool,
    /// resource-affinity: `positive` (keep together) or `negative` (keep apart).
    #[serde(default)]
    pub affinity: String,
    #[serde(default)]
    pub disable: bool,
}

/// A migration that already happened, for cooldown and no-return checks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentMigration {
    pub vmid: u32,
    pub from: String,
    pub to: String,
    /// Unix seconds when it finished (same clock as `ClusterSnapshot::collected_at`).
    pub at: u64,
}

/// Pressure stall information in percent (10 s or hourly average, as collected).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pressure {
    pub cpu_some: f64,
    pub cpu_full: f64,
    pub memory_some: f64,
    pub memory_full: f64,
    pub io_some: f64,
    pub io_full: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Online,
    Offline,
    #[default]
    Unknown,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub status: NodeStatus,
    /// Logical CPUs of the host.
    pub cpus: u32,
    /// CPU in use, in cores (PVE reports a 0..1 fraction of `cpus`).
    pub cpu_used: f64,
    pub mem_total: u64,
    /// Memory in use on the host, guests and host overhead together.
    pub mem_used: u64,
    /// Root filesystem of the host (what PVE reports as the node's disk).
    pub disk_total: u64,
    pub disk_used: u64,
    /// In maintenance (PVE HA maintenance, or ours): no guest may be placed here.
    #[serde(default)]
    pub maintenance: bool,
    /// Newest QEMU installed on the node (`pveversion -v`, e.g. "9.2.0"): a running VM cannot
    /// live-migrate to a node whose QEMU is older than the one it runs on.
    #[serde(default)]
    pub qemu_version: Option<String>,
    /// Host pressure (PSI), when collected.
    #[serde(default)]
    pub pressure: Option<Pressure>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    #[default]
    Qemu,
    Lxc,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestStatus {
    Running,
    Stopped,
    /// paused, suspended, prelaunch, unknown: not moved by the planner.
    #[default]
    Other,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Guest {
    pub vmid: u32,
    pub name: String,
    pub kind: GuestKind,
    pub node: String,
    pub status: GuestStatus,
    #[serde(default)]
    pub template: bool,
    /// Assigned vCPUs.
    pub cpus: f64,
    /// CPU in use, in cores.
    pub cpu_used: f64,
    pub mem_max: u64,
    pub mem_used: u64,
    pub disk_max: u64,
    pub disk_used: u64,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub pool: Option<String>,
    /// PVE config lock (`migrate`, `backup`, `snapshot`, …): a locked guest cannot move.
    #[serde(default)]
    pub lock: Option<String>,
    /// Managed by PVE HA (`hastate` present).
    #[serde(default)]
    pub ha_managed: bool,
    /// QEMU version the VM is running on (`running-qemu`), for the live-migration check.
    #[serde(default)]
    pub running_qemu: Option<String>,
    /// Local resources that pin a guest to its node (`hostpci0`, `usb1`, …, from the migrate
    /// precondition check): such a guest cannot be migrated.
    #[serde(default)]
    pub local_resources: Vec<String>,
    /// Bytes on node-local storage that a migration must copy (`with-local-disks`).
    #[serde(default)]
    pub local_disk_bytes: u64,
    /// 95th percentile of CPU use over the collection window, in cores (percentile mode).
    #[serde(default)]
    pub cpu_p95: Option<f64>,
    /// 95th percentile (or peak) of memory use, in bytes (percentile mode).
    #[serde(default)]
    pub mem_p95: Option<u64>,
    /// Guest pressure (PSI), when collected.
    #[serde(default)]
    pub pressure: Option<Pressure>,
}

impl Guest {
    pub fn is_running(&self) -> bool {
        self.status == GuestStatus::Running
    }
}

impl ClusterSnapshot {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn guests_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Guest> + 'a {
        self.guests.iter().filter(move |g| g.node == node)
    }
}

/// Splits PVE's tag string (`;`, `,` or space separated, as PVE accepts all three) into tags.
pub fn split_tags(raw: &str) -> Vec<String> {
    raw.split([';', ',', ' ']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_on_every_pve_separator_and_drop_empties() {
        assert_eq!(split_tags("a;b,c d;;"), vec!["a", "b", "c", "d"]);
        assert!(split_tags("").is_empty());
    }
}
