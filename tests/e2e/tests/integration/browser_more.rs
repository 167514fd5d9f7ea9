//! The panel's settings, maintenance and audit views in a real headless Chromium, against the
//! simulator and a backend with its executor, a private maintenance state directory and a
//! private settings store: settings read-only for an auditor and saved by root (bad input
//! refused, nothing stored), maintenance enter → preview → confirm → job done → badge → exit
//! with return home, the audit log, and dark-theme screenshots under `target/screenshots/`.

use crate::panel::{open_logged_in, shots, JOB_WAIT, WAIT};
use e2e::panel_dir;
use e2e::webdriver::Browser;
use shared::api::{Settings, SettingsView};

/// The shared e2e stack serving the panel; maintenance marks and settings live in its private
/// directory, and `ha-manager` is never called (the panel's PVE HA option stays off here).
struct Stack {
    inner: e2e::Stack,
    url: String,
}

impl Stack {
    async fn start() -> Stack {
        let inner = e2e::Stack::builder().panel(Some(panel_dir())).start().await.expect("stack");
        Stack { url: inner.backend_url.clone(), inner }
    }

    fn on(&self, node: &str) -> usize {
        self.inner.sim.with_cluster(|c| c.guests.values().filter(|g| g.node == node).count())
    }

    async fn stop(self) {
        self.inner.stop().await;
    }
}

/// Types into an input and fires `change`, as leaving the field does.
async fn change(browser: &Browser, css: &str, value: &str) {
    browser.fill(css, value).await.unwrap();
    let script = format!(
        "document.querySelector({}).dispatchEvent(new Event('change', {{bubbles: true}}))",
        serde_json::json!(css)
    );
    browser.eval(&script).await.unwrap();
}

/// Waits until the maintenance state badge says `state`.
async fn wait_state(browser: &Browser, state: &str) {
    let script = format!(
        "const e = document.querySelector('#maintenance-state'); return !!e && e.dataset.state === '{state}';"
    );
    browser.wait_until(&script, &format!("maintenance state {state}"), JOB_WAIT).await.unwrap();
}

/// Confirms the open dialog and waits until every step of the job is done.
async fn confirm_and_wait_done(browser: &Browser, steps: usize) {
    browser.wait_for("#confirm", 1, WAIT).await.unwrap();
    assert_eq!(browser.count("#confirm-steps tbody tr").await.unwrap(), steps, "the dialog lists every step");
    assert_eq!(browser.text("#refresh-status").await.unwrap(), "Auto-refresh paused");
    browser.click("#confirm-execute").await.unwrap();
    let all_done = "const rows = [...document.querySelectorAll('#job-steps tbody tr')]; \
         const bad = rows.filter(r => ['failed','skipped','cancelled','unknown'].includes(r.dataset.state)); \
         if (bad.length) return 'FAILED: ' + bad.map(r => r.innerText).join(' | '); \
         return rows.length > 0 && rows.every(r => r.dataset.state === 'done');";
    let v = browser.wait_until(all_done, "every job step done", JOB_WAIT).await.unwrap();
    assert_eq!(v, serde_json::json!(true), "{v}");
    browser.wait_text("#job-headline", ": done", WAIT).await.unwrap();
}

async fn stored_settings(stack: &Stack) -> Settings {
    let s = e2e::login(&stack.url, "root@pam", "demo").await.unwrap();
    let v: SettingsView = s.get("/api/v1/settings").send().await.unwrap().json().await.unwrap();
    v.settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_read_only_for_an_auditor_and_saved_by_root() {
    let stack = Stack::start().await;

    let auditor = Browser::start(1280, 800, false).await.expect("browser starts");
    open_logged_in(&auditor, &stack.url, "/", "audit@pve", "audit").await;
    auditor.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    auditor.click("#tab-settings").await.unwrap();
    auditor.wait_for("#settings-fields", 1, WAIT).await.unwrap();
    let disabled = auditor.eval("return document.querySelector('#settings-fields').disabled").await.unwrap();
    assert_eq!(disabled, serde_json::json!(true), "an auditor cannot edit");
    let save_disabled =
        auditor.eval("return document.querySelector('#settings-save').disabled").await.unwrap();
    assert_eq!(save_disabled, serde_json::json!(true));
    let tip = auditor.attr("#settings-save", "title").await.unwrap().unwrap_or_default();
    assert!(tip.contains("Sys.Modify"), "the tooltip names the missing privilege: {tip}");
    assert!(auditor.text("#settings-readonly").await.unwrap().contains("Sys.Modify"));
    auditor.quit().await;

    let root = Browser::start(1280, 800, true).await.expect("browser starts");
    open_logged_in(&root, &stack.url, "/", "root@pam", "demo").await;
    root.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    // The trigger level shown with the imbalance figures is the one in force.
    root.wait_text("#trigger", "Trigger 10.0 points", WAIT).await.unwrap();
    root.click("#tab-settings").await.unwrap();
    root.wait_for("#settings-fields", 1, WAIT).await.unwrap();
    let disabled = root.eval("return document.querySelector('#settings-fields').disabled").await.unwrap();
    assert_eq!(disabled, serde_json::json!(false), "root may edit");

    // Out of range: refused in the panel with the field's name, nothing stored.
    change(&root, "#set-balanciness", "150").await;
    root.click("#settings-save").await.unwrap();
    let err = root.wait_text("#settings-error", "balanciness", WAIT).await.unwrap();
    assert!(err.contains("0–100") && err.contains("Nothing was saved"), "{err}");
    assert_eq!(stored_settings(&stack).await.balanciness, Settings::default().balanciness);

    change(&root, "#set-balanciness", "7").await;
    change(&root, "#set-max-moves", "12").await;
    change(&root, "#set-ignore-nodes", "pve9, gpu*").await;
    root.click("#settings-save").await.unwrap();
    root.wait_for("#settings-saved", 1, WAIT).await.unwrap();
    let stored = stored_settings(&stack).await;
    assert_eq!((stored.balanciness, stored.max_moves), (7.0, 12));
    assert_eq!(stored.ignore_nodes, vec!["pve9".to_owned(), "gpu*".to_owned()]);
    root.screenshot(&shots().join("panel-settings-dark.png")).await.unwrap();

    // The cluster view follows: the new trigger level.
    root.click("#tab-balance").await.unwrap();
    root.wait_text("#trigger", "Trigger 7.0 points", WAIT).await.unwrap();

    // The audit log names the change and who made it.
    root.click("#tab-history").await.unwrap();
    root.wait_for("#history-audit tbody tr[data-action='settings.update']", 1, WAIT).await.unwrap();
    let row = root.text("#history-audit tbody tr[data-action='settings.update']").await.unwrap();
    assert!(row.contains("root@pam"), "{row}");
    root.screenshot(&shots().join("panel-history-audit-dark.png")).await.unwrap();
    root.quit().await;

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_enters_through_the_service_and_exits_with_return_home() {
    let stack = Stack::start().await;
    let before = stack.on("pve4");
    assert!(before > 0);
    let browser = Browser::start(1280, 800, true).await.expect("browser starts");

    // The cluster view: node rows with CPU, memory and disk bars and the imbalance figures; two
    // loads give the sparkline its first line (the service here keeps no usage history).
    open_logged_in(&browser, &stack.url, "/", "root@pam", "demo").await;
    let nodes = stack.inner.sim.with_cluster(|c| c.nodes.len());
    browser.wait_for("#nodes tbody tr", nodes, WAIT).await.unwrap();
    assert_eq!(browser.count("#nodes tbody tr:first-child .pvrb-bar").await.unwrap(), 3, "CPU, memory, disk");
    let cv = browser.text("#memory-cv").await.unwrap();
    let cv: f64 = cv.parse().unwrap_or_else(|_| panic!("a number: {cv}"));
    assert!((0.0..=1.0).contains(&cv), "{cv}");
    browser.click("#reload").await.unwrap();
    browser.wait_for("#spread-spark polyline", 1, WAIT).await.unwrap();
    browser.screenshot(&shots().join("panel-cluster-dark.png")).await.unwrap();

    // What the node toolbar button opens inside PVE: view=maintenance, node=pve4.
    browser.goto(&format!("{}/?view=maintenance&node=pve4", stack.url)).await.unwrap();
    browser.wait_text("#panel-title", "Maintenance: pve4", WAIT).await.unwrap();
    assert_eq!(browser.count("#tab-balance").await.unwrap(), 0, "one node's view, no tabs");
    wait_state(&browser, "none").await;
    // Every guest leaves; a plan may take more steps (making room on a target first).
    let steps = browser.wait_for("#evac-steps tbody tr", before, WAIT).await.unwrap();
    let origin = browser.text("#evac-origin").await.unwrap();
    assert!(origin.contains("PREVIEW") && origin.contains("planned by the service"), "{origin}");
    assert_eq!(stack.on("pve4"), before, "a preview moves nothing");
    browser.screenshot(&shots().join("panel-maintenance-preview-dark.png")).await.unwrap();

    browser.click("#evac-execute").await.unwrap();
    let title = browser.text("#confirm-title").await.unwrap();
    assert!(title.starts_with("Enter maintenance"), "{title}");
    confirm_and_wait_done(&browser, steps).await;
    assert_eq!(stack.on("pve4"), 0, "pve4 is empty in the simulator");
    wait_state(&browser, "in_maintenance").await;
    browser.wait_for("#maintenance-empty", 1, WAIT).await.unwrap();
    browser.screenshot(&shots().join("panel-maintenance-entered-dark.png")).await.unwrap();

    // The cluster view shows the badge.
    browser.goto(&format!("{}/", stack.url)).await.unwrap();
    browser.wait_for("#nodes tbody tr", nodes, WAIT).await.unwrap();
    let row = browser.text("#nodes tbody tr[data-node=pve4]").await.unwrap();
    assert!(row.contains("maintenance"), "{row}");

    // Exit with return home: the preview lists the guests going back, then they do.
    browser.goto(&format!("{}/?view=maintenance&node=pve4", stack.url)).await.unwrap();
    wait_state(&browser, "in_maintenance").await;
    let checked = browser.eval("return document.querySelector('#exit-return-home').checked").await.unwrap();
    assert_eq!(checked, serde_json::json!(true), "return home is the default");
    browser.wait_for("#evac-steps tbody tr", 1, WAIT).await.unwrap();
    let back = browser.count("#evac-steps tbody tr").await.unwrap();
    let to_pve4 = browser
        .eval("return [...document.querySelectorAll('#evac-steps tbody tr')].every(r => r.cells[4].innerText.trim().endsWith('pve4'))")
        .await
        .unwrap();
    assert_eq!(to_pve4, serde_json::json!(true), "every step goes back to pve4");
    browser.click("#evac-execute").await.unwrap();
    let title = browser.text("#confirm-title").await.unwrap();
    assert!(title.starts_with("Exit maintenance"), "{title}");
    confirm_and_wait_done(&browser, back).await;
    wait_state(&browser, "none").await;
    assert_eq!(stack.on("pve4"), back, "the guests are home again");
    browser.screenshot(&shots().join("panel-maintenance-exited-dark.png")).await.unwrap();

    // The audit log has both; its filter narrows to one action, then to text nothing matches.
    browser.goto(&format!("{}/", stack.url)).await.unwrap();
    browser.wait_for("#tab-history", 1, WAIT).await.unwrap();
    browser.click("#tab-history").await.unwrap();
    browser.wait_for("#history-audit tbody tr[data-action^='maintenance.']", 2, WAIT).await.unwrap();
    let all = browser.count("#history-audit tbody tr").await.unwrap();
    let pick = "const s = document.querySelector('#audit-action'); s.value = 'maintenance.exit'; \
                s.dispatchEvent(new Event('change', {bubbles: true}))";
    browser.eval(pick).await.unwrap();
    browser.wait_text("#audit-count", &format!("1 of {all} shown"), WAIT).await.unwrap();
    let row = browser.text("#history-audit tbody tr").await.unwrap();
    assert!(row.contains("maintenance.exit") && row.contains("node/pve4"), "{row}");
    browser.fill("#audit-text", "no-such-node").await.unwrap();
    browser
        .eval("document.querySelector('#audit-text').dispatchEvent(new Event('input', {bubbles: true}))")
        .await
        .unwrap();
    browser.wait_text("#audit-count", &format!("0 of {all} shown"), WAIT).await.unwrap();
    assert_eq!(browser.count("#history-audit tbody tr").await.unwrap(), 0);

    browser.quit().await;
    stack.stop().await;
}
