//! The cluster at a glance: headline figures and one row per node with its usage bars and the
//! way into that node's maintenance view.

use super::common::Bar;
use super::{Ctx, Tab};
use crate::format::gib;
use leptos::prelude::*;
use shared::NodeStatus;

#[component]
pub fn Summary() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    move || {
        ctx.cluster.with(|c| {
            let c = c.as_ref()?;
            let s = &c.snapshot;
            let quorum = if s.quorate { "quorate" } else { "NOT quorate" };
            Some(view! {
                <div class="pvrb-kpis">
                    <span>"Cluster " <b>{s.cluster_name.clone()}</b></span>
                    <span>"PVE " {s.pve_version.clone()}</span>
                    <span class=if s.quorate { "badge ok" } else { "badge bad" }>{quorum}</span>
                    <span>{format!("{} nodes, {} guests", s.nodes.len(), s.guests.len())}</span>
                    <span>"Memory spread " <b id="memory-spread">{format!("{:.1}", c.memory_spread)}</b> " points"</span>
                    <span>"CPU spread " <b>{format!("{:.1}", c.cpu_spread)}</b> " points"</span>
                </div>
            })
        })
    }
}

fn status_badge(status: NodeStatus, maintenance: bool) -> impl IntoView {
    let (class, word) = match (status, maintenance) {
        (NodeStatus::Online, false) => ("badge ok", "online"),
        (NodeStatus::Online, true) => ("badge warn", "maintenance"),
        (NodeStatus::Offline, _) => ("badge bad", "offline"),
        (NodeStatus::Unknown, _) => ("badge bad", "unknown"),
    };
    view! { <span class=class>{word}</span> }
}

#[component]
pub fn Nodes() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let open = move |node: String| {
        ctx.maintenance_node.set(Some(node));
        ctx.tab.set(Tab::Maintenance);
    };
    let rows = move || {
        ctx.cluster.with(|c| {
            let c = c.as_ref()?;
            Some(
                c.snapshot
                    .nodes
                    .iter()
                    .zip(c.memory.iter().zip(&c.cpu))
                    .map(|(node, (mem, cpu))| {
                        let guests = c.snapshot.guests_on(&node.name).count();
                        let mem_label = format!("{} of {}", gib(node.mem_used), gib(node.mem_total));
                        let cpu_label = format!("{:.1} of {} cores", node.cpu_used, node.cpus);
                        let name = node.name.clone();
                        view! {
                            <tr data-node=node.name.clone()>
                                <td class="name">{node.name.clone()}</td>
                                <td>{status_badge(node.status, node.maintenance)}</td>
                                <td class="num">{guests}</td>
                                <td><Bar percent=cpu.percent label=cpu_label /></td>
                                <td><Bar percent=mem.percent label=mem_label /></td>
                                <td class="act">
                                    <button class="node-maintenance link" data-node=node.name.clone()
                                        title=format!("Plan moving every guest off {}", node.name)
                                        on:click=move |_| open(name.clone())>"Maintenance…"</button>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view(),
            )
        })
    };
    view! {
        <div class="pvrb-scroll">
            <table id="nodes" class="pvrb-grid">
                <thead><tr><th>"Node"</th><th>"Status"</th><th class="num">"Guests"</th><th>"CPU"</th><th>"Memory"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}
