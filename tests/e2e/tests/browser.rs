//! The panel in a real headless Chromium (Debian's), served by the backend, against the simulator.

use e2e::webdriver::Browser;
use e2e::{panel_dir, workspace_root, Stack};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_shows_the_nodes_and_a_plan() {
    let stack = Stack::start(Some(panel_dir())).await.expect("stack starts");
    let nodes = stack.sim.with_cluster(|c| c.nodes.len());
    let browser = Browser::start(1280, 800, false).await.expect("browser starts");
    let shots = workspace_root().join("target/screenshots");

    browser.goto(&format!("{}/", stack.backend_url)).await.unwrap();
    // Standalone, the panel asks for PVE credentials first.
    browser.wait_for("#login", 1, Duration::from_secs(30)).await.unwrap();
    browser.fill("#login-password", "demo").await.unwrap();
    browser.click("#login-submit").await.unwrap();
    let rows = browser.wait_for("#nodes tbody tr", nodes, Duration::from_secs(30)).await.unwrap();
    assert_eq!(rows, nodes, "one row per simulated node");
    let first = browser.text("#nodes tbody tr td.name").await.unwrap();
    assert!(!first.is_empty());

    browser.click("#compute-plan").await.unwrap();
    browser.wait_for("#plan-steps tbody tr", 1, Duration::from_secs(30)).await.unwrap();
    let summary = browser.text("#plan-summary").await.unwrap();
    assert!(summary.contains("migration(s)") && summary.contains("spread"), "{summary}");
    assert_eq!(browser.count("#plan-compare tbody tr").await.unwrap(), nodes);
    browser.screenshot(&shots.join("panel-plan.png")).await.unwrap();

    browser.quit().await;
    stack.stop().await;
}
