//! The cluster at a glance: imbalance figures against the trigger level, a sparkline of the
//! spread over the last hours, and one row per node with CPU, memory and disk bars (the memory
//! reserve marked), host pressure where known, status badges and the way into maintenance.

use super::common::{Bar, Sparkline};
use super::{Ctx, Tab, HISTORY_MINUTES};
use crate::format::{gib, ignored, normalised_cv};
use leptos::prelude::*;
use shared::api::ClusterView;
use shared::{Method, NodeStatus};

/// Percentages of the nodes balancing looks at (online, not in maintenance, not ignored).
fn balanced_percents(c: &ClusterView, loads: &[shared::NodeLoad], ignore: &[String]) -> Vec<f64> {
    loads
        .iter()
        .filter(|l| {
            c.snapshot.node(&l.node).is_some_and(|n| n.status == NodeStatus::Online && !n.maintenance)
                && !ignored(&l.node, ignore)
        })
        .map(|l| l.percent)
        .collect()
}

#[component]
pub fn Summary() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    move || {
        let settings = ctx.settings.get().map(|v| v.settings);
        let ignore = settings.as_ref().map(|s| s.ignore_nodes.clone()).unwrap_or_default();
        ctx.cluster.with(|c| {
            let c = c.as_ref()?;
            let s = &c.snapshot;
            let quorum = if s.quorate { "quorate" } else { "NOT quorate" };
            let mem_cv = normalised_cv(&balanced_percents(c, &c.memory, &ignore));
            let cpu_cv = normalised_cv(&balanced_percents(c, &c.cpu, &ignore));
            // The trigger compares the spread of the resource balancing uses.
            let trigger = settings.as_ref().map(|st| {
                let (name, spread) = match st.method {
                    Method::Cpu => ("CPU", c.cpu_spread),
                    _ => ("memory", c.memory_spread),
                };
                let over = spread > st.balanciness;
                let text = format!(
                    "Trigger {:.1} points ({name}): {}",
                    st.balanciness,
                    if over { "balancing would start" } else { "balanced enough" }
                );
                view! { <span id="trigger" class=if over { "pvrb-badge pvrb-badge-warn" } else { "pvrb-badge pvrb-badge-ok" }>{text}</span> }
            });
            Some(view! {
                <div class="pvrb-kpis">
                    <span>"Cluster " <b>{s.cluster_name.clone()}</b></span>
                    <span>"PVE " {s.pve_version.clone()}</span>
                    <span class=if s.quorate { "pvrb-badge pvrb-badge-ok" } else { "pvrb-badge pvrb-badge-bad" }>{quorum}</span>
                    <span>{format!("{} nodes, {} guests", s.nodes.len(), s.guests.len())}</span>
                    <span title="max − min node usage, in percentage points">"Memory spread " <b id="memory-spread">{format!("{:.1}", c.memory_spread)}</b> " points"</span>
                    <span title="max − min node usage, in percentage points">"CPU spread " <b id="cpu-spread">{format!("{:.1}", c.cpu_spread)}</b> " points"</span>
                    <span title="Coefficient of variation of node usage divided by its maximum √(n−1): 0 = even, 1 = all on one node">
                        "CV memory " <b id="memory-cv">{format!("{mem_cv:.2}")}</b> " · CPU " <b id="cpu-cv">{format!("{cpu_cv:.2}")}</b>
                    </span>
                    {trigger}
                    {headroom(c)}
                    {pve_balancer(c)}
                    <SpreadSparkline />
                </div>
            })
        })
    }
}

/// Memory spread over time: the service's samples when it keeps them, else this page's own
/// since it was opened.
#[component]
fn SpreadSparkline() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    move || {
        let (values, title, source) = match ctx.history.get().filter(|h| h.samples.len() > 1) {
            Some(h) => (
                h.samples.iter().map(|s| Some(s.memory_spread)).collect::<Vec<_>>(),
                format!("Memory spread, last {} min ({} samples by the service)", h.minutes, h.samples.len()),
                "service",
            ),
            None => {
                let local = ctx.samples.get();
                let n = local.len();
                (
                    local.into_iter().map(|s| Some(s.memory_spread)).collect(),
                    format!("Memory spread since this page was opened ({n} loads; the service keeps no history of the last {HISTORY_MINUTES} min)"),
                    "page",
                )
            }
        };
        (values.len() > 1).then(|| {
            view! {
                <span class="pvrb-spark-box" data-source=source>
                    <Sparkline values=values title=title id="spread-spark" />
                </span>
            }
        })
    }
}

fn badges(status: NodeStatus, maintenance: bool, is_ignored: bool) -> impl IntoView {
    let (class, word) = match (status, maintenance) {
        (NodeStatus::Online, false) => ("pvrb-badge pvrb-badge-ok", "online"),
        (NodeStatus::Online, true) => ("pvrb-badge pvrb-badge-warn", "maintenance"),
        (NodeStatus::Offline, _) => ("pvrb-badge pvrb-badge-bad", "offline"),
        (NodeStatus::Unknown, _) => ("pvrb-badge pvrb-badge-bad", "unknown"),
    };
    // Offline and in maintenance: both matter (it comes back empty of new guests).
    let also_maint = (maintenance && status != NodeStatus::Online)
        .then(|| view! { <span class="pvrb-badge pvrb-badge-warn">"maintenance"</span> });
    let ign = is_ignored.then(|| {
        view! { <span class="pvrb-badge" title="Listed in ignore_nodes: balancing leaves it alone">"ignored"</span> }
    });
    view! { <span class="pvrb-badges"><span class=class>{word}</span>{also_maint}{ign}</span> }
}

/// "some 1.2 / 0.4 / 3.0 %" for CPU / memory / IO pressure.
fn psi(p: &shared::model::Pressure) -> String {
    format!("{:.1} / {:.1} / {:.1} %", p.cpu_some, p.memory_some, p.io_some)
}

#[component]
pub fn Nodes() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let open = move |node: String| {
        ctx.maintenance_node.set(Some(node));
        ctx.tab.set(Tab::Maintenance);
    };
    let rows = move || {
        let ignore =
            ctx.settings.with(|v| v.as_ref().map(|v| v.settings.ignore_nodes.clone())).unwrap_or_default();
        ctx.cluster.with(|c| {
            let c = c.as_ref()?;
            Some(
                c.snapshot
                    .nodes
                    .iter()
                    .map(|node| {
                        let load = |loads: &[shared::NodeLoad]| {
                            loads.iter().find(|l| l.node == node.name).map_or(0.0, |l| l.percent)
                        };
                        let guests = c.snapshot.guests_on(&node.name).count();
                        let mem_label = format!("{} of {}", gib(node.mem_used), gib(node.mem_total));
                        let cpu_label = format!("{:.1} of {} cores", node.cpu_used, node.cpus);
                        let disk_label = format!("{} of {} (root filesystem)", gib(node.disk_used), gib(node.disk_total));
                        // The reserve the service plans with (the configuration's), from the cluster view.
                        let reserve_pct = c.memory_reserve.get(&node.name).and_then(|&bytes| {
                            (node.mem_total > 0).then(|| bytes as f64 * 100.0 / node.mem_total as f64)
                        });
                        let mem_label = match reserve_pct {
                            Some(p) => format!("{mem_label}; {p:.1}% kept free (reserve)"),
                            None => mem_label,
                        };
                        let pressure = node.pressure.as_ref().map(psi).unwrap_or_else(|| "—".into());
                        let name = node.name.clone();
                        view! {
                            <tr data-node=node.name.clone()>
                                <td class="pvrb-name">{node.name.clone()}</td>
                                <td>{badges(node.status, node.maintenance, ignored(&node.name, &ignore))}</td>
                                <td class="pvrb-num">{guests}</td>
                                <td><Bar percent=load(&c.cpu) label=cpu_label /></td>
                                <td><Bar percent=load(&c.memory) label=mem_label reserve=reserve_pct.unwrap_or(0.0) /></td>
                                <td><Bar percent=load(&c.disk) label=disk_label /></td>
                                <td class="pvrb-psi" title="Pressure stall (PSI), share of time some tasks waited: CPU / memory / IO">{pressure}</td>
                                <td class="pvrb-act">
                                    <button class="pvrb-node-maintenance pvrb-link" data-node=node.name.clone()
                                        title=format!("Put {} into maintenance: move every guest off it", node.name)
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
                <thead><tr><th>"Node"</th><th>"Status"</th><th class="pvrb-num">"Guests"</th><th>"CPU"</th><th>"Memory"</th><th>"Disk"</th><th>"PSI"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}

/// N+1 as a badge: whether the hardest node to lose could fail with its guests restarted elsewhere.
fn headroom(c: &ClusterView) -> Option<impl IntoView> {
    let h = crate::headroom::n_plus_one(c)?;
    let spare = h.spare_bytes.unsigned_abs();
    let (text, class) = if h.spare_bytes >= 0 {
        (format!("N+1: OK, losing {} leaves {} free", h.node, gib(spare)), "pvrb-badge pvrb-badge-ok")
    } else {
        (format!("N+1: short by {} if {} fails", gib(spare), h.node), "pvrb-badge pvrb-badge-bad")
    };
    let title = "Memory of the running guests of the node hardest to lose, against what the other online nodes have free after their reserve";
    Some(view! { <span id="n-plus-one" class=class title=title data-spare=h.spare_bytes>{text}</span> })
}

/// PVE's own HA auto-rebalancing (PVE 9), as the cluster options say: on with its scheduler and
/// threshold, or off.
fn pve_balancer(c: &ClusterView) -> impl IntoView {
    let (text, title) = match &c.dynamic_balancer {
        Some(d) => {
            let threshold = d.threshold.map(|t| format!(", threshold {t}")).unwrap_or_default();
            let method = d.method.as_deref().map(|m| format!(", {m}")).unwrap_or_default();
            (
                format!("PVE balancer: on ({}{threshold}{method})", d.scheduler),
                "PVE moves HA-managed guests itself; the rebalancer leaves them to it",
            )
        }
        None => (
            "PVE balancer: off".to_owned(),
            "PVE's HA auto-rebalancing is not enabled in the cluster options",
        ),
    };
    view! { <span id="pve-balancer" title=title>{text}</span> }
}
