//! The admin's one-guest tools and the cluster view's extra figures (issue 20), in a real headless
//! Chromium against the simulator and the backend with its executor: migrate one guest from the
//! Guests view to the engine's suggestion as a one-step job, rank the nodes for a new guest, N+1
//! headroom, and PVE's own balancer state.

use e2e::webdriver::Browser;
use e2e::{Session, Stack};
use shared::api::{BestNodeAnswer, ClusterView};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const JOB_WAIT: Duration = Duration::from_secs(90);

async fn start() -> (Stack, Browser, Session) {
    crate::panel::panel_and_api().await
}

async fn best_node(api: &Session, body: serde_json::Value) -> BestNodeAnswer {
    let resp = api.post("/api/v1/best-node").json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "best-node {body}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn change(browser: &Browser, css: &str, value: &str) {
    browser.fill(css, value).await.unwrap();
    let script = format!(
        "document.querySelector({}).dispatchEvent(new Event('change', {{bubbles: true}}))",
        serde_json::json!(css)
    );
    browser.eval(&script).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_guest_migrates_to_the_engines_suggestion_as_a_one_step_job() {
    let (stack, browser, api) = start().await;
    // A running guest with somewhere to go.
    let view: ClusterView = api.get("/api/v1/cluster").send().await.unwrap().json().await.unwrap();
    let mut chosen = None;
    for g in view.snapshot.guests.iter().filter(|g| g.status == shared::GuestStatus::Running && !g.template) {
        let a = best_node(&api, serde_json::json!({ "vmid": g.vmid })).await;
        if let Some(r) = a.ranks.iter().find(|r| r.fits && r.node != g.node) {
            chosen = Some((g.vmid, g.node.clone(), r.node.clone()));
            break;
        }
    }
    let (vmid, from, suggested) = chosen.expect("a guest that can move");

    browser.click("#tab-guests").await.unwrap();
    browser.fill("#guest-filter", &vmid.to_string()).await.unwrap();
    browser
        .eval("document.querySelector('#guest-filter').dispatchEvent(new Event('input', {bubbles: true}))")
        .await
        .unwrap();
    let button = format!("#guest-table button.pvrb-migrate[data-vmid='{vmid}']");
    browser.wait_for(&button, 1, WAIT).await.unwrap();
    browser.click(&button).await.unwrap();
    browser.wait_for("#migrate-ranks tbody tr", view.snapshot.nodes.len(), WAIT).await.unwrap();
    let picked = browser
        .wait_until(
            "const r = document.querySelector('#migrate-ranks input.pvrb-target:checked'); return r ? r.value : false;",
            "a preselected target",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(picked, serde_json::json!(suggested), "the engine's suggestion is preselected");
    let own = format!("#migrate-ranks tr[data-node='{from}'] input");
    assert_eq!(
        browser.eval(&format!("return document.querySelector(\"{own}\").disabled")).await.unwrap(),
        serde_json::json!(true),
        "its own node cannot be picked"
    );
    assert!(browser.text("#migrate-go").await.unwrap().contains(&suggested));
    browser.click("#migrate-go").await.unwrap();
    browser.wait_text("#job-headline", ": done", JOB_WAIT).await.unwrap();
    assert_eq!(stack.sim.guest_node(vmid).as_deref(), Some(suggested.as_str()), "moved where suggested");
    assert_eq!(browser.count("#migrate").await.unwrap(), 0, "the dialog closed");
    browser.quit().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_node_for_a_new_guest_and_the_cluster_figures() {
    let (stack, browser, api) = start().await;
    let nodes = stack.sim.with_cluster(|c| c.nodes.len());

    // N+1 and PVE's balancer on the cluster view.
    let n1 = browser.wait_text("#n-plus-one", "N+1:", WAIT).await.unwrap();
    assert!(n1.contains("OK") || n1.contains("short"), "{n1}");
    assert_eq!(browser.text("#pve-balancer").await.unwrap(), "PVE balancer: off");
    stack.sim.with_cluster(|c| {
        c.options["crs"] = serde_json::json!("ha=dynamic,ha-auto-rebalance=1");
        // Every node but the first nearly full: no node's loss can be absorbed.
        for n in c.nodes.values_mut().skip(1) {
            n.spec.memory_gib = 1.0;
        }
    });
    browser.click("#reload").await.unwrap();
    browser.wait_text("#pve-balancer", "PVE balancer: on (dynamic", WAIT).await.unwrap();
    browser.wait_text("#n-plus-one", "short by", WAIT).await.unwrap();

    // Best node for a new guest: the form answers what the service does.
    stack.sim.with_cluster(|c| {
        for n in c.nodes.values_mut() {
            n.spec.memory_gib = 512.0;
        }
    });
    browser.click("#tab-guests").await.unwrap();
    browser.click("#best-node summary").await.unwrap();
    change(&browser, "#best-cores", "4").await;
    change(&browser, "#best-mem", "8").await;
    browser.click("#best-rank").await.unwrap();
    browser.wait_for("#best-node-ranks tbody tr", nodes, WAIT).await.unwrap();
    let expected = best_node(
        &api,
        serde_json::json!({ "guest": { "name": "new guest", "kind": "qemu", "cpus": 4.0,
            "mem_bytes": 8u64 << 30, "disk_bytes": 32u64 << 30, "tags": [], "pool": null } }),
    )
    .await;
    let best = expected.best.expect("an 8 GiB guest fits somewhere");
    let answer = browser.wait_text("#best-node-answer", "Best node", WAIT).await.unwrap();
    assert_eq!(answer, format!("Best node: {best}"));
    assert_eq!(browser.attr("#best-node-ranks tbody tr:first-child", "data-node").await.unwrap(), Some(best));

    // Too big for any node: said so, with every node's reason.
    change(&browser, "#best-mem", "100000").await;
    browser.click("#best-rank").await.unwrap();
    browser.wait_text("#best-node-answer", "No node fits", WAIT).await.unwrap();
    let fits = browser
        .eval("return [...document.querySelectorAll('#best-node-ranks tbody tr')].filter(r => r.dataset.fits === 'true').length")
        .await
        .unwrap();
    assert_eq!(fits, serde_json::json!(0));
    browser.quit().await;
    stack.stop().await;
}
