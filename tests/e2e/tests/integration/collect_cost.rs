//! What collection feeds the cost model and the modes, end to end (simulator → service → plan):
//! local disk sizes price a migration, PVE 9's pressure drives `mode: psi` (and PVE 8's lack of
//! it is said), and the migration bandwidth is measured from past migrations unless configured.

use e2e::Stack;
use serde_json::{json, Value};
use shared::plan::BandwidthSource;
use shared::{ClusterSnapshot, Plan};

const GIB: u64 = 1 << 30;

/// Three 64 GiB nodes; `guests` are YAML flow mappings (one per line).
fn scenario(version: &str, guests: &[String], extra: &str) -> pve_sim::Scenario {
    let yaml = format!(
        r#"
cluster: cost
version: "{version}"
seed: 3
nodes:
  - {{ name: a, cpus: 16, memory_gib: 64, disk_gib: 100 }}
  - {{ name: b, cpus: 16, memory_gib: 64, disk_gib: 100 }}
  - {{ name: c, cpus: 16, memory_gib: 64, disk_gib: 100 }}
storages:
  - {{ id: local-lvm, type: lvmthin, shared: false, content: "images,rootdir", size_gib: 2000 }}
  - {{ id: ceph, type: rbd, shared: true, content: "images,rootdir", size_gib: 20000 }}
users:
  - {{ userid: root@pam, password: demo }}
{extra}
guests:
{}
"#,
        guests.iter().map(|g| format!("  - {g}")).collect::<Vec<_>>().join("\n")
    );
    pve_sim::Scenario::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn vm(vmid: u32, node: &str, mem_gib: u32, rest: &str) -> String {
    format!("{{ vmid: {vmid}, node: {node}, memory_gib: {mem_gib}, memory_used: 0.75, cpu: 0.05, storage: ceph{rest} }}")
}

async fn cluster(session: &e2e::Session) -> ClusterSnapshot {
    let view: Value = session.get("/api/v1/cluster").send().await.unwrap().json().await.unwrap();
    serde_json::from_value(view["snapshot"].clone()).expect("snapshot")
}

fn moved(plan: &Plan) -> Vec<(u32, String, String)> {
    plan.steps.iter().map(|s| (s.vmid, s.from.clone(), s.to.clone())).collect()
}

#[tokio::test]
async fn a_guest_with_a_200_gib_local_disk_is_priced_higher_and_its_twin_moves_instead() {
    // `a` is hot with two equal VMs; 101's disk is 200 GiB on local-lvm, 102's on ceph.
    let guests = [
        vm(101, "a", 12, ", disk_gib: 200, disk_used: 1.0").replace("storage: ceph", "storage: local-lvm"),
        vm(102, "a", 12, ""),
        vm(103, "a", 12, ""),
        vm(104, "b", 4, ""),
    ];
    let stack = Stack::builder().scenario(scenario("9.1.2", &guests, "")).start().await.unwrap();
    let s = stack.login("root@pam", "demo").await.unwrap();
    let snap = cluster(&s).await;
    let disk = |vmid| snap.guests.iter().find(|g| g.vmid == vmid).unwrap().local_disk_bytes;
    assert_eq!((disk(101), disk(102)), (200 * GIB, 0), "local volumes only");
    let req = shared::PlanRequest::default();
    let secs = |vmid| {
        let g = snap.guests.iter().find(|g| g.vmid == vmid).unwrap();
        shared::engine::problem::move_cost(g, &req).secs
    };
    assert!(secs(101) > secs(102) + 400.0, "200 GiB at 500 MiB/s: {} vs {}", secs(101), secs(102));
    let plan = s.plan(json!({"balanciness": 5})).await;
    assert!(!plan.steps.is_empty(), "{:?}", plan.notes);
    assert!(plan.steps.iter().all(|st| st.vmid != 101), "the local-disk VM stays: {:?}", moved(&plan));
    stack.stop().await;
}

/// `a` is busy on CPU (its pressure high) with the same memory as `b` and `c`.
fn busy_a(version: &str) -> pve_sim::Scenario {
    let mut guests: Vec<String> =
        (0..3).map(|i| vm(101 + i, "a", 8, "").replace("cpu: 0.05", "cpu: 1.0, cores: 8")).collect();
    guests.extend((0..3).map(|i| vm(201 + i, "b", 8, "")));
    guests.extend((0..3).map(|i| vm(301 + i, "c", 8, "")));
    scenario(version, &guests, "")
}

#[tokio::test]
async fn mode_psi_on_pve_9_moves_off_the_node_under_pressure_where_mode_used_moves_nothing() {
    let stack = Stack::builder().scenario(busy_a("9.1.2")).start().await.unwrap();
    let s = stack.login("root@pam", "demo").await.unwrap();
    let snap = cluster(&s).await;
    let cpu_some = |n: &str| snap.node(n).and_then(|n| n.pressure).map(|p| p.cpu_some);
    assert!(cpu_some("a").is_some_and(|p| p >= 20.0), "{:?}", snap.node("a"));
    assert!(cpu_some("b").is_some_and(|p| p < 20.0));
    assert!(snap.guests.iter().all(|g| g.pressure.is_some()), "guest pressure from the PVE 9 lists");
    let used = s.plan(json!({"mode": "used", "balanciness": 10})).await;
    assert!(used.steps.is_empty(), "memory is even: {:?}", moved(&used));
    let psi = s.plan(json!({"mode": "psi", "balanciness": 10})).await;
    assert!(!psi.steps.is_empty(), "{:?}", psi.notes);
    assert!(psi.steps.iter().all(|st| st.from == "a"), "off the node under pressure: {:?}", moved(&psi));
    assert!(!psi.notes.iter().any(|n| n.contains("no node reports pressure")), "{:?}", psi.notes);
    stack.stop().await;
}

/// A ProxLB-style file with `mode: psi` for the stack's simulator (`{SIM}`, `{CA}`: see `config`).
const PSI_FILE: &str = r#"
proxmox_api: {hosts: ['{SIM}'], user: root@pam, pass: demo, timeout: 30}
balancing: {enable: true, mode: psi, balanciness: 10}
service: {daemon: false}
rebalancer:
  ca_file: '{CA}'
"#;

#[tokio::test]
async fn mode_psi_on_pve_8_says_there_is_no_pressure_and_plans_as_mode_used() {
    let stack = Stack::builder().scenario(busy_a("8.4.1")).config(PSI_FILE).start().await.unwrap();
    let s = stack.login("root@pam", "demo").await.unwrap();
    let snap = cluster(&s).await;
    assert!(snap.nodes.iter().all(|n| n.pressure.is_none()), "PVE 8 reports none");
    let psi = s.plan(json!({"mode": "psi", "balanciness": 10})).await;
    let used = s.plan(json!({"mode": "used", "balanciness": 10})).await;
    assert_eq!(moved(&psi), moved(&used));
    let note = psi.notes.iter().find(|n| n.contains("no node reports pressure")).cloned();
    assert!(note.as_deref().is_some_and(|n| n.contains("9.0") && n.contains("mode used")), "{:?}", psi.notes);
    // The ProxLB-style CLI with `-j` prints no notes: it warns on stderr, and the file loads
    // without a "not supported" warning for `mode: psi`.
    let config = stack.work.join("proxlb.yaml");
    let out = tokio::process::Command::new(e2e::service_binary())
        .args(["-c", &config.display().to_string(), "-d", "-j"])
        .current_dir(&stack.work)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no node reports pressure"), "{stderr}");
    assert!(!stderr.contains("not supported"), "{stderr}");
    stack.stop().await;
}

#[tokio::test]
async fn the_bandwidth_is_measured_from_past_migrations_else_the_default_else_as_configured() {
    // Three past migrations at the simulator's 100 MiB/s (8 GiB VMs, 6 GiB used).
    let guests: Vec<String> = (0..4).map(|i| vm(101 + i, if i < 3 { "a" } else { "b" }, 8, "")).collect();
    let past = "past_migrations:\n  - { vmid: 101, from: b, hours_ago: 3 }\n  - { vmid: 102, from: c, hours_ago: 2 }\n  - { vmid: 103, from: b, hours_ago: 1 }\nmigration: { bandwidth_mib_s: 100, setup_seconds: 2 }";
    let stack = Stack::builder().scenario(scenario("9.1.2", &guests, past)).start().await.unwrap();
    let s = stack.login("root@pam", "demo").await.unwrap();
    let plan = s.plan(json!({"balanciness": 5})).await;
    let bw = plan.bandwidth.clone().expect("the plan says its bandwidth");
    assert_eq!((bw.source, bw.migrations), (BandwidthSource::Measured, 3), "{bw:?}");
    assert!((70.0..=130.0).contains(&bw.mib_s), "near the simulator's 100 MiB/s: {bw:?}");
    assert!(plan.notes.iter().any(|n| n.contains("measured from 3 past migrations")), "{:?}", plan.notes);
    let policy: Value = s.get("/api/v1/policy").send().await.unwrap().json().await.unwrap();
    assert_eq!(policy["bandwidth"]["source"], "measured", "{policy}");
    assert_eq!(policy["bandwidth"]["migrations"], 3);
    s.put_settings(json!({"migration_bandwidth_mib_s": 321})).await;
    let plan = s.plan(json!({"balanciness": 5})).await;
    let bw = plan.bandwidth.clone().unwrap();
    assert_eq!((bw.source, bw.mib_s), (BandwidthSource::Configured, 321.0));
    let policy: Value = s.get("/api/v1/policy").send().await.unwrap().json().await.unwrap();
    assert_eq!(policy["sources"]["migration_bandwidth_mib_s"], "stored", "{policy}");
    assert_eq!(
        (policy["bandwidth"]["source"].as_str(), policy["bandwidth"]["mib_s"].as_f64()),
        (Some("configured"), Some(321.0))
    );
    stack.stop().await;

    // No past migrations: the default, said as such.
    let stack = Stack::builder().scenario(scenario("9.1.2", &guests, "")).start().await.unwrap();
    let s = stack.login("root@pam", "demo").await.unwrap();
    let bw = s.plan(json!({"balanciness": 5})).await.bandwidth.unwrap();
    assert_eq!(
        (bw.source, bw.mib_s),
        (BandwidthSource::Default, shared::PlanRequest::DEFAULT_BANDWIDTH_MIB_S)
    );
    stack.stop().await;
}
