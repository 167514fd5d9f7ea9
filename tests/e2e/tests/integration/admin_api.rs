//! Settings, audit history, `/metrics` and the ProxBalance aliases, against the simulator (real
//! HTTPS PVE API on loopback) and the backend's real router with an executor and a settings store
//! in a private directory.

use backend::execute::{ExecConfig, ExecEvent};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::api::{
    AuditEntry, ClusterView, ExecuteResponse, JobState, JobView, Settings, SettingsView, StepState,
};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const TOKEN: &str = "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b";

/// The shared e2e stack: its settings and maintenance state live in `work` (never /etc/pve).
async fn start() -> e2e::Stack {
    e2e::Stack::builder().start().await.expect("stack")
}

async fn error_field(resp: reqwest::Response) -> (StatusCode, Option<String>) {
    let status = resp.status();
    let body: Value = resp.json().await.expect("ApiError JSON");
    assert!(body["error"].is_string() && body["detail"].is_string(), "not an ApiError: {body}");
    (status, body["field"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn settings_are_stored_validated_audited_and_read_only_for_auditors() {
    let a = start().await;
    let root = e2e::login(&a.backend_url, "root@pam", "demo").await.unwrap();
    let audit = e2e::login(&a.backend_url, "audit@pve", "audit").await.unwrap();
    let file = a.work.join("settings.json");

    let v: SettingsView = root.get("/api/v1/settings").send().await.unwrap().json().await.unwrap();
    // Nothing stored: the defaults, with the executor limits the service was started with.
    let exec = ExecConfig::default();
    let base = Settings {
        max_parallel: exec.max_parallel as u32,
        max_per_node: exec.max_per_node as u32,
        ..Settings::default()
    };
    assert_eq!((v.settings, v.writable, v.missing_privilege), (base, true, None));

    // Bad input: 400 naming the field, and nothing written.
    for (body, field) in [
        (json!({"balanciness": 500}), "balanciness"),
        (json!({"max_parallel": 0}), "max_parallel"),
        (json!({"mode": "sometimes"}), "mode"),
        (json!({"balanciness": 4, "no_such": 1}), "no_such"),
    ] {
        let resp = root
            .http
            .put(format!("{}/api/v1/settings", a.backend_url))
            .header("CSRFPreventionToken", &root.csrf);
        let (status, got) = error_field(resp.json(&body).send().await.unwrap()).await;
        assert_eq!((status, got.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{body}");
    }
    assert!(!file.exists(), "bad input wrote the settings file");
    // A ticket write without the CSRF header is refused.
    let resp =
        root.http.put(format!("{}/api/v1/settings", a.backend_url)).json(&json!({"balanciness": 4})).send();
    assert_eq!(resp.await.unwrap().status(), StatusCode::FORBIDDEN);
    // An auditor sees them, may not change them, and is told why.
    let v: SettingsView = audit.get("/api/v1/settings").send().await.unwrap().json().await.unwrap();
    assert_eq!((v.writable, v.missing_privilege.as_deref()), (false, Some("Sys.Modify on /")));
    let resp = audit
        .http
        .put(format!("{}/api/v1/settings", a.backend_url))
        .header("CSRFPreventionToken", &audit.csrf);
    let resp = resp.json(&json!({"balanciness": 4})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!file.exists());

    let resp =
        root.http.put(format!("{}/api/v1/settings", a.backend_url)).header("CSRFPreventionToken", &root.csrf);
    let resp = resp.json(&json!({"balanciness": 4, "max_moves": 7, "ignore_nodes": ["pve9"]})).send();
    let v: SettingsView = resp.await.unwrap().json().await.unwrap();
    assert_eq!((v.settings.balanciness, v.settings.max_moves), (4.0, 7));
    assert_eq!(v.updated_by.as_deref(), Some("root@pam"));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o640);
    let again: SettingsView = audit.get("/api/v1/settings").send().await.unwrap().json().await.unwrap();
    assert_eq!(again.settings, v.settings);

    let history: Vec<AuditEntry> =
        audit.get("/api/v1/history?action=settings.update").send().await.unwrap().json().await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!((history[0].user.as_str(), history[0].target.as_str()), ("root@pam", "settings"));
    assert_eq!(
        history[0].detail,
        "balanciness: 10.0 → 4.0; max_moves: 20 → 7; ignore_nodes: [] → [\"pve9\"]"
    );
    let (status, field) = error_field(audit.get("/api/v1/history?limit=0").send().await.unwrap()).await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("limit")));
    a.stop().await;
}

#[tokio::test]
async fn stored_executor_limits_apply_to_the_next_job_without_a_restart() {
    // Started allowing four migrations at once, cluster-wide and per node.
    let exec = ExecConfig {
        max_parallel: 4,
        max_per_node: 4,
        poll_min: Duration::from_millis(20),
        poll_max: Duration::from_millis(100),
        step_timeout: Duration::from_secs(60),
        ..ExecConfig::default()
    };
    let a = e2e::Stack::builder().exec_config(exec).start().await.expect("stack");
    let root = e2e::login(&a.backend_url, "root@pam", "demo").await.unwrap();
    root.put_settings(json!({"max_parallel": 1})).await;
    let plan = root.plan(json!({"balanciness": 2.0})).await;
    let independent = plan.steps.iter().filter(|s| s.depends_on.is_empty()).count();
    assert!(independent >= 2, "the demo plan needs two steps that could run together: {:?}", plan.steps);
    let mut events = a.executor.subscribe();
    let resp = root.post("/api/v1/plan/execute").json(&json!({"plan": plan})).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let ExecuteResponse { job_id } = resp.json().await.unwrap();

    // Every step's state as the executor reports it; at most one may be running at any moment.
    let mut running = BTreeSet::new();
    let (mut most, mut ended) = (0, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ended {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await.expect("the job ended within 60 s") {
            Ok(ExecEvent::Step { job_id: j, step }) if j == job_id => {
                if step.state == StepState::Running {
                    running.insert(step.vmid);
                } else {
                    running.remove(&step.vmid);
                }
                most = most.max(running.len());
            }
            Ok(ExecEvent::End { job }) if job.id == job_id => ended = true,
            Ok(_) => {}
            Err(e) => panic!("events lost: {e}"),
        }
    }
    assert_eq!(most, 1, "the stored max_parallel 1 was not applied");
    let view = wait_job(&root, job_id).await;
    let c = &view.job.counts;
    assert!(c.done >= 2 && c.failed + c.unknown == 0, "{view:?}");
    a.stop().await;
}

/// One sample line of the text format: `name{l="v",…} value`, strictly.
fn parse_sample(line: &str) -> Result<(String, BTreeMap<String, String>, f64), String> {
    let (head, value) = line.rsplit_once(' ').ok_or("no value")?;
    let value: f64 = value.parse().map_err(|_| format!("`{value}` is not a number"))?;
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}').ok_or("labels not closed")?),
        None => (head, ""),
    };
    let name_ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !name_ok {
        return Err(format!("bad metric name `{name}`"));
    }
    let mut out = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name `{k}`"));
        }
        let mut v = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or("label value not closed")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => v.push('\n'),
                    c @ ('\\' | '"') => v.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, c) => v.push(c),
            }
        };
        out.insert(k.to_owned(), v);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok((name.to_owned(), out, value))
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_match_the_cluster() {
    let a = start().await;
    let http = reqwest::Client::new();
    let anon = http.get(format!("{}/metrics", a.backend_url)).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let view: ClusterView = http
        .get(format!("{}/api/v1/cluster", a.backend_url))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp =
        http.get(format!("{}/metrics", a.backend_url)).header("Authorization", TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = resp.text().await.unwrap();

    let mut typed = BTreeSet::new();
    let mut samples: BTreeMap<(String, BTreeMap<String, String>), f64> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["gauge", "counter"].contains(&kind), "line {i}: type {kind}");
            assert!(typed.insert(name.to_owned()), "line {i}: {name} typed twice");
        } else if line.starts_with("# HELP ") {
        } else {
            let (name, labels, value) =
                parse_sample(line).unwrap_or_else(|e| panic!("line {i} `{line}`: {e}"));
            assert!(typed.contains(&name), "line {i}: {name} has no TYPE before it");
            assert!(samples.insert((name, labels), value).is_none(), "line {i}: duplicate sample");
        }
    }
    let get = |name: &str, labels: &[(&str, &str)]| {
        let l = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        *samples.get(&(name.to_owned(), l)).unwrap_or_else(|| panic!("no {name}{labels:?}"))
    };
    assert!(!view.snapshot.nodes.is_empty());
    for n in &view.snapshot.nodes {
        let online = f64::from(n.status == shared::NodeStatus::Online);
        assert_eq!(get("pve_rebalancer_node_online", &[("node", &n.name)]), online);
        let qemu = view
            .snapshot
            .guests
            .iter()
            .filter(|g| g.node == n.name && g.kind == shared::GuestKind::Qemu && !g.template)
            .count();
        assert_eq!(get("pve_rebalancer_node_guests", &[("node", &n.name), ("kind", "qemu")]), qemu as f64);
        let mem = view.memory.iter().find(|l| l.node == n.name).unwrap().percent;
        // The simulator's usage moves a little between two collections.
        let got = get("pve_rebalancer_node_memory_percent", &[("node", &n.name)]);
        assert!((got - mem).abs() < 5.0, "{}: memory {got} vs {mem}", n.name);
    }
    let spread = get("pve_rebalancer_imbalance_spread", &[("resource", "memory")]);
    assert!((spread - view.memory_spread).abs() < 5.0, "spread {spread} vs {}", view.memory_spread);
    assert!(get("pve_rebalancer_imbalance_cv", &[("resource", "memory")]) >= 0.0);
    assert_eq!(get("pve_rebalancer_migrations_in_flight", &[]), 0.0);
    assert_eq!(get("pve_rebalancer_executor_enabled", &[]), 1.0);
    assert!(get("pve_rebalancer_collection_duration_seconds", &[]) > 0.0);
    // The collections for /api/v1/cluster and for this scrape went through the service's client.
    assert!(get("pve_rebalancer_pve_api_requests_total", &[]) >= 2.0);
    assert_eq!(get("pve_rebalancer_pve_api_errors_total", &[]), 0.0);
    a.stop().await;
}

async fn wait_job(s: &e2e::Session, id: u64) -> JobView {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: JobView = s.get(&format!("/api/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
        if v.job.state != JobState::Running {
            return v;
        }
        assert!(Instant::now() < deadline, "job {id} still running: {v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn proxbalance_aliases_answer_and_migrate_moves_the_guest_and_is_audited() {
    let a = start().await;
    let root = e2e::login(&a.backend_url, "root@pam", "demo").await.unwrap();
    let audit = e2e::login(&a.backend_url, "audit@pve", "audit").await.unwrap();
    let http = reqwest::Client::new();

    let health: Value =
        http.get(format!("{}/api/health", a.backend_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(
        http.get(format!("{}/api/analyze", a.backend_url)).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let analyze: Value = audit.get("/api/analyze").send().await.unwrap().json().await.unwrap();
    assert_eq!(analyze["success"], true);
    let view: ClusterView = serde_json::from_value(analyze["data"].clone()).expect("data is a ClusterView");
    let recs: Value = audit.get("/api/recommendations").send().await.unwrap().json().await.unwrap();
    assert_eq!(recs["success"], true);
    let list = recs["recommendations"].as_array().expect("recommendations");
    assert_eq!(recs["count"].as_u64(), Some(list.len() as u64));
    assert_eq!(list.len(), recs["plan"]["steps"].as_array().unwrap().len());
    let refresh: Value = root.post("/api/refresh").send().await.unwrap().json().await.unwrap();
    assert_eq!(refresh["nodes"].as_u64(), Some(view.snapshot.nodes.len() as u64));

    // The smallest running VM onto the emptiest other online node.
    let target = e2e::least_used_online_node(&view);
    let guest = view
        .snapshot
        .guests
        .iter()
        .filter(|g| g.node != target && g.kind == shared::GuestKind::Qemu && !g.template && g.tags.is_empty())
        .min_by_key(|g| g.mem_max)
        .unwrap()
        .clone();

    let (status, field) = error_field(
        root.post("/api/migrate")
            .json(&json!({"vmid": guest.vmid, "target_node": "nowhere"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("target_node")));
    let denied = audit.post("/api/migrate").json(&json!({"vmid": guest.vmid, "target_node": target})).send();
    assert_eq!(denied.await.unwrap().status(), StatusCode::FORBIDDEN);

    let resp = root.post("/api/migrate").json(&json!({"vmid": guest.vmid, "target_node": target})).send();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "{}", resp.text().await.unwrap());
    let started: Value = resp.json().await.unwrap();
    let job_id = started["job_id"].as_u64().expect("job_id");
    let job = wait_job(&root, job_id).await;
    assert_eq!(job.job.state, JobState::Done, "{job:?}");
    let after: ClusterView = root.get("/api/v1/cluster").send().await.unwrap().json().await.unwrap();
    let moved = after.snapshot.guests.iter().find(|g| g.vmid == guest.vmid).unwrap();
    assert_eq!(moved.node, target);

    let history: Vec<AuditEntry> =
        audit.get("/api/v1/history?user=root@pam").send().await.unwrap().json().await.unwrap();
    let entry = history.iter().find(|e| e.action == "plan.execute").expect("plan.execute recorded");
    assert_eq!((entry.job_id, entry.target.clone()), (Some(job_id), format!("job/{job_id}")));
    assert!(
        entry.detail.contains(&format!("{} {} → {}", guest.vmid, guest.node, target)),
        "{}",
        entry.detail
    );
    a.stop().await;
}

#[tokio::test]
async fn maintenance_enter_and_exit_are_in_the_history() {
    let a = start().await;
    let root = e2e::login(&a.backend_url, "root@pam", "demo").await.unwrap();
    let view: ClusterView = root.get("/api/v1/cluster").send().await.unwrap().json().await.unwrap();
    // The least loaded online node: its guests fit elsewhere.
    let node = e2e::least_used_online_node(&view);
    let preview = root.post(&format!("/api/v1/maintenance/{node}/enter")).json(&json!({"preview": true}));
    assert!(preview.send().await.unwrap().status().is_success());
    let resp = root.post(&format!("/api/v1/maintenance/{node}/enter")).json(&json!({})).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let answer: Value = resp.json().await.unwrap();
    if let Some(id) = answer["job_id"].as_u64() {
        wait_job(&root, id).await;
    }
    let resp = root.post(&format!("/api/v1/maintenance/{node}/exit")).json(&json!({})).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());

    let history: Vec<AuditEntry> = root.get("/api/v1/history").send().await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    // Newest first; the preview changed nothing and is not recorded.
    assert_eq!(actions, ["maintenance.exit", "maintenance.enter"], "{history:?}");
    assert!(history.iter().all(|e| e.target == format!("node/{node}") && e.user == "root@pam"));
    assert_eq!(history[1].job_id, answer["job_id"].as_u64());
    let steps = answer["plan"]["steps"].as_array().unwrap().len();
    assert_eq!(history[1].detail, format!("evacuation: {steps} steps"));
    assert!(
        history[0].detail.starts_with("no return home: ") && history[0].detail.ends_with(" steps"),
        "{}",
        history[0].detail
    );
    a.stop().await;
}

/// `DELETE /api/v1/settings/{field}` forgets one stored value: the default applies again (its
/// source is no longer "stored"), the other stored fields stay, the reset is audited; a
/// misspelt field is refused by name and an auditor may not reset.
#[tokio::test]
async fn one_stored_field_is_reset_to_the_default_and_the_others_stay() {
    let a = start().await;
    let root = e2e::login(&a.backend_url, "root@pam", "demo").await.unwrap();
    let audit = e2e::login(&a.backend_url, "audit@pve", "audit").await.unwrap();
    let url = |path: &str| format!("{}/api/v1/settings{path}", a.backend_url);
    let resp = root.http.put(url("")).header("CSRFPreventionToken", &root.csrf);
    let v: SettingsView =
        resp.json(&json!({"balanciness": 4, "min_gain": 2})).send().await.unwrap().json().await.unwrap();
    assert_eq!(v.sources.get("balanciness"), Some(&shared::policy::Source::Stored));

    let resp = root.http.delete(url("/min_gian")).header("CSRFPreventionToken", &root.csrf).send();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = resp.json().await.unwrap();
    assert!(err["detail"].as_str().unwrap().contains("did you mean `min_gain`"), "{err}");
    let resp = audit.http.delete(url("/balanciness")).header("CSRFPreventionToken", &audit.csrf).send();
    assert_eq!(resp.await.unwrap().status(), StatusCode::FORBIDDEN);

    let resp = root.http.delete(url("/balanciness")).header("CSRFPreventionToken", &root.csrf).send();
    let v: SettingsView = resp.await.unwrap().json().await.unwrap();
    assert_eq!(v.settings.balanciness, Settings::default().balanciness);
    assert_eq!(v.sources.get("balanciness"), None, "the default again: {:?}", v.sources);
    assert_eq!(
        (v.settings.min_gain, v.sources.get("min_gain")),
        (2.0, Some(&shared::policy::Source::Stored))
    );
    let again: SettingsView = audit.get("/api/v1/settings").send().await.unwrap().json().await.unwrap();
    assert_eq!(again.settings, v.settings, "the reset is stored, not only answered");

    let history: Vec<AuditEntry> =
        audit.get("/api/v1/history?action=settings.reset").send().await.unwrap().json().await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(
        history[0].detail.starts_with("balanciness reset") && history[0].detail.contains("4.0 → 10.0"),
        "{}",
        history[0].detail
    );
    a.stop().await;
}
