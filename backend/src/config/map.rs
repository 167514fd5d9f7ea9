//! The configuration as the rest of the service wants it.

use super::types::{PoolType, ProxlbConfig};
use super::LoadedConfig;
use crate::execute::ExecConfig;
use crate::pve::{Credentials, PveOptions};
use shared::policy::{PolicyLayer, Settings};
use shared::rules::{PoolRule, RuleConfig};
use shared::{GuestKind, Method, PlanRequest};
use std::collections::BTreeSet;
use std::time::Duration;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One `proxmox_api.hosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn base_url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address; port 8006 if omitted.
pub fn parse_host(entry: &str) -> Result<Endpoint, String> {
    let e = entry.trim();
    let e = e.strip_prefix("https://").unwrap_or(e).trim_end_matches('/');
    let port = |p: &str| {
        p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("`{entry}`: `{p}` is not a port"))
    };
    let (host, port) = if let Some(rest) = e.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("`{entry}`: `[` without `]`"))?;
        match after {
            "" => (host, 8006),
            a => (host, port(a.strip_prefix(':').ok_or_else(|| format!("`{entry}`: expected `]:port`"))?)?),
        }
    } else if e.matches(':').count() > 1 {
        (e, 8006) // bare IPv6: its colons are not a port separator
    } else if let Some((h, p)) = e.split_once(':') {
        (h, port(p)?)
    } else {
        (e, 8006)
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!("`{entry}` is not a host, host:port or [ipv6]:port"));
    }
    Ok(Endpoint { host: host.to_owned(), port })
}

impl ProxlbConfig {
    /// The endpoints in the order they are tried.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.proxmox_api.hosts.iter().filter_map(|h| parse_host(h).ok()).collect()
    }

    /// Credentials from the file, or else from `PVE_REBALANCER_*` (via `env`), so the secret can
    /// live in a 0600 environment file while proxlb.yaml stays world-readable.
    pub fn credentials(&self, env: impl Fn(&str) -> Option<String>) -> Result<Credentials, String> {
        let api = &self.proxmox_api;
        let user = api.user.clone().or_else(|| env("PVE_REBALANCER_USER"));
        if let (Some(id), Some(secret)) = (&api.token_id, &api.token_secret) {
            let user = user.ok_or("proxmox_api.user is needed with token_id")?;
            return Ok(Credentials::Token {
                token_id: format!("{user}!{id}"),
                secret: secret.expose().into(),
            });
        }
        if let Some(pass) = &api.pass {
            let user = user.ok_or("proxmox_api.user is needed with pass")?;
            return Ok(Credentials::Password { user, password: pass.expose().into() });
        }
        if let (Some(id), Some(secret)) = (env("PVE_REBALANCER_TOKEN_ID"), env("PVE_REBALANCER_TOKEN_SECRET"))
        {
            // The environment carries the full `user@realm!name`, as `--token-id` does.
            let token_id = if id.contains('!') { id } else { format!("{}!{id}", user.unwrap_or_default()) };
            return Ok(Credentials::Token { token_id, secret });
        }
        if let (Some(user), Some(password)) = (user, env("PVE_REBALANCER_PASSWORD")) {
            return Ok(Credentials::Password { user, password });
        }
        Err("no PVE credentials: set proxmox_api.pass, or token_id + token_secret (or the \
             PVE_REBALANCER_PASSWORD / PVE_REBALANCER_TOKEN_ID + _SECRET environment variables)"
            .into())
    }

    /// Client options per endpoint, in failover order. `ca_pem` is the content of
    /// `rebalancer.ca_file` (read by the caller).
    pub fn pve_options(&self, credentials: &Credentials, ca_pem: Option<String>) -> Vec<PveOptions> {
        let api = &self.proxmox_api;
        self.endpoints()
            .iter()
            .map(|e| PveOptions {
                base_url: e.base_url(),
                credentials: credentials.clone(),
                ca_pem: ca_pem.clone(),
                insecure: !api.ssl_verification,
                timeout: Duration::from_secs_f64(api.timeout.max(0.1)),
            })
            .collect()
    }

    /// The planner's request. ProxLB's keys first, our `rebalancer:` additions on top.
    pub fn plan_request(&self) -> PlanRequest {
        let b = &self.balancing;
        let r = &self.rebalancer;
        let mut req = PlanRequest {
            method: b.method,
            mode: b.mode,
            balanciness: b.balanciness,
            max_moves: r.max_moves,
            min_gain: r.min_gain,
            level: r.level,
            stop_spread: r.stop_spread,
            // ProxLB's `overprovisioning: true` avoids moves that overprovision a node: no more
            // running vCPUs than cores (memory is always capacity-checked). An explicit
            // `cpu_overcommit` says how much, and wins.
            cpu_overcommit: b.cpu_overcommit.or(self.proxmox_cluster.overprovisioning.then_some(1.0)),
            allow_local_disks: b.with_local_disks,
            max_gib: r.max_gib,
            max_moves_per_node: r.max_moves_per_node.or(b.max_node_inflow),
            cooldown_secs: r.cooldown_secs,
            no_return_secs: r.no_return_secs,
            larger_guests_first: b.balance_larger_guests_first,
            ..PlanRequest::default()
        };
        // ProxLB: a threshold only adds a trigger (a node at or above it balances).
        req.overload.memory = b.memory_threshold;
        req.overload.cpu = b.cpu_threshold;
        req.overload.disk = b.disk_threshold;
        for (node, reserve) in b.node_resource_reserve.iter().flatten() {
            let Some(gb) = reserve.memory else { continue };
            let bytes = (gb * GIB) as u64;
            if node == "defaults" {
                req.memory_reserve = bytes;
            } else {
                req.node_memory_reserve.insert(node.clone(), bytes);
            }
        }
        if let Some(t) = self.psi_node_threshold() {
            req.psi_threshold = t;
        }
        req.rules = self.rule_config();
        req
    }

    fn psi_node_threshold(&self) -> Option<f64> {
        let nodes = self.balancing.psi.as_ref()?.nodes.as_ref()?;
        let t = match self.balancing.method {
            Method::Cpu => nodes.cpu.as_ref(),
            Method::Disk => nodes.disk.as_ref(),
            Method::Memory | Method::Weighted => nodes.memory.as_ref(),
        }?;
        Some(t.pressure_some)
    }

    pub fn rule_config(&self) -> RuleConfig {
        let pools = self
            .balancing
            .pools
            .iter()
            .flatten()
            .map(|(name, p)| PoolRule {
                pool: name.clone(),
                kind: p.kind.map(|k| match k {
                    PoolType::Affinity => "affinity".to_owned(),
                    PoolType::AntiAffinity => "anti-affinity".to_owned(),
                }),
                pin: p.pin.clone(),
                strict: p.strict,
            })
            .collect();
        RuleConfig {
            pools,
            ignore_guests: self.balancing.ignore_guests.clone(),
            ignore_vms: vec![],
            ignore_nodes: self.proxmox_cluster.ignore_nodes.clone(),
            maintenance_nodes: self.proxmox_cluster.maintenance_nodes.clone(),
            stay: Default::default(),
        }
    }

    /// The nodes `maintenance_nodes` names among `nodes` (ProxLB's `*` suffix wildcard).
    pub fn maintenance_nodes_in<'a>(&self, nodes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let patterns = &self.proxmox_cluster.maintenance_nodes;
        nodes
            .into_iter()
            .filter(|n| patterns.iter().any(|p| shared::rules::wildcard_match(p, n)))
            .map(str::to_owned)
            .collect()
    }

    /// Executor tunables: `parallel`/`parallel_jobs` → in flight at once; `max_job_validation`
    /// polls of ProxLB's ~5 s sweep → step timeout.
    pub fn exec_config(&self) -> ExecConfig {
        let b = &self.balancing;
        let timeout = self.rebalancer.step_timeout_secs.unwrap_or(u64::from(b.max_job_validation) * 5);
        ExecConfig {
            max_parallel: if b.parallel { b.parallel_jobs.max(1) as usize } else { 1 },
            max_per_node: self.rebalancer.max_per_node.max(1),
            step_timeout: Duration::from_secs(timeout.max(1)),
            conntrack_state: b.with_conntrack_state,
            ..ExecConfig::default()
        }
    }

    /// May a guest of this kind be migrated (ProxLB's `balance_types`; empty = none)?
    pub fn executes(&self, kind: GuestKind) -> bool {
        self.settings().executes(kind)
    }

    /// Every policy setting as this file has it: its keys, ProxLB's defaults where it is silent.
    pub fn settings(&self) -> Settings {
        let (b, r, c) = (&self.balancing, &self.rebalancer, &self.proxmox_cluster);
        let req = self.plan_request();
        let exec = self.exec_config();
        let reserve = b.node_resource_reserve.as_ref().and_then(|m| m.get("defaults")).and_then(|d| d.memory);
        Settings {
            method: b.method,
            mode: b.mode,
            balanciness: b.balanciness,
            level: r.level,
            stop_spread: r.stop_spread,
            min_gain: r.min_gain,
            max_moves: r.max_moves,
            max_gib: r.max_gib,
            max_moves_per_node: req.max_moves_per_node,
            migration_bandwidth_mib_s: r.migration_bandwidth_mib_s,
            cooldown_secs: r.cooldown_secs,
            no_return_secs: r.no_return_secs,
            memory_threshold: b.memory_threshold,
            cpu_threshold: b.cpu_threshold,
            disk_threshold: b.disk_threshold,
            memory_reserve_gib: reserve.unwrap_or(0.0),
            pools: req.rules.pools,
            ignore_nodes: c.ignore_nodes.clone(),
            ignore_guests: b.ignore_guests.clone(),
            balance_types: b.balance_types.clone(),
            live: b.live,
            with_local_disks: b.with_local_disks,
            cpu_overcommit: req.cpu_overcommit,
            larger_guests_first: b.balance_larger_guests_first,
            // ProxLB balances on its schedule only as a daemon with balancing enabled; `serve`'s
            // scheduler does the same (at least a minute apart, the setting's lower bound).
            schedule_interval_secs: (self.service.daemon && b.enable)
                .then(|| self.service.schedule.duration().as_secs().max(60)),
            windows: r.windows.clone(),
            max_parallel: exec.max_parallel as u32,
            max_per_node: exec.max_per_node as u32,
        }
    }
}

/// The configuration file as a layer of the policy (`shared::policy`).
#[derive(Clone, Debug)]
pub struct FileLayer {
    /// Every setting, ProxLB's defaults included (a ProxLB file means what it means to ProxLB).
    pub layer: PolicyLayer,
    /// The settings whose keys the file names; the others are shown as defaults.
    pub named: BTreeSet<&'static str>,
    /// What only the file can say (per-node reserves, PSI thresholds, maintenance lists), for
    /// the settings to be applied over.
    pub base: PlanRequest,
}

/// Which file keys set each policy setting (any one present names it).
const KEYS: &[(&str, &[&str])] = &[
    ("method", &["balancing.method"]),
    ("mode", &["balancing.mode"]),
    ("balanciness", &["balancing.balanciness"]),
    ("level", &["rebalancer.level"]),
    ("stop_spread", &["rebalancer.stop_spread"]),
    ("min_gain", &["rebalancer.min_gain"]),
    ("max_moves", &["rebalancer.max_moves"]),
    ("max_gib", &["rebalancer.max_gib"]),
    ("migration_bandwidth_mib_s", &["rebalancer.migration_bandwidth_mib_s"]),
    ("max_moves_per_node", &["rebalancer.max_moves_per_node", "balancing.max_node_inflow"]),
    ("cooldown_secs", &["rebalancer.cooldown_secs"]),
    ("no_return_secs", &["rebalancer.no_return_secs"]),
    ("memory_threshold", &["balancing.memory_threshold"]),
    ("cpu_threshold", &["balancing.cpu_threshold"]),
    ("disk_threshold", &["balancing.disk_threshold"]),
    ("memory_reserve_gib", &["balancing.node_resource_reserve.defaults.memory"]),
    ("pools", &["balancing.pools"]),
    ("ignore_nodes", &["proxmox_cluster.ignore_nodes"]),
    ("ignore_guests", &["balancing.ignore_guests"]),
    ("balance_types", &["balancing.balance_types"]),
    ("live", &["balancing.live"]),
    ("with_local_disks", &["balancing.with_local_disks"]),
    ("cpu_overcommit", &["balancing.cpu_overcommit", "proxmox_cluster.overprovisioning"]),
    ("larger_guests_first", &["balancing.balance_larger_guests_first"]),
    ("schedule_interval_secs", &["service.daemon", "service.schedule", "balancing.enable"]),
    ("windows", &["rebalancer.windows"]),
    ("max_parallel", &["balancing.parallel", "balancing.parallel_jobs"]),
    ("max_per_node", &["rebalancer.max_per_node"]),
];

impl LoadedConfig {
    /// This file as the lowest set layer of the policy.
    pub fn file_layer(&self) -> FileLayer {
        let named = KEYS
            .iter()
            .filter(|(_, keys)| {
                keys.iter().any(|k| self.present.iter().any(|p| p == k || p.starts_with(&format!("{k}."))))
            })
            .map(|(field, _)| *field)
            .collect();
        FileLayer {
            layer: PolicyLayer::whole(&self.config.settings()),
            named,
            base: self.config.plan_request(),
        }
    }
}
