//! Conformance against an independent fake PVE: PyPI `fakepve` 0.5.0, installed into
//! `target/venv` by `xtask/setup.sh`, run as a real process on 127.0.0.1 (HTTPS, a throw-away CA
//! made here). Our `PveClient`, `collect::snapshot` and the executor talk to it: ticket login,
//! collection, task polling with a `TASK ERROR`, a locked VM (PVE's own wording from fakepve's
//! error catalogue), an offline node, and an expired ticket.
//!
//! fakepve is driven by a small Python program (below) that imports the package, serves it and
//! takes scenario calls (`fail`, `set_node_offline`, `snapshot_lock`, `migrate`, ...) as JSON lines
//! on stdin; it exits when stdin closes, so it never outlives the test. Where fakepve and real PVE
//! (or our simulator) differ, docs/RELIABILITY.md says so.

use backend::execute::{ExecConfig, Executor, Journal};
use backend::pve::{Credentials, PveClient, PveError, PveOptions};
use serde_json::{json, Value};
use shared::api::{JobState, StepState};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;
use test_support::{executor_with, moves as plan, temp_dir, workspace_root, Scratch};

const PASSWORD: &str = "fake-pve-S3cret";

/// The driver: serves a FakePve with the nodes and guests of argv[1] and answers JSON calls.
const DRIVER: &str = r#"
import asyncio, json, sys, urllib.parse
from fakepve import FakePve

class Pve(FakePve):
    # Real PVE URI-unescapes the PVEAuthCookie value (its UI and our client escape it: the ticket
    # holds ':' and '='); fakepve 0.5.0 looks the raw value up. Accept both spellings.
    def issue_ticket(self, user):
        ticket, csrf = super().issue_ticket(user)
        self.tickets[urllib.parse.quote(ticket, safe='')] = self.tickets[ticket]
        return ticket, csrf

async def main():
    cfg = json.loads(sys.argv[1])
    pve = Pve(user='root@pam', password=cfg['password'], host='127.0.0.1', port=0)
    pve.time_scale = cfg['time_scale']
    pve.version = cfg.get('version', pve.version)
    for n in cfg['nodes']:
        pve.add_node(n)
    for g in cfg['guests']:
        pve.add_vm(g['vmid'], g['name'], node=g['node'], status=g.get('status', 'running'),
                   config=g.get('config', {}))
    await pve.start(cfg['cert'], cfg['key'])
    print('READY', pve.port, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        try:
            if cmd['call'] == 'where':
                vm = pve.vm(cmd['args'][0])
                res = vm.node if vm else None
            else:
                res = getattr(pve, cmd['call'])(*cmd.get('args', []), **cmd.get('kwargs', {}))
                if asyncio.iscoroutine(res):
                    res = await res
            ok = isinstance(res, (str, int, float, bool, type(None)))
            out = {'ok': True, 'result': res if ok else repr(res)}
        except Exception as e:
            out = {'ok': False, 'error': repr(e)}
        print(json.dumps(out), flush=True)
    await pve.stop()

asyncio.run(main())
"#;

/// A throw-away CA and a leaf for 127.0.0.1 (fakepve's own `make_cert` needs `cryptography`,
/// which the venv does not have): (ca pem, cert file, key file).
fn tls_files(dir: &Path) -> (String, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "fakepve test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let (cert, key) = (dir.join("fakepve.crt"), dir.join("fakepve.key"));
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca.pem(), cert, key)
}

/// A running fakepve process; killed when dropped.
struct FakePve {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    url: String,
    ca_pem: String,
    /// Its certificates and driver script, removed when it ends.
    _dir: Scratch,
}

impl FakePve {
    fn start(nodes: &[&str], guests: Value, time_scale: f64) -> FakePve {
        let python = workspace_root().join("target/venv/bin/python");
        let fakepve = workspace_root().join("target/venv/bin/fakepve");
        assert!(
            python.exists() && fakepve.exists(),
            "fakepve is not installed at {}: run xtask/setup.sh (it installs PyPI fakepve 0.5.0 into target/venv)",
            fakepve.display()
        );
        let dir = temp_dir("srv");
        let (ca_pem, cert, key) = tls_files(&dir);
        let script = dir.join("driver.py");
        std::fs::write(&script, DRIVER).unwrap();
        let cfg = json!({"password": PASSWORD, "time_scale": time_scale, "nodes": nodes, "guests": guests,
                         "cert": cert, "key": key});
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(cfg.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fakepve");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut pve = FakePve { child, stdin, lines, url: String::new(), ca_pem, _dir: dir };
        // Bounded wait for readiness: the `READY <port>` line.
        let line = pve.next_line(Duration::from_secs(30));
        let port = line.strip_prefix("READY ").unwrap_or_else(|| panic!("fakepve did not start: {line:?}"));
        pve.url = format!("https://127.0.0.1:{}", port.trim());
        pve
    }

    fn next_line(&self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!("fakepve said nothing within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("fakepve exited (see its stderr above)"),
        }
    }

    /// Calls a scenario method of the FakePve (see its `model.py`); returns its result.
    fn call(&mut self, call: &str, args: Value, kwargs: Value) -> Value {
        let line = json!({"call": call, "args": args, "kwargs": kwargs}).to_string();
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("write to fakepve");
        let answer: Value =
            serde_json::from_str(&self.next_line(Duration::from_secs(30))).expect("JSON answer");
        assert_eq!(answer["ok"], json!(true), "fakepve {call}: {answer}");
        answer["result"].clone()
    }

    fn where_is(&mut self, vmid: u32) -> Option<String> {
        self.call("where", json!([vmid]), json!({})).as_str().map(str::to_owned)
    }

    fn client_with(&self, password: &str) -> Arc<PveClient> {
        Arc::new(
            PveClient::new(PveOptions {
                base_url: self.url.clone(),
                credentials: Credentials::Password { user: "root@pam".into(), password: password.into() },
                ca_pem: Some(self.ca_pem.clone()),
                insecure: false,
                timeout: Duration::from_secs(10),
            })
            .expect("client"),
        )
    }

    fn client(&self) -> Arc<PveClient> {
        self.client_with(PASSWORD)
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn guests() -> Value {
    json!([
        {"vmid": 100, "name": "web", "node": "pve1", "config": {"memory": 4096, "cores": 2}},
        {"vmid": 101, "name": "db", "node": "pve1", "config": {"memory": 8192, "cores": 4}},
        {"vmid": 200, "name": "app", "node": "pve2", "config": {"memory": 2048}},
        {"vmid": 300, "name": "off", "node": "pve3", "status": "stopped"},
    ])
}

fn fast_config() -> ExecConfig {
    ExecConfig {
        step_timeout: Duration::from_secs(10),
        poll_min: Duration::from_millis(20),
        poll_max: Duration::from_millis(100),
        max_unknown_polls: 10,
        ha_child_wait: Duration::from_secs(2),
        lock_ttl: Duration::from_secs(10),
        ..ExecConfig::default()
    }
}

fn executor(pve: Arc<PveClient>, dir: &Path) -> Arc<Executor> {
    executor_with(pve, dir, &dir.join("lock"), fast_config())
}

async fn run(ex: &Arc<Executor>, p: &shared::Plan) -> shared::api::JobView {
    let id = ex.start(p, None, "conformance@pve").expect("job starts");
    ex.wait_finished(id, Duration::from_secs(30)).await.expect("job ends within 30 s")
}

/// Polls a task with our client until it stops (bounded): its final status answer.
async fn task_end(pve: &PveClient, upid: &str) -> Value {
    let node = upid.split(':').nth(1).expect("UPID node");
    let path = format!("/nodes/{node}/tasks/{}/status", backend::execute::upid::path_segment(upid));
    for _ in 0..200 {
        let v: Value = pve.get(&path).await.expect("task status");
        if v["status"] == "stopped" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {upid} did not stop within 5 s");
}

#[tokio::test]
async fn ticket_login_and_collection_read_fakepves_answers() {
    let pve = FakePve::start(&["pve1", "pve2", "pve3"], guests(), 0.01);
    let client = pve.client();
    let snap = backend::collect::snapshot(&client, 1).await.expect("snapshot from fakepve");
    let names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["pve1", "pve2", "pve3"], "{snap:#?}");
    assert_eq!(snap.guests.len(), 4, "{snap:#?}");
    let g101 = snap.guests.iter().find(|g| g.vmid == 101).expect("101");
    assert_eq!(g101.node, "pve1");
    assert_eq!(g101.mem_max, 8192 * 1024 * 1024, "maxmem from the VM config");
    // fakepve answers `/cluster/ha/rules` from the schema with a placeholder row lacking `type`:
    // our reader must drop it rather than invent a rule.
    assert!(snap.ha_rules.is_empty(), "{:?}", snap.ha_rules);
    let v: Value = client.get("/version").await.unwrap();
    assert_eq!(backend::execute::decide::pve_major(v["version"].as_str().unwrap()), Some(9));

    // A wrong password: PVE's 401 and its wording, not a decode error.
    let bad = pve.client_with("wrong");
    match bad.get::<Value>("/version").await {
        Err(PveError::Api { status: 401, message, .. }) => assert_eq!(message, "authentication failure"),
        other => panic!("expected PVE's 401, got {other:?}"),
    }
}

#[tokio::test]
async fn a_task_error_is_read_with_pves_words_and_a_real_migration_is_followed() {
    let mut pve = FakePve::start(&["pve1", "pve2", "pve3"], guests(), 0.01);
    let client = pve.client();
    // fakepve's catalogue error `migration_aborted` is raised inside the worker, as in PVE:
    // the POST answers a UPID, and the task ends with `TASK ERROR: migration aborted`.
    pve.call("fail", json!(["POST", "/nodes/pve1/qemu/100/migrate"]), json!({"error": "migration_aborted"}));
    let upid = client
        .post("/nodes/pve1/qemu/100/migrate", &[("target", "pve2".into()), ("online", "1".into())])
        .await
        .expect("a UPID");
    let upid = upid.as_str().expect("UPID string").to_owned();
    assert!(backend::execute::upid::Upid::parse(&upid).is_some(), "our UPID parser reads {upid}");
    let end = task_end(&client, &upid).await;
    assert_eq!(
        backend::execute::decide::task_outcome(&end),
        Some(backend::execute::decide::TaskOutcome::Failed("migration aborted".into())),
        "{end}"
    );
    assert_eq!(pve.where_is(100).as_deref(), Some("pve1"));

    // A migration someone runs (fakepve's scenario `migrate`: lock `migrate`, then the VM moves):
    // the executor's restart path follows its UPID to the end and confirms the landing.
    let upid: String =
        pve.call("migrate", json!([101, "pve3"]), json!({"secs": 20})).as_str().expect("UPID").to_owned();
    assert!(upid.contains(":qmigrate:101:"), "{upid}");
    let dir = temp_dir("recover");
    {
        let journal = Journal::open(&dir.join("journal.sqlite")).unwrap();
        let p = plan(&[(101, "pve1", "pve3")]);
        let mut steps = backend::execute::decide::job_steps(&p, None).unwrap();
        steps[0].state = StepState::Running;
        steps[0].started_at = Some(std::time::UNIX_EPOCH.elapsed().unwrap().as_secs());
        steps[0].upid = Some(upid.clone());
        journal.create_job(&serde_json::to_string(&p).unwrap(), "t", 1, &steps).unwrap();
    }
    let ex = executor(client.clone(), &dir);
    assert_eq!(ex.recover().await.expect("recover"), 1);
    let v = ex.job(1).unwrap().unwrap();
    assert_eq!(v.job.state, JobState::Interrupted);
    assert_eq!(v.steps[0].state, StepState::Done, "{v:#?}");
    assert_eq!(v.steps[0].message.as_deref(), Some("after restart: on pve3"));
    assert_eq!(pve.where_is(101).as_deref(), Some("pve3"));
}

#[tokio::test]
async fn a_locked_vm_is_refused_in_pves_words_and_never_submitted() {
    let mut pve = FakePve::start(&["pve1", "pve2", "pve3"], guests(), 0.01);
    let client = pve.client();
    // 1. A lock /cluster/resources shows (an interrupted backup): our precheck skips the step.
    pve.call("snapshot_lock", json!([100, "backup"]), json!({}));
    // 2. A lock only PVE's migrate check knows of: PVE's catalogue text reaches the step.
    pve.call("fail", json!(["GET", "/nodes/pve1/qemu/101/migrate"]), json!({"error": "locked"}));
    let dir = temp_dir("locked");
    let v =
        run(&executor(client.clone(), &dir), &plan(&[(100, "pve1", "pve2"), (101, "pve1", "pve3")])).await;
    let s100 = &v.steps[0];
    assert_eq!(s100.state, StepState::Skipped, "{v:#?}");
    assert_eq!(s100.message.as_deref(), Some("guest is locked (backup)"));
    let s101 = &v.steps[1];
    assert_eq!(s101.state, StepState::Skipped, "{v:#?}");
    let m = s101.message.clone().unwrap_or_default();
    assert!(m.starts_with("PVE's migration check refused:") && m.contains("is locked"), "{m}");
    assert!(s100.upid.is_none() && s101.upid.is_none(), "nothing submitted");
    // And the direct call: PVE's HTTP 500 with `VM is locked (...)` is carried verbatim.
    pve.call("fail", json!(["POST", "/nodes/pve1/qemu/100/migrate"]), json!({"error": "locked"}));
    match client.post("/nodes/pve1/qemu/100/migrate", &[("target", "pve2".into())]).await {
        Err(PveError::Api { status: 500, message, .. }) => {
            assert!(message.contains("is locked ("), "{message}")
        }
        other => panic!("expected PVE's 500, got {other:?}"),
    }
    assert_eq!(pve.where_is(100).as_deref(), Some("pve1"));
    assert_eq!(pve.where_is(101).as_deref(), Some("pve1"));
}

#[tokio::test]
async fn an_offline_node_is_seen_and_steps_touching_it_are_not_submitted() {
    let mut pve = FakePve::start(&["pve1", "pve2", "pve3"], guests(), 0.01);
    let client = pve.client();
    pve.call("set_node_offline", json!(["pve2"]), json!({}));
    let snap = backend::collect::snapshot(&client, 1).await.expect("snapshot");
    let pve2 = snap.nodes.iter().find(|n| n.name == "pve2").expect("pve2 listed");
    assert_eq!(pve2.status, shared::NodeStatus::Offline, "{pve2:?}");
    // Proxied calls to an offline node: PVE's 595 `No route to host`.
    match client.get::<Value>("/nodes/pve2/qemu/200/migrate").await {
        Err(PveError::Api { status: 595, message, .. }) => assert_eq!(message, "No route to host"),
        other => panic!("expected 595, got {other:?}"),
    }
    let dir = temp_dir("offline");
    // To an offline target, and from an offline source.
    let v = run(&executor(client, &dir), &plan(&[(100, "pve1", "pve2"), (200, "pve2", "pve3")])).await;
    assert_eq!(v.steps[0].state, StepState::Skipped, "{v:#?}");
    assert_eq!(v.steps[0].message.as_deref(), Some("target node pve2 is offline"));
    assert!(
        matches!(v.steps[1].state, StepState::Skipped | StepState::Failed),
        "a step from an offline node must not run: {v:#?}"
    );
    assert!(v.steps[1].message.as_deref().unwrap_or("").contains("No route to host"), "{v:#?}");
    assert!(v.steps.iter().all(|s| s.upid.is_none()), "nothing submitted");
    assert_eq!(pve.where_is(100).as_deref(), Some("pve1"));
    assert_eq!(pve.where_is(200).as_deref(), Some("pve2"));
}

#[tokio::test]
async fn fakepves_migrate_precondition_is_a_schema_placeholder_and_the_executor_refuses_it() {
    // fakepve does not model `GET /nodes/{n}/qemu/{id}/migrate`: it answers a value built from the
    // schema, `local_resources: ["fake"]`. Our executor must read that as a blocker (never submit
    // a migration PVE's own check objects to).
    let pve = FakePve::start(&["pve1", "pve2"], guests(), 0.01);
    let client = pve.client();
    let pre: Value = client.get("/nodes/pve1/qemu/100/migrate").await.unwrap();
    assert!(pre["local_resources"].as_array().is_some_and(|a| !a.is_empty()), "{pre}");
    let dir = temp_dir("precond");
    let v = run(&executor(client, &dir), &plan(&[(100, "pve1", "pve2")])).await;
    assert_eq!(v.steps[0].state, StepState::Skipped, "{v:#?}");
    assert!(v.steps[0].message.as_deref().unwrap_or("").starts_with("uses local devices"), "{v:#?}");
    assert!(v.steps[0].upid.is_none());
}

#[tokio::test]
async fn a_revoked_ticket_is_renewed_by_logging_in_again() {
    // PVE tickets expire after 2 h; fakepve can forget them all at once. PVE's 401 wording for
    // a dead ticket is `permission denied - invalid PVE ticket`; our client logs in again once.
    let mut pve = FakePve::start(&["pve1"], guests(), 0.01);
    let client = pve.client();
    let _: Value = client.get("/version").await.expect("logged in");
    pve.call("revoke_tickets", json!([]), json!({}));
    let raw = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pve.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = raw
        .get(format!("{}/api2/json/version", pve.url))
        .header("Cookie", "PVEAuthCookie=PVE%3Aroot%40pam%3A00000000%3A%3Astale")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "permission denied - invalid PVE ticket\n");
    let v: Value = client.get("/version").await.expect("the client logs in again after PVE's 401");
    assert_eq!(v["version"], "9.0.10");
}
