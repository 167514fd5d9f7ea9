//! Walks every endpoint the simulator serves and validates each response against the
//! `returns` schema of the matching PVE version (bundled `schema/pve-*.json`); checks request validation.

use crate::common::*;
use pve_sim::schema;
use pve_sim::state::PveVersion;
use serde_json::Value;

fn segs(path: &str) -> Vec<String> {
    let p = path.split('?').next().unwrap();
    p.split('/').filter(|s| !s.is_empty()).map(|s| s.replace("%3A", ":")).collect()
}

async fn walk(version: &str) -> (usize, Vec<String>) {
    let yaml = std::fs::read_to_string(pve_sim::demo_scenario_path()).unwrap();
    let yaml = yaml.replace("version: \"9.1.2\"", &format!("version: \"{version}\""));
    let mut sc = pve_sim::Scenario::from_yaml(&yaml).unwrap();
    if !version.starts_with('9') {
        sc.ha_rules.clear();
    }
    let v = PveVersion::parse(version).unwrap();
    let schema = schema::for_version(&v).expect("bundled PVE API schema");
    let sim = start_with(sc, 1000.0).await;
    let s = Session::root(&sim).await;

    // create one finished and one running task
    let (st, up) = s.post("/nodes/pve1/qemu/104/migrate", &[("target", "pve3"), ("online", "1")]).await;
    assert_eq!(st, 200, "{up}");
    let upid = up["data"].as_str().unwrap().to_string();
    s.wait_task("pve1", &upid).await;
    let enc = upid.replace(':', "%3A");

    let mut paths: Vec<String> = vec![
        "/version",
        "/cluster/resources",
        "/cluster/resources?type=vm",
        "/cluster/resources?type=node",
        "/cluster/resources?type=storage",
        "/cluster/status",
        "/cluster/options",
        "/cluster/tasks",
        "/cluster/ha/resources",
        "/cluster/ha/resources/vm:201",
        "/cluster/ha/groups",
        "/cluster/ha/status/current",
        "/cluster/ha/status/manager_status",
        "/access/permissions",
        "/pools",
        "/pools/prod",
        "/nodes",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if version.starts_with('9') {
        paths.push("/cluster/ha/rules".into());
    }
    if !version.starts_with('7') {
        paths.push("/pools?poolid=prod".into());
    }
    for n in ["pve1", "pve2", "pve3", "pve4"] {
        for p in ["status", "version", "qemu", "lxc", "tasks", "tasks?source=all&limit=10", "apt/versions"] {
            paths.push(format!("/nodes/{n}/{p}"));
        }
        for tf in ["hour", "day", "week"] {
            for cf in ["AVERAGE", "MAX"] {
                paths.push(format!("/nodes/{n}/rrddata?timeframe={tf}&cf={cf}"));
            }
        }
    }
    paths.push(format!("/nodes/pve1/tasks/{enc}/status"));
    paths.push(format!("/nodes/pve1/tasks/{enc}/log"));
    let guests = s.data("/cluster/resources?type=vm").await;
    for g in guests.as_array().unwrap() {
        let (node, ty, vmid) =
            (g["node"].as_str().unwrap(), g["type"].as_str().unwrap(), g["vmid"].as_u64().unwrap());
        let base = format!("/nodes/{node}/{ty}/{vmid}");
        paths.push(format!("{base}/config"));
        paths.push(format!("{base}/status/current"));
        paths.push(format!("{base}/rrddata?timeframe=hour&cf=AVERAGE"));
        if ty == "qemu" || version.starts_with('9') {
            paths.push(format!("{base}/migrate"));
        }
    }
    let mut errors = Vec::new();
    for p in &paths {
        let (st, body) = s.get(p).await;
        if st != 200 {
            errors.push(format!("GET {p}: HTTP {st} {body}"));
            continue;
        }
        if let Err(e) = schema.validate_response("GET", &segs(p), &body["data"]) {
            for x in e.into_iter().take(5) {
                errors.push(format!("{version} GET {p}: {x}"));
            }
        }
    }
    // POST answers too
    let (st, body) = s.post("/nodes/pve3/qemu/302/migrate", &[("target", "pve2"), ("online", "1")]).await;
    assert_eq!(st, 200);
    if let Err(e) = schema.validate_response("POST", &segs("/nodes/pve3/qemu/302/migrate"), &body["data"]) {
        errors.extend(e);
    }
    let (st, body) = s.post("/nodes/pve3/lxc/304/migrate", &[("target", "pve2"), ("restart", "1")]).await;
    assert_eq!(st, 200, "{body}");
    if let Err(e) = schema.validate_response("POST", &segs("/nodes/pve3/lxc/304/migrate"), &body["data"]) {
        errors.extend(e);
    }
    let login =
        s.c.post(url(&sim, "/access/ticket"))
            .form(&[("username", "root@pam"), ("password", "demo")])
            .send()
            .await
            .unwrap();
    let body: Value = login.json().await.unwrap();
    if let Err(e) = schema.validate_response("POST", &segs("/access/ticket"), &body["data"]) {
        errors.extend(e);
    }
    // HA maintenance (admin endpoint) is reflected in these answers
    sim.set_ha_maintenance("pve2", true).expect("maintenance");
    for p in ["/cluster/resources", "/cluster/ha/status/current", "/cluster/ha/status/manager_status"] {
        let (st, body) = s.get(p).await;
        assert_eq!(st, 200, "{p}: {body}");
        if let Err(e) = schema.validate_response("GET", &segs(p), &body["data"]) {
            errors.extend(e.into_iter().map(|x| format!("{version} GET {p} (maintenance): {x}")));
        }
    }
    // HA migrate/relocate, migrateall, bulk migrate (9.1+)
    let workers = if v.at_least(9, 1) { "max-workers" } else { "maxworkers" };
    let mut posts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/cluster/ha/resources/vm:401/migrate", vec![("node", "pve3")]),
        ("/cluster/ha/resources/vm:201/relocate", vec![("node", "pve1")]),
        ("/nodes/pve4/migrateall", vec![("target", "pve3"), (workers, "2")]),
    ];
    if v.at_least(9, 1) {
        posts.push(("/cluster/bulk-action/guest/migrate", vec![("target", "pve1"), ("vms", "307")]));
    }
    for (p, form) in &posts {
        let (st, body) = s.post(p, form).await;
        assert_eq!(st, 200, "{version} POST {p}: {body}");
        if let Err(e) = schema.validate_response("POST", &segs(p), &body["data"]) {
            errors.extend(e.into_iter().map(|x| format!("{version} POST {p}: {x}")));
        }
    }
    sim.shutdown().await;
    (paths.len() + 3 + posts.len(), errors)
}

#[tokio::test]
async fn responses_match_schema_9_1() {
    let (n, errors) = walk("9.1.2").await;
    assert!(n > 150, "walked {n}");
    assert!(errors.is_empty(), "{} schema errors:\n{}", errors.len(), errors.join("\n"));
}

#[tokio::test]
async fn responses_match_schema_9_0() {
    let (_, errors) = walk("9.0.11").await;
    assert!(errors.is_empty(), "{} schema errors:\n{}", errors.len(), errors.join("\n"));
}

#[tokio::test]
async fn responses_match_schema_8_4() {
    let (_, errors) = walk("8.4.1").await;
    assert!(errors.is_empty(), "{} schema errors:\n{}", errors.len(), errors.join("\n"));
}

#[tokio::test]
async fn responses_match_schema_7_4() {
    let (_, errors) = walk("7.4-17").await;
    assert!(errors.is_empty(), "{} schema errors:\n{}", errors.len(), errors.join("\n"));
}

#[tokio::test]
async fn request_parameters_are_validated() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    // "true" is not a PVE boolean
    let (st, v) = s.post("/nodes/pve1/qemu/104/migrate", &[("target", "pve3"), ("online", "true")]).await;
    assert_eq!(st, 400);
    assert_eq!(v["message"], "Parameter verification failed.\n");
    assert_eq!(v["errors"]["online"], "type check ('boolean') failed - got 'true'");
    // missing required, unknown parameter
    let (st, v) = s.post("/nodes/pve1/qemu/104/migrate", &[("bogus", "1")]).await;
    assert_eq!(st, 400);
    assert_eq!(v["errors"]["target"], "property is missing and it is not optional");
    assert!(v["errors"]["bogus"].as_str().unwrap().contains("not defined in schema"));
    // enum and integer path variable
    let (st, v) = s.get("/nodes/pve1/rrddata?timeframe=hour&cf=MIN").await;
    assert_eq!(st, 400);
    assert!(v["errors"]["cf"].as_str().unwrap().contains("enumeration"));
    let (st, v) = s.get("/nodes/pve1/qemu/abc/config").await;
    assert_eq!(st, 400);
    assert!(v["errors"]["vmid"].as_str().unwrap().contains("integer"));
    // JSON booleans are fine
    let r =
        s.c.post(url(&sim, "/nodes/pve1/qemu/104/migrate"))
            .header("Cookie", format!("PVEAuthCookie={}", s.ticket))
            .header("CSRFPreventionToken", &s.csrf)
            .json(&serde_json::json!({"target": "pve3", "online": true}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}
