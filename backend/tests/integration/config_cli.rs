//! The ProxLB-style command line against the real simulator, run as the built binary: plans that
//! parse, `-b`, ProxLB's exit codes (1 config, 2 auth/connection), host failover, execution,
//! the bounded daemon loop, and maintenance evacuation.

use pve_sim::RunningSim;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use test_support::{start_sim, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_pve-rebalancer");

/// A proxlb.yaml for `sim` (CA in a file next to it) with `extra` YAML appended.
fn write_config(sim: &RunningSim, dir: &Path, api_extra: &str, extra: &str) -> PathBuf {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &sim.ca_pem).unwrap();
    let text = format!(
        "proxmox_api:\n  hosts: ['{addr}']\n  user: root@pam\n  pass: demo\n  timeout: 10\n{api_extra}\
         service:\n  daemon: false\nrebalancer:\n  ca_file: {ca}\n  journal: {dir}/journal.sqlite\n  lock_dir: {dir}/lock\n{extra}",
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

async fn run(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("PVE_REBALANCER_PASSWORD")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), child).await.expect("finishes in time").expect("runs")
}

/// `run` that must exit 0; its stdout and stderr.
async fn run_ok(args: &[&str]) -> (String, String) {
    let out = run(args).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (stdout, stderr)
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn parse_plan(stdout: &str) -> shared::Plan {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not a plan ({e}):\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_json_prints_a_plan_that_parses() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("json");
    let cfg = write_config(
        &sim,
        &dir,
        "",
        "balancing:\n  balanciness: 5\n  enable: true\n  balance_types: [vm, ct]\n",
    );
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
    let plan = parse_plan(&stdout);
    assert_eq!(plan.before.len(), 4);
    assert!(!plan.steps.is_empty(), "the demo cluster is imbalanced");
    assert_eq!(plan.request.balanciness, 5.0);
    assert!(stderr.contains("not migrating: dry run"), "{stderr}");
    // A dry run never moves anything.
    for s in &plan.steps {
        assert_eq!(sim.guest_node(s.vmid).as_deref(), Some(s.from.as_str()));
    }
    // Without -j the same plan is a table.
    let out = run(&["-c", cfg.to_str().unwrap(), "-d"]).await;
    let (stdout, _) = text(&out);
    assert!(stdout.contains("VMID") && stdout.contains("BEFORE"), "{stdout}");
    // `plan -c` prints the same JSON.
    let out = run(&["plan", "-c", cfg.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(parse_plan(&text(&out).0).steps.len(), plan.steps.len());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_node_is_the_last_stdout_line() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("best");
    let cfg = write_config(&sim, &dir, "", "");
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap(), "-b"]).await;
    let last = stdout.lines().last().unwrap_or_default();
    assert!(["pve1", "pve2", "pve3", "pve4"].contains(&last), "stdout: {stdout}");
    assert!(stderr.contains("FITS"), "ranking on stderr: {stderr}");
    // The subcommand, with a guest too big for the small nodes.
    let (stdout, stderr) = run_ok(&["best-node", "-c", cfg.to_str().unwrap(), "--memory-gib", "100"]).await;
    assert_eq!(stdout.lines().last(), Some("pve3"), "{stderr}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_exits_1_with_file_line_and_fix() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("bad");
    let cfg = write_config(&sim, &dir, "", "balancing:\n  method: ram\n");
    let out = run(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let want = format!("{}:13:11: balancing.method: `ram` is not one of memory, cpu, disk", cfg.display());
    assert!(stderr.contains(&want), "want {want}\n{stderr}");
    let out = run(&["-c", dir.join("missing.yaml").to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_no_reachable_host_exit_2() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("auth");
    let cfg = write_config(&sim, &dir, "", "");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace("pass: demo", "pass: wrong");
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = run(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(!stderr.contains("wrong"), "the password is never printed: {stderr}");

    // Nothing listens on port 1.
    let cfg = write_config(&sim, &dir, "", "");
    let t = std::fs::read_to_string(&cfg).unwrap().replace(&sim.addr.to_string(), "127.0.0.1:1");
    std::fs::write(&cfg, t).unwrap();
    let out = run(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    sim.shutdown().await;
}

#[tokio::test]
async fn dash_v_prints_the_version_as_proxlb_does() {
    for flag in ["-v", "--version"] {
        let out = run(&[flag]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{flag}: {stderr}");
        assert_eq!(stdout.trim(), format!("pve-rebalancer {}", env!("CARGO_PKG_VERSION")), "{flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_is_tried_retries_times_wait_time_apart() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("retries");
    let retries = "  retries: 3\n  wait_time: 0.05\n";
    let cfg = write_config(&sim, &dir, retries, "");
    let t = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("['{}']", sim.addr), &format!("['127.0.0.1:1', '{}']", sim.addr));
    std::fs::write(&cfg, t).unwrap();
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
    for attempt in 1..=3 {
        assert!(stderr.contains(&format!("(attempt {attempt}/3)")), "attempt {attempt} logged: {stderr}");
    }
    assert!(!stderr.contains("attempt 4/"), "{stderr}");
    parse_plan(&stdout);

    // The default, one attempt per host.
    let cfg = write_config(&sim, &dir, "", "");
    let t = std::fs::read_to_string(&cfg).unwrap().replace(&sim.addr.to_string(), "127.0.0.1:1");
    std::fs::write(&cfg, t).unwrap();
    let out = run(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("(attempt 1/1)") && !stderr.contains("attempt 2/"), "{stderr}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_are_tried_in_order() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("failover");
    let cfg = write_config(&sim, &dir, "", "");
    let t = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("['{}']", sim.addr), &format!("['127.0.0.1:1', '{}']", sim.addr));
    std::fs::write(&cfg, t).unwrap();
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
    assert!(stderr.contains("127.0.0.1:1"), "the failed host is named: {stderr}");
    parse_plan(&stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_balancing_executes_through_the_executor() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("exec");
    let cfg = write_config(
        &sim,
        &dir,
        "",
        "  step_timeout_secs: 60\nbalancing:\n  enable: true\n  balance_types: ['vm', 'ct']\n  parallel: true\n  parallel_jobs: 2\n",
    );
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap(), "-j"]).await;
    let plan = parse_plan(&stdout);
    assert!(!plan.steps.is_empty(), "{:?}", plan.notes);
    assert!(stderr.contains("job 1"), "{stderr}");
    let moved =
        plan.steps.iter().filter(|s| sim.guest_node(s.vmid).as_deref() == Some(s.to.as_str())).count();
    assert!(moved > 0, "at least one guest landed: {stderr}");
    sim.check_invariants().expect("simulator consistent");

    // balance_types empty (ProxLB's default): planned, not executed.
    let cfg = write_config(&sim, &dir, "", "balancing:\n  enable: true\n");
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap()]).await;
    // Either the cluster is balanced now, or the plan is not executed for want of types.
    assert!(
        stderr.contains("balance_types is empty") || stdout.contains("Plan: 0 migrations"),
        "{stdout}{stderr}"
    );
    assert!(!stderr.contains("job 2"), "{stderr}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_loop_is_bounded_by_runs() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("daemon");
    let cfg = write_config(&sim, &dir, "", "");
    let t = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("daemon: false", "daemon: true\n  schedule:\n    interval: 0.002\n    format: minutes");
    std::fs::write(&cfg, t).unwrap();
    let (stdout, _) = run_ok(&["-c", cfg.to_str().unwrap(), "-d", "-j", "--runs", "2"]).await;
    assert_eq!(stdout.lines().filter(|l| *l == "{").count(), 2, "two plans: {stdout}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_nodes_are_evacuated() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("maint");
    let cfg = write_config(&sim, &dir, "", "proxmox_cluster:\n  maintenance_nodes: ['pve4*']\n");
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap(), "-d", "-j"]).await;
    let plan = parse_plan(&stdout);
    assert!(!plan.steps.is_empty(), "{stderr}");
    // Everything movable leaves pve4 and nothing goes there; hard-rule repairs may come along.
    assert!(plan.steps.iter().any(|s| s.from == "pve4"), "{:?}", plan.steps);
    assert!(plan.steps.iter().all(|s| s.to != "pve4"), "{:?}", plan.steps);
    let evacuations = plan.steps.iter().filter(|s| s.purpose == shared::plan::StepPurpose::Evacuate);
    assert!(evacuations.into_iter().all(|s| s.from == "pve4"));
    sim.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_stops_the_daemon() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("signals");
    let cfg = write_config(&sim, &dir, "", "");
    let daemon_cfg = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("daemon: false", "daemon: true\n  schedule:\n    interval: 0.01\n    format: minutes");
    std::fs::write(&cfg, &daemon_cfg).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["-c", cfg.to_str().unwrap(), "-d", "-j"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Stderr is read as it comes, so the test waits for the reload instead of sleeping.
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log_reader = tokio::spawn(async move {
        while let Ok(Some(l)) = err_lines.next_line().await {
            let _ = log_tx.send(l);
        }
    });
    let first_plan = async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l == "}" {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), first_plan).await.expect("a first plan");
    std::fs::write(&cfg, daemon_cfg.replace("daemon: true", "daemon: true\n  log_level: DEBUG")).unwrap();
    let kill = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(kill("-HUP").success());
    let mut stderr = String::new();
    let reloaded = async {
        while let Some(l) = log_rx.recv().await {
            stderr.push_str(&l);
            stderr.push('\n');
            if l.contains("configuration reloaded") {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reloaded).await.expect("the daemon logs the reload");
    assert!(kill("-TERM").success());
    let drain = tokio::spawn(async move { while lines.next_line().await.ok().flatten().is_some() {} });
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("stops").unwrap();
    drain.abort();
    log_reader.await.unwrap();
    while let Ok(l) = log_rx.try_recv() {
        stderr.push_str(&l);
        stderr.push('\n');
    }
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_balancing_windows_only_evacuations_execute() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("windows");
    // The only window is a whole day three days from today (node-local time): closed now.
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let other_day = days[(usize::from(backend::windows::local_now().day) + 3) % 7];
    let base = format!(
        "  step_timeout_secs: 60\n  windows: ['{other_day}']\nbalancing:\n  enable: true\n  \
         balance_types: ['vm', 'ct']\n  balanciness: 1\n"
    );
    let evacuate = |s: &shared::PlanStep| s.purpose == shared::plan::StepPurpose::Evacuate;

    // Balancing only: planned and printed, nothing moves.
    let cfg = write_config(&sim, &dir, "", &base);
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap(), "-j"]).await;
    assert!(stderr.contains("outside the balancing windows"), "{stderr}");
    let plan = parse_plan(&stdout);
    assert!(!plan.steps.is_empty() && !plan.steps.iter().any(&evacuate), "{:?}", plan.steps);
    for s in &plan.steps {
        assert_eq!(sim.guest_node(s.vmid).unwrap(), s.from, "{} waited for the window", s.vmid);
    }

    // A node to drain: the evacuation runs at once.
    let cfg =
        write_config(&sim, &dir, "", &format!("{base}proxmox_cluster:\n  maintenance_nodes: ['pve4']\n"));
    let (stdout, stderr) = run_ok(&["-c", cfg.to_str().unwrap(), "-j"]).await;
    let plan = parse_plan(&stdout);
    assert!(plan.steps.iter().any(&evacuate), "{:?}", plan.steps);
    for s in plan.steps.iter().filter(|s| evacuate(s)) {
        assert_eq!(sim.guest_node(s.vmid).unwrap(), s.to, "evacuation of {} ran: {stderr}", s.vmid);
    }
    for s in plan.steps.iter().filter(|s| !evacuate(s) && s.depends_on.is_empty()) {
        assert_eq!(sim.guest_node(s.vmid).unwrap(), s.from, "balancing move of {} waited", s.vmid);
    }
    sim.check_invariants().expect("simulator consistent");
    sim.shutdown().await;
}
