//! ProxLB 2.3 (the reference balancer) against the simulator: it must collect everything it
//! needs and produce a plan; with execution on, its migrations must land and keep invariants.
//! Needs the project venv (`xtask/setup.sh` creates `target/venv` with `proxlb==2.3.0`).

use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/venv/bin/python");
    assert!(
        p.exists(),
        "ProxLB venv missing at {}: run `xtask/setup.sh` (it creates target/venv with proxlb==2.3.0)",
        p.display()
    );
    p
}

fn config(sim: &pve_sim::RunningSim, extra_balancing: &str, token: bool) -> String {
    let auth = if token {
        "  user: root@pam\n  token_id: rebalancer\n  token_secret: 5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b\n"
    } else {
        "  user: root@pam\n  pass: demo\n"
    };
    format!(
        "proxmox_api:\n  hosts: ['127.0.0.1:{port}']\n{auth}  ssl_verification: False\n  timeout: 10\n\
balancing:\n  enable: True\n  balance_types: ['vm', 'ct']\n  balanciness: 5\n  method: memory\n  mode: used\n{extra_balancing}\
service:\n  daemon: False\n  log_level: CRITICAL\n",
        port = sim.addr.port()
    )
}

/// Runs ProxLB; returns (exit code, parsed JSON, stdout).
async fn run_proxlb(cfg: &str, args: &[&str]) -> (i32, Option<Value>, String) {
    let py = venv_python();
    let dir = std::env::temp_dir().join(format!("pve-sim-proxlb-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("proxlb.yaml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg("-m").arg("proxlb").arg("-c").arg(&cfg_path).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("ProxLB finished within 240 s")
        .expect("ProxLB runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    let json = match (lines.iter().position(|l| *l == "{"), lines.iter().rposition(|l| *l == "}")) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(&lines[a..=b].join("\n")).ok(),
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    let all = format!("{stdout}\n--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), json, all)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// (vmid, from, to) for every planned move.
fn plan(j: &Value) -> Vec<(u64, String, String)> {
    let mut v: Vec<(u64, String, String)> = j["guests"]
        .as_object()
        .unwrap()
        .values()
        .filter(|g| g["node_current"] != g["node_target"] && g["ignore"] != true)
        .map(|g| {
            (
                g["id"].as_u64().unwrap(),
                g["node_current"].as_str().unwrap().to_string(),
                g["node_target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn proxlb_dry_run_plans_against_demo() {
    let sim = start_demo(1000.0).await;
    let (code, json, out) = run_proxlb(&config(&sim, "", false), &["-d", "-j"]).await;
    assert_eq!(code, 0, "ProxLB failed:\n{out}");
    let j = json.unwrap_or_else(|| panic!("no JSON in ProxLB output:\n{out}"));
    let nodes = j["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 4, "{out}");
    assert_eq!(nodes["pve1"]["pve_version"], "9.1.2");
    // running guests collected (ProxLB skips stopped ones)
    let guests = j["guests"].as_object().unwrap();
    assert!(guests.contains_key("web-01") && guests.contains_key("ci-runner-01"), "{:?}", guests.keys());
    assert!(!guests.contains_key("old-erp"));
    assert_eq!(guests["web-01"]["tags"], serde_json::json!(["plb_anti_affinity_web"]));
    assert!(guests["web-01"]["pools"].as_array().unwrap().iter().any(|p| p == "prod"));
    let p = plan(&j);
    assert!(!p.is_empty(), "ProxLB planned nothing:\n{out}");
    // the overloaded node gives something away; the pinned db-01 stays
    assert!(p.iter().any(|(_, from, _)| from == "pve1"), "{p:?}");
    assert!(!p.iter().any(|(id, _, _)| *id == 102), "pinned guest moved: {p:?}");
    // HA rules were read (9.x)
    assert!(
        j["ha_rules"].as_object().is_some_and(|r| r.contains_key("keep-db02-app04-apart")),
        "{}",
        j["ha_rules"]
    );
    let stats = sim.request_stats();
    assert!(stats.get("GET /nodes/{node}/qemu/{vmid}/rrddata").copied().unwrap_or(0) > 0, "{stats:?}");
    // nothing was migrated in dry-run mode
    assert_eq!(sim.guest_node(100).as_deref(), Some("pve1"));
    sim.check_invariants().unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn proxlb_executes_migrations_with_token_auth() {
    let sim = start_demo(1000.0).await;
    let (code, json, out) =
        run_proxlb(&config(&sim, "  parallel: True\n  parallel_jobs: 4\n", true), &["-j"]).await;
    assert_eq!(code, 0, "ProxLB failed:\n{out}");
    let j = json.unwrap_or_else(|| panic!("no JSON in ProxLB output:\n{out}"));
    let p = plan(&j);
    assert!(!p.is_empty(), "{out}");
    // every planned move landed, except guests with local devices (ProxLB does not check them; the
    // simulator refuses like PVE: "can't migrate VM which uses local devices")
    let blocked: Vec<u32> = sim.with_cluster(|c| {
        c.guests.values().filter(|g| !g.spec.local_resources.is_empty()).map(|g| g.spec.vmid).collect()
    });
    for (id, from, to) in &p {
        let want = if blocked.contains(&(*id as u32)) { from } else { to };
        assert_eq!(sim.guest_node(*id as u32).as_deref(), Some(want.as_str()), "guest {id}: {out}");
    }
    let stats = sim.request_stats();
    let posts: u64 =
        stats.iter().filter(|(k, _)| k.starts_with("POST") && k.ends_with("/migrate")).map(|(_, v)| v).sum();
    assert_eq!(posts as usize, p.len(), "{stats:?}");
    sim.check_invariants().unwrap();
    let c = client(&sim);
    let inv: Value =
        c.get(format!("{}/_sim/invariants", sim.base_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(inv["ok"], true);
    sim.shutdown().await;
}
