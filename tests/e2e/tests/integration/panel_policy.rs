//! The panel and the one policy (issue 17), in a real headless Chromium against the simulator and
//! a backend whose configuration file sets the executor limits: the Settings view shows where
//! each value comes from and saves only the fields changed in it (`PUT` of a `PolicyLayer`), and
//! the what-if plans in the browser with the service's policy (`GET /api/v1/policy`), stored
//! settings and the plan form's overrides included, step for step as the service does.

use e2e::webdriver::Browser;
use e2e::{Session, Stack};
use shared::api::SettingsView;
use shared::Plan;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn start() -> (Stack, Browser, Session) {
    crate::panel::panel_and_api().await
}

/// Sets an input's value and fires `change`, as typing and leaving the field does (WebDriver's
/// clear fires its own `change` with an empty value first, which the form rightly refuses).
async fn change(browser: &Browser, css: &str, value: &str) {
    let script = format!(
        "const e = document.querySelector({}); e.value = {}; e.dispatchEvent(new Event('change', {{bubbles: true}}))",
        serde_json::json!(css),
        serde_json::json!(value)
    );
    browser.eval(&script).await.unwrap();
}

async fn idle(browser: &Browser) {
    browser
        .wait_until("return !document.querySelector('#plan-busy')", "the plan form idle", WAIT)
        .await
        .unwrap();
}

/// What another admin stores meanwhile, through the API.
async fn store(api: &Session, stack: &Stack, layer: serde_json::Value) -> SettingsView {
    let resp = api
        .http
        .put(format!("{}/api/v1/settings", stack.backend_url))
        .header("CSRFPreventionToken", &api.csrf)
        .json(&layer)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "PUT {layer}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn stored(api: &Session) -> SettingsView {
    api.get("/api/v1/settings").send().await.unwrap().json().await.unwrap()
}

/// The source word shown beside a settings field (`#src-<field>`).
async fn source_of(browser: &Browser, field: &str) -> String {
    let script = format!(
        "const e = document.querySelector('#src-{field} [data-source]'); return e ? e.dataset.source : null;"
    );
    browser.eval(&script).await.unwrap().as_str().unwrap_or("(none)").to_owned()
}

async fn wait_source(browser: &Browser, field: &str, word: &str) {
    let script = format!(
        "const e = document.querySelector('#src-{field} [data-source]'); return !!e && e.dataset.source === '{word}';"
    );
    browser.wait_until(&script, &format!("{field} marked {word}"), WAIT).await.unwrap();
}

fn vmids(plan: &Plan) -> Vec<u32> {
    plan.steps.iter().map(|s| s.vmid).collect()
}

async fn shown_vmids(browser: &Browser) -> Vec<u32> {
    let v = browser
        .eval(
            "return [...document.querySelectorAll('#plan-steps tbody tr')].map(r => Number(r.dataset.vmid));",
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_show_each_values_source_and_save_only_what_changed() {
    let (stack, browser, api) = start().await;
    browser.click("#tab-settings").await.unwrap();
    browser.wait_for("#settings-fields", 1, WAIT).await.unwrap();
    // The stack's configuration file names the executor limits; nobody set balanciness.
    wait_source(&browser, "max-parallel", "file").await;
    assert_eq!(source_of(&browser, "balanciness").await, "default");
    assert_eq!(source_of(&browser, "cooldown-secs").await, "default");

    change(&browser, "#set-balanciness", "7").await;
    change(&browser, "#set-cooldown-secs", "30").await;
    browser.select("#set-balance-types", "[\"vm\"]").await.unwrap();
    wait_source(&browser, "balanciness", "changed").await;
    assert_eq!(source_of(&browser, "max-moves").await, "default", "an untouched field is not marked changed");

    // Another admin stores max_moves meanwhile; this form never touched it, so Save keeps theirs.
    store(&api, &stack, serde_json::json!({ "max_moves": 9 })).await;
    browser.click("#settings-save").await.unwrap();
    let saved = browser.wait_text("#settings-saved", "Saved", WAIT).await.unwrap();
    assert!(saved.contains("balanciness") && saved.contains("cooldown_secs"), "{saved}");
    assert!(!saved.contains("max_moves"), "only the changed fields are sent: {saved}");

    let v = stored(&api).await;
    assert_eq!(v.settings.balanciness, 7.0);
    assert_eq!(v.settings.cooldown_secs, 1800, "minutes in the form, seconds stored");
    assert_eq!(v.settings.balance_types, vec![shared::policy::BalanceType::Vm]);
    assert_eq!(v.settings.max_moves, 9, "the other admin's value survives the save");
    wait_source(&browser, "balanciness", "stored").await;
    assert_eq!(source_of(&browser, "max-moves").await, "stored");
    assert_eq!(source_of(&browser, "max-parallel").await, "file");

    // A stored value forgotten: the default shows again, the other stored values stay.
    change(&browser, "#set-min-gain", "3").await;
    browser.click("#reset-balanciness").await.unwrap();
    wait_source(&browser, "balanciness", "default").await;
    assert_eq!(source_of(&browser, "min-gain").await, "changed", "an unsaved edit survives a reset");
    let after = stored(&api).await;
    assert_eq!(after.settings.balanciness, shared::api::Settings::default().balanciness);
    assert_eq!((after.settings.max_moves, after.settings.cooldown_secs), (9, 1800));
    browser.click("#settings-revert").await.unwrap();

    // Bad input: named, nothing sent.
    change(&browser, "#set-max-per-node", "0").await;
    browser.click("#settings-save").await.unwrap();
    let err = browser.wait_text("#settings-error", "max_per_node", WAIT).await.unwrap();
    assert!(err.contains("Nothing was saved"), "{err}");
    assert_eq!(stored(&api).await.settings.max_per_node, v.settings.max_per_node);
    browser.quit().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_plans_with_the_services_policy() {
    let (stack, browser, api) = start().await;
    let service = |layer: serde_json::Value| {
        let api = &api;
        async move {
            let resp = api.post("/api/v1/plan").json(&layer).send().await.unwrap();
            assert!(resp.status().is_success(), "plan {layer}: {}", resp.status());
            resp.json::<Plan>().await.unwrap()
        }
    };
    let unlimited = service(serde_json::json!({})).await;
    assert!(unlimited.steps.len() > 3, "the demo needs more than three moves: {:?}", vmids(&unlimited));

    // Stored after the page loaded: the what-if fetches the policy before it plans. (The plans
    // themselves may differ: the service plans on a fresh snapshot with recent migrations and
    // preflight; the policy they plan with is the same, and the budget note says which.)
    // (`max_gib` caps every plan; the stored `max_moves` caps scheduled runs only.)
    store(&api, &stack, serde_json::json!({ "max_gib": 15.0 })).await;
    browser.click("#simulate").await.unwrap();
    browser.wait_text("#plan-origin", "SIMULATION", WAIT).await.unwrap();
    let note = browser.wait_text("#plan-notes", "by the plan's cap", WAIT).await.unwrap();
    let capped = service(serde_json::json!({})).await;
    assert!(capped.notes.iter().any(|n| n.contains("by the plan's cap")), "{:?} / {note}", capped.notes);
    assert!(capped.steps.len() < unlimited.steps.len(), "15 GiB caps the plan");
    browser
        .wait_until("return document.querySelector('#max-gib').value === '15'", "form shows the policy", WAIT)
        .await
        .unwrap();

    // An override in the form: the what-if and the service's plan of the same layer agree.
    change(&browser, "#max-moves", "3").await;
    browser.wait_text("#plan-overrides", "max_moves 3", WAIT).await.unwrap();
    browser.wait_text("#plan-notes", "by the plan's cap", WAIT).await.unwrap();
    let whatif = shown_vmids(&browser).await;
    assert!(!whatif.is_empty() && whatif.len() <= 3, "{whatif:?}");
    idle(&browser).await;
    browser.click("#compute-plan").await.unwrap();
    browser.wait_text("#plan-origin", "computed by the service", WAIT).await.unwrap();
    browser.wait_text("#plan-notes", "by the plan's cap", WAIT).await.unwrap();
    let sent = service(serde_json::json!({ "max_moves": 3 })).await;
    assert_eq!(shown_vmids(&browser).await, vmids(&sent), "Compute plan sends the same overrides");

    // A stored balanciness of 100 (no spread is that large): the what-if only moves what the rules
    // demand, no move is made for balance.
    store(&api, &stack, serde_json::json!({ "balanciness": 100.0 })).await;
    browser.click("#plan-reset").await.unwrap();
    idle(&browser).await;
    browser.click("#simulate").await.unwrap();
    browser.wait_text("#plan-origin", "SIMULATION", WAIT).await.unwrap();
    let why = browser
        .eval("return [...document.querySelectorAll('#plan-steps tbody tr')].map(r => r.cells[7].innerText);")
        .await
        .unwrap();
    let why: Vec<String> = serde_json::from_value(why).unwrap();
    assert!(why.len() < unlimited.steps.len(), "{why:?}");
    assert!(why.iter().all(|w| w.contains("affinity")), "only rule moves under balanciness 100: {why:?}");
    browser.quit().await;
    stack.stop().await;
}
