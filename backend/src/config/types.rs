//! The sections of `proxlb.yaml`. Field names are ProxLB's; `Default` is ProxLB 2.3's default
//! (research §3), so a file that leaves a key out means what it means to ProxLB.

use serde::{Deserialize, Deserializer};
use shared::{Method, Mode};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A password or token secret: readable by the code that logs in, invisible in `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProxlbConfig {
    pub proxmox_api: ProxmoxApi,
    pub proxmox_cluster: ProxmoxCluster,
    pub balancing: Balancing,
    pub service: Service,
    pub solver: Solver,
    /// Ours; ProxLB ignores unknown sections, so the same file still works with ProxLB.
    pub rebalancer: Rebalancer,
}

impl ProxlbConfig {
    pub fn holds_secret(&self) -> bool {
        self.proxmox_api.pass.is_some() || self.proxmox_api.token_secret.is_some()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ProxmoxApi {
    /// `host`, `host:port`, `[v6]:port` (port 8006 if omitted); tried in this order.
    #[serde(deserialize_with = "string_list")]
    pub hosts: Vec<String>,
    /// `user@realm`: the login user, or the user the token belongs to.
    pub user: Option<String>,
    pub pass: Option<Secret>,
    /// The token's name only (the part after `!`).
    pub token_id: Option<String>,
    pub token_secret: Option<Secret>,
    pub ssl_verification: bool,
    /// Seconds per API request.
    pub timeout: f64,
    pub retries: u32,
    /// Seconds between retries.
    pub wait_time: f64,
}

impl Default for ProxmoxApi {
    fn default() -> Self {
        ProxmoxApi {
            hosts: vec![],
            user: None,
            pass: None,
            token_id: None,
            token_secret: None,
            ssl_verification: true,
            timeout: 1.0,
            retries: 1,
            wait_time: 1.0,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProxmoxCluster {
    /// Nodes to drain (`*` suffix wildcard).
    #[serde(deserialize_with = "string_list")]
    pub maintenance_nodes: Vec<String>,
    pub maintenance_nodes_schedule: Option<MaintenanceSchedule>,
    /// Nodes left alone entirely (`*` suffix wildcard).
    #[serde(deserialize_with = "string_list")]
    pub ignore_nodes: Vec<String>,
    /// True: no move may overprovision a node (ProxLB's README; ProxLB 2.x parses it only):
    /// running vCPUs stay within a target's cores.
    pub overprovisioning: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct MaintenanceSchedule {
    /// Hours of maintenance.
    pub duration: f64,
    /// Minutes of evacuation before a window starts.
    #[serde(rename = "pre-migration")]
    pub pre_migration: f64,
    /// Node → start times such as `Monday, 8:00`.
    pub schedules: BTreeMap<String, Vec<String>>,
}

pub use shared::policy::BalanceType;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Balancing {
    /// Gates execution only; the plan is always computed.
    pub enable: bool,
    pub enforce_affinity: bool,
    pub enforce_pinning: bool,
    pub parallel: bool,
    pub parallel_jobs: u32,
    pub live: bool,
    pub with_local_disks: bool,
    pub with_conntrack_state: bool,
    /// Guest types that may be executed; empty = nothing executes (ProxLB's default).
    pub balance_types: Vec<BalanceType>,
    /// Polls (about 5 s each) before a running migration counts as failed.
    pub max_job_validation: u32,
    pub memory_threshold: Option<f64>,
    pub cpu_threshold: Option<f64>,
    pub disk_threshold: Option<f64>,
    pub balanciness: f64,
    pub method: Method,
    pub mode: Mode,
    pub balance_larger_guests_first: bool,
    /// `defaults` and node names → reserve (memory in GB).
    pub node_resource_reserve: Option<BTreeMap<String, Reserve>>,
    pub psi: Option<Psi>,
    /// Pool name → affinity type, pin, strict.
    pub pools: Option<BTreeMap<String, Pool>>,
    #[serde(deserialize_with = "string_list")]
    pub ignore_guests: Vec<String>,
    /// ProxLB applies its default (2.0) only in its solver; we apply it only when set.
    pub cpu_overcommit: Option<f64>,
    /// ProxLB's default (1) is solver-only; we apply it only when set.
    pub max_node_inflow: Option<u32>,
}

impl Default for Balancing {
    fn default() -> Self {
        Balancing {
            enable: false,
            enforce_affinity: false,
            enforce_pinning: false,
            parallel: false,
            parallel_jobs: 5,
            live: true,
            with_local_disks: true,
            with_conntrack_state: true,
            balance_types: vec![],
            max_job_validation: 1800,
            memory_threshold: None,
            cpu_threshold: None,
            disk_threshold: None,
            balanciness: 10.0,
            method: Method::Memory,
            mode: Mode::Used,
            balance_larger_guests_first: false,
            node_resource_reserve: None,
            psi: None,
            pools: None,
            ignore_guests: vec![],
            cpu_overcommit: None,
            max_node_inflow: None,
        }
    }
}

/// One `node_resource_reserve` entry; only memory is applied (as in ProxLB).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Reserve {
    /// GB (GiB, 1024³ bytes, as ProxLB computes it).
    pub memory: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Psi {
    pub nodes: Option<PsiResources>,
    pub guests: Option<PsiResources>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PsiResources {
    pub memory: Option<PsiThresholds>,
    pub cpu: Option<PsiThresholds>,
    pub disk: Option<PsiThresholds>,
}

/// All three are required, as in ProxLB.
#[derive(Clone, Debug, Deserialize)]
pub struct PsiThresholds {
    pub pressure_full: f64,
    pub pressure_some: f64,
    pub pressure_spikes: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Pool {
    /// `affinity` or `anti-affinity`.
    #[serde(rename = "type")]
    pub kind: Option<PoolType>,
    #[serde(deserialize_with = "string_list")]
    pub pin: Vec<String>,
    pub strict: bool,
}

impl Default for Pool {
    fn default() -> Self {
        Pool { kind: None, pin: vec![], strict: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum PoolType {
    #[serde(rename = "affinity")]
    Affinity,
    #[serde(rename = "anti-affinity", alias = "anti_affinity")]
    AntiAffinity,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeFormat {
    #[default]
    Hours,
    Minutes,
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct Interval {
    pub interval: f64,
    pub format: TimeFormat,
}

impl Default for Interval {
    fn default() -> Self {
        Interval { interval: 12.0, format: TimeFormat::Hours }
    }
}

impl Interval {
    pub fn duration(&self) -> std::time::Duration {
        let unit = match self.format {
            TimeFormat::Hours => 3600.0,
            TimeFormat::Minutes => 60.0,
        };
        std::time::Duration::from_secs_f64((self.interval * unit).max(0.0))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct Delay {
    pub enable: bool,
    pub time: f64,
    pub format: TimeFormat,
}

impl Default for Delay {
    fn default() -> Self {
        Delay { enable: false, time: 1.0, format: TimeFormat::Hours }
    }
}

impl Delay {
    pub fn duration(&self) -> std::time::Duration {
        if !self.enable {
            return std::time::Duration::ZERO;
        }
        Interval { interval: self.time, format: self.format }.duration()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl<'de> Deserialize<'de> for LogLevel {
    // Any case, as Python's logging accepts; the error lists ProxLB's spelling only. A visitor
    // (not String then match) so the error carries the key path and position.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LogLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<LogLevel, E> {
                Ok(match s.to_ascii_uppercase().as_str() {
                    "DEBUG" => LogLevel::Debug,
                    "INFO" => LogLevel::Info,
                    "WARNING" | "WARN" => LogLevel::Warning,
                    "ERROR" => LogLevel::Error,
                    "CRITICAL" => LogLevel::Critical,
                    _ => {
                        return Err(E::unknown_variant(s, &["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]))
                    }
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical => "error",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Service {
    /// Repeat every `schedule` (false: one run, then exit).
    pub daemon: bool,
    pub schedule: Interval,
    /// Wait before the first run.
    pub delay: Delay,
    pub log_level: LogLevel,
    pub enable_ha: bool,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            daemon: true,
            schedule: Interval::default(),
            delay: Delay::default(),
            log_level: LogLevel::Info,
            enable_ha: false,
        }
    }
}

/// ProxLB 2.x's optional CP-SAT solver. Parsed so ProxLB files load; our engine is already a
/// global optimiser, so none of it changes what we do.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Solver {
    pub enable: bool,
    pub mode: String,
    pub log_dir: String,
    pub timeout_seconds: u64,
    pub use_reservations: bool,
    pub active_step_retries: u32,
    pub fallback_to_greedy: bool,
}

impl Default for Solver {
    fn default() -> Self {
        Solver {
            enable: false,
            mode: "shadow".into(),
            log_dir: "/var/log/proxlb/solver".into(),
            timeout_seconds: 30,
            use_reservations: true,
            active_step_retries: 3,
            fallback_to_greedy: true,
        }
    }
}

/// Our additions. Every key is optional; the defaults are the CLI's.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Rebalancer {
    /// Address `serve` listens on.
    pub listen: String,
    /// SQLite execution journal.
    pub journal: PathBuf,
    /// Directory of the cluster-wide executor lock.
    pub lock_dir: PathBuf,
    /// CA certificate (PEM) to verify the PVE API with, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// DRS-like threshold 1–5; replaces balanciness when set.
    pub level: Option<u8>,
    /// At most this many migrations per plan.
    pub max_moves: u32,
    /// At most this many GiB (memory plus local disk) moved per plan.
    pub max_gib: Option<f64>,
    /// At most this many migrations into or out of one node per plan.
    pub max_moves_per_node: Option<u32>,
    /// MiB/s a migration copies at; unset = measured from PVE's task list, else 500.
    pub migration_bandwidth_mib_s: Option<f64>,
    /// Seconds a migrated guest is left alone by balancing.
    pub cooldown_secs: u64,
    /// Seconds a guest does not return to a node it left.
    pub no_return_secs: u64,
    /// A move must lower the spread by this many points.
    pub min_gain: f64,
    /// Once triggered, balance down to this spread (points).
    pub stop_spread: Option<f64>,
    /// Migrations in flight per node (as source or target).
    pub max_per_node: usize,
    /// Seconds before a running migration is stopped and failed; default from
    /// `balancing.max_job_validation` × 5 s (ProxLB's poll sweep).
    pub step_timeout_secs: Option<u64>,
    /// Maintenance: stopped guests leave the drained nodes too.
    pub evacuate_stopped: bool,
    /// Webhook notifications (`serve`): targets and the threshold alert. See `notify`.
    pub notify: super::notify::NotifyConfig,
    /// When the daemon may execute balancing moves (`mon-fri 22:00-06:00`, node-local time);
    /// empty = always. Evacuations run at any time. See `crate::windows`.
    pub windows: Vec<String>,
    /// The cluster-wide state directory (stored settings, maintenance marks): the CLI plans with
    /// the settings stored there, as the service does.
    pub state_dir: PathBuf,
    /// Host names besides the nodes' own whose PVE UI (`https://<name>:8006`) may call `serve`
    /// (e.g. the nodes' FQDNs).
    pub ui_origins: Vec<String>,
    /// What `-j` prints: our plan, or ProxLB 2.3's JSON (for scripts written for ProxLB).
    pub output: OutputFormat,
}

/// The JSON `-j` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Our plan (`shared::Plan`).
    #[default]
    Ours,
    /// ProxLB 2.3's `-j` shape: `guests`, `nodes`, `groups`, `pools`, `ha_rules`.
    Proxlb,
}

impl Default for Rebalancer {
    fn default() -> Self {
        Rebalancer {
            listen: "127.0.0.1:8017".into(),
            journal: PathBuf::from(crate::execute::journal::DEFAULT_PATH),
            lock_dir: PathBuf::from("/etc/pve/priv/lock"),
            ca_file: None,
            level: None,
            max_moves: 20,
            max_gib: None,
            migration_bandwidth_mib_s: None,
            max_moves_per_node: None,
            cooldown_secs: 3600,
            no_return_secs: 24 * 3600,
            min_gain: 0.5,
            stop_spread: None,
            max_per_node: 1,
            step_timeout_secs: None,
            evacuate_stopped: false,
            notify: Default::default(),
            windows: Vec::new(),
            state_dir: PathBuf::from(crate::settings::DEFAULT_STATE_DIR),
            ui_origins: Vec::new(),
            output: OutputFormat::Ours,
        }
    }
}

/// A list, or (ProxLB 1.x style) one comma-separated string.
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
        Nothing(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Into::into).collect(),
        OneOrMany::Nothing(()) => vec![],
    })
}
