//! The configuration as the rest of the service wants it.

use super::types::{BalanceType, PoolType, ProxlbConfig};
use crate::execute::ExecConfig;
use crate::pve::{Credentials, PveOptions};
use shared::rules::{PoolRule, RuleConfig};
use shared::{GuestKind, Method, PlanRequest};
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
            cpu_overcommit: b.cpu_overcommit,
            allow_local_disks: b.with_local_disks,
            max_gib: r.max_gib,
            max_moves_per_node: r.max_moves_per_node.or(b.max_node_inflow),
            cooldown_secs: r.cooldown_secs,
            no_return_secs: r.no_return_secs,
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
            ..ExecConfig::default()
        }
    }

    /// May a guest of this kind be migrated (ProxLB's `balance_types`; empty = none)?
    pub fn executes(&self, kind: GuestKind) -> bool {
        let t = match kind {
            GuestKind::Qemu => BalanceType::Vm,
            GuestKind::Lxc => BalanceType::Ct,
        };
        self.balancing.balance_types.contains(&t)
    }
}
