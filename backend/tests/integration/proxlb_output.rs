//! `--output proxlb` and `rebalancer.output: proxlb`: the built binary against the real simulator
//! prints ProxLB 2.3's `-j` JSON, and a script that reads ProxLB's output the way ProxLB users do
//! (slice from the first line `{` to the last line `}`, load, read
//! `guests[*].node_current/node_target`) finds exactly the moves of our own plan.
//!
//! The simulator's clock is stepped (`clock_rate = 0`), so two runs see the same load and plan
//! the same moves.

use pve_sim::RunningSim;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pve-rebalancer");

async fn start_sim() -> RunningSim {
    let scenario = pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario");
    let mut cfg = pve_sim::SimConfig::new(scenario);
    cfg.time_scale = 1000.0;
    cfg.clock_rate = 0.0;
    pve_sim::start(cfg).await.expect("simulator starts")
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pve-rebalancer-proxlb-out-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A proxlb.yaml for `sim` with `rebalancer_extra` appended to the `rebalancer:` section.
fn write_config(sim: &RunningSim, dir: &Path, rebalancer_extra: &str) -> PathBuf {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &sim.ca_pem).unwrap();
    let text = format!(
        "proxmox_api:\n  hosts: ['{addr}']\n  user: root@pam\n  pass: demo\n  timeout: 10\n\
         service:\n  daemon: false\n\
         balancing:\n  balanciness: 5\n  enable: true\n  balance_types: [vm, ct]\n\
         rebalancer:\n  ca_file: {ca}\n  journal: {dir}/journal.sqlite\n  lock_dir: {dir}/lock\n{rebalancer_extra}",
        addr = sim.addr,
        ca = ca.display(),
        dir = dir.display(),
    );
    let path = dir.join("proxlb.yaml");
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

async fn run(args: &[&str]) -> (Output, String, String) {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("PVE_REBALANCER_PASSWORD")
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(120), child).await.expect("finishes in time").expect("runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(0), "{args:?} failed:\n{stderr}");
    (out, stdout, stderr)
}

/// What a ProxLB-consuming script does with ProxLB's stdout (research notes §5.4).
fn parse_like_proxlb_scripts(stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().collect();
    let first = lines.iter().position(|l| *l == "{").unwrap_or_else(|| panic!("no line `{{`:\n{stdout}"));
    let last = lines.iter().rposition(|l| *l == "}").unwrap_or_else(|| panic!("no line `}}`:\n{stdout}"));
    serde_json::from_str(&lines[first..=last].join("\n"))
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// vmid → (from, to) of every guest whose target differs from where it is.
fn proxlb_moves(v: &Value) -> BTreeMap<u64, (String, String)> {
    let guests = v["guests"].as_object().expect("guests is an object keyed by name");
    guests
        .values()
        .filter(|g| g["node_current"] != g["node_target"])
        .map(|g| {
            let s = |k: &str| g[k].as_str().unwrap_or_else(|| panic!("{k} is a string: {g}")).to_owned();
            (g["id"].as_u64().expect("id is an integer"), (s("node_current"), s("node_target")))
        })
        .collect()
}

/// vmid → (first from, last to) of the plan's steps, guests that come back home left out.
fn plan_moves(plan: &shared::Plan) -> BTreeMap<u64, (String, String)> {
    let mut moves: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for s in &plan.steps {
        moves.entry(u64::from(s.vmid)).or_insert_with(|| (s.from.clone(), s.to.clone())).1 = s.to.clone();
    }
    moves.retain(|_, (from, to)| from != to);
    moves
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxlb_json_carries_exactly_our_plans_moves() {
    let sim = start_sim().await;
    let dir = temp_dir("moves");
    let cfg = write_config(&sim, &dir, "");
    let cfg = cfg.to_str().unwrap();

    let (_, ours, _) = run(&["-c", cfg, "-d", "-j"]).await;
    let plan: shared::Plan =
        serde_json::from_str(&ours).unwrap_or_else(|e| panic!("our plan ({e}):\n{ours}"));
    let expected = plan_moves(&plan);
    assert!(!expected.is_empty(), "the demo cluster is imbalanced: the plan moves guests");

    let (_, stdout, stderr) = run(&["-c", cfg, "-d", "--output", "proxlb"]).await;
    assert!(stderr.contains("not migrating: dry run"), "{stderr}");
    assert_eq!(stdout.lines().next(), Some("{"), "ProxLB's first JSON line");
    assert_eq!(stdout.lines().last(), Some("}"), "ProxLB's last JSON line");
    let v = parse_like_proxlb_scripts(&stdout);
    assert_eq!(proxlb_moves(&v), expected);
    for key in ["guests", "nodes", "groups", "pools", "ha_rules"] {
        assert!(v.get(key).is_some(), "top-level {key}");
    }
    let nodes = v["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), plan.before.len());
    for n in nodes.values() {
        for r in ["cpu", "memory", "disk"] {
            for f in ["total", "assigned", "used", "free", "assigned_percent", "free_percent", "used_percent"]
            {
                assert!(n[r][f].is_number(), "nodes.*.{r}.{f} in {n}");
            }
        }
    }
    for g in v["guests"].as_object().unwrap().values() {
        assert!(g["ignore"].is_boolean() && g["tags"].is_array() && g["memory"]["total"].is_u64(), "{g}");
        assert!(["vm", "ct"].contains(&g["type"].as_str().unwrap()), "{g}");
    }
    // A dry run moved nothing.
    for (vmid, (from, _)) in &expected {
        assert_eq!(sim.guest_node(*vmid as u32).as_deref(), Some(from.as_str()));
    }

    // The same in Python, the language ProxLB's users script in.
    let script = "import json,sys\n\
        lines=sys.stdin.read().splitlines()\n\
        start=lines.index('{'); end=len(lines)-1-lines[::-1].index('}')\n\
        data=json.loads('\\n'.join(lines[start:end+1]))\n\
        for g in sorted(data['guests'].values(), key=lambda g: g['id']):\n\
        \x20   if g['node_current'] != g['node_target']: print(g['id'], g['node_current'], g['node_target'])\n";
    let py = python_reads(script, &stdout);
    let want: String = expected.iter().map(|(id, (from, to))| format!("{id} {from} {to}\n")).collect();
    assert_eq!(py, want);
    sim.shutdown().await;
}

fn python_reads(script: &str, stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the project's test tools need it)");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_key_chooses_what_dash_j_prints_and_the_flag_wins() {
    let sim = start_sim().await;
    let dir = temp_dir("key");
    let cfg = write_config(&sim, &dir, "  output: proxlb\n");
    let cfg = cfg.to_str().unwrap();
    let (_, stdout, _) = run(&["-c", cfg, "-d", "-j"]).await;
    let v = parse_like_proxlb_scripts(&stdout);
    assert!(v["guests"].is_object() && v.get("steps").is_none(), "ProxLB's shape, not our plan");
    let (_, stdout, _) = run(&["-c", cfg, "-d", "--output", "ours"]).await;
    let plan: Result<shared::Plan, _> = serde_json::from_str(&stdout);
    assert!(plan.is_ok(), "--output ours prints our plan:\n{stdout}");
    // Without -j the file's key does not turn the table into JSON (ProxLB prints JSON only with -j).
    let (_, stdout, _) = run(&["-c", cfg, "-d"]).await;
    assert!(stdout.contains("VMID") && !stdout.starts_with('{'), "{stdout}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_output_is_refused_with_the_choices() {
    let sim = start_sim().await;
    let dir = temp_dir("bad");
    let cfg = write_config(&sim, &dir, "  output: proxbl\n");
    let child = tokio::process::Command::new(BIN).args(["-c", cfg.to_str().unwrap(), "-d", "-j"]).output();
    let out = tokio::time::timeout(Duration::from_secs(60), child).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("proxbl") && stderr.contains("ours") && stderr.contains("proxlb"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed on a bad file");
    sim.shutdown().await;
}
