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
