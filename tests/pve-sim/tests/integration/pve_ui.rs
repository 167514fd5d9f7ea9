//! What PVE's own web UI asks on load and on the views an admin opens, answered as PVE does, so
//! the real UI runs against the simulator without errors.

use crate::common::*;

#[tokio::test]
async fn cluster_options_list_the_allowed_tags() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let options = s.data("/cluster/options").await;
    // PVE's UI iterates over it ("tags is not iterable" without it).
    let tags = options["allowed-tags"].as_array().expect("allowed-tags is an array");
    let mut expected: Vec<String> =
        sim.with_cluster(|c| c.guests.values().flat_map(|g| g.spec.tags.clone()).collect());
    expected.sort();
    expected.dedup();
    let got: Vec<String> = tags.iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    assert_eq!(got, expected, "every guest tag, sorted, once");

    // Registered tags: only for users with Sys.Modify on / (pve-guest-common's get_allowed_tags).
    let registered = expected[0].clone();
    sim.with_cluster(|c| c.options["registered-tags"] = serde_json::json!([registered, "reserved"]));
    let tags_of = |v: &serde_json::Value| -> Vec<String> {
        v["allowed-tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
    };
    let mut with_registered = expected.clone();
    with_registered.push("reserved".into());
    with_registered.sort();
    assert_eq!(tags_of(&s.data("/cluster/options").await), with_registered, "root");
    let as_user = |user: &'static str, pass: &'static str| {
        let sim = &sim;
        async move {
            let c = client(sim);
            let (ticket, csrf) = login(&c, sim, user, pass).await;
            Session { c, base: url(sim, ""), ticket, csrf }
        }
    };
    let auditor = as_user("audit@pve", "audit").await.data("/cluster/options").await;
    let unregistered: Vec<String> = expected.iter().filter(|t| **t != registered).cloned().collect();
    assert_eq!(tags_of(&auditor), unregistered, "an auditor: the guests' tags, no registered one");
    let nobody = as_user("nobody@pve", "nobody").await.data("/cluster/options").await;
    assert_eq!(tags_of(&nobody), Vec::<String>::new(), "no guest visible, no tag");
    let keys: Vec<&String> = nobody.as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| ["console", "tag-style", "allowed-tags"].contains(&k.as_str())), "{keys:?}");
}

#[tokio::test]
async fn ceph_status_says_ceph_is_not_installed() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let node = sim.with_cluster(|c| c.nodes.keys().next().unwrap().clone());
    let (status, body) = s.get(&format!("/nodes/{node}/ceph/status")).await;
    // PVE's words (pve-manager: the handler's check_ceph_inited dies in check_ceph_installed for
    // ceph-mon), HTTP 500 as for any die; its UI then tries the next node and hides Ceph.
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["message"], "binary not installed: /usr/bin/ceph-mon\n", "{body}");
}

/// The calls PVE 9's web UI makes (pve-manager `www/manager6`, widget toolkit `src/`), by view.
/// Each must answer 200 with data PVE's schema allows; the UI shows an error dialog for several
/// of them (node Summary's subscription and repositories, the login's `checked_command`).
fn ui_calls(node: &str, qemu: &str, lxc: &str, upid: &str) -> Vec<(&'static str, String)> {
    let upid = upid.replace(':', "%3A");
    [
        // Workspace.onLogin, UIOptions, ResourceStore, the status panel's Tasks and Cluster log.
        ("load", "/version".to_owned()),
        ("load", "/cluster/options".into()),
        ("load", "/access/domains".into()),
        ("load", "/cluster/resources".into()),
        ("load", "/cluster/tasks".into()),
        ("load", "/cluster/log".into()),
        ("load", "/nodes/localhost/subscription".into()),
        // dc/Summary (+ Health; its Ceph call is the one PVE itself answers with an error).
        ("datacenter summary", "/cluster/status".into()),
        // node/Config's status store, node/Summary.
        ("node summary", format!("/nodes/{node}/status")),
        ("node summary", format!("/nodes/{node}/rrddata?timeframe=hour&cf=AVERAGE")),
        ("node summary", format!("/nodes/{node}/apt/repositories")),
        ("node summary", format!("/nodes/{node}/subscription")),
        ("node summary", format!("/nodes/{node}/apt/versions")),
        // The widget toolkit's NotesView: datacenter, node and guest notes.
        ("notes", format!("/nodes/{node}/config")),
        // qemu/lxc Config's status store, the Summary's graphs and notes.
        ("guest summary", format!("{qemu}/status/current")),
        ("guest summary", format!("{qemu}/rrddata?timeframe=hour&cf=AVERAGE")),
        ("guest summary", format!("{qemu}/config")),
        ("guest summary", format!("{lxc}/status/current")),
        ("guest summary", format!("{lxc}/rrddata?timeframe=day&cf=MAX")),
        ("guest summary", format!("{lxc}/config")),
        // node/Tasks (widget toolkit) and TaskViewer.
        ("tasks", format!("/nodes/{node}/tasks?start=0&limit=50")),
        ("tasks", format!("/nodes/{node}/tasks/{upid}/status")),
        ("tasks", format!("/nodes/{node}/tasks/{upid}/log?start=0&limit=500")),
        // ha/Status, ha/Resources, ha/Rules.
        ("HA", "/cluster/ha/status/current".into()),
        ("HA", "/cluster/ha/resources".into()),
        ("HA", "/cluster/ha/rules".into()),
    ]
    .into_iter()
    .collect()
}

fn segs(path: &str) -> Vec<String> {
    let p = path.split('?').next().unwrap();
    p.split('/').filter(|s| !s.is_empty()).map(|s| s.replace("%3A", ":")).collect()
}

#[tokio::test]
async fn every_call_of_pves_ui_on_load_and_its_admin_views_answers_as_pve() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let version = sim.with_cluster(|c| c.version.clone());
    let schema = pve_sim::schema::for_version(&version).expect("bundled schema");
    let (st, up) = s.post("/nodes/pve1/qemu/104/migrate", &[("target", "pve3"), ("online", "1")]).await;
    assert_eq!(st, 200, "{up}");
    let upid = up["data"].as_str().unwrap().to_owned();
    s.wait_task("pve1", &upid).await;
    let guests = s.data("/cluster/resources?type=vm").await;
    let base = |ty: &str| {
        let g = guests.as_array().unwrap().iter().find(|g| g["type"] == ty).expect("a guest of the type");
        format!("/nodes/{}/{ty}/{}", g["node"].as_str().unwrap(), g["vmid"])
    };
    let calls = ui_calls("pve1", &base("qemu"), &base("lxc"), &upid);
    assert!(calls.len() >= 26, "the list covers load and six views");
    let mut errors = Vec::new();
    for (view, path) in &calls {
        let (st, body) = s.get(path).await;
        if st != 200 {
            errors.push(format!("{view}: GET {path}: HTTP {st} {body}"));
        } else if let Err(e) = schema.validate_response("GET", &segs(path), &body["data"]) {
            errors.extend(e.into_iter().take(3).map(|x| format!("{view}: GET {path}: {x}")));
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {} calls not as PVE:\n{}",
        errors.len(),
        calls.len(),
        errors.join("\n")
    );
    // The guest Summary renders `ha.managed` unguarded (PVE.Utils.format_ha): always an object.
    for ty in ["qemu", "lxc"] {
        let current = s.data(&format!("{}/status/current", base(ty))).await;
        assert!(current["ha"]["managed"].is_u64(), "{ty}: {current}");
    }
    // The ExtJS format the UI uses for the task log, notes and container config: success inside.
    let extjs = Session { base: s.base.replace("/api2/json", "/api2/extjs"), ..s };
    let task_log = format!("/nodes/pve1/tasks/{}/log?start=0", upid.replace(':', "%3A"));
    let notes = ["/nodes/pve1/config".to_owned(), "/cluster/options".into(), base("qemu") + "/config"];
    for path in [task_log, base("lxc") + "/config"].into_iter().chain(notes) {
        let (st, body) = extjs.get(&path).await;
        assert_eq!((st, &body["success"]), (200, &serde_json::json!(1)), "extjs {path}: {body}");
    }
}

#[tokio::test]
async fn localhost_is_the_answering_node_and_the_subscription_is_not_found() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let status = s.data("/cluster/status").await;
    let local = status.as_array().unwrap().iter().find(|r| r["local"] == 1).expect("a local node");
    let sub = s.data("/nodes/localhost/subscription").await;
    let named = s.data(&format!("/nodes/{}/subscription", local["name"].as_str().unwrap())).await;
    assert_eq!(sub, named, "localhost is /cluster/status's local node");
    assert_eq!(sub["status"], "notfound");
    assert_eq!(sub["message"], "There is no subscription key");
    assert_eq!(sub["serverid"].as_str().map(str::len), Some(32), "{sub}");
    // Another node has another server id; the UI's nag reads `status` only.
    let other = s.data("/nodes/pve2/subscription").await;
    assert_ne!(other["serverid"], sub["serverid"]);
    let repos = s.data("/nodes/localhost/apt/repositories").await;
    let standard = repos["standard-repos"].as_array().expect("standard-repos");
    let enabled: Vec<&str> =
        standard.iter().filter(|r| r["status"] == true).map(|r| r["handle"].as_str().unwrap()).collect();
    assert_eq!(enabled, ["no-subscription"], "{repos}");
}

#[tokio::test]
async fn the_cluster_log_has_each_tasks_start_and_end_newest_first() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let (st, up) = s.post("/nodes/pve1/qemu/104/migrate", &[("target", "pve3"), ("online", "1")]).await;
    assert_eq!(st, 200, "{up}");
    let upid = up["data"].as_str().unwrap().to_owned();
    let task = s.wait_task("pve1", &upid).await;
    let log = s.data("/cluster/log").await;
    let rows = log.as_array().unwrap();
    let msgs: Vec<&str> = rows.iter().map(|r| r["msg"].as_str().unwrap()).collect();
    let end = format!("end task {upid} {}", task["exitstatus"].as_str().unwrap());
    let (start_at, end_at) = (
        msgs.iter().position(|m| *m == format!("starting task {upid}")).expect("start entry"),
        msgs.iter().position(|m| *m == end).expect("end entry"),
    );
    assert!(end_at < start_at, "newest first: {msgs:?}");
    let times: Vec<i64> = rows.iter().map(|r| r["time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(rows[end_at]["node"], "pve1");
    assert_eq!(rows[end_at]["id"], format!("{}:pve1", rows[end_at]["uid"]));
    assert_eq!(s.data("/cluster/log?max=1").await.as_array().unwrap().len(), 1);
    let (st, _) = s.get("/cluster/log?max=0").await;
    assert_eq!(st, 400, "PVE's schema: max ≥ 1");
}
