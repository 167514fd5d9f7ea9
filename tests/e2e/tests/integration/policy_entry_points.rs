//! One truth from configuration to every plan: the same configuration file, stored settings and
//! per-request overrides reach every entry point that plans, and the highest layer wins.
//!
//! A `proxlb.yaml` sets every setting below to a value of its own; the stored settings
//! (`PUT /api/v1/settings`) override some of them; one request overrides balanciness. Every entry
//! point's plan request must then carry, field by field, the winner: the panel's plan, the
//! what-if inputs (`GET /api/v1/policy`), the ProxBalance alias, maintenance (panel and CLI),
//! best node (panel and CLI), the scheduler, the ProxLB-style CLI and `plan`.

use serde_json::{json, Value};
use std::time::Duration;

const FILE: &str = r#"
proxmox_api: {hosts: ['{SIM}'], user: root@pam, pass: demo, timeout: 30}
proxmox_cluster: {ignore_nodes: ['file-node*']}
balancing:
  enable: true
  balanciness: 7
  method: memory
  memory_threshold: 85
  cpu_threshold: 95
  node_resource_reserve: {defaults: {memory: 1}}
  ignore_guests: ['file-guest*']
  pools: {prod: {type: anti-affinity}}
  balance_types: ['vm', 'ct']
  cpu_overcommit: 3
service: {daemon: false}
rebalancer:
  ca_file: '{CA}'
  min_gain: 0.7
  max_moves: 9
  max_gib: 500
  cooldown_secs: 1800
  no_return_secs: 7200
  max_moves_per_node: 4
  migration_bandwidth_mib_s: 321
"#;

const GIB: u64 = 1 << 30;

/// What every entry point must plan with once the settings are stored: `(JSON pointer into a
/// PlanRequest, value)`; `stored` marks the fields the stored settings won.
fn expected(balanciness: f64, max_moves: u32) -> Vec<(&'static str, Value)> {
    vec![
        ("/balanciness", json!(balanciness)),
        ("/max_moves", json!(max_moves)), // stored (scheduled runs only)
        ("/rules/ignore_guests", json!(["stored-guest"])), // stored
        ("/memory_reserve", json!(2 * GIB)), // stored
        ("/overload/memory", json!(80.0)), // stored
        ("/min_gain", json!(0.7)),        // file
        ("/max_gib", json!(500.0)),       // file
        ("/cooldown_secs", json!(1800)),  // file
        ("/no_return_secs", json!(7200)), // file
        ("/overload/cpu", json!(95.0)),   // file
        ("/max_moves_per_node", json!(4)), // file
        ("/migration_bandwidth_mib_s", json!(321.0)), // file
        ("/cpu_overcommit", json!(3.0)),  // file
        ("/rules/ignore_nodes", json!(["file-node*"])), // file
        ("/rules/pools/0/pool", json!("prod")), // file
        ("/rules/pools/0/type", json!("anti-affinity")), // file
        ("/method", json!("memory")),     // file (= default)
    ]
}

const STORED: &str = r#"{"balanciness": 6, "max_moves": 8, "ignore_guests": ["stored-guest"],
    "memory_reserve_gib": 2, "memory_threshold": 80}"#;

/// `balanciness` the winner; a one-shot plan runs until balanced (`max_moves` 0), a scheduled
/// run keeps the stored per-cycle cap.
fn check(entry: &str, request: &Value, balanciness: f64) {
    check_run(entry, request, balanciness, 0)
}

fn check_run(entry: &str, request: &Value, balanciness: f64, max_moves: u32) {
    let wrong: Vec<String> = expected(balanciness, max_moves)
        .into_iter()
        .filter(|(ptr, want)| request.pointer(ptr) != Some(want))
        .map(|(ptr, want)| format!("{ptr}: got {:?}, want {want}", request.pointer(ptr)))
        .collect();
    assert!(wrong.is_empty(), "{entry} plans with the wrong policy:\n{}", wrong.join("\n"));
}

async fn json_of(resp: reqwest::Response, what: &str) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{what}: {status} {body}");
    body
}

/// Runs the service binary with `args` against the stack's simulator; its stdout as JSON (the
/// text from the first line that is `{` on).
async fn cli(stack: &e2e::Stack, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(e2e::service_binary())
        .args(args)
        .current_dir(&stack.work)
        .env("PVE_REBALANCER_USER", "root@pam")
        .env("PVE_REBALANCER_PASSWORD", "demo")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(120), out).await.expect("CLI in time").expect("CLI runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    let start = text.find("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

#[tokio::test]
async fn every_entry_point_plans_with_file_then_stored_then_request() {
    let stack = e2e::Stack::builder().config(FILE).start().await.expect("stack");
    let work = stack.work.display().to_string();
    let config = format!("{work}/proxlb.yaml");
    let root = stack.login("root@pam", "demo").await.expect("login");

    // Before anything is stored, the file's values are in force and say so.
    let policy = json_of(root.get("/api/v1/policy").send().await.unwrap(), "policy").await;
    assert_eq!(policy["request"]["balanciness"], json!(7.0));
    assert_eq!(policy["sources"]["balanciness"], "file");
    assert_eq!(policy["sources"].get("method"), Some(&json!("file")));
    assert_eq!(policy["sources"].get("mode"), None, "not in the file: a default");

    root.put_settings(serde_json::from_str(STORED).unwrap()).await;
    let settings = json_of(root.get("/api/v1/settings").send().await.unwrap(), "settings").await;
    assert_eq!(settings["sources"]["balanciness"], "stored");
    assert_eq!(settings["sources"]["min_gain"], "file");

    // The panel's plan, with and without a per-request override; the what-if inputs.
    let plan = root.plan(json!({})).await;
    check("POST /api/v1/plan", &serde_json::to_value(&plan.request).unwrap(), 6.0);
    let plan = root.plan(json!({"balanciness": 5})).await;
    check("POST /api/v1/plan {balanciness: 5}", &serde_json::to_value(&plan.request).unwrap(), 5.0);
    let policy = json_of(root.get("/api/v1/policy").send().await.unwrap(), "policy").await;
    check("GET /api/v1/policy", &policy["request"], 6.0);
    assert_eq!(policy["sources"]["max_moves"], "stored");

    // ProxBalance's alias, maintenance preview and best node from the panel.
    let recs = json_of(root.get("/api/recommendations").send().await.unwrap(), "recommendations").await;
    check("GET /api/recommendations", &recs["plan"]["request"], 6.0);
    let enter =
        root.post("/api/v1/maintenance/pve2/enter").json(&json!({"preview": true})).send().await.unwrap();
    let enter = json_of(enter, "maintenance preview").await;
    check("POST /api/v1/maintenance/pve2/enter", &enter["plan"]["request"], 6.0);
    let best = root.post("/api/v1/best-node").json(&json!({"guest": {"cpus": 1, "mem_bytes": GIB}})).send();
    let best = json_of(best.await.unwrap(), "best node").await;
    check("POST /api/v1/best-node", &best["request"], 6.0);

    // The scheduler: the job's journaled plan.
    root.put_settings(json!({"schedule_interval_secs": 3600})).await;
    let scheduler = backend::scheduler::Scheduler::new(backend::scheduler::SchedulerConfig {
        state_dir: stack.work.clone(),
        tick: Duration::from_secs(30),
    });
    let noon = backend::windows::WeekTime { day: 0, minute: 12 * 60 };
    let round = scheduler.round(&stack.state, 1_800_000_000, noon).await.expect("a scheduled round");
    let backend::scheduler::Round::Started { job_id, .. } = round else {
        panic!("no scheduled job: {round:?}")
    };
    let journaled = stack.executor.journal().plan_json(job_id).unwrap().expect("the job's plan");
    let journaled: Value = serde_json::from_str(&journaled).unwrap();
    check_run("the scheduler", &journaled["request"], 6.0, 8);
    stack.executor.wait_finished(job_id, Duration::from_secs(60)).await.expect("the scheduled job ends");

    // The command lines read the same file and the same stored settings.
    check("pve-rebalancer -c -d -j", &cli(&stack, &["-c", &config, "-d", "-j"]).await["request"], 6.0);
    let planned = cli(&stack, &["plan", "-c", &config, "--balanciness", "5"]).await;
    check("pve-rebalancer plan -c --balanciness 5", &planned["request"], 5.0);
    let url = &stack.sim.base_url;
    let ca = format!("{work}/sim-ca.pem");
    let enter = cli(
        &stack,
        &[
            "maintenance",
            "enter",
            "pve2",
            "--preview",
            "--json",
            "-c",
            &config,
            "--state-dir",
            &work,
            "--pve-url",
            url,
            "--pve-ca",
            &ca,
        ],
    )
    .await;
    check("pve-rebalancer maintenance enter --preview", &enter["plan"]["request"], 6.0);
    stack.stop().await;
}

#[tokio::test]
async fn a_bad_override_is_refused_by_name_and_plans_nothing() {
    let stack = e2e::Stack::builder().config(FILE).start().await.expect("stack");
    let root = stack.login("root@pam", "demo").await.expect("login");
    for (body, field) in [
        (json!({"balanciness": 500}), "balanciness"),
        (json!({"balanciess": 5}), "balanciess"),
        (json!({"max_moves": "many"}), "max_moves"),
        (json!({"windows": ["someday"]}), "windows"),
    ] {
        let resp = root.post("/api/v1/plan").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["field"], field, "{body}: {err}");
    }
    let resp = root.post("/api/v1/plan").json(&json!([])).send().await.unwrap();
    assert_eq!(resp.status(), 400, "an array is not an override");
    stack.stop().await;
}
