//! The panel's components. Data flows one way: `Panel` loads a `ClusterView`, the views render
//! it; the plan view asks the backend for a plan and renders that.

use crate::api::Failure;
use crate::format::{bar_class, bar_width, gib};
use crate::{api, PanelOptions};
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::ClusterView;
use shared::{Method, NodeLoad, NodeStatus, Plan, PlanRequest};

#[component]
pub fn Panel(opts: PanelOptions) -> impl IntoView {
    let opts = StoredValue::new(opts);
    let (cluster, set_cluster) = signal(None::<Result<ClusterView, Failure>>);
    let reload = move || {
        let o = opts.get_value();
        spawn_local(async move { set_cluster.set(Some(api::cluster(&o).await)) });
    };
    reload();
    let maintenance_node = opts.with_value(|o| (o.view == "maintenance").then(|| o.node.clone()).flatten());
    view! {
        <div class="pvrb">
            <div class="pvrb-toolbar">
                <span class="pvrb-title">"Rebalancing"</span>
                <button id="reload" on:click=move |_| reload()>"Refresh"</button>
            </div>
            {move || match cluster.get() {
                None => view! { <p class="pvrb-muted">"Loading cluster…"</p> }.into_any(),
                Some(Err(e)) if e.needs_login() => {
                    view! { <Login opts=opts.get_value() on_done=Callback::new(move |_| reload()) reason=e.message /> }.into_any()
                }
                Some(Err(e)) => view! { <p class="pvrb-error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(c)) => match maintenance_node.clone() {
                    Some(node) => view! { <Maintenance cluster=c node=node /> }.into_any(),
                    None => view! { <Summary cluster=c.clone() /> <Nodes cluster=c /> <PlanView opts=opts.get_value() /> }.into_any(),
                },
            }}
        </div>
    }
}

/// Shown when the backend wants credentials (standalone; inside the PVE UI the page's ticket is
/// sent along). The password goes to PVE through the backend and is not kept.
#[component]
fn Login(opts: PanelOptions, on_done: Callback<()>, reason: String) -> impl IntoView {
    let opts = StoredValue::new(opts);
    let (user, set_user) = signal(String::from("root@pam"));
    let (password, set_password) = signal(String::new());
    let (error, set_error) = signal(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (o, u, p) = (opts.get_value(), user.get(), password.get());
        spawn_local(async move {
            match api::login(&o, &u, &p).await {
                Ok(()) => on_done.run(()),
                Err(e) => set_error.set(Some(e.message)),
            }
        });
    };
    view! {
        <form id="login" class="pvrb-login" on:submit=submit>
            <p class="pvrb-muted">{reason}</p>
            <label>"User name " <input id="login-user" prop:value=move || user.get()
                on:input=move |ev| set_user.set(event_target_value(&ev)) /></label>
            <label>"Password " <input id="login-password" type="password"
                on:input=move |ev| set_password.set(event_target_value(&ev)) /></label>
            <button id="login-submit" type="submit">"Log in"</button>
            {move || error.get().map(|e| view! { <p class="pvrb-error" role="alert">{e}</p> })}
        </form>
    }
}

#[component]
fn Summary(cluster: ClusterView) -> impl IntoView {
    let s = &cluster.snapshot;
    let quorum = if s.quorate { "quorate" } else { "NOT quorate" };
    view! {
        <div class="pvrb-kpis">
            <span>"Cluster " <b>{s.cluster_name.clone()}</b></span>
            <span>"PVE " {s.pve_version.clone()}</span>
            <span class=if s.quorate { "badge ok" } else { "badge bad" }>{quorum}</span>
            <span>"Memory spread " <b id="memory-spread">{format!("{:.1}", cluster.memory_spread)}</b> " points"</span>
            <span>"CPU spread " <b>{format!("{:.1}", cluster.cpu_spread)}</b> " points"</span>
        </div>
    }
}

#[component]
fn Bar(percent: f64, #[prop(into)] label: String) -> impl IntoView {
    view! {
        <div class=bar_class(percent) title=label.clone()>
            <div class="fill" style=format!("width:{:.1}%", bar_width(percent))></div>
            <span>{format!("{percent:.1}%")}</span>
        </div>
    }
}

#[component]
fn Nodes(cluster: ClusterView) -> impl IntoView {
    let rows = cluster
        .snapshot
        .nodes
        .iter()
        .zip(cluster.memory.iter().zip(&cluster.cpu))
        .map(|(node, (mem, cpu))| {
            let guests = cluster.snapshot.guests_on(&node.name).count();
            let status = match (node.status, node.maintenance) {
                (NodeStatus::Online, false) => view! { <span class="badge ok">"online"</span> }.into_any(),
                (NodeStatus::Online, true) => {
                    view! { <span class="badge warn">"maintenance"</span> }.into_any()
                }
                (NodeStatus::Offline, _) => view! { <span class="badge bad">"offline"</span> }.into_any(),
                (NodeStatus::Unknown, _) => view! { <span class="badge bad">"unknown"</span> }.into_any(),
            };
            let mem_label = format!("{} of {}", gib(node.mem_used), gib(node.mem_total));
            let cpu_label = format!("{:.1} of {} cores", node.cpu_used, node.cpus);
            view! {
                <tr data-node=node.name.clone()>
                    <td class="name">{node.name.clone()}</td>
                    <td>{status}</td>
                    <td class="num">{guests}</td>
                    <td><Bar percent=cpu.percent label=cpu_label /></td>
                    <td><Bar percent=mem.percent label=mem_label /></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="nodes" class="pvrb-grid">
            <thead><tr><th>"Node"</th><th>"Status"</th><th>"Guests"</th><th>"CPU"</th><th>"Memory"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
fn PlanView(opts: PanelOptions) -> impl IntoView {
    let opts = StoredValue::new(opts);
    let (balanciness, set_balanciness) = signal(PlanRequest::default().balanciness);
    let (method, set_method) = signal(Method::Memory);
    let (plan, set_plan) = signal(None::<Result<Plan, Failure>>);
    let (busy, set_busy) = signal(false);
    let compute = move |_| {
        let request =
            PlanRequest { balanciness: balanciness.get(), method: method.get(), ..Default::default() };
        let o = opts.get_value();
        set_busy.set(true);
        spawn_local(async move {
            set_plan.set(Some(api::plan(&o, &request).await));
            set_busy.set(false);
        });
    };
    view! {
        <div class="pvrb-plan">
            <div class="pvrb-toolbar">
                <label>"Method "
                    <select id="method" on:change=move |ev| set_method.set(match event_target_value(&ev).as_str() {
                        "cpu" => Method::Cpu,
                        "disk" => Method::Disk,
                        _ => Method::Memory,
                    })>
                        <option value="memory">"memory"</option>
                        <option value="cpu">"cpu"</option>
                        <option value="disk">"disk"</option>
                    </select>
                </label>
                <label>"Balanciness "
                    <input id="balanciness" type="number" min="0" max="100" step="1"
                        prop:value=move || balanciness.get()
                        on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { set_balanciness.set(v) } />
                    " points"
                </label>
                <button id="compute-plan" disabled=move || busy.get() on:click=compute>
                    {move || if busy.get() { "Computing…" } else { "Compute plan" }}
                </button>
            </div>
            {move || plan.get().map(|p| match p {
                Err(e) => view! { <p class="pvrb-error" role="alert">{e.message}</p> }.into_any(),
                Ok(p) => view! { <PlanResult plan=p /> }.into_any(),
            })}
        </div>
    }
}

#[component]
fn PlanResult(plan: Plan) -> impl IntoView {
    let moved: u64 = plan.steps.iter().map(|s| s.mem_bytes).sum();
    let summary = format!(
        "{} migration(s), {} of memory moved; spread {:.1} → {:.1} points",
        plan.steps.len(),
        gib(moved),
        plan.spread_before,
        plan.spread_after
    );
    let steps = plan
        .steps
        .iter()
        .map(|s| {
            view! {
                <tr>
                    <td class="num">{s.vmid}</td>
                    <td>{s.name.clone()}</td>
                    <td>{format!("{} → {}", s.from, s.to)}</td>
                    <td>{format!("{:?}", s.migration).to_lowercase()}</td>
                    <td class="num">{gib(s.mem_bytes)}</td>
                    <td>{s.reason.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let compare = plan
        .before
        .iter()
        .zip(&plan.after)
        .map(|(b, a): (&NodeLoad, &NodeLoad)| {
            view! {
                <tr>
                    <td class="name">{b.node.clone()}</td>
                    <td><Bar percent=b.percent label="before" /></td>
                    <td><Bar percent=a.percent label="after" /></td>
                </tr>
            }
        })
        .collect_view();
    let notes = plan.notes.iter().map(|n| view! { <li>{n.clone()}</li> }).collect_view();
    view! {
        <p id="plan-summary">{summary}</p>
        <ul class="pvrb-notes">{notes}</ul>
        <table id="plan-steps" class="pvrb-grid">
            <thead><tr><th>"VMID"</th><th>"Name"</th><th>"Move"</th><th>"Kind"</th><th>"Memory"</th><th>"Why"</th></tr></thead>
            <tbody>{steps}</tbody>
        </table>
        <table id="plan-compare" class="pvrb-grid">
            <thead><tr><th>"Node"</th><th>"Before"</th><th>"After"</th></tr></thead>
            <tbody>{compare}</tbody>
        </table>
    }
}

#[component]
fn Maintenance(cluster: ClusterView, node: String) -> impl IntoView {
    let guests = cluster
        .snapshot
        .guests_on(&node)
        .map(|g| {
            view! {
                <tr>
                    <td class="num">{g.vmid}</td>
                    <td>{g.name.clone()}</td>
                    <td>{format!("{:?}", g.status).to_lowercase()}</td>
                    <td class="num">{gib(g.mem_used)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h3 id="maintenance-title">{format!("Maintenance: {node}")}</h3>
        <p class="pvrb-muted">"These guests would have to leave the node. Planning and running the evacuation is not available yet."</p>
        <table id="maintenance-guests" class="pvrb-grid">
            <thead><tr><th>"VMID"</th><th>"Name"</th><th>"Status"</th><th>"Memory"</th></tr></thead>
            <tbody>{guests}</tbody>
        </table>
    }
}
