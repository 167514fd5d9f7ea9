//! Maintenance of one node through the service (`/api/v1/maintenance/{node}`): the node's
//! state, a preview of the evacuation (enter) or of bringing guests back (exit with return
//! home), then confirm → the service marks the node and runs the plan as a job, followed live
//! like any other. The node toolbar button in PVE opens this view (`view: "maintenance"`).

use super::common::{Bar, ErrorLine};
use super::plan::{Origin, PlanResult, Run, Shown};
use super::{clock, now_secs, Ctx};
use crate::api::{self, Failure};
use crate::caps::MAINTAIN;
use crate::format::gib;
use crate::progress::Progress;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{ExitRequest, MaintenanceRequest, MaintenanceState, NodeMaintenance};
use shared::GuestStatus;

fn state_words(m: &NodeMaintenance) -> (&'static str, &'static str) {
    match (m.state, m.ha_maintenance) {
        (MaintenanceState::None, false) => ("pvrb-badge pvrb-badge-ok", "not in maintenance"),
        (MaintenanceState::None, true) => {
            ("pvrb-badge pvrb-badge-warn", "in PVE HA maintenance (not set by the rebalancer)")
        }
        (MaintenanceState::Entering, _) => {
            ("badge state-running", "entering maintenance: guests are leaving")
        }
        (MaintenanceState::InMaintenance, _) => ("pvrb-badge pvrb-badge-warn", "in maintenance"),
        (MaintenanceState::Exiting, _) => ("badge state-running", "leaving maintenance"),
        (MaintenanceState::Failed, _) => {
            ("badge state-failed", "maintenance failed: guests that can move are still here")
        }
    }
}

/// The state the actions follow: an `entering` mark whose job has ended (the service gives the
/// reason it is not in maintenance) can be exited, like a failed one.
fn actionable(m: &NodeMaintenance) -> MaintenanceState {
    match m.state {
        MaintenanceState::Entering if m.reason.is_some() => MaintenanceState::Failed,
        s => s,
    }
}

#[component]
pub fn Maintenance() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let fixed = ctx.opts.with_value(|o| o.maintenance_only());
    let include_stopped = RwSignal::new(true);
    let ha = RwSignal::new(false);
    let return_home = RwSignal::new(true);
    let record = RwSignal::new(None::<Result<NodeMaintenance, Failure>>);
    let shown = RwSignal::new(None::<Shown>);
    let preview_error = RwSignal::new(None::<String>);
    let action_error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let node = move || ctx.maintenance_node.get();

    // The node's record: on open, after every cluster load and when a job ends.
    Effect::new(move |_| {
        ctx.loaded_at.track();
        ctx.jobs_changed.track();
        let Some(n) = node() else {
            record.set(None);
            return;
        };
        let o = ctx.opts.get_value();
        spawn_local(async move {
            let answer = api::maintenance(&o, &n).await;
            // Only if the user has not switched nodes meanwhile.
            if ctx.maintenance_node.try_get_untracked().flatten().as_deref() == Some(n.as_str()) {
                record.try_set(Some(answer));
            }
        });
    });

    // A job of this node still running (e.g. the window was closed and opened again): follow it.
    Effect::new(move |_| {
        let Some(Ok(m)) = record.get() else { return };
        let busy_state = matches!(m.state, MaintenanceState::Entering | MaintenanceState::Exiting);
        if let (true, Some(id)) = (busy_state, m.job_id) {
            if ctx.job.with_untracked(|j| j.as_ref().map(|p| p.job_id)) != Some(id) {
                ctx.follow_job(Progress {
                    job_id: id,
                    steps: vec![],
                    end: None,
                    channel: "live",
                    error: None,
                });
            }
        }
    });

    // The preview: what entering (or leaving) would do now. Recomputed by the service when the
    // state or an option changes; the shown plan is kept when nothing changed.
    let state = Memo::new(move |_| match record.get() {
        Some(Ok(m)) => Some((m.node.clone(), actionable(&m))),
        _ => None,
    });
    Effect::new(move |_| {
        let Some((n, st)) = state.get() else {
            shown.set(None);
            return;
        };
        let (stopped, ha, home) = (include_stopped.get(), ha.get(), return_home.get());
        ctx.loaded_at.track();
        let o = ctx.opts.get_value();
        let run = match st {
            MaintenanceState::None => Run::Enter {
                node: n.clone(),
                request: MaintenanceRequest { preview: true, ha, include_stopped: stopped },
            },
            MaintenanceState::InMaintenance | MaintenanceState::Failed => {
                Run::Exit { node: n.clone(), request: ExitRequest { preview: true, return_home: home, ha } }
            }
            // A job is under way; nothing to preview until it ends.
            _ => {
                shown.set(None);
                return;
            }
        };
        spawn_local(async move {
            let answer = match &run {
                Run::Enter { node, request } => api::enter(&o, node, request).await,
                Run::Exit { node, request } => api::exit(&o, node, request).await,
                Run::Steps => return,
            };
            match answer {
                Ok(a) => {
                    preview_error.try_set(None);
                    shown.try_update(|s| {
                        let same = s.as_ref().is_some_and(|s| s.plan == a.plan && s.run == run);
                        if !same {
                            let mut next =
                                Shown::new(a.plan, String::new(), Origin::Preview { at: now_secs() });
                            next.run = run;
                            *s = Some(next);
                        }
                    });
                }
                Err(e) => {
                    preview_error.try_set(Some(e.message));
                    shown.try_set(None);
                }
            }
        });
    });

    // Nothing to move: mark or clear at once (no job, so no confirmation list to show).
    let act_now = move |_| {
        let Some(s) = shown.get_untracked() else { return };
        let o = ctx.opts.get_value();
        busy.set(true);
        action_error.set(None);
        spawn_local(async move {
            let answer = match s.run {
                Run::Enter { node, mut request } => {
                    request.preview = false;
                    api::enter(&o, &node, &request).await
                }
                Run::Exit { node, mut request } => {
                    request.preview = false;
                    api::exit(&o, &node, &request).await
                }
                Run::Steps => return,
            };
            match answer {
                Ok(a) => {
                    if let Some(id) = a.job_id {
                        let all = crate::selection::all(&a.plan.steps);
                        ctx.follow_job(Progress::queued(id, &a.plan, &all));
                    }
                    record.try_set(Some(Ok(a.state)));
                    ctx.jobs_changed.try_update(|n| *n += 1);
                    ctx.reload();
                }
                Err(e) => {
                    action_error.try_set(Some(e.message));
                }
            }
            busy.try_set(false);
        });
    };

    let picker = move || {
        (!fixed).then(|| {
            let options = ctx.cluster.with(|c| {
                c.as_ref().map(|c| {
                    c.snapshot
                        .nodes
                        .iter()
                        .map(|n| {
                            let name = n.name.clone();
                            let selected = node().as_deref() == Some(name.as_str());
                            view! { <option value=name.clone() selected=selected>{name.clone()}</option> }
                        })
                        .collect_view()
                })
            });
            view! {
                <label>"Node "
                    <select id="maintenance-node" on:change=move |ev| {
                        let v = event_target_value(&ev);
                        ctx.maintenance_node.set((!v.is_empty()).then_some(v));
                    }>
                        <option value="" selected=move || node().is_none()>"choose…"</option>
                        {options}
                    </select>
                </label>
            }
        })
    };
    let current = move || state.get().map(|(_, s)| s);
    let options = move || {
        let st = current()?;
        Some(match st {
            MaintenanceState::None => view! {
                <label title="Stopped guests only have their configuration moved; nothing runs">
                    <input id="evac-stopped" type="checkbox" prop:checked=move || include_stopped.get()
                        on:change=move |ev| include_stopped.set(event_target_checked(&ev)) />
                    " also move stopped guests"
                </label>
                <label title="Also run ha-manager crm-command node-maintenance enable, so PVE HA places nothing here">
                    <input id="evac-ha" type="checkbox" prop:checked=move || ha.get()
                        on:change=move |ev| ha.set(event_target_checked(&ev)) />
                    " PVE HA maintenance too"
                </label>
            }
            .into_any(),
            MaintenanceState::InMaintenance | MaintenanceState::Failed => view! {
                <label title="Move the guests that ran here before maintenance back, as far as rules and capacity allow">
                    <input id="exit-return-home" type="checkbox" prop:checked=move || return_home.get()
                        on:change=move |ev| return_home.set(event_target_checked(&ev)) />
                    " bring the guests back (return home)"
                </label>
            }
            .into_any(),
            _ => ().into_any(),
        })
    };
    let status = move || match record.get() {
        None => node()
            .map(|_| view! { <p class="pvrb-muted">"Loading the node's maintenance state…"</p> }.into_any()),
        Some(Err(e)) => Some(view! { <p class="pvrb-error" role="alert">{e.message}</p> }.into_any()),
        Some(Ok(m)) => {
            let (class, words) = state_words(&m);
            let since = match (m.since, &m.by) {
                (Some(at), Some(by)) => format!(" since {} by {by}", clock(at)),
                (Some(at), None) => format!(" since {}", clock(at)),
                _ => String::new(),
            };
            let homes = (!m.homes.is_empty() && m.state == MaintenanceState::InMaintenance)
                .then(|| format!(" {} guests can return home.", m.homes.len()));
            let reason = m.reason.clone().map(|r| format!(" {r}"));
            Some(
                view! {
                    <p class="pvrb-maint-state"><span id="maintenance-state" class=class data-state=m.state.as_str()>{words}</span>
                        <span class="pvrb-muted">{since}{homes}</span><span id="maintenance-reason">{reason}</span></p>
                }
                .into_any(),
            )
        }
    };
    let empty_action = move || {
        let s = shown.get()?;
        if !s.plan.steps.is_empty() || s.executed.is_some() {
            return None;
        }
        let label = match s.run {
            Run::Enter { .. } => "Mark in maintenance",
            Run::Exit { .. } => "Exit maintenance",
            Run::Steps => return None,
        };
        let denied = ctx.denied(MAINTAIN);
        let blocked = denied.is_some();
        Some(view! {
            <div class="pvrb-toolbar">
                <button id="maintenance-act" class="pvrb-primary" disabled=move || busy.get() || blocked
                    title=denied.unwrap_or_else(|| "No guest has to move".into())
                    on:click=act_now>{label}</button>
            </div>
        })
    };
    let action = move || match current() {
        Some(MaintenanceState::InMaintenance | MaintenanceState::Failed) => "Exit maintenance:",
        _ => "Enter maintenance:",
    };
    view! {
        <div class="pvrb-toolbar">{picker}{options}</div>
        {status}
        {move || match node() {
            None => view! { <p class="pvrb-muted">"Choose the node to put into maintenance."</p> }.into_any(),
            Some(n) => view! { <NodeGuests node=n /> }.into_any(),
        }}
        <ErrorLine error=preview_error id="evac-error" />
        {move || view! { <PlanResult shown=shown scope="evac" action=action() /> }}
        {empty_action}
        <ErrorLine error=action_error />
        {move || shown.with(|s| s.as_ref().is_some_and(|s| s.plan.steps.is_empty() && !s.plan.why_not.is_empty()))
            .then(|| view! { <p class="pvrb-warn">"Some guests cannot leave this node; see why below."</p> })}
    }
}

/// The node's guests now.
#[component]
fn NodeGuests(node: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let node = StoredValue::new(node);
    move || {
        let node = node.get_value();
        ctx.cluster.with(|c| {
            let c = c.as_ref()?;
            let n = c.snapshot.node(&node)?;
            let mem = c.memory.iter().find(|l| l.node == node).map_or(0.0, |l| l.percent);
            let guests: Vec<_> = c.snapshot.guests_on(&node).collect();
            let head = format!("{}: {} on it, {} of {} memory used", node, crate::format::count(guests.len(), "guest", "guests"), gib(n.mem_used), gib(n.mem_total));
            if guests.is_empty() {
                return Some(view! {
                    <p id="maintenance-empty" class="pvrb-ok">{format!("{node} has no guests: it can be shut down or upgraded.")}</p>
                }.into_any());
            }
            let rows = guests
                .iter()
                .map(|g| {
                    let status = match g.status {
                        GuestStatus::Running => "running",
                        GuestStatus::Stopped => "stopped",
                        GuestStatus::Other => "other",
                    };
                    view! {
                        <tr data-vmid=g.vmid>
                            <td class="pvrb-num">{g.vmid}</td>
                            <td>{g.name.clone()}</td>
                            <td>{status}</td>
                            <td class="pvrb-num">{gib(g.mem_used)}</td>
                            <td>{g.tags.join(", ")}</td>
                        </tr>
                    }
                })
                .collect_view();
            Some(view! {
                <div class="pvrb-toolbar"><b id="maintenance-title">{head}</b><span class="pvrb-bar-inline"><Bar percent=mem label="memory" /></span></div>
                <details class="pvrb-details" open=guests.len() <= 12>
                    <summary>"Guests on the node"</summary>
                    <div class="pvrb-scroll">
                        <table id="maintenance-guests" class="pvrb-grid">
                            <thead><tr><th class="pvrb-num">"VMID"</th><th>"Name"</th><th>"Status"</th><th class="pvrb-num">"Memory"</th><th>"Tags"</th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                </details>
            }.into_any())
        })
    }
}
