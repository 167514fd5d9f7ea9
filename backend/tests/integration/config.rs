//! proxlb.yaml: ProxLB's own example loads unchanged; bad files fail with file:line:column, the
//! key and the fix; unknown keys are warned with their path; secrets never show in `Debug`.

use backend::config::{parse_host, parse_str, ConfigError, Endpoint, LoadedConfig};
use backend::pve::Credentials;
use shared::{Method, Mode};

const FILE: &str = "/etc/pve-rebalancer/proxlb.yaml";

fn ok(text: &str) -> LoadedConfig {
    match parse_str(text, FILE) {
        Ok(c) => c,
        Err(e) => panic!("expected to load, got:\n{e}"),
    }
}

fn err(text: &str) -> String {
    match parse_str(text, FILE) {
        Ok(c) => panic!("expected an error, loaded {:?}", c.config),
        Err(e) => e.to_string(),
    }
}

/// Every section and key ProxLB 2.3 documents, written the way its docs write them (Python-style
/// `True`/`False`, flow lists, the hyphenated `pre-migration`).
const PROXLB_EXAMPLE: &str = r#"
proxmox_api:
  hosts: ['virt01.example.com', '10.10.10.10', 'fe01::bad:code::cafe', '[fe80::1]:8007', 'virt02:8443']
  user: root@pam
  pass: crazyPassw0rd!
  # token_id: proxlb
  # token_secret: 430e308f-1337-1337-beef-1337beefcafe
  ssl_verification: True
  timeout: 10
  retries: 1
  wait_time: 1

proxmox_cluster:
  maintenance_nodes: ['virt66.example.com']
  maintenance_nodes_schedule:
    duration: 2
    pre-migration: 30
    schedules:
      virt66.example.com: ['Monday, 8:00', 'Friday, 20:00']
  ignore_nodes: []
  overprovisioning: True

balancing:
  enable: True
  enforce_affinity: False
  enforce_pinning: False
  parallel: False
  parallel_jobs: 1
  live: True
  with_local_disks: True
  with_conntrack_state: True
  balance_types: ['vm', 'ct']
  max_job_validation: 1800
  memory_threshold: 75
  cpu_threshold: 80
  disk_threshold: 90
  balanciness: 5
  method: memory
  mode: used
  balance_larger_guests_first: False
  node_resource_reserve:
    defaults:
      memory: 4
    node01:
      memory: 6
  psi:
    nodes:
      memory:
        pressure_full: 0.20
        pressure_some: 0.20
        pressure_spikes: 1.00
      cpu:
        pressure_full: 0.20
        pressure_some: 0.20
        pressure_spikes: 1.00
      disk:
        pressure_full: 0.20
        pressure_some: 0.20
        pressure_spikes: 1.00
    guests:
      memory:
        pressure_full: 0.20
        pressure_some: 0.20
        pressure_spikes: 1.00
  pools:
    dev:
      type: affinity
    de-nbg01-db:
      type: anti-affinity
      pin:
        - virt66
        - virt77
      strict: False
  ignore_guests: ['dev-*', 'template01']
  cpu_overcommit: 2.0
  max_node_inflow: 1

service:
  daemon: True
  schedule:
    interval: 12
    format: hours
  delay:
    enable: False
    time: 1
    format: hours
  log_level: INFO
  enable_ha: False

solver:
  enable: False
  mode: shadow
  log_dir: /var/log/proxlb/solver
  timeout_seconds: 30
  use_reservations: True
  active_step_retries: 3
  fallback_to_greedy: True
"#;

#[test]
fn proxlb_example_loads_unchanged() {
    let loaded = ok(PROXLB_EXAMPLE);
    let c = &loaded.config;
    // Only "we do not apply this" notes, never an unknown key: ProxLB's file is fully understood.
    assert!(loaded.warnings.iter().all(|w| !w.contains("unknown key")), "{:?}", loaded.warnings);
    assert_eq!(c.proxmox_api.hosts.len(), 5);
    assert_eq!(c.proxmox_api.timeout, 10.0);
    assert!(c.balancing.enable);
    assert_eq!(c.balancing.balanciness, 5.0);
    assert_eq!(c.proxmox_cluster.maintenance_nodes_schedule.as_ref().unwrap().pre_migration, 30.0);
    assert_eq!(c.service.schedule.duration().as_secs(), 12 * 3600);

    let req = c.plan_request();
    assert_eq!((req.method, req.mode, req.balanciness), (Method::Memory, Mode::Used, 5.0));
    assert_eq!(req.memory_reserve, 4 << 30);
    assert_eq!(req.node_memory_reserve.get("node01"), Some(&(6u64 << 30)));
    assert_eq!(req.overload.memory, Some(75.0));
    assert_eq!(req.cpu_overcommit, Some(2.0));
    assert_eq!(req.psi_threshold, 0.2);
    assert_eq!(req.rules.ignore_guests, vec!["dev-*", "template01"]);
    assert_eq!(req.rules.maintenance_nodes, vec!["virt66.example.com"]);
    let pools = &req.rules.pools;
    assert_eq!(pools.len(), 2);
    let db = pools.iter().find(|p| p.pool == "de-nbg01-db").unwrap();
    assert_eq!((db.kind.as_deref(), db.strict, db.pin.len()), (Some("anti-affinity"), false, 2));

    let urls: Vec<String> = c.endpoints().iter().map(Endpoint::base_url).collect();
    assert_eq!(
        urls,
        [
            "https://virt01.example.com:8006",
            "https://10.10.10.10:8006",
            "https://[fe01::bad:code::cafe]:8006",
            "https://[fe80::1]:8007",
            "https://virt02:8443"
        ]
    );
    let exec = c.exec_config();
    assert_eq!((exec.max_parallel, exec.step_timeout.as_secs()), (1, 9000));
}

#[test]
fn shipped_debian_example_loads_without_unknown_keys() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../debian/proxlb.yaml")).unwrap();
    let loaded = ok(&text);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn minimal_configs_get_proxlb_defaults() {
    for text in [
        "proxmox_api:\n  hosts: ['pve1']\n",
        "proxmox_api: {hosts: [pve1], user: root@pam, pass: x}\n",
        "proxmox_api:\n  hosts: pve1\n  user: root@pam\n  token_id: proxlb\n  token_secret: abc\n",
    ] {
        let c = ok(text).config;
        assert!(!c.balancing.enable, "{text}");
        assert!(c.balancing.balance_types.is_empty());
        assert_eq!(c.balancing.balanciness, 10.0);
        assert_eq!(c.balancing.parallel_jobs, 5);
        assert_eq!(c.proxmox_api.timeout, 1.0);
        assert!(c.proxmox_api.ssl_verification);
        assert!(c.service.daemon);
        assert_eq!(c.rebalancer.max_moves, 20);
    }
}

#[test]
fn credentials_from_file_and_from_environment() {
    let c =
        ok("proxmox_api: {hosts: [pve1], user: svc@pve, token_id: proxlb, token_secret: s3cr3t}\n").config;
    match c.credentials(|_| None).unwrap() {
        Credentials::Token { token_id, secret } => {
            assert_eq!((token_id.as_str(), secret.as_str()), ("svc@pve!proxlb", "s3cr3t"))
        }
        other => panic!("{other:?}"),
    }
    let c = ok("proxmox_api: {hosts: [pve1], user: svc@pve}\n").config;
    let env = |k: &str| (k == "PVE_REBALANCER_PASSWORD").then(|| "from-env".to_owned());
    assert!(
        matches!(c.credentials(env).unwrap(), Credentials::Password { password, .. } if password == "from-env")
    );
    assert!(c.credentials(|_| None).unwrap_err().contains("no PVE credentials"));
}

#[test]
fn bad_files_name_file_line_column_and_the_fix() {
    // (config, expected substrings of the error)
    let cases: &[(&str, &[&str])] = &[
        // malformed YAML
        ("proxmox_api:\n  hosts: [pve1\n", &[FILE, ":3:"]),
        ("balancing:\n  method: memory\n    mode: used\n", &[FILE, ":3:"]),
        // wrong types
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  balanciness: lots\n",
            &[":3:16:", "balancing.balanciness", "wrong type"],
        ),
        ("proxmox_api: {hosts: [a]}\nbalancing:\n  enable: maybe\n", &[":3:11:", "balancing.enable"]),
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  parallel_jobs: -1\n",
            &[":3:18:", "balancing.parallel_jobs"],
        ),
        // enum values
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  method: ram\n",
            &[&format!("{FILE}:3:11: balancing.method: `ram` is not one of memory, cpu, disk")],
        ),
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  mode: average\n",
            &[":3:9:", "balancing.mode", "used, assigned"],
        ),
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  balance_types: [vm, lxc]\n",
            &["balancing.balance_types", "`lxc`", "vm, ct"],
        ),
        ("proxmox_api: {hosts: [a]}\nservice:\n  log_level: LOUD\n", &["service.log_level", "DEBUG, INFO"]),
        (
            "proxmox_api: {hosts: [a]}\nservice:\n  schedule:\n    format: days\n",
            &[":4:13:", "service.schedule.format", "hours, minutes"],
        ),
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  pools:\n    db:\n      type: apart\n",
            &["balancing.pools.db.type", "affinity, anti-affinity"],
        ),
        // impossible values
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  balanciness: -5\n",
            &[":3:16:", "balancing.balanciness", "0 or more"],
        ),
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  parallel_jobs: 0\n",
            &[":3:18:", "balancing.parallel_jobs", "at least 1"],
        ),
        (
            "proxmox_api: {hosts: [a]}\nbalancing:\n  memory_threshold: 120\n",
            &[":3:21:", "between 0 and 100"],
        ),
        (
            "proxmox_api:\n  hosts: [a]\n  user: root@pam\n  token_id: root@pam!proxlb\n  token_secret: x\n",
            &[":4:13:", "proxmox_api.token_id", "token_id: proxlb"],
        ),
        (
            "proxmox_api:\n  hosts: [a]\n  user: root@pam\n  pass: x\n  token_id: t\n  token_secret: y\n",
            &[":4:9:", "proxmox_api.pass", "not both"],
        ),
        ("proxmox_api:\n  hosts: [a]\n  user: root@pam\n  token_id: t\n", &["add token_secret"]),
        ("proxmox_api:\n  hosts: [a]\n  pass: x\n", &["proxmox_api.user", "root@pam"]),
        ("proxmox_api:\n  hosts: [a]\n  user: root\n  pass: x\n", &[":3:9:", "lacks a realm", "root@pam"]),
        ("balancing:\n  enable: true\n", &["proxmox_api.hosts", "no PVE host"]),
        ("proxmox_api:\n  hosts: ['pve1:99999']\n", &[":2:10:", "not a port"]),
        ("proxmox_api: {hosts: [a]}\nrebalancer:\n  level: 9\n", &[":3:10:", "1, 2, 3, 4, 5"]),
        ("proxmox_api: {hosts: [a]}\nservice:\n  schedule:\n    interval: 0\n", &[":4:15:", "more than 0"]),
        (
            "proxmox_api: {hosts: [a]}\nrebalancer:\n  windows:\n    - sat\n    - funday 10:00-11:00\n",
            &[":3:11:", "rebalancer.windows[1]", "`funday` is not a day", "e.g. `mon-fri 22:00-06:00`"],
        ),
        ("- just\n- a list\n", &["must be a mapping"]),
    ];
    for (text, expected) in cases {
        let e = err(text);
        for want in *expected {
            assert!(e.contains(want), "config:\n{text}\nerror: {e}\nmissing: {want}");
        }
        assert!(e.starts_with(FILE), "{e}");
    }
}

#[test]
fn several_problems_are_all_reported() {
    let e = parse_str("proxmox_api: {hosts: [a]}\nbalancing:\n  balanciness: -1\n  parallel_jobs: 0\n", FILE)
        .unwrap_err();
    assert_eq!(e.problems.len(), 2);
    assert_eq!(e.to_string().lines().count(), 2);
}

#[test]
fn unknown_keys_are_warned_with_path_and_suggestion() {
    let loaded = ok("proxmox_api:\n  hosts: [a]\n  usr: root@pam\nbalancing:\n  balanciess: 5\n  pools:\n    web:\n      typ: affinity\n      pin: [n1]\nfancy: 1\n");
    let w = loaded.warnings.join("\n");
    assert!(
        w.contains(&format!("{FILE}:3: unknown key `proxmox_api.usr` ignored (did you mean `user`?)")),
        "{w}"
    );
    assert!(
        w.contains(":5: unknown key `balancing.balanciess` ignored (did you mean `balanciness`?)"),
        "{w}"
    );
    assert!(w.contains(":8: unknown key `balancing.pools.web.typ` ignored (did you mean `type`?)"), "{w}");
    assert!(w.contains(":10: unknown key `fancy` ignored"), "{w}");
    assert!(!w.contains("`fancy` ignored (did"), "{w}");
    // The typo means the default applies, as in ProxLB.
    assert_eq!(loaded.config.balancing.balanciness, 10.0);
}

#[test]
fn settings_we_do_not_apply_are_warned() {
    let w = ok("proxmox_api: {hosts: [a]}\nsolver:\n  enable: true\n").warnings.join("\n");
    assert!(w.contains("solver.enable") && w.contains("ignored"), "{w}");
}

#[test]
fn secrets_never_show_in_debug() {
    let loaded = ok("proxmox_api:\n  hosts: [a]\n  user: root@pam\n  pass: hunter2-pass\n");
    let dbg = format!("{:?} {:#?}", loaded, loaded.config);
    assert!(!dbg.contains("hunter2"), "{dbg}");
    let creds = loaded.config.credentials(|_| None).unwrap();
    assert!(!format!("{creds:?}").contains("hunter2"));
    let loaded =
        ok("proxmox_api:\n  hosts: [a]\n  user: root@pam\n  token_id: t\n  token_secret: 0ddba11-secret\n");
    assert!(!format!("{:?}", loaded.config).contains("0ddba11"));
    for o in loaded.config.pve_options(&loaded.config.credentials(|_| None).unwrap(), None) {
        assert!(!format!("{o:?}").contains("0ddba11"));
    }
    // Errors quote values, but never a secret's.
    let e = err("proxmox_api:\n  hosts: [a]\n  user: root@pam\n  pass: hunter2-pass\n  token_id: t\n  token_secret: 0ddba11-secret\n");
    assert!(!e.contains("hunter2") && !e.contains("0ddba11"), "{e}");
}

#[cfg(unix)]
#[test]
fn world_readable_secrets_are_warned() {
    use std::os::unix::fs::PermissionsExt;
    let dir = test_support::temp_dir("config");
    let path = dir.join("proxlb.yaml");
    std::fs::write(&path, "proxmox_api:\n  hosts: [a]\n  user: root@pam\n  pass: x\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = backend::config::load_file(&path).unwrap().warnings.join("\n");
    assert!(w.contains("readable by every local user") && w.contains("chmod 600"), "{w}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(backend::config::load_file(&path).unwrap().warnings.is_empty());
    let missing: ConfigError = backend::config::load_file(&dir.join("nope.yaml")).unwrap_err();
    assert!(missing.to_string().contains("nope.yaml: cannot read the configuration"), "{missing}");
}

#[test]
fn host_forms() {
    let ep = |h: &str, p: u16| Endpoint { host: h.into(), port: p };
    assert_eq!(parse_host("pve1").unwrap(), ep("pve1", 8006));
    assert_eq!(parse_host("pve1:443").unwrap(), ep("pve1", 443));
    assert_eq!(parse_host("[::1]:8006").unwrap(), ep("::1", 8006));
    assert_eq!(parse_host("[::1]").unwrap(), ep("::1", 8006));
    assert_eq!(parse_host("fe80::1").unwrap(), ep("fe80::1", 8006));
    assert_eq!(parse_host("https://pve1:8006/").unwrap(), ep("pve1", 8006));
    assert!(parse_host("pve1:x").is_err());
    assert!(parse_host("[::1").is_err());
    assert!(parse_host("").is_err());
}

#[test]
fn comma_separated_lists_as_in_proxlb_1x() {
    let c =
        ok("proxmox_api: {hosts: 'a, b:8007'}\nproxmox_cluster:\n  maintenance_nodes: 'pve1,pve2'\n").config;
    assert_eq!(c.proxmox_api.hosts, vec!["a", "b:8007"]);
    assert_eq!(c.proxmox_cluster.maintenance_nodes, vec!["pve1", "pve2"]);
    assert_eq!(c.maintenance_nodes_in(["pve1", "pve3", "pve2"]), vec!["pve1", "pve2"]);
    let c = ok("proxmox_api: {hosts: [a]}\nproxmox_cluster:\n  maintenance_nodes: ['pve*']\n").config;
    assert_eq!(c.maintenance_nodes_in(["pve1", "node2", "pve3"]), vec!["pve1", "pve3"]);
}
