//! The panel in a real headless Chromium (Debian's), served by the backend, against the simulator
//! with the executor running: log in, plan, simulate, execute and follow a job, preview a node's
//! evacuation, privileges, and screenshots (light, dark, phone width) under `target/screenshots/`.

use crate::panel::{
    file_contains, open_logged_in, panel_as, shots, watch_workers, workers, JOB_WAIT, PLANNER_TEXT, WAIT,
};
use e2e::webdriver::Browser;
use e2e::{panel_dir, Stack};
use std::time::Duration;

/// `(vmid, target)` of every step in the plan table `table` (`#plan-steps`, `#evac-steps`).
async fn planned_moves(browser: &Browser, table: &str) -> Vec<(u32, String)> {
    let script = format!(
        "return [...document.querySelectorAll('{table} tbody tr')].map(r => [Number(r.dataset.vmid), r.cells[4].innerText.split('→')[1].trim()]);"
    );
    let v = browser.eval(&script).await.unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_str().unwrap().to_owned()))
        .collect()
}

/// Confirms the open dialog and waits until every step of the job is done.
async fn confirm_and_wait_done(browser: &Browser, steps: usize) {
    browser.wait_for("#confirm", 1, WAIT).await.unwrap();
    assert_eq!(browser.count("#confirm-steps tbody tr").await.unwrap(), steps, "the dialog lists every step");
    let status = browser.text("#refresh-status").await.unwrap();
    assert_eq!(status, "Auto-refresh paused", "no refresh behind an open dialog");
    browser.click("#confirm-execute").await.unwrap();
    browser.wait_for("#job-steps tbody tr", steps, WAIT).await.unwrap();
    let all_done = format!(
        "const rows = [...document.querySelectorAll('#job-steps tbody tr')]; \
         const bad = rows.filter(r => ['failed','skipped','cancelled','unknown'].includes(r.dataset.state)); \
         if (bad.length) return 'FAILED: ' + bad.map(r => r.innerText).join(' | '); \
         return rows.length === {steps} && rows.every(r => r.dataset.state === 'done');"
    );
    let v = browser.wait_until(&all_done, "every job step done", JOB_WAIT).await.unwrap();
    assert_eq!(v, serde_json::json!(true), "{v}");
    browser.wait_text("#job-headline", ": done", WAIT).await.unwrap();
    assert_eq!(browser.count("#job-dismiss").await.unwrap(), 1, "a finished job can be closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_shows_the_nodes_a_plan_and_a_what_if() {
    let stack = Stack::start(Some(panel_dir())).await.expect("stack starts");
    let nodes = stack.sim.with_cluster(|c| c.nodes.len());
    let browser = Browser::start(1280, 800, false).await.expect("browser starts");

    open_logged_in(&browser, &stack.backend_url, "/", "root@pam", "demo").await;
    let rows = browser.wait_for("#nodes tbody tr", nodes, WAIT).await.unwrap();
    assert_eq!(rows, nodes, "one row per simulated node");
    assert!(!browser.text("#nodes tbody tr td.pvrb-name").await.unwrap().is_empty());

    browser.click("#compute-plan").await.unwrap();
    browser.wait_for("#plan-steps tbody tr", 1, WAIT).await.unwrap();
    let summary = browser.text("#plan-summary").await.unwrap();
    assert!(
        summary.contains("migration") && summary.contains("GiB moved") && summary.contains('≈'),
        "{summary}"
    );
    assert!(summary.contains("spread"), "{summary}");
    browser.wait_text("#plan-origin", "computed by the service", WAIT).await.unwrap();
    assert_eq!(browser.count("#plan-compare tbody tr").await.unwrap(), nodes, "before/after per node");
    browser.screenshot(&shots().join("panel-plan.png")).await.unwrap();

    // Deselecting a step updates the selection line and the execute button.
    let steps = browser.count("#plan-steps tbody tr").await.unwrap();
    browser.click("#plan-steps tbody tr:last-child input.pvrb-step-pick").await.unwrap();
    let label = browser.text("#plan-execute").await.unwrap();
    assert!(label.contains(&format!("{} step", steps - 1)), "{label} after deselecting one of {steps}");

    // The page's module has no engine: the what-if worker, started only now, has it.
    watch_workers(&browser).await;
    assert!(
        !file_contains(&browser, "/frontend_bg.wasm", PLANNER_TEXT).await,
        "the planner is in the first-load module"
    );
    assert!(
        file_contains(&browser, "/whatif_bg.wasm", PLANNER_TEXT).await,
        "the worker's module has the planner"
    );
    assert_eq!(workers(&browser).await, Vec::<String>::new(), "no what-if worker before the first what-if");

    // What-if: a parameter change recomputes in the browser, marked as a simulation.
    browser.fill("#balanciness", "30").await.unwrap();
    browser
        .eval("document.querySelector('#balanciness').dispatchEvent(new Event('change', {bubbles: true}))")
        .await
        .unwrap();
    let origin = browser.wait_text("#plan-origin", "SIMULATION", WAIT).await.unwrap();
    assert!(origin.contains("in your browser"), "{origin}");
    let started = workers(&browser).await;
    assert_eq!(
        started,
        vec![format!("{}/whatif_loader.js", stack.backend_url)],
        "one worker, beside frontend.js"
    );
    browser.select("#level", "5").await.unwrap();
    browser.wait_for("#plan-steps tbody tr", 1, WAIT).await.unwrap();
    assert_eq!(workers(&browser).await, started, "the next what-if reuses the worker");
    browser.screenshot(&shots().join("panel-whatif.png")).await.unwrap();

    // Guests: filter and sort.
    browser.click("#tab-guests").await.unwrap();
    let all = browser.wait_for("#guest-table tbody tr", 30, WAIT).await.unwrap();
    let guests = stack.sim.with_cluster(|c| c.guests.len());
    assert_eq!(all, guests.min(100));
    browser.select("#guest-node", "pve4").await.unwrap();
    let on_pve4 = stack.sim.with_cluster(|c| c.guests.values().filter(|g| g.node == "pve4").count());
    browser
        .wait_until(
            &format!("return document.querySelectorAll('#guest-table tbody tr').length === {on_pve4}"),
            "node filter",
            WAIT,
        )
        .await
        .unwrap();
    browser.click("#guest-table button[data-sort=Memory]").await.unwrap();
    assert_eq!(
        browser.attr("#guest-table th:nth-child(7)", "aria-sort").await.unwrap().as_deref(),
        Some("descending")
    );
    browser.fill("#guest-filter", "gitlab").await.unwrap();
    browser
        .wait_until(
            "return document.querySelectorAll('#guest-table tbody tr').length === 1",
            "text filter",
            WAIT,
        )
        .await
        .unwrap();
    browser.screenshot(&shots().join("panel-guests.png")).await.unwrap();

    // Rules: the demo's tags and HA rule, with their sources.
    browser.click("#tab-rules").await.unwrap();
    browser.wait_for("#rule-constraints tbody tr", 3, WAIT).await.unwrap();
    let rules = browser.text("#rule-constraints").await.unwrap();
    assert!(rules.contains("HA rule 'keep-db02-app04-apart'"), "{rules}");
    assert!(rules.contains("plb_pin_pve1"), "{rules}");
    assert!(browser.count("#why-not tbody tr").await.unwrap() > 0, "why-not from the last plan");
    browser.screenshot(&shots().join("panel-rules.png")).await.unwrap();

    // The per-node entry into maintenance.
    browser.click("#tab-balance").await.unwrap();
    browser.click("button.pvrb-node-maintenance[data-node=pve2]").await.unwrap();
    browser.wait_text("#maintenance-title", "pve2", WAIT).await.unwrap();
    browser.wait_text("#evac-origin", "PREVIEW", WAIT).await.unwrap();

    browser.quit().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_executed_and_followed_until_every_step_is_done() {
    let (stack, browser) = panel_as("/", "root@pam", "demo").await;
    browser.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    browser.click("#compute-plan").await.unwrap();
    browser.wait_for("#plan-steps tbody tr", 1, WAIT).await.unwrap();
    let moves = planned_moves(&browser, "#plan-steps").await;
    assert!(!moves.is_empty());

    browser.click("#plan-execute").await.unwrap();
    browser.screenshot(&shots().join("panel-confirm.png")).await.unwrap();
    confirm_and_wait_done(&browser, moves.len()).await;
    browser.screenshot(&shots().join("panel-job-done.png")).await.unwrap();

    // The simulator moved every guest to its (last) planned node.
    for (vmid, to) in moves.iter().rev().fold(Vec::<(u32, String)>::new(), |mut last, m| {
        if !last.iter().any(|(v, _)| *v == m.0) {
            last.push(m.clone());
        }
        last
    }) {
        assert_eq!(stack.sim.guest_node(vmid).as_deref(), Some(to.as_str()), "guest {vmid}");
    }

    // History lists the job with its outcome and who started it.
    browser.click("#tab-history").await.unwrap();
    browser.wait_for("#history-jobs tbody tr", 1, WAIT).await.unwrap();
    let row = browser.text("#history-jobs tbody tr").await.unwrap();
    assert!(row.contains("done") && row.contains("root@pam"), "{row}");
    browser.click("#history-jobs button.pvrb-job-steps").await.unwrap();
    browser.wait_for("#history-steps tbody tr", moves.len(), WAIT).await.unwrap();
    browser.screenshot(&shots().join("panel-history.png")).await.unwrap();

    browser.quit().await;
    stack.stop().await;
}

/// The preview only: entering for real writes the maintenance state, which this stack keeps at
/// the service's default place (pmxcfs); `browser_more.rs` runs the whole enter/exit with a
/// private state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_view_previews_the_evacuation() {
    let stack = Stack::start(Some(panel_dir())).await.expect("stack starts");
    let browser = Browser::start(1280, 800, false).await.expect("browser starts");
    let on_pve4 = || stack.sim.with_cluster(|c| c.guests.values().filter(|g| g.node == "pve4").count());
    let before = on_pve4();
    assert!(before > 0);

    // What the node toolbar button opens inside PVE: view=maintenance, node=pve4.
    open_logged_in(&browser, &stack.backend_url, "/?view=maintenance&node=pve4", "root@pam", "demo").await;
    browser.wait_text("#panel-title", "Maintenance: pve4", WAIT).await.unwrap();
    assert_eq!(browser.count("#tab-balance").await.unwrap(), 0, "one node's view, no tabs");
    browser.wait_for("#evac-steps tbody tr", before, WAIT).await.unwrap();
    let origin = browser.text("#evac-origin").await.unwrap();
    assert!(origin.contains("PREVIEW") && origin.contains("planned by the service"), "{origin}");
    let moves = planned_moves(&browser, "#evac-steps").await;
    assert!(moves.iter().all(|(_, to)| to != "pve4"));
    assert_eq!(on_pve4(), before, "a preview moves nothing");
    browser.screenshot(&shots().join("panel-maintenance.png")).await.unwrap();

    browser.quit().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_sees_why_execute_is_disabled() {
    let (stack, browser) = panel_as("/", "audit@pve", "audit").await;
    browser.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    browser.click("#compute-plan").await.unwrap();
    browser.wait_for("#plan-steps tbody tr", 1, WAIT).await.unwrap();
    let disabled = browser.eval("return document.querySelector('#plan-execute').disabled").await.unwrap();
    assert_eq!(disabled, serde_json::json!(true));
    let tip = browser.attr("#plan-execute", "title").await.unwrap().unwrap_or_default();
    assert!(tip.contains("VM.Migrate"), "tooltip names the missing privilege: {tip}");

    browser.quit().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dark_theme_and_phone_width_render() {
    let stack = Stack::start(Some(panel_dir())).await.expect("stack starts");

    let dark = Browser::start(1280, 800, true).await.expect("browser starts");
    open_logged_in(&dark, &stack.backend_url, "/", "root@pam", "demo").await;
    dark.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    dark.click("#compute-plan").await.unwrap();
    dark.wait_for("#plan-steps tbody tr", 1, WAIT).await.unwrap();
    let bg =
        dark.eval("return getComputedStyle(document.querySelector('.pvrb')).backgroundColor").await.unwrap();
    assert_eq!(bg.as_str(), Some("rgb(38, 38, 38)"), "PVE's dark background");
    dark.screenshot(&shots().join("panel-dark.png")).await.unwrap();
    dark.quit().await;

    let phone = Browser::start(390, 844, false).await.expect("browser starts");
    open_logged_in(&phone, &stack.backend_url, "/", "root@pam", "demo").await;
    phone.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    phone.click("#compute-plan").await.unwrap();
    phone.wait_for("#plan-steps tbody tr", 1, WAIT).await.unwrap();
    let overflow =
        phone.eval("return document.documentElement.scrollWidth - window.innerWidth").await.unwrap();
    assert!(overflow.as_i64().unwrap_or(999) <= 1, "the page itself never scrolls sideways: {overflow}");
    phone.screenshot(&shots().join("panel-phone.png")).await.unwrap();
    phone.quit().await;

    stack.stop().await;
}

/// At 32 nodes × 3,000 guests (the simulator's seeded generator) the panel shows every node,
/// computes what-ifs within their move budget, and pages and filters the guests. The timings are
/// printed for the record only: budgets belong to docs/BENCHMARKS.md, not to a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_cluster_is_shown_planned_and_filtered() {
    let stack = Stack::builder()
        .scenario(pve_sim::generate(42, 32, 3000))
        .time_scale(1000.0)
        .pve_timeout(Duration::from_secs(30))
        .panel(Some(panel_dir()))
        .start()
        .await
        .expect("stack starts");
    let guests = stack.sim.with_cluster(|c| c.guests.len());
    let browser = Browser::start(1280, 800, false).await.expect("browser starts");
    let now = "return performance.now()";
    let long = Duration::from_secs(120);

    open_logged_in(&browser, &stack.backend_url, "/", "root@pam", "demo").await;
    let t0 = browser.eval(now).await.unwrap().as_f64().unwrap();
    assert_eq!(browser.wait_for("#nodes tbody tr", 32, long).await.unwrap(), 32, "one row per node");
    let loaded = browser.eval(now).await.unwrap().as_f64().unwrap() - t0;

    browser.click("#simulate").await.unwrap();
    let origin = browser.wait_text("#plan-origin", "SIMULATION", long).await.unwrap();
    // A plan asked for now runs until balanced: the form's budget is empty until this plan sets one.
    let budget = browser.eval("return document.querySelector('#max-moves').value").await.unwrap();
    assert_eq!(budget.as_str(), Some(""), "no move budget unless this plan sets one");
    let steps = browser.count("#plan-steps tbody tr").await.unwrap();
    assert!(steps >= 1, "the generated cluster needs moves: {origin}");
    let summary = browser.text("#plan-summary").await.unwrap();
    assert!(!summary.trim().is_empty(), "the what-if has a summary");

    // A heavier what-if: budget 200 moves, then level 5 (chase slight imbalance).
    browser.fill("#max-moves", "200").await.unwrap();
    browser
        .eval("document.querySelector('#max-moves').dispatchEvent(new Event('change', {bubbles: true}))")
        .await
        .unwrap();
    let origin2 = recomputed(&browser, &origin, long).await;
    let steps200 = browser.count("#plan-steps tbody tr").await.unwrap();
    assert!(
        (1..=200).contains(&steps200) && steps200 <= steps.max(200),
        "{steps200} steps with a budget of 200 (until balanced: {steps})"
    );
    browser.select("#level", "5").await.unwrap();
    let origin3 = recomputed(&browser, &origin2, long).await;
    assert!(browser.count("#plan-steps tbody tr").await.unwrap() <= 200);

    browser.click("#tab-guests").await.unwrap();
    browser.wait_for("#guest-table tbody tr", 100, long).await.unwrap();
    let all = browser.wait_text("#guests-range", "of ", long).await.unwrap();
    assert_eq!(range_total(&all), guests, "every guest is listed: {all}");
    let t0 = browser.eval(now).await.unwrap().as_f64().unwrap();
    browser.click("#guest-table button[data-sort=Memory]").await.unwrap();
    browser.fill("#guest-filter", "17").await.unwrap();
    let filtered = format!(
        "const t = document.querySelector('#guests-range').innerText; return t.includes(' of ') && t !== {} ? t : null;",
        serde_json::json!(all)
    );
    let filtered = browser.wait_until(&filtered, "the filter to apply", long).await.unwrap();
    let filter_ms = browser.eval(now).await.unwrap().as_f64().unwrap() - t0;
    let matched = range_total(filtered.as_str().unwrap());
    assert!(0 < matched && matched < guests, "{filtered}");
    let rows_match = browser
        .eval("return [...document.querySelectorAll('#guest-table tbody tr')].every(r => r.innerText.includes('17'))")
        .await
        .unwrap();
    assert_eq!(rows_match, serde_json::json!(true), "every row shown matches the filter");
    browser.screenshot(&shots().join("panel-guests-3000.png")).await.unwrap();
    eprintln!(
        "32×3000 (for the record): login → 32 node rows {loaded:.0} ms; what-ifs: {origin} | {origin2} | {}; \
         sort + filter incl. WebDriver round trips {filter_ms:.0} ms",
        origin3
    );

    browser.quit().await;
    stack.stop().await;
}

/// Waits until `#plan-origin` shows a new simulation, and returns its text.
async fn recomputed(browser: &Browser, before: &str, wait: Duration) -> String {
    let changed = format!(
        "const t = document.querySelector('#plan-origin').innerText; return t !== {} && t.includes('SIMULATION') ? t : null;",
        serde_json::json!(before)
    );
    let v = browser.wait_until(&changed, "the what-if to recompute", wait).await.unwrap();
    v.as_str().unwrap_or_default().to_owned()
}

/// `N` of the guests pager's `A–B of N (page P of Q)`.
fn range_total(text: &str) -> usize {
    text.split(" of ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_shows_pves_message() {
    let (stack, browser) = panel_as("/", "root@pam", "demo").await;
    browser.wait_for("#nodes tbody tr", 1, WAIT).await.unwrap();
    browser.click("#compute-plan").await.unwrap();
    browser.wait_for("#plan-steps tbody tr", 1, WAIT).await.unwrap();
    let moves = planned_moves(&browser, "#plan-steps").await;
    let (victim, _) = moves.last().cloned().expect("a step");
    stack
        .sim
        .arm_fault(&pve_sim::FaultSpec::TaskError {
            vmid: Some(victim),
            count: 1,
            message: "simulated copy failure".into(),
        })
        .unwrap();

    browser.click("#plan-execute").await.unwrap();
    browser.wait_for("#confirm", 1, WAIT).await.unwrap();
    browser.click("#confirm-execute").await.unwrap();
    let headline = browser.wait_text("#job-headline", ": failed", JOB_WAIT).await.unwrap();
    assert!(headline.contains("1 failed"), "{headline}");
    let row = format!("#job-steps tbody tr[data-vmid='{victim}']");
    assert_eq!(browser.attr(&row, "data-state").await.unwrap().as_deref(), Some("failed"));
    let text = browser.text(&row).await.unwrap();
    assert!(text.contains("simulated copy failure"), "PVE's words on the failed step: {text}");
    browser.screenshot(&shots().join("panel-job-failed.png")).await.unwrap();

    browser.quit().await;
    stack.stop().await;
}
