//! Set-up the browser tests share: the demo stack serving the panel, a headless Chromium logged
//! in through the panel's own form, and where screenshots go.

use e2e::webdriver::Browser;
use e2e::{panel_dir, workspace_root, Session, Stack};
use std::path::PathBuf;
use std::time::Duration;

/// How long a page may take to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(30);
/// Migrations in the simulator run at 1000× speed, but a whole plan still takes a while on two
/// shared cores.
pub const JOB_WAIT: Duration = Duration::from_secs(90);

pub fn shots() -> PathBuf {
    workspace_root().join("target/screenshots")
}

/// Opens `path` on the backend at `url` and logs in through the panel's own form (standalone,
/// the panel asks for PVE credentials first).
pub async fn open_logged_in(browser: &Browser, url: &str, path: &str, user: &str, password: &str) {
    browser.goto(&format!("{url}{path}")).await.unwrap();
    browser.wait_for("#login", 1, WAIT).await.unwrap();
    browser.fill("#login-user", user).await.unwrap();
    browser.fill("#login-password", password).await.unwrap();
    browser.click("#login-submit").await.unwrap();
}

/// The demo stack serving the panel, and a 1280×800 light browser logged in at `path`.
pub async fn panel_as(path: &str, user: &str, password: &str) -> (Stack, Browser) {
    let stack = Stack::start(Some(panel_dir())).await.expect("stack starts");
    let browser = Browser::start(1280, 800, false).await.expect("browser starts");
    open_logged_in(&browser, &stack.backend_url, path, user, password).await;
    (stack, browser)
}

/// The demo stack serving the panel, a 1280×900 light browser logged in as root@pam with the
/// cluster view shown, and an API session of the same user (to arrange and check state).
pub async fn panel_and_api() -> (Stack, Browser, Session) {
    let stack = Stack::builder().panel(Some(panel_dir())).start().await.expect("stack");
    let browser = Browser::start(1280, 900, false).await.expect("browser starts");
    open_logged_in(&browser, &stack.backend_url, "", "root@pam", "demo").await;
    browser.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    let api = stack.login("root@pam", "demo").await.unwrap();
    (stack, browser, api)
}

/// Records the URL of every Web Worker the page starts from now on (the what-if worker is
/// started by the panel at its first what-if, so this can be put in after the page loaded).
pub async fn watch_workers(browser: &Browser) {
    browser
        .eval(
            "if (!window.__pvrbWorkers) { const W = window.Worker; window.__pvrbWorkers = []; \
             window.Worker = function (url, opts) { window.__pvrbWorkers.push(String(url)); return new W(url, opts); }; } \
             return true;",
        )
        .await
        .unwrap();
}

/// The workers started since [`watch_workers`].
pub async fn workers(browser: &Browser) -> Vec<String> {
    let v = browser.eval("return window.__pvrbWorkers || null").await.unwrap();
    serde_json::from_value(v).expect("watch_workers first")
}

/// A text only the engine (`shared::planner`) holds: the module that has it has the planner.
pub const PLANNER_TEXT: &str = "unable to absorb the loss of its largest node (keep_n_plus_one)";

/// Whether the file at `url` (fetched by the page) contains `needle`.
pub async fn file_contains(browser: &Browser, url: &str, needle: &str) -> bool {
    let script = format!(
        "return fetch({}).then(r => r.ok ? r.arrayBuffer() : Promise.reject(r.status)) \
         .then(b => new TextDecoder('latin1').decode(b).includes({}))",
        serde_json::json!(url),
        serde_json::json!(needle)
    );
    browser.eval(&script).await.unwrap().as_bool().unwrap_or_else(|| panic!("fetching {url}"))
}
