//! Every guest: filter, sort by any column, one page of 100 rows rendered at a time (smooth at
//! thousands of guests: the filter and sort are plain Rust over indices, the DOM stays small).

use super::tools::{BestNodeForm, MigrateDialog, Moving};
use super::Ctx;
use crate::format::gib;
use crate::guests::{page, pages, rows, Filter, Sort, SortKey};
use leptos::prelude::*;
use shared::{GuestKind, GuestStatus};

const PAGE: usize = 100;

#[component]
pub fn Guests() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let filter = RwSignal::new(Filter::default());
    let sort = RwSignal::new(Sort::default());
    let page_no = RwSignal::new(0usize);
    let moving = RwSignal::new(None::<Moving>);
    let matching = Memo::new(move |_| {
        let (f, s) = (filter.get(), sort.get());
        ctx.cluster.with(|c| c.as_ref().map(|c| rows(&c.snapshot, &f, s)).unwrap_or_default())
    });
    let set = move |f: fn(&mut Filter, String)| {
        move |ev: leptos::ev::Event| {
            let v = event_target_value(&ev);
            filter.update(|flt| f(flt, v));
            page_no.set(0);
        }
    };
    let header = move |key: SortKey, label: &'static str, class: &'static str| {
        let mark = move || {
            let s = sort.get();
            if s.key != key {
                ""
            } else if s.descending {
                " ▼"
            } else {
                " ▲"
            }
        };
        let aria = move || {
            let s = sort.get();
            if s.key != key {
                "none"
            } else if s.descending {
                "descending"
            } else {
                "ascending"
            }
        };
        view! {
            <th class=class aria-sort=aria>
                <button class="pvrb-sort" data-sort=label on:click=move |_| sort.update(|s| *s = s.clicked(key))>{label}{mark}</button>
            </th>
        }
    };
    let node_options = move || {
        ctx.cluster.with(|c| {
            c.as_ref().map(|c| {
                c.snapshot
                    .nodes
                    .iter()
                    .map(|n| view! { <option value=n.name.clone()>{n.name.clone()}</option> })
                    .collect_view()
            })
        })
    };
    let body = move || {
        let idx = matching.get();
        let (range, shown_page) = page(idx.len(), page_no.get(), PAGE);
        ctx.cluster.with(|c| {
            let c = c.as_ref()?;
            Some(
                idx[range]
                    .iter()
                    .map(|&i| {
                        let g = &c.snapshot.guests[i];
                        let _ = shown_page;
                        view! {
                            <tr data-vmid=g.vmid>
                                <td class="pvrb-num">{g.vmid}</td>
                                <td>{g.name.clone()}</td>
                                <td>{match g.kind { GuestKind::Qemu => "VM", GuestKind::Lxc => "CT" }}</td>
                                <td>{g.node.clone()}</td>
                                <td>{match g.status { GuestStatus::Running => "running", GuestStatus::Stopped => "stopped", GuestStatus::Other => "other" }}</td>
                                <td class="pvrb-num">{format!("{:.2} / {}", g.cpu_used, g.cpus)}</td>
                                <td class="pvrb-num pvrb-nowrap">{format!("{} / {}", gib(g.mem_used), gib(g.mem_max))}</td>
                                <td class="pvrb-num pvrb-nowrap">{gib(g.disk_max)}</td>
                                <td class="pvrb-tags">{g.tags.join(", ")}</td>
                                <td>{if g.ha_managed { "HA" } else { "" }}</td>
                                <td class="pvrb-act">{
                                    let m = Moving { vmid: g.vmid, name: g.name.clone(), node: g.node.clone() };
                                    view! {
                                        <button class="pvrb-link pvrb-migrate" data-vmid=g.vmid
                                            disabled=move || ctx.denied(crate::caps::MIGRATE).is_some() || ctx.job_running()
                                            title=move || ctx.denied(crate::caps::MIGRATE).unwrap_or_else(|| "Move this guest to the node the engine suggests, as a one-step job".into())
                                            on:click=move |_| moving.set(Some(m.clone()))>"Migrate…"</button>
                                    }
                                }</td>
                            </tr>
                        }
                    })
                    .collect_view(),
            )
        })
    };
    let pager = move || {
        let total = matching.with(Vec::len);
        let (range, p) = page(total, page_no.get(), PAGE);
        let n = pages(total, PAGE);
        view! {
            <button id="guests-prev" disabled=p == 0 on:click=move |_| page_no.set(p.saturating_sub(1))>"‹ Previous"</button>
            <span id="guests-range">{if total == 0 { "no guest matches".to_owned() } else { format!("{}–{} of {} (page {} of {n})", range.start + 1, range.end, total, p + 1) }}</span>
            <button id="guests-next" disabled=p + 1 >= n on:click=move |_| page_no.set(p + 1)>"Next ›"</button>
        }
    };
    view! {
        <div class="pvrb-toolbar pvrb-filters">
            <input id="guest-filter" type="search" placeholder="name, VMID or tag" aria-label="Filter by name, VMID or tag"
                on:input=set(|f, v| f.text = v) />
            <select id="guest-node" aria-label="Node" on:change=set(|f, v| f.node = v)>
                <option value="">"all nodes"</option>
                {node_options}
            </select>
            <select id="guest-kind" aria-label="Type" on:change=set(|f, v| f.kind = match v.as_str() { "qemu" => Some(GuestKind::Qemu), "lxc" => Some(GuestKind::Lxc), _ => None })>
                <option value="">"VMs and CTs"</option>
                <option value="qemu">"VMs"</option>
                <option value="lxc">"CTs"</option>
            </select>
            <select id="guest-ha" aria-label="HA" on:change=set(|f, v| f.ha = match v.as_str() { "yes" => Some(true), "no" => Some(false), _ => None })>
                <option value="">"HA or not"</option>
                <option value="yes">"HA-managed"</option>
                <option value="no">"not HA"</option>
            </select>
            <input id="guest-tag" type="search" placeholder="tag" aria-label="Tag" on:input=set(|f, v| f.tag = v) />
            <label>"Memory ≥ "
                <input id="guest-min-mem" type="number" min="0" step="1" placeholder="0"
                    on:input=set(|f, v| f.min_mem_gib = v.trim().parse().ok()) />" GiB"</label>
        </div>
        <div class="pvrb-scroll">
            <table id="guest-table" class="pvrb-grid">
                <thead><tr>
                    {header(SortKey::Vmid, "VMID", "pvrb-num")}
                    {header(SortKey::Name, "Name", "")}
                    {header(SortKey::Kind, "Type", "")}
                    {header(SortKey::Node, "Node", "")}
                    {header(SortKey::Status, "Status", "")}
                    {header(SortKey::Cpu, "CPU", "pvrb-num")}
                    {header(SortKey::Memory, "Memory", "pvrb-num")}
                    {header(SortKey::Disk, "Disk", "pvrb-num")}
                    {header(SortKey::Tags, "Tags", "")}
                    {header(SortKey::Ha, "HA", "")}
                    <th></th>
                </tr></thead>
                <tbody>{body}</tbody>
            </table>
        </div>
        <div class="pvrb-toolbar" id="guests-pager">{pager}</div>
        <BestNodeForm />
        {move || moving.with(Option::is_some).then(|| view! { <MigrateDialog moving=moving /> })}
    }
}
