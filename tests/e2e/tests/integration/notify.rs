//! Notifications: a job run by the real executor against the simulator sends exactly one
//! well-formed message per target kind to a real loopback HTTP receiver.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use backend::notify::{Kind, Notifier, NotifyConfig, Target};
use serde_json::Value;
use shared::api::JobState;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = axum::Router::new().fallback(
        |State(got): State<Received>, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            got.lock().unwrap().push((uri.path().to_owned(), headers, body));
            "ok"
        },
    );
    let app = app.with_state(got.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

/// What the receiver got once `n` messages are in (at most 10 s), plus anything arriving right
/// behind them (a duplicate would).
async fn wait_messages(got: &Received, n: usize) -> Vec<(String, HeaderMap, Bytes)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = got.lock().unwrap().clone();
    all
}

fn target(kind: Kind, url: Option<String>) -> Target {
    let yaml = serde_json::json!({
        "kind": kind.as_str(), "url": url, "token": "tok-123", "chat_id": "-100"
    });
    serde_json::from_value(yaml).unwrap()
}

#[tokio::test]
async fn a_finished_job_sends_one_well_formed_message_per_target_kind() {
    let (hook, got) = receiver().await;
    let config = NotifyConfig {
        targets: vec![
            target(Kind::Json, Some(format!("{hook}/json"))),
            target(Kind::Gotify, Some(format!("{hook}/gotify"))),
            target(Kind::Ntfy, Some(format!("{hook}/ntfy/topic"))),
            target(Kind::Telegram, Some(format!("{hook}/tg"))),
            target(Kind::Slack, Some(format!("{hook}/slack/T0/B0/x"))),
        ],
        alert: None,
        timeout_secs: Some(5),
    };

    let stack = e2e::Stack::builder().start().await.unwrap();
    let (pve, executor) = (stack.pve.clone(), stack.executor.clone());
    let follower = Arc::new(Notifier::new(&config)).follow(&executor, None);

    // One small VM onto another node, planned as any move (capacity and rules hold).
    let snap = backend::collect::snapshot(&pve, 0).await.unwrap();
    let plan = smallest_vm_moved(&snap);
    assert!(!plan.steps.is_empty(), "no move planned: {:?}", plan.notes);
    let id = executor.start(&plan, None, "root@pam").unwrap();
    let job = executor.wait_finished(id, Duration::from_secs(60)).await.expect("job ended");
    assert_eq!(job.job.state, JobState::Done, "{job:?}");

    let mut got = wait_messages(&got, 5).await;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/gotify/message", "/json", "/ntfy/topic", "/slack/T0/B0/x", "/tg/bottok-123/sendMessage"],
        "exactly one message per target"
    );
    let json = |b: &Bytes| serde_json::from_slice::<Value>(b).expect("JSON body");
    let title = format!("pve-rebalancer: job {id} done");

    let (_, h, b) = &got[0];
    assert_eq!(h["x-gotify-key"], "tok-123");
    let v = json(b);
    assert_eq!((v["title"].as_str(), v["priority"].as_u64()), (Some(title.as_str()), Some(4)));
    let (_, h, b) = &got[1];
    assert_eq!(h["authorization"], "Bearer tok-123");
    let v = json(b);
    assert_eq!((v["event"].as_str(), v["job_id"].as_u64()), (Some("job_ended"), Some(id)));
    assert!(v["message"].as_str().unwrap().contains(&format!("{} done, 0 failed", plan.steps.len())), "{v}");
    let (_, h, b) = &got[2];
    assert_eq!(h["title"], title.as_str());
    assert!(std::str::from_utf8(b).unwrap().starts_with(&format!("Job {id} started by root@pam ended done")));
    let (_, _, b) = &got[3];
    assert!(json(b)["text"].as_str().unwrap().starts_with(&format!("*{title}*\n")));
    let (_, _, b) = &got[4];
    let v = json(b);
    assert_eq!(v["chat_id"], "-100");
    assert!(v["text"].as_str().unwrap().starts_with(&title));

    follower.abort();
    stack.stop().await;
}

#[tokio::test]
async fn a_maintenance_evacuation_also_sends_maintenance_done_naming_the_node() {
    let (hook, got) = receiver().await;
    let config = NotifyConfig {
        targets: vec![target(Kind::Json, Some(format!("{hook}/json")))],
        alert: None,
        timeout_secs: Some(5),
    };
    let stack = e2e::Stack::builder().start().await.unwrap();
    let (pve, executor) = (stack.pve.clone(), stack.executor.clone());
    let maintenance = stack.maintenance.clone();
    let follower = Arc::new(Notifier::new(&config)).follow(&executor, Some(maintenance.clone()));

    // The least loaded online node, so its guests fit elsewhere.
    let snap = backend::collect::snapshot(&pve, 0).await.unwrap();
    let view = shared::api::ClusterView::of(snap);
    let node = e2e::least_used_online_node(&view);
    let allow = |_: &shared::Plan| Ok(());
    let caller = backend::maintenance::Caller { userid: "root@pam", authorize: &allow };
    let req = shared::api::MaintenanceRequest::default();
    let answer = maintenance
        .enter(&pve, Some(&executor), &node, &req, &shared::PlanRequest::default(), caller)
        .await
        .expect("enter");
    let id = answer.job_id.expect("the node had guests to evacuate");
    executor.wait_finished(id, Duration::from_secs(60)).await.expect("job ended");

    let got = wait_messages(&got, 2).await;
    let mut events: Vec<(String, Option<u64>, Option<String>)> = got
        .iter()
        .map(|(_, _, b)| {
            let v: Value = serde_json::from_slice(b).unwrap();
            (
                v["event"].as_str().unwrap().to_owned(),
                v["job_id"].as_u64(),
                v["node"].as_str().map(str::to_owned),
            )
        })
        .collect();
    events.sort();
    assert_eq!(
        events,
        [("job_ended".into(), Some(id), None), ("maintenance_done".into(), Some(id), Some(node))],
        "one job message and one maintenance message"
    );
    follower.abort();
    stack.stop().await;
}

#[tokio::test]
async fn a_failed_migration_sends_migration_failed_with_pves_words_and_the_job_end() {
    let (hook, got) = receiver().await;
    let config = NotifyConfig {
        targets: vec![target(Kind::Json, Some(format!("{hook}/json")))],
        alert: None,
        timeout_secs: Some(5),
    };
    let stack = e2e::Stack::builder().start().await.unwrap();
    let (sim, pve, executor) = (&stack.sim, stack.pve.clone(), stack.executor.clone());
    let follower = Arc::new(Notifier::new(&config)).follow(&executor, None);

    let snap = backend::collect::snapshot(&pve, 0).await.unwrap();
    let plan = smallest_vm_moved(&snap);
    assert_eq!(plan.steps.len(), 1, "{:?}", plan.notes);
    let vmid = plan.steps[0].vmid;
    let fault = pve_sim::FaultSpec::TaskError {
        vmid: Some(vmid),
        count: 1,
        message: "copy failed: broken pipe".into(),
    };
    sim.arm_fault(&fault).expect("fault armed");
    let id = executor.start(&plan, None, "root@pam").unwrap();
    let job = executor.wait_finished(id, Duration::from_secs(60)).await.expect("job ended");
    assert_eq!(job.job.state, JobState::Failed, "{job:?}");

    let got = wait_messages(&got, 2).await;
    let mut bodies: Vec<Value> = got.iter().map(|(_, _, b)| serde_json::from_slice(b).unwrap()).collect();
    bodies.sort_by(|a, b| a["event"].as_str().cmp(&b["event"].as_str()));
    let events: Vec<&str> = bodies.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["job_ended", "migration_failed"]);
    assert_eq!(bodies[0]["title"], format!("pve-rebalancer: job {id} failed"));
    let text = bodies[1]["message"].as_str().unwrap();
    assert!(text.contains(&format!("{vmid} ")) && text.contains("copy failed: broken pipe"), "{text}");
    follower.abort();
    stack.stop().await;
}

/// A plan moving the smallest plain VM (no tags, not HA) to another online node, planned as
/// any move (capacity and rules hold).
fn smallest_vm_moved(snap: &shared::ClusterSnapshot) -> shared::Plan {
    let guest = snap
        .guests
        .iter()
        .filter(|g| g.kind == shared::GuestKind::Qemu && !g.template && g.tags.is_empty() && !g.ha_managed)
        .min_by_key(|g| g.mem_max)
        .unwrap();
    let to =
        snap.nodes.iter().find(|n| n.name != guest.node && n.status == shared::NodeStatus::Online).unwrap();
    let home = shared::evacuate::GuestHome { vmid: guest.vmid, node: to.name.clone() };
    shared::evacuate::return_home(snap, &[home], &shared::PlanRequest::default())
}
