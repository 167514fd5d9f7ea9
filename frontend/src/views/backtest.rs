//! The back-test: what the effective policy and one edited policy would have done over the last
//! days of PVE's history (`POST`/`GET /api/v1/backtest`): progress, a chart of the spread over
//! time (nobody / actual / each policy) and the summary table; "Use this policy" stores the
//! edited settings.

use super::Ctx;
use crate::api::{self, Failure};
use crate::api::{BacktestReport, BacktestStatus};
use crate::live::sleep_ms;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{BacktestPolicy, BacktestStart, BacktestState};
use shared::backtest::RunKind;
use shared::policy::PolicyLayer;

/// Polls of the progress before the view stops asking (10 minutes at one a second).
const MAX_POLLS: u32 = 600;
/// Line colours of the chart, by run (CSS variables fall back to these).
const COLOURS: [&str; 6] = ["#888888", "#c0392b", "#2e86c1", "#28b463", "#af7ac5", "#d4ac0d"];

#[component]
pub fn Backtest() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let days = RwSignal::new(7u32);
    let balanciness = RwSignal::new(String::from("5"));
    let min_gain = RwSignal::new(String::new());
    let max_moves = RwSignal::new(String::new());
    let status = RwSignal::new(None::<Result<BacktestStatus, Failure>>);
    let stored = RwSignal::new(None::<Result<(), Failure>>);
    // The edited policy: each field typed in, over the effective policy; an empty field keeps
    // the effective value.
    let overrides = move || PolicyLayer {
        balanciness: balanciness.get().trim().parse().ok(),
        min_gain: min_gain.get().trim().parse().ok(),
        max_moves: max_moves.get().trim().parse().ok(),
        ..Default::default()
    };
    let start = move |_| {
        let o = ctx.opts.get_value();
        let body = BacktestStart {
            days: days.get(),
            policies: vec![BacktestPolicy { name: "edited".into(), overrides: overrides() }],
            ..Default::default()
        };
        spawn_local(async move {
            let answer = api::backtest_start(&o, &body).await;
            let ok = answer.is_ok();
            status.try_set(Some(answer));
            if ok {
                follow(&o, status).await;
            }
        });
    };
    let use_policy = move |_| {
        let o = ctx.opts.get_value();
        let layer = overrides();
        spawn_local(async move {
            let answer = api::save_settings(&o, &layer).await.map(|_| ());
            stored.try_set(Some(answer));
        });
    };
    let running = move || status.with(|s| matches!(s, Some(Ok(s)) if s.running()));
    view! {
        <div class="pvrb-backtest">
            <p class="pvrb-muted" id="backtest-help">
                "What a policy would have done over the last days, from PVE's own history (node and guest RRD data, past migrations in the task log), planned with the real engine every hour. It assumes load follows the guest; guests created later are absent before their creation, deleted guests are not in the history, and peaks shorter than one RRD sample (30 min in a week's view) are not seen."
            </p>
            <div class="pvrb-form">
                <label>"Days " <input id="backtest-days" type="number" min="1" max="365" prop:value=move || days.get().to_string()
                    on:input=move |ev| days.set(event_target_value(&ev).parse().unwrap_or(7)) /></label>
                <label>" Edited policy: balanciness " <input id="backtest-balanciness" type="number" min="0" max="100" step="0.5"
                    prop:value=move || balanciness.get() on:input=move |ev| balanciness.set(event_target_value(&ev)) /></label>
                <label>" min gain " <input id="backtest-min-gain" type="number" min="0" max="100" step="0.1" placeholder="effective"
                    prop:value=move || min_gain.get() on:input=move |ev| min_gain.set(event_target_value(&ev)) /></label>
                <label>" moves per run " <input id="backtest-max-moves" type="number" min="0" max="10000" placeholder="effective"
                    prop:value=move || max_moves.get() on:input=move |ev| max_moves.set(event_target_value(&ev)) /></label>
                <button id="backtest-start" class="pvrb-button" disabled=running on:click=start>"Run back-test"</button>
            </div>
            {move || status.get().map(|s| match s {
                Err(e) => view! { <p class="pvrb-error" role="alert">{e.message}</p> }.into_any(),
                Ok(s) => view! { <Outcome status=s /> }.into_any(),
            })}
            {move || status.with(|s| matches!(s, Some(Ok(s)) if s.state == BacktestState::Done)).then(|| view! {
                <button id="backtest-use" class="pvrb-button" on:click=use_policy>"Use this policy (store the edited settings)"</button>
            })}
            {move || stored.get().map(|r| match r {
                Ok(()) => view! { <p id="backtest-stored" class="pvrb-muted">"Stored: the service balances with it from now on."</p> }.into_any(),
                Err(e) => view! { <p class="pvrb-error" role="alert">{e.message}</p> }.into_any(),
            })}
        </div>
    }
}

/// Polls the progress every second until the back-test ends (bounded).
async fn follow(o: &crate::PanelOptions, status: RwSignal<Option<Result<BacktestStatus, Failure>>>) {
    for _ in 0..MAX_POLLS {
        sleep_ms(1000).await;
        let answer = api::backtest_status(o).await;
        let done = !matches!(&answer, Ok(s) if s.running());
        if status.try_set(Some(answer)).is_some() || done {
            return;
        }
    }
}

#[component]
fn Outcome(status: BacktestStatus) -> impl IntoView {
    match (status.state, status.report) {
        (BacktestState::Done, Some(report)) => {
            view! { <Chart report=report.clone() /> <Table report=report /> }.into_any()
        }
        (BacktestState::Failed, _) => {
            view! { <p class="pvrb-error" role="alert">{status.error.unwrap_or_default()}</p> }.into_any()
        }
        (state, _) => {
            let what = if state == BacktestState::Replaying { "Replaying" } else { "Importing history" };
            view! { <p id="backtest-progress" class="pvrb-muted">{format!("{what}: {}/{} series ({} from the cache)", status.done, status.total, status.from_cache)}</p> }.into_any()
        }
    }
}

#[component]
fn Chart(report: BacktestReport) -> impl IntoView {
    let lines = report
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let values: Vec<Option<f64>> = run.spread.iter().map(|v| Some(*v)).collect();
            let points = crate::format::sparkline(&values, 600.0, 120.0);
            view! { <polyline points=points fill="none" stroke=COLOURS[i % COLOURS.len()] stroke-width="1.5" data-run=run.name.clone() /> }
        })
        .collect_view();
    let legend = report
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| view! { <span style=format!("color:{}", COLOURS[i % COLOURS.len()])>{format!("■ {} ", run.name)}</span> })
        .collect_view();
    view! {
        <figure class="pvrb-backtest-chart">
            <svg id="backtest-chart" width="600" height="120" viewBox="0 0 600 120" role="img">
                <title>"Spread (max − min node use, points, 0–100) over the replayed days"</title>
                {lines}
            </svg>
            <figcaption class="pvrb-muted">{legend}</figcaption>
        </figure>
    }
}

#[component]
fn Table(report: BacktestReport) -> impl IntoView {
    let rows = report
        .runs
        .into_iter()
        .map(|r| {
            let kind = match r.kind {
                RunKind::Nobody => "nobody balancing",
                RunKind::Actual => "what happened",
                RunKind::Policy => "policy",
            };
            view! {
                <tr data-run=r.name.clone()>
                    <td>{r.name.clone()}</td><td>{kind}</td>
                    <td class="pvrb-num">{format!("{:.1}", r.migrations_per_day)}</td>
                    <td class="pvrb-num">{format!("{:.1}", r.gib_moved)}</td>
                    <td class="pvrb-num">{format!("{:.1}", r.node_hours_over_memory)}</td>
                    <td class="pvrb-num">{format!("{:.1}", r.node_hours_over_cpu)}</td>
                    <td class="pvrb-num">{format!("{:.1}", r.spread_mean)}</td>
                    <td class="pvrb-num">{format!("{:.1}", r.spread_worst)}</td>
                    <td class="pvrb-num">{r.reversals_24h}</td>
                    <td class="pvrb-num">{r.ct_restarts}</td>
                    <td class="pvrb-num">{r.hard_violations}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="pvrb-scroll">
            <table id="backtest-table" class="pvrb-grid">
                <thead><tr><th>"Run"</th><th></th><th class="pvrb-num">"Moves/day"</th><th class="pvrb-num">"GiB moved"</th>
                    <th class="pvrb-num">"Node-h > mem"</th><th class="pvrb-num">"Node-h > CPU"</th><th class="pvrb-num">"Spread mean"</th>
                    <th class="pvrb-num">"Worst"</th><th class="pvrb-num">"Reversals 24 h"</th><th class="pvrb-num">"CT restarts"</th><th class="pvrb-num">"Hard-rule breaches"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}
