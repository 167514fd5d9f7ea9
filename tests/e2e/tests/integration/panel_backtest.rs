//! The panel's Back-test view against the service (the back-test itself: `backtest`). Here,
//! not in `backtest`, because it needs the built panel: such tests live in `browser*` / `panel*`
//! modules, which `cargo xtask test` runs once the panel is built.

use std::time::Duration;

/// Sets an input's value and fires `input`, as typing does.
async fn type_into(browser: &e2e::webdriver::Browser, css: &str, value: &str) {
    let script = format!(
        "const e = document.querySelector({}); e.value = {}; e.dispatchEvent(new Event('input', {{bubbles: true}}))",
        serde_json::json!(css),
        serde_json::json!(value)
    );
    browser.eval(&script).await.unwrap();
}

/// The panel's Back-test view: runs an edited policy beside the effective one, shows the chart
/// (one line per run) and the table, and "Use this policy" stores the edited balanciness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_runs_a_backtest_and_stores_the_policy() {
    use crate::panel::WAIT;
    let stack = e2e::Stack::builder()
        .scenario(crate::backtest::scenario())
        .panel(Some(e2e::panel_dir()))
        .start()
        .await
        .expect("stack");
    let browser = e2e::webdriver::Browser::start(1280, 900, false).await.expect("browser starts");
    crate::panel::open_logged_in(&browser, &stack.backend_url, "/", "root@pam", "demo").await;
    browser.wait_for("#tab-backtest", 1, WAIT).await.unwrap();
    browser.click("#tab-backtest").await.unwrap();
    browser.wait_for("#backtest-help", 1, WAIT).await.unwrap();
    let help = browser.text("#backtest-help").await.unwrap();
    assert!(help.contains("load follows the guest") && help.contains("created later"), "{help}");
    type_into(&browser, "#backtest-days", "2").await;
    type_into(&browser, "#backtest-balanciness", "4").await;
    type_into(&browser, "#backtest-max-moves", "3").await;
    browser.click("#backtest-start").await.unwrap();
    browser.wait_for("#backtest-table tbody tr", 4, Duration::from_secs(90)).await.unwrap();
    let runs = browser
        .eval("return [...document.querySelectorAll('#backtest-table tbody tr')].map(r => r.dataset.run);")
        .await
        .unwrap();
    assert_eq!(runs, serde_json::json!(["nobody", "actual", "effective", "edited"]));
    assert_eq!(browser.count("#backtest-chart polyline").await.unwrap(), 4);

    browser.click("#backtest-use").await.unwrap();
    browser.wait_for("#backtest-stored", 1, WAIT).await.unwrap();
    let api = stack.login("root@pam", "demo").await.unwrap();
    let v: shared::api::SettingsView =
        api.get("/api/v1/settings").send().await.unwrap().json().await.unwrap();
    assert_eq!((v.settings.balanciness, v.settings.max_moves), (4.0, 3));
    assert_eq!(v.sources.get("min_gain"), None, "a field left empty keeps the effective value");
    browser.quit().await;
    stack.stop().await;
}
