//! Planning: the parameters, the plan the service computes ("Compute plan"), and the what-if the
//! same engine computes in the browser from the loaded snapshot as the parameters change. Both
//! show in [`PlanResult`], which the maintenance view reuses for its evacuation preview.

use super::common::{Bar, ErrorLine};
use super::execute::ConfirmExecute;
use super::{clock, now_secs, Ctx};
use crate::caps::{AUDIT, MIGRATE};
use crate::format::{self, count, duration, estimate_secs, gib};
use crate::{api, selection, whatif};
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::policy::{PolicyLayer, PolicyView};
use shared::{Method, Plan, PlanStep};
use std::collections::BTreeSet;

/// Where a shown plan comes from; simulations say so until executed.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// `POST /api/v1/plan` (a fresh snapshot, taken by the service).
    Service { at: u64 },
    /// What-if: `shared::planner::plan` in the browser's what-if worker on the loaded snapshot.
    Simulation { at: u64, ms: f64 },
    /// Maintenance: the service's preview of entering (evacuation) or leaving (return home).
    Preview { at: u64 },
}

/// What running a shown plan means.
#[derive(Clone, Debug, PartialEq)]
pub enum Run {
    /// `POST /api/v1/plan/execute` with the selected steps.
    Steps,
    /// `POST /api/v1/maintenance/{node}/enter`: the node is marked and every guest that can
    /// leave does (the service plans again at that moment; no step selection).
    Enter { node: String, request: shared::api::MaintenanceRequest },
    /// `POST /api/v1/maintenance/{node}/exit`, with the return-home plan when asked.
    Exit { node: String, request: shared::api::ExitRequest },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Shown {
    pub plan: Plan,
    /// `plan` as received (the service's answer or the what-if worker's): what executing it
    /// sends. Empty for maintenance previews, which run through their own calls.
    pub json: std::sync::Arc<str>,
    pub origin: Origin,
    pub selected: BTreeSet<usize>,
    /// The job it was handed to.
    pub executed: Option<u64>,
    pub run: Run,
}

impl Shown {
    pub fn new(plan: Plan, json: String, origin: Origin) -> Shown {
        let selected = selection::all(&plan.steps);
        Shown { plan, json: json.into(), origin, selected, executed: None, run: Run::Steps }
    }

    /// All or nothing: maintenance runs the whole plan.
    pub fn fixed(&self) -> bool {
        self.run != Run::Steps
    }
}

pub fn step_gib(s: &PlanStep) -> f64 {
    (s.mem_bytes + s.disk_bytes) as f64 / (1u64 << 30) as f64
}

/// "3 migrations · 24.0 GiB moved · ≈ 45 s"
fn totals<'a>(steps: impl Iterator<Item = &'a PlanStep>) -> String {
    let sizes: Vec<f64> = steps.map(step_gib).collect();
    format!(
        "{} · {:.1} GiB moved · ≈ {}",
        count(sizes.len(), "migration", "migrations"),
        sizes.iter().sum::<f64>(),
        duration(estimate_secs(&sizes, format::ASSUMED_PARALLEL))
    )
}

/// The policy in force (`GET /api/v1/policy`) with the plan form's overrides on top: the
/// settings to show in the form, or the first field out of range.
fn effective(policy: &PolicyView, overrides: &PolicyLayer) -> Result<PolicyView, String> {
    policy.with_overrides(overrides).map_err(|e| format!("{}: {}", e.field, e.detail))
}

/// What the plan form overrides, in words ("balanciness 30, level 5"), for the line under it.
fn override_words(overrides: &PolicyLayer) -> String {
    // Through a string as the request body is (one serializer in the module, not two).
    let json: serde_json::Value =
        serde_json::to_string(overrides).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let fields = json.as_object().map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k} {}", if v.is_null() { "off".into() } else { v.to_string() }))
            .collect::<Vec<_>>()
    });
    match fields.filter(|f| !f.is_empty()) {
        Some(f) => format!("Overrides for this plan only: {}.", f.join(", ")),
        None => "The policy in force (Settings); change a field to override it for this plan.".into(),
    }
}

const PLAN_METHODS: [(Method, &str, &str); 4] = [
    (Method::Memory, "memory", "memory"),
    (Method::Cpu, "cpu", "CPU"),
    (Method::Disk, "disk", "disk"),
    (Method::Weighted, "weighted", "weighted"),
];

#[component]
pub fn PlanView() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    // Only what the user changed travels (`POST /api/v1/plan` takes a `PolicyLayer`); the rest is
    // the policy in force, which the service and the what-if resolve alike.
    let overrides = RwSignal::new(PolicyLayer::default());
    let policy = RwSignal::new(None::<PolicyView>);
    let whatif = RwSignal::new(true);
    let busy = RwSignal::new(None::<&'static str>);
    let error = RwSignal::new(None::<String>);
    let shown = RwSignal::new(None::<Shown>);
    let o = ctx.opts.get_value();
    spawn_local(async move {
        match api::policy(&o).await {
            Ok((p, _)) => {
                policy.try_set(Some(p));
            }
            Err(e) => {
                error.try_set(Some(e.message));
            }
        }
    });
    // The values the form shows: the policy's, with this form's overrides.
    let shown_settings = Memo::new(move |_| {
        let base = policy.get().unwrap_or_else(|| PolicyView {
            settings: Default::default(),
            sources: Default::default(),
            request: Default::default(),
            bandwidth: None,
        });
        overrides.with(|o| effective(&base, o)).map(|v| v.settings).unwrap_or(base.settings)
    });
    let set = move |f: &dyn Fn(&mut PolicyLayer)| overrides.update(|o| f(o));
    let show = move |s: Shown| {
        ctx.last_plan.set(Some(s.plan.clone()));
        shown.set(Some(s));
    };
    // What-if: the policy is fetched fresh (another admin may have stored settings meanwhile),
    // the overrides put on it exactly as the service does, and `shared::planner` plans it here,
    // in the browser's what-if worker (`crate::whatif`, loaded at the first what-if).
    let simulate = move || {
        busy.set(Some("Simulating…"));
        error.set(None);
        let o = ctx.opts.get_value();
        spawn_local(async move {
            let fresh = api::policy(&o).await;
            let checked = fresh.map_err(|e| e.message).and_then(|(p, text)| {
                policy.try_set(Some(p.clone()));
                overrides.with_untracked(|o| effective(&p, o)).map(|_| text)
            });
            match checked {
                Ok(policy_json) => {
                    let at = ctx.cluster.with_untracked(|c| c.as_ref().map(|c| c.snapshot.collected_at));
                    if let Some(at) = at {
                        let job = overrides
                            .with_untracked(|o| whatif::job(&ctx.cluster_json.get_value(), &policy_json, o));
                        match whatif::plan(job).await {
                            Ok((plan, json, ms)) => {
                                show(Shown::new(plan, json, Origin::Simulation { at, ms }))
                            }
                            Err(e) => {
                                error.try_set(Some(e));
                            }
                        }
                    }
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
            busy.try_set(None);
        });
    };
    // What-if: every parameter change recomputes in the browser (not the first run: the page
    // should not pay for a plan nobody asked for).
    Effect::new(move |prev: Option<()>| {
        overrides.track();
        if prev.is_some() && whatif.get_untracked() {
            simulate();
        }
    });
    let compute = move |_| {
        let (o, layer) = (ctx.opts.get_value(), overrides.get_untracked());
        busy.set(Some("Computing…"));
        error.set(None);
        spawn_local(async move {
            match api::plan(&o, &layer).await {
                Ok((plan, json)) => show(Shown::new(plan, json, Origin::Service { at: now_secs() })),
                Err(e) => {
                    error.try_set(Some(e.message));
                }
            }
            busy.try_set(None);
        });
    };
    let num = |ev: &leptos::ev::Event| event_target_value(ev).trim().parse::<f64>().ok();
    let level_text = move || shown_settings.with(|s| s.level.map(|l| l.to_string()).unwrap_or_default());
    view! {
        <div class="pvrb-plan">
            <div class="pvrb-toolbar pvrb-params">
                <label>"Method "
                    <select id="method" prop:value=move || shown_settings.with(|s| PLAN_METHODS.iter().find(|m| m.0 == s.method).map_or("memory", |m| m.1))
                        on:change=move |ev| {
                            let v = event_target_value(&ev);
                            let m = PLAN_METHODS.iter().find(|m| m.1 == v).map_or(Method::Memory, |m| m.0);
                            set(&|o| o.method = Some(m));
                        }>
                        {PLAN_METHODS.iter().map(|(_, v, w)| view! { <option value=*v>{*w}</option> }).collect_view()}
                    </select>
                </label>
                <label title="Level 1 moves only what rules or maintenance demand; 5 chases slight imbalance">"Threshold "
                    <select id="level" prop:value=level_text
                        on:change=move |ev| { let l = event_target_value(&ev).parse().ok(); set(&|o| o.level = Some(l)) }>
                        <option value="">"balanciness"</option>
                        <option value="1">"level 1 (mandatory only)"</option>
                        <option value="2">"level 2"</option>
                        <option value="3">"level 3"</option>
                        <option value="4">"level 4"</option>
                        <option value="5">"level 5 (aggressive)"</option>
                    </select>
                </label>
                <label class:pvrb-hidden=move || !level_text().is_empty()
                    title="Balance only when max − min node usage exceeds this many percentage points">
                    <input id="balanciness" type="number" min="0" max="100" step="1"
                        prop:value=move || shown_settings.with(|s| s.balanciness)
                        on:change=move |ev| if let Some(v) = num(&ev) { set(&|o| o.balanciness = Some(v.clamp(0.0, 100.0))) } />
                    " points"
                </label>
                <label title="Budget of this plan: at most this many migrations; empty = until balanced (the stored max_moves caps scheduled runs only)">"Max moves "
                    <input id="max-moves" type="number" min="1" max="10000" step="1" placeholder="until balanced"
                        prop:value=move || overrides.with(|o| o.max_moves.map(|m| m.to_string()).unwrap_or_default())
                        on:change=move |ev| { let m = num(&ev).map(|v| v.clamp(1.0, 10_000.0) as u32); set(&|o| o.max_moves = m) } />
                </label>
                <label title="Budget: at most this many GiB (memory plus local disk) moved; empty = no limit">"Max GiB "
                    <input id="max-gib" type="number" min="0" step="1" placeholder="any"
                        prop:value=move || shown_settings.with(|s| s.max_gib.map(|g| g.to_string()).unwrap_or_default())
                        on:change=move |ev| { let g = num(&ev).filter(|v| *v > 0.0); set(&|o| o.max_gib = Some(g)) } />
                </label>
                <label title="Recompute the plan in your browser whenever a parameter changes">
                    <input id="whatif" type="checkbox" prop:checked=move || whatif.get()
                        on:change=move |ev| whatif.set(event_target_checked(&ev)) />
                    " what-if"
                </label>
                <button id="simulate" disabled=move || busy.get().is_some() on:click=move |_| simulate()
                    title="Compute the plan in your browser from the loaded snapshot, with the service's policy">"Simulate"</button>
                <button id="compute-plan" class="pvrb-primary" disabled=move || busy.get().is_some() || ctx.denied(AUDIT).is_some()
                    title=move || ctx.denied(AUDIT).unwrap_or_else(|| "Ask the service for a plan on a fresh snapshot".into())
                    on:click=compute>"Compute plan"</button>
                <button id="plan-reset" disabled=move || overrides.with(|o| o.set_fields().is_empty())
                    title="Back to the policy in force" on:click=move |_| overrides.set(PolicyLayer::default())>"Reset"</button>
                {move || busy.get().map(|b| view! { <span class="pvrb-muted" id="plan-busy">{b}</span> })}
            </div>
            <p class="pvrb-muted" id="plan-overrides">{move || overrides.with(override_words)}</p>
            <ErrorLine error=error id="plan-error" />
            <PlanResult shown=shown scope="plan" action="Execute" />
        </div>
    }
}

fn origin_line(origin: &Origin, executed: Option<u64>) -> (String, &'static str) {
    if let Some(id) = executed {
        return (
            format!("Handed to the service as job {id}; progress is shown above."),
            "pvrb-origin pvrb-done",
        );
    }
    match origin {
        Origin::Service { at } => {
            (format!("Plan computed by the service at {}. Nothing has run yet.", clock(*at)), "pvrb-origin")
        }
        Origin::Simulation { at, ms } => (
            format!(
                "SIMULATION — what-if computed in your browser in {ms:.0} ms from the snapshot of {}. Nothing has run; Execute sends this plan to the service.",
                clock(*at)
            ),
            "pvrb-origin pvrb-sim",
        ),
        Origin::Preview { at } => (
            format!(
                "PREVIEW — planned by the service at {}. Nothing is marked and nothing has run; confirming lets the service plan again and run it.",
                clock(*at)
            ),
            "pvrb-origin pvrb-sim",
        ),
    }
}

/// A plan: where it comes from, totals, steps to pick, the execute button, before/after per node,
/// and the guests that stay. `scope` prefixes the element ids (`plan-steps`, `evac-steps`, …).
#[component]
pub fn PlanResult(
    shown: RwSignal<Option<Shown>>,
    scope: &'static str,
    action: &'static str,
) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let confirming = RwSignal::new(false);
    let id = move |what: &str| format!("{scope}-{what}");
    let toggle = move |i: usize, on: bool| {
        shown.update(|s| {
            if let Some(s) = s {
                selection::set(&s.plan.steps, &mut s.selected, i, on);
            }
        })
    };
    let toggle_all = move |on: bool| {
        shown.update(|s| {
            if let Some(s) = s {
                s.selected = if on { selection::all(&s.plan.steps) } else { BTreeSet::new() };
            }
        })
    };
    let blocked = move || -> Option<String> {
        shown.with(|s| {
            let s = s.as_ref()?;
            if s.selected.is_empty() {
                Some("Select at least one step".into())
            } else if ctx.job_running() {
                Some("A job is running; wait for it to end or cancel it".into())
            } else if s.fixed() {
                ctx.denied(crate::caps::MAINTAIN)
            } else {
                ctx.denied(MIGRATE)
            }
        })
    };
    let body = move || {
        shown.with(|s| {
            let s = s.as_ref()?;
            let p = &s.plan;
            let (origin, origin_class) = origin_line(&s.origin, s.executed);
            let all_selected = s.selected.len() == p.steps.len();
            let fixed = s.fixed();
            let summary = format!(
                "{}; spread {:.1} → {:.1} points",
                totals(p.steps.iter()),
                p.spread_before,
                p.spread_after
            );
            let picked = format!(
                "Selected: {}",
                totals(p.steps.iter().enumerate().filter(|(i, _)| s.selected.contains(i)).map(|(_, st)| st))
            );
            let steps = p
                .steps
                .iter()
                .enumerate()
                .map(|(i, st)| {
                    let on = s.selected.contains(&i);
                    let size = if st.disk_bytes > 0 {
                        format!("{} + {} disk", gib(st.mem_bytes), gib(st.disk_bytes))
                    } else {
                        gib(st.mem_bytes)
                    };
                    let after = (!st.depends_on.is_empty())
                        .then(|| format!(" (after step {})", st.depends_on.iter().map(|d| (d + 1).to_string()).collect::<Vec<_>>().join(", ")));
                    view! {
                        <tr class:pvrb-off=!on data-vmid=st.vmid>
                            <td><input type="checkbox" class="pvrb-step-pick" prop:checked=on disabled=fixed
                                aria-label=format!("Run step {}", i + 1)
                                on:change=move |ev| toggle(i, event_target_checked(&ev)) /></td>
                            <td class="pvrb-num pvrb-idx">{i + 1}</td>
                            <td class="pvrb-num">{st.vmid}</td>
                            <td class="pvrb-nowrap">{st.name.clone()}</td>
                            <td class="pvrb-nowrap">{format!("{} → {}", st.from, st.to)}</td>
                            <td>{format::migration(st.migration)}</td>
                            <td class="pvrb-num pvrb-nowrap">{size}</td>
                            <td class="pvrb-why">{st.reason.clone()}{after}</td>
                        </tr>
                    }
                })
                .collect_view();
            let compare = p
                .before
                .iter()
                .zip(&p.after)
                .map(|(b, a)| {
                    view! {
                        <tr>
                            <td class="pvrb-name">{b.node.clone()}</td>
                            <td><Bar percent=b.percent label=format!("before: {:.1}%", b.percent) /></td>
                            <td><Bar percent=a.percent label=format!("after: {:.1}%", a.percent) /></td>
                        </tr>
                    }
                })
                .collect_view();
            let notes = p.notes.iter().map(|n| view! { <li>{n.clone()}</li> }).collect_view();
            let why_not = (!p.why_not.is_empty()).then(|| {
                let rows = p
                    .why_not
                    .iter()
                    .map(|w| view! { <tr><td class="pvrb-num">{w.vmid}</td><td>{w.name.clone()}</td><td>{w.node.clone()}</td><td>{w.reason.clone()}</td></tr> })
                    .collect_view();
                view! {
                    <details id=id("whynot") class="pvrb-details">
                        <summary>{format!("Guests that stay ({})", p.why_not.len())}</summary>
                        <table class="pvrb-grid"><thead><tr><th class="pvrb-num">"VMID"</th><th>"Name"</th><th>"Node"</th><th>"Why it stays"</th></tr></thead>
                        <tbody>{rows}</tbody></table>
                    </details>
                }
            });
            let has_steps = !p.steps.is_empty();
            Some(view! {
                <p id=id("origin") class=origin_class>{origin}</p>
                <p id=id("summary") class="pvrb-summary">{summary}</p>
                {(!p.notes.is_empty()).then(|| view! { <ul id=id("notes") class="pvrb-notes">{notes}</ul> })}
                <div class="pvrb-sidebyside">
                    <div class="pvrb-steps">
                        {has_steps.then(|| view! {
                            <div class="pvrb-scroll">
                                <table id=id("steps") class="pvrb-grid">
                                    <thead><tr>
                                        <th><input type="checkbox" id=id("all") prop:checked=all_selected disabled=fixed aria-label="Select every step"
                                            on:change=move |ev| toggle_all(event_target_checked(&ev)) /></th>
                                        <th class="pvrb-num pvrb-idx">"#"</th><th class="pvrb-num">"VMID"</th><th>"Name"</th><th>"Move"</th><th>"Kind"</th><th class="pvrb-num">"Size"</th><th>"Why"</th>
                                    </tr></thead>
                                    <tbody>{steps}</tbody>
                                </table>
                            </div>
                            <div class="pvrb-toolbar">
                                <span class="pvrb-muted" id=id("selected")>{picked}</span>
                                <span class="pvrb-muted" title=format!("Assumes ~{} GiB/s per migration, {} s setup each, {} at a time", format::ASSUMED_GIB_PER_SEC, format::ASSUMED_SETUP_SECS, format::ASSUMED_PARALLEL)>"(estimate)"</span>
                            </div>
                        })}
                    </div>
                    <div class="pvrb-compare">
                        <table id=id("compare") class="pvrb-grid">
                            <thead><tr><th>"Node"</th><th>"Before"</th><th>"After"</th></tr></thead>
                            <tbody>{compare}</tbody>
                        </table>
                    </div>
                </div>
                {why_not}
            })
        })
    };
    // A plan handed to a job is not offered again: its origin line points to the job instead.
    let has_steps =
        move || shown.with(|s| s.as_ref().is_some_and(|s| !s.plan.steps.is_empty() && s.executed.is_none()));
    let open_confirm = move |_| {
        confirming.set(true);
        ctx.dialog_open.set(true);
    };
    view! {
        {body}
        {move || has_steps().then(|| view! {
            <div class="pvrb-toolbar">
                <button id=id("execute") class="pvrb-primary" disabled=move || blocked().is_some()
                    title=move || blocked().unwrap_or_else(|| "Review the moves, then run them".into())
                    on:click=open_confirm>
                    {move || format!("{action} {}…", count(shown.with(|s| s.as_ref().map_or(0, |s| s.selected.len())), "step", "steps"))}
                </button>
                {move || blocked().map(|why| view! { <span class="pvrb-muted" id=id("blocked")>{why}</span> })}
            </div>
        })}
        {move || confirming.get().then(|| view! { <ConfirmExecute shown=shown open=confirming /> })}
    }
}
