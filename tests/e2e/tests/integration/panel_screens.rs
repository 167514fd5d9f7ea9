//! Every view of the panel, light and dark, in a real headless Chromium against the simulator:
//! each view must render its content (the assertion), and its screenshot is written to
//! `$PVRB_SCREENSHOTS` (`cargo xtask screenshots` points it at `docs/screenshots/`) or else
//! `target/screenshots/views/`.

use e2e::webdriver::Browser;
use e2e::{panel_dir, workspace_root, Stack};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn out_dir() -> PathBuf {
    let dir = std::env::var_os("PVRB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/screenshots/views"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// (tab button, what shows the view rendered, file stem)
const VIEWS: &[(&str, &str, &str)] = &[
    ("#tab-balance", "#plan-steps tbody tr", "balance"),
    ("#tab-maintenance", "#maintenance-title", "maintenance"),
    ("#tab-guests", "#guest-table tbody tr", "guests"),
    ("#tab-rules", "#rules table, #rules p", "rules"),
    ("#tab-history", "#history table, #history p", "history"),
    ("#tab-settings", "#settings-fields", "settings"),
];

async fn shoot_all(stack: &Stack, dark: bool) {
    let theme = if dark { "dark" } else { "light" };
    let browser = Browser::start(1280, 860, dark).await.expect("browser starts");
    crate::panel::open_logged_in(&browser, &stack.backend_url, "", "root@pam", "demo").await;
    browser.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    let bg = browser
        .eval("return getComputedStyle(document.querySelector('.pvrb')).backgroundColor")
        .await
        .unwrap();
    let expected = if dark { "rgb(38, 38, 38)" } else { "rgb(255, 255, 255)" };
    assert_eq!(bg, serde_json::json!(expected), "{theme} theme");
    browser.click("#compute-plan").await.unwrap();
    browser.wait_for("#plan-steps tbody tr", 1, WAIT).await.unwrap();
    let node = stack.sim.with_cluster(|c| c.nodes.keys().nth(1).unwrap().clone());
    for (tab, rendered, stem) in VIEWS {
        browser.click(tab).await.unwrap();
        if *stem == "maintenance" {
            browser.select("#maintenance-node", &node).await.ok();
        }
        browser.wait_for(rendered, 1, WAIT).await.unwrap_or_else(|e| panic!("{stem} ({theme}): {e}"));
        browser.screenshot(&out_dir().join(format!("{stem}-{theme}.png"))).await.unwrap();
    }
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_light_and_dark() {
    let stack = Stack::builder().panel(Some(panel_dir())).start().await.expect("stack");
    shoot_all(&stack, false).await;
    shoot_all(&stack, true).await;
    for (_, _, stem) in VIEWS {
        for theme in ["light", "dark"] {
            let f = out_dir().join(format!("{stem}-{theme}.png"));
            assert!(
                std::fs::metadata(&f).map(|m| m.len() > 10_000).unwrap_or(false),
                "{} written",
                f.display()
            );
        }
    }
    stack.stop().await;
}
