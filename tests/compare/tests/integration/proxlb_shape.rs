//! `--output proxlb` against the real thing: ProxLB 2.3 (the project venv) and our CLI plan one
//! simulated cluster, and our JSON has ProxLB's shape: the same top-level keys, the same guests
//! (running ones), and for every guest, node, group, pool and HA rule entry the same keys with
//! values of the same JSON type, nested objects included. The harness's own reader of ProxLB's
//! output (`compare::proxlb::moves`) reads ours.
//!
//! Values that do not depend on the plan are compared too: each guest's id, type, placement,
//! pools, pins, HA rules, groups, tags and ignore flag; each node's version, maintenance and
//! capacity; the anti-affinity groups, pools and HA rules. Which moves each tool plans differs
//! (that is the comparison's subject), so targets and post-plan node figures are not.

use compare::proxlb;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// JSON type of a value (integers and floats are both numbers: Python prints `0.0` or `0`
/// depending on the arithmetic that made it).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `path → type` for every key of `v`, nested objects flattened (`cpu.total`), arrays by their
/// first element (`ha_rules[].rule`) when they have one.
fn shape(v: &Value, prefix: &str, out: &mut BTreeMap<String, &'static str>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.insert(path.clone(), kind(child));
                shape(child, &path, out);
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                shape(first, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn shape_of(v: &Value) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    shape(v, "", &mut out);
    out
}

/// Keys both have with different types, and keys only one has.
fn differences(theirs: &Value, ours: &Value) -> Vec<String> {
    let (t, o) = (shape_of(theirs), shape_of(ours));
    let mut diff = Vec::new();
    for (k, tk) in &t {
        match o.get(k) {
            None => diff.push(format!("missing in ours: {k} ({tk})")),
            // An empty array in one of them has no element shape to compare; a number may be
            // null in neither.
            Some(ok) if ok != tk => diff.push(format!("{k}: ProxLB {tk}, ours {ok}")),
            _ => {}
        }
    }
    for k in o.keys().filter(|k| !t.contains_key(*k)) {
        // Array element shapes exist only where the array is not empty on that side.
        if !k.contains("[]") {
            diff.push(format!("only in ours: {k}"));
        }
    }
    diff
}

/// A JSON array of strings, sorted.
fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    out.sort();
    out
}

async fn run_proxlb(cfg: &Path) -> String {
    let out = tokio::process::Command::new(proxlb::python())
        .arg("-c")
        .arg(proxlb::LAUNCHER)
        .arg("-c")
        .arg(cfg)
        .args(["-j", "-d"])
        .env("PLB_SKIP_SLEEPS", "1")
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(300), out).await.expect("ProxLB finishes").unwrap_or_else(
            |e| panic!("cannot run {} (bash xtask/setup.sh makes the venv): {e}", proxlb::python().display()),
        );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "ProxLB failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn run_ours(cli: &Path, cfg: &Path) -> String {
    let out = tokio::process::Command::new(cli)
        .arg("-c")
        .arg(cfg)
        .args(["-d", "--output", "proxlb"])
        .env_remove("PVE_REBALANCER_PASSWORD")
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(120), out).await.expect("ours finishes").expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "ours failed:\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_proxlb_output_has_proxlbs_shape() {
    let cli = compare::ours::ensure_cli().expect("our CLI builds");
    let scenario = pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario");
    let mut sim_cfg = pve_sim::SimConfig::new(scenario);
    sim_cfg.time_scale = 1000.0;
    // A stepped clock: both tools see the same load.
    sim_cfg.clock_rate = 0.0;
    let sim = pve_sim::start(sim_cfg).await.expect("simulator starts");
    let dir = compare::temp_dir("proxlb-shape");
    let theirs_cfg = dir.join("proxlb.yaml");
    let text = proxlb::config(sim.addr.port(), "", false);
    std::fs::write(&theirs_cfg, &text).unwrap();
    let ours_cfg = dir.join("ours.yaml");
    let ours_text = format!(
        "{text}rebalancer:\n  journal: {d}/journal.sqlite\n  lock_dir: {d}/lock\n",
        d = dir.display()
    );
    std::fs::write(&ours_cfg, ours_text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ours_cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    let theirs = proxlb::parse_json(&run_proxlb(&theirs_cfg).await).expect("ProxLB printed its JSON");
    let ours_stdout = run_ours(&cli, &ours_cfg).await;
    let ours = proxlb::parse_json(&ours_stdout).expect("ours parses as ProxLB's output is parsed");
    proxlb::moves(&ours).expect("the harness reads our moves as it reads ProxLB's");

    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&theirs), "top-level keys");
    assert_eq!(keys(&ours["guests"]), keys(&theirs["guests"]), "the same guests, by name");
    assert_eq!(keys(&ours["nodes"]), keys(&theirs["nodes"]), "the same nodes");
    assert_eq!(keys(&ours["groups"]), keys(&theirs["groups"]), "group kinds");

    let mut problems = Vec::new();
    for (name, t) in theirs["guests"].as_object().unwrap() {
        let o = &ours["guests"][name];
        // What the cluster and its rules say, before any plan: the same values.
        for key in ["id", "name", "type", "node_current", "pools", "node_relationships", "ha_rules"] {
            assert_eq!(o[key], t[key], "guests.{name}.{key}");
        }
        assert_eq!(sorted(&o["anti_affinity_groups"]), sorted(&t["anti_affinity_groups"]), "{name}: groups");
        // ProxLB splits an empty tag string into `[""]`; we list no tag.
        let their_tags: Vec<&Value> = t["tags"].as_array().unwrap().iter().filter(|t| *t != "").collect();
        assert_eq!(o["tags"].as_array().unwrap().iter().collect::<Vec<_>>(), their_tags, "{name}: tags");
        // ProxBalance's `ignore` tag is honoured by us, not by ProxLB.
        if !their_tags.iter().any(|t| *t == "ignore") {
            assert_eq!(o["ignore"], t["ignore"], "{name}: ignore");
        }
        problems.extend(differences(t, o).into_iter().map(|d| format!("guests.{name}: {d}")));
    }
    for (name, t) in theirs["nodes"].as_object().unwrap() {
        let o = &ours["nodes"][name];
        for key in ["name", "pve_version", "maintenance"] {
            assert_eq!(o[key], t[key], "nodes.{name}.{key}");
        }
        for r in ["cpu", "memory", "disk"] {
            assert_eq!(o[r]["total"], t[r]["total"], "nodes.{name}.{r}.total");
        }
        problems.extend(differences(t, o).into_iter().map(|d| format!("nodes.{name}: {d}")));
    }
    let anti = |v: &Value| -> BTreeMap<String, Vec<String>> {
        let groups = v["groups"]["anti_affinity"].as_object().unwrap();
        groups.iter().map(|(k, g)| (k.clone(), sorted(&g["guests"]))).collect()
    };
    assert_eq!(anti(&ours), anti(&theirs), "anti-affinity groups and their members");
    assert_eq!(ours["ha_rules"], theirs["ha_rules"]);
    assert_eq!(ours["pools"], theirs["pools"]);
    // Entries of the keyed collections: compare the first entry each side has.
    for path in ["pools", "ha_rules", "groups/anti_affinity", "groups/affinity"] {
        let pick = |v: &Value| path.split('/').fold(v.clone(), |v, k| v[k].clone());
        let (t, o) = (pick(&theirs), pick(&ours));
        if let (Some(te), Some(oe)) =
            (t.as_object().and_then(|m| m.values().next()), o.as_object().and_then(|m| m.values().next()))
        {
            problems.extend(differences(te, oe).into_iter().map(|d| format!("{path} entry: {d}")));
        }
    }
    assert!(problems.is_empty(), "shape differences:\n{}", problems.join("\n"));
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
