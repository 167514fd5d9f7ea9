//! The panel in a host page, in a real headless Chromium (issue 20): its CSS holds against a page
//! with hostile global rules (ExtJS themes style `.warning`, `.critical`, `table`, `input`, `a`),
//! it takes PVE's theme (the dark stylesheet PVE links, light without it, auto = the browser) and
//! follows a switch live, and inside PVE's window it does not repeat the window's title.
//!
//! The host pages are the built panel's own `index.html` with the host's parts added, served by
//! the backend from a copy of `frontend/dist`, so the panel and its API share one origin.

use crate::panel::{watch_workers, workers};
use e2e::webdriver::Browser;
use e2e::{panel_dir, Stack};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Rules like the ones PVE's widget toolkit and ExtJS themes put on the whole page.
const HOSTILE: &str = "<style>.warning{color:#fc0 !important}.critical{color:#ff6c59}.bar{background:#0f0}\
    .fill{background:#00f}table{font-size:20px;color:#f0f;border:3px solid #f00}td{padding:9px}\
    input,select{background:#f0f;color:#0f0;font-size:22px;border:4px dotted #0f0}a{color:#f0f}\
    label{color:#0ff;font-size:18px}</style>";

/// The links pveproxy renders for Proxmox Dark and for auto (pve-manager's `index.html.tpl`).
const DARK_LINK: &str =
    "<link rel=\"stylesheet\" type=\"text/css\" href=\"/pwt/themes/theme-proxmox-dark.css?ver=5.2.7\" />";
const AUTO_LINK: &str = "<link rel=\"stylesheet\" type=\"text/css\" media=\"(prefers-color-scheme: dark)\" \
    href=\"/pwt/themes/theme-proxmox-dark.css?ver=5.2.7\" />";
/// PVE's page defines its globals before anything else runs.
const PVE_GLOBALS: &str =
    "<script>window.Proxmox = { Setup: { auth_cookie_name: 'PVEAuthCookie' } };</script>";
/// As the package's loader does: no standalone mount; `mount_panel` into PVE's window body, the
/// handle kept (a dropped handle is freed by the garbage collector, which unmounts the panel).
const EMBED: &str = "<script>window.__pveRebalancerEmbedded = true; \
    (function mount() { const b = window.wasmBindings; \
    if (b && b.mount_panel) { window.pvrbHandle = b.mount_panel(document.getElementById('host'), { view: 'maintenance', node: 'pve2' }); } \
    else { setTimeout(mount, 50); } })();</script>";

/// A copy of the built panel with host pages beside its `index.html`: `name.html` = the panel's
/// page with `head` added to its head and `body` to its body (after the panel's style: later wins).
fn host_pages(pages: &[(&str, &str, &str)]) -> PathBuf {
    let dist = panel_dir();
    // One directory per test (named after its first page): the tests run in parallel.
    let dir = std::env::temp_dir().join(format!("pvrb-host-{}-{}", std::process::id(), pages[0].0));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&dist, &dir);
    std::fs::write(dir.join("theme-proxmox-dark.css"), "body { background: #1b1b1b; }\n").unwrap();
    let index = std::fs::read_to_string(dist.join("index.html")).unwrap();
    for (name, head, body) in pages {
        let page = index.replacen("<head>", &format!("<head>{head}"), 1).replacen(
            "</body>",
            &format!("{body}</body>"),
            1,
        );
        std::fs::write(dir.join(format!("{name}.html")), page).unwrap();
    }
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

async fn login(browser: &Browser, stack: &Stack, page: &str) {
    browser.goto(&format!("{}/{page}", stack.backend_url)).await.unwrap();
    browser.wait_for("#login", 1, WAIT).await.unwrap();
    browser.fill("#login-user", "root@pam").await.unwrap();
    browser.fill("#login-password", "demo").await.unwrap();
    browser.click("#login-submit").await.unwrap();
}

async fn style(browser: &Browser, css: &str, property: &str) -> String {
    let script = format!(
        "const e = document.querySelector({}); return e ? getComputedStyle(e).getPropertyValue('{property}') : 'MISSING';",
        serde_json::json!(css)
    );
    browser.eval(&script).await.unwrap().as_str().unwrap_or_default().to_owned()
}

async fn theme(browser: &Browser) -> (String, String) {
    browser.wait_for(".pvrb[data-theme]", 1, WAIT).await.unwrap();
    let word = browser.attr(".pvrb", "data-theme").await.unwrap().unwrap_or_default();
    (word, style(browser, ".pvrb", "background-color").await)
}

const LIGHT_BG: &str = "rgb(255, 255, 255)";
const DARK_BG: &str = "rgb(38, 38, 38)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_css_holds_against_the_host_pages_global_rules() {
    let dir = host_pages(&[("hostile", "", HOSTILE)]);
    let stack = Stack::builder().panel(Some(dir)).start().await.expect("stack");
    // Two nodes made small enough for a warning (85 %) and a critical (95 %) memory bar.
    let api = stack.login("root@pam", "demo").await.unwrap();
    let view: shared::api::ClusterView =
        api.get("/api/v1/cluster").send().await.unwrap().json().await.unwrap();
    stack.sim.with_cluster(|c| {
        for (n, share) in view.snapshot.nodes.iter().zip([0.85, 0.95]) {
            let spec = &mut c.nodes.get_mut(&n.name).unwrap().spec;
            spec.memory_gib = n.mem_used as f64 / share / (1u64 << 30) as f64;
        }
    });
    let browser = Browser::start(1280, 900, false).await.expect("browser");
    login(&browser, &stack, "hostile.html").await;
    browser.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    browser.wait_for(".pvrb-bar.pvrb-critical", 1, WAIT).await.unwrap();

    // No class of ours can be matched by a page's generic rule.
    let stray = browser
        .eval(
            "return [...document.querySelectorAll('.pvrb, .pvrb *')].flatMap(e => [...e.classList])\
             .filter(c => !c.startsWith('pvrb')).slice(0, 10);",
        )
        .await
        .unwrap();
    assert_eq!(stray, serde_json::json!([]), "classes outside the pvrb- prefix");

    let fg = style(&browser, ".pvrb", "color").await;
    assert_eq!(fg, "rgb(0, 0, 0)");
    for bar in [".pvrb-bar.pvrb-critical", ".pvrb-bar.pvrb-warning"] {
        assert_eq!(style(&browser, &format!("{bar} > span"), "color").await, fg, "label of {bar}");
        assert_eq!(style(&browser, &format!("{bar} > span"), "text-align").await, "center");
    }
    assert_ne!(style(&browser, ".pvrb-bar", "background-color").await, "rgb(0, 255, 0)");
    assert_ne!(style(&browser, ".pvrb-fill", "background-color").await, "rgb(0, 0, 255)");
    assert_eq!(style(&browser, "#nodes", "font-size").await, "13px");
    assert_eq!(style(&browser, "#nodes", "color").await, fg);
    assert_eq!(style(&browser, "#nodes", "border-top-width").await, "0px");
    assert_ne!(style(&browser, "#nodes td", "padding-top").await, "9px");
    for control in ["#balanciness", "#method"] {
        assert_eq!(style(&browser, control, "background-color").await, LIGHT_BG, "{control}");
        assert_eq!(style(&browser, control, "color").await, fg, "{control}");
        assert_eq!(style(&browser, control, "font-size").await, "13px", "{control}");
        assert_eq!(style(&browser, control, "border-top-style").await, "solid", "{control}");
    }
    // ExtJS-like controls: our own select arrow and checkbox, not the browser's.
    assert_eq!(style(&browser, "#method", "appearance").await, "none");
    assert_eq!(style(&browser, "#whatif", "appearance").await, "none");
    assert_eq!(style(&browser, "label[title*='what-if'], .pvrb label", "font-size").await, "13px");
    browser.screenshot(&e2e::workspace_root().join("target/screenshots/panel-hostile.png")).await.unwrap();
    browser.quit().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_takes_pves_theme_and_follows_a_switch() {
    let dir = host_pages(&[
        ("pve-dark", &format!("{PVE_GLOBALS}{DARK_LINK}"), ""),
        ("pve-auto", &format!("{PVE_GLOBALS}{AUTO_LINK}"), ""),
        ("pve-light", PVE_GLOBALS, ""),
    ]);
    let stack = Stack::builder().panel(Some(dir)).start().await.expect("stack");

    // A light browser.
    let light = Browser::start(1024, 700, false).await.expect("browser");
    login(&light, &stack, "pve-dark.html").await;
    assert_eq!(theme(&light).await, ("dark".into(), DARK_BG.into()), "PVE dark in a light browser");
    light.goto(&format!("{}/pve-auto.html", stack.backend_url)).await.unwrap();
    assert_eq!(theme(&light).await, ("auto".into(), LIGHT_BG.into()), "auto in a light browser");
    light.goto(&format!("{}/pve-light.html", stack.backend_url)).await.unwrap();
    assert_eq!(theme(&light).await, ("light".into(), LIGHT_BG.into()));
    // PVE applies a new theme by reloading (the page loads above); a host that adds the link in
    // place is followed without a reload.
    light
        .eval("const l = document.createElement('link'); l.rel = 'stylesheet'; l.href = '/theme-proxmox-dark.css'; l.id = 'swap'; document.head.appendChild(l);")
        .await
        .unwrap();
    light
        .wait_until(
            "return document.querySelector('.pvrb').dataset.theme === 'dark'",
            "live switch to dark",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(style(&light, ".pvrb", "background-color").await, DARK_BG);
    light.eval("document.getElementById('swap').remove();").await.unwrap();
    light
        .wait_until(
            "return document.querySelector('.pvrb').dataset.theme === 'light'",
            "live switch back",
            WAIT,
        )
        .await
        .unwrap();
    light.quit().await;

    // A dark browser: PVE's light theme stays light, auto turns dark, standalone follows the browser.
    let dark = Browser::start(1024, 700, true).await.expect("browser");
    login(&dark, &stack, "pve-light.html").await;
    assert_eq!(theme(&dark).await, ("light".into(), LIGHT_BG.into()), "PVE light in a dark browser");
    dark.goto(&format!("{}/pve-auto.html", stack.backend_url)).await.unwrap();
    assert_eq!(theme(&dark).await, ("auto".into(), DARK_BG.into()), "auto in a dark browser");
    dark.goto(&format!("{}/index.html", stack.backend_url)).await.unwrap();
    assert_eq!(theme(&dark).await, ("auto".into(), DARK_BG.into()), "standalone follows the browser");
    dark.quit().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_pves_window_the_maintenance_view_does_not_repeat_its_title() {
    let dir = host_pages(&[("embed", "", &format!("{EMBED}<div id=\"host\"></div>"))]);
    let stack = Stack::builder().panel(Some(dir)).start().await.expect("stack");
    let browser = Browser::start(1024, 700, false).await.expect("browser");
    // Log in standalone first (the ticket cookie and CSRF token then serve the embedded panel).
    login(&browser, &stack, "index.html").await;
    browser.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    browser.goto(&format!("{}/embed.html", stack.backend_url)).await.unwrap();
    if let Err(e) = browser.wait_text("#maintenance-title", "pve2", 2 * WAIT).await {
        let state = browser
            .eval("return [location.href, typeof window.wasmBindings, !!document.getElementById('host'), document.querySelectorAll('.pvrb').length, document.documentElement.outerHTML.slice(0, 1500)];")
            .await;
        panic!("{e}; page state: {state:?}");
    }
    assert_eq!(browser.count("#host .pvrb").await.unwrap(), 1, "mounted into the host element");
    assert_eq!(browser.count("#panel-title").await.unwrap(), 0, "the window title says it already");
    browser.quit().await;
    stack.stop().await;
}

/// As the package's loader does inside PVE: the panel's module imported from PVE's asset path
/// (`/pve2/js/pve-rebalancer/`, not beside the page) and mounted into a host element.
fn pve_page(base: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>{PVE_GLOBALS}<div id=\"host\"></div>\
         <script type=\"module\">window.__pveRebalancerEmbedded = true; \
         const m = await import('{base}/frontend.js'); await m.default(); \
         window.pvrbHandle = m.mount_panel(document.getElementById('host'), {{}});</script></body></html>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_under_pves_asset_path_the_what_if_runs_in_its_worker() {
    let dir = host_pages(&[("index-copy", "", "")]);
    // The panel under PVE's path, and a copy whose worker module is missing.
    let pve = dir.join("pve2/js/pve-rebalancer");
    copy_dir(&panel_dir(), &pve);
    let broken = dir.join("broken");
    copy_dir(&panel_dir(), &broken);
    std::fs::remove_file(broken.join("whatif_bg.wasm")).unwrap();
    let no_loader = dir.join("no-loader");
    copy_dir(&panel_dir(), &no_loader);
    std::fs::remove_file(no_loader.join("whatif_loader.js")).unwrap();
    std::fs::write(dir.join("pve.html"), pve_page("/pve2/js/pve-rebalancer")).unwrap();
    std::fs::write(dir.join("broken.html"), pve_page("/broken")).unwrap();
    std::fs::write(dir.join("no-loader.html"), pve_page("/no-loader")).unwrap();
    let stack = Stack::builder().panel(Some(dir)).start().await.expect("stack");
    let browser = Browser::start(1280, 800, false).await.expect("browser");
    login(&browser, &stack, "index.html").await;
    browser.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();

    browser.goto(&format!("{}/pve.html", stack.backend_url)).await.unwrap();
    browser.wait_for("#host #nodes tbody tr", 1, WAIT).await.unwrap();
    watch_workers(&browser).await;
    browser.click("#simulate").await.unwrap();
    let origin = browser.wait_text("#plan-origin", "SIMULATION", WAIT).await.unwrap();
    assert!(origin.contains("in your browser"), "{origin}");
    assert_eq!(
        workers(&browser).await,
        vec![format!("{}/pve2/js/pve-rebalancer/whatif_loader.js", stack.backend_url)],
        "the worker is found beside frontend.js, not beside the page"
    );

    // A worker that cannot load is said in the plan view, and the buttons come back.
    browser.goto(&format!("{}/broken.html", stack.backend_url)).await.unwrap();
    browser.wait_for("#host #nodes tbody tr", 1, WAIT).await.unwrap();
    browser.click("#simulate").await.unwrap();
    let error = browser.wait_text("#plan-error", "what-if", WAIT).await.unwrap();
    assert!(error.contains("whatif_bg.wasm"), "{error}");
    browser
        .wait_until("return !document.querySelector('#simulate').disabled", "Simulate enabled again", WAIT)
        .await
        .unwrap();
    // The worker's script itself missing: the worker's error event, said the same way.
    browser.goto(&format!("{}/no-loader.html", stack.backend_url)).await.unwrap();
    browser.wait_for("#host #nodes tbody tr", 1, WAIT).await.unwrap();
    browser.click("#simulate").await.unwrap();
    let error = browser.wait_text("#plan-error", "what-if", WAIT).await.unwrap();
    assert!(error.contains("whatif_loader.js"), "{error}");
    browser.quit().await;
    stack.stop().await;
}
