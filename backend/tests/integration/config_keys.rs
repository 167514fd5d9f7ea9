//! Keys that once loaded and did nothing now do what ProxLB's README says, shown by running the
//! real binary: `service.log_level`, `rebalancer.listen`, `balancing.balance_types` and
//! `balancing.live` in the plan, `proxmox_cluster.overprovisioning`.

use std::process::Stdio;
use std::time::Duration;
use test_support::{start_sim, temp_dir};
use tokio::io::AsyncBufReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_pve-rebalancer");

fn config(sim: &pve_sim::RunningSim, dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &sim.ca_pem).unwrap();
    let text = format!(
        "proxmox_api: {{hosts: ['{}'], user: root@pam, pass: demo, timeout: 10}}\nservice: {{daemon: false}}\n\
         rebalancer:\n  ca_file: {}\n  state_dir: {}\n{extra}",
        sim.addr,
        ca.display(),
        dir.join("state").display()
    );
    let path = dir.join("proxlb.yaml");
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

async fn run(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(BIN).args(args).env_remove("RUST_LOG").kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(120), out).await.expect("in time").expect("runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_sets_what_the_run_logs() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("log-level");
    for (level, shows_info, shows_debug) in
        [("INFO", true, false), ("WARNING", false, false), ("DEBUG", true, true)]
    {
        let cfg = config(&sim, &dir, "");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("service: {daemon: false}", &format!("service: {{daemon: false, log_level: {level}}}"));
        std::fs::write(&cfg, text).unwrap();
        let (ok, _, stderr) = run(&["-c", cfg.to_str().unwrap(), "-d"]).await;
        assert!(ok, "{stderr}");
        // Lines read `<time> <LEVEL> <target>: …` (the level may be coloured).
        assert_eq!(stderr.contains("INFO"), shows_info, "{level}: {stderr}");
        assert_eq!(stderr.contains("DEBUG"), shows_debug, "{level}: {stderr}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_listens_where_the_file_says() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("listen");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = config(&sim, &dir, &format!("  listen: 127.0.0.1:{port}\n"));
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "-c", cfg.to_str().unwrap(), "--pve-url", &sim.base_url, "--pve-ca"])
        .arg(dir.join("ca.pem"))
        .args([
            "--state-dir",
            dir.join("state").to_str().unwrap(),
            "--journal",
            dir.join("j.sqlite").to_str().unwrap(),
        ])
        .args([
            "--lock-dir",
            dir.join("lock").to_str().unwrap(),
            "--csrf-key",
            dir.join("no-key").to_str().unwrap(),
        ])
        .env("PVE_REBALANCER_USER", "root@pam")
        .env("PVE_REBALANCER_PASSWORD", "demo")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("listening on") {
                return l;
            }
        }
        String::new()
    })
    .await
    .expect("serve starts");
    assert!(line.ends_with(&format!("127.0.0.1:{port}")), "{line}");
    let health = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/health")).await.unwrap();
    assert!(health.status().is_success());
    child.kill().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_types_and_live_shape_the_plan_itself() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("kinds");
    let kinds = sim.with_cluster(|c| {
        c.guests
            .values()
            .map(|g| (g.spec.vmid, (g.spec.kind, g.status == pve_sim::scenario::GuestStatus::Running)))
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    let plan = |extra: &'static str| {
        let cfg = config(&sim, &dir, "");
        let text = std::fs::read_to_string(&cfg).unwrap() + extra;
        std::fs::write(&cfg, text).unwrap();
        async move {
            let (ok, stdout, stderr) = run(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
            assert!(ok, "{stderr}");
            serde_json::from_str::<shared::Plan>(&stdout).unwrap()
        }
    };
    let all = plan("balancing: {balanciness: 2, balance_types: [vm, ct]}\n").await;
    let is_ct = |vmid: &u32| matches!(kinds[vmid].0, pve_sim::GuestType::Lxc);
    assert!(all.steps.iter().any(|s| !is_ct(&s.vmid)), "the demo moves a VM at balanciness 2");
    let cts = plan("balancing: {balanciness: 2, balance_types: [ct]}\n").await;
    assert!(cts.steps.iter().all(|s| is_ct(&s.vmid)), "balance_types [ct] moved a VM: {:?}", cts.steps);
    let moved_vm = all.steps.iter().find(|s| !is_ct(&s.vmid)).unwrap().vmid;
    let why = cts.why_not.iter().find(|w| w.vmid == moved_vm).map(|w| w.reason.clone()).unwrap_or_default();
    assert!(why.contains("balance_types"), "why {moved_vm} stays: {why:?}");
    let offline = plan("balancing: {balanciness: 2, balance_types: [vm, ct], live: false}\n").await;
    let running_vm = |vmid: &u32| !is_ct(vmid) && kinds[vmid].1;
    assert!(all.steps.iter().any(|s| running_vm(&s.vmid)), "the demo moves a running VM");
    assert!(offline.steps.iter().all(|s| !running_vm(&s.vmid)), "{:?}", offline.steps);
    sim.shutdown().await;
}

#[test]
fn overprovisioning_true_keeps_vcpus_within_cores_unless_cpu_overcommit_says_more() {
    let load = |extra: &str| {
        backend::config::parse_str(&format!("proxmox_api: {{hosts: [h]}}\n{extra}"), "t.yaml")
            .unwrap()
            .config
            .plan_request()
    };
    assert_eq!(load("").cpu_overcommit, None);
    assert_eq!(load("proxmox_cluster: {overprovisioning: true}\n").cpu_overcommit, Some(1.0));
    let both = "proxmox_cluster: {overprovisioning: true}\nbalancing: {cpu_overcommit: 2}\n";
    assert_eq!(load(both).cpu_overcommit, Some(2.0));
}

#[test]
fn keys_we_cannot_honour_are_warned_with_the_reason() {
    let load = |extra: &str| {
        backend::config::parse_str(&format!("proxmox_api: {{hosts: [h]}}\n{extra}"), "t.yaml")
            .unwrap()
            .warnings
    };
    assert!(load("balancing: {enforce_affinity: true}\n").is_empty(), "true is what we do anyway");
    // PSI is collected (PVE 9's node pressure); on PVE 7/8 the plan itself says there is none.
    assert!(load("balancing: {mode: psi}\n").is_empty(), "mode psi is supported");
    for (yaml, key) in [
        ("balancing: {enforce_affinity: false}\n", "balancing.enforce_affinity"),
        ("balancing: {enforce_pinning: false}\n", "balancing.enforce_pinning"),
        ("service: {enable_ha: true}\n", "service.enable_ha"),
    ] {
        let warnings = load(yaml);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(key) && (w.contains("not supported here") || w.contains("no effect"))),
            "{yaml}: {warnings:?}"
        );
    }
}
