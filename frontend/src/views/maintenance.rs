//! Maintenance: empty one node before work on it. The backend has no evacuation route, so the
//! engine's `evacuate` runs here on the loaded snapshot; the result is shown as a preview and,
//! once confirmed, executed like any plan (`POST /api/v1/plan/execute`).

use super::common::Bar;
use super::plan::{Origin, PlanResult, Shown};
use super::Ctx;
use crate::format::gib;
use leptos::prelude::*;
use shared::evacuate::{evacuate, EvacuationRequest};
use shared::{GuestStatus, PlanRequest};

#[component]
pub fn Maintenance() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let fixed = ctx.opts.with_value(|o| o.maintenance_only());
    let include_stopped = RwSignal::new(true);
    let shown = RwSignal::new(None::<Shown>);
    let node = move || ctx.maintenance_node.get();
    // Recomputed when the snapshot, the node or the option changes. A refresh that changes
    // nothing leaves the selection alone (the Memo compares plans).
    let preview = Memo::new(move |_| {
        let node = node()?;
        let stopped = include_stopped.get();
        ctx.cluster.with(|c| {
            let c = c.as_ref()?;
            c.snapshot.node(&node)?;
            let t0 = js_sys::Date::now();
            let request = EvacuationRequest {
                nodes: vec![node.clone()],
                include_stopped: stopped,
                move_ignored: true,
                // An evacuation is not a balancing budget: every guest that can leave should.
                request: PlanRequest { max_moves: 10_000, ..PlanRequest::default() },
            };
            let plan = evacuate(&c.snapshot, &request);
            Some((plan, c.snapshot.collected_at, js_sys::Date::now() - t0))
        })
    });
    Effect::new(move |_| {
        let next = preview.get();
        shown.update(|s| match next {
            None => *s = None,
            Some((plan, at, ms)) => {
                let same = s.as_ref().is_some_and(|s| s.plan == plan);
                if !same {
                    *s = Some(Shown::new(plan, Origin::Preview { at, ms }));
                }
            }
        });
    });
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
    view! {
        <div class="pvrb-toolbar">
            {picker}
            <label title="Stopped guests only have their configuration moved; nothing runs">
                <input id="evac-stopped" type="checkbox" prop:checked=move || include_stopped.get()
                    on:change=move |ev| include_stopped.set(event_target_checked(&ev)) />
                " also move stopped guests"
            </label>
        </div>
        {move || match node() {
            None => view! { <p class="pvrb-muted">"Choose the node to empty."</p> }.into_any(),
            Some(n) => view! { <NodeGuests node=n /> }.into_any(),
        }}
        <PlanResult shown=shown scope="evac" action="Evacuate:" />
        {move || shown.with(|s| s.as_ref().is_some_and(|s| s.plan.steps.is_empty() && !s.plan.why_not.is_empty()))
            .then(|| view! { <p class="pvrb-warn">"No guest can leave this node; see why below."</p> })}
        <p class="pvrb-muted">"Afterwards, put the node in maintenance in PVE (ha-manager crm-command node-maintenance enable NODE) so that HA and balancing leave it empty."</p>
    }
}

/// The node's guests now, and where the preview sends each.
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
                            <td class="num">{g.vmid}</td>
                            <td>{g.name.clone()}</td>
                            <td>{status}</td>
                            <td class="num">{gib(g.mem_used)}</td>
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
                            <thead><tr><th class="num">"VMID"</th><th>"Name"</th><th>"Status"</th><th class="num">"Memory"</th><th>"Tags"</th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                </details>
            }.into_any())
        })
    }
}
