//! The one-guest tools of the Guests view: move one guest where the engine suggests (a one-step
//! job, ProxBalance's one-click migrate), and where a new guest would go (ProxLB's `-b`). Both ask
//! the service (`POST /api/v1/best-node`), which ranks the nodes with the policy in force, the
//! rules and the capacity, and says why a node does not fit.

use super::common::ErrorLine;
use super::Ctx;
use crate::api;
use crate::format::gib;
use crate::progress::Progress;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{BestNodeAnswer, BestNodeRequest};
use shared::best_node::{NewGuest, NodeRank};
use shared::GuestKind;

/// The guest a migrate dialog is for.
#[derive(Clone, Debug, PartialEq)]
pub struct Moving {
    pub vmid: u32,
    pub name: String,
    pub node: String,
}

/// The ranks as a table; `pick` (when given) puts a radio button on each node that fits.
fn ranks_table(
    id: &'static str,
    ranks: &[NodeRank],
    pick: Option<(RwSignal<String>, String)>,
) -> impl IntoView {
    let rows = ranks
        .iter()
        .map(|r| {
            let node = r.node.clone();
            let radio = pick.clone().map(|(target, current)| {
                let (n, n2) = (node.clone(), node.clone());
                let usable = r.fits && node != current;
                view! {
                    <td><input type="radio" name="pvrb-target" class="pvrb-target" value=node.clone() disabled=!usable
                        aria-label=format!("Move to {node}")
                        prop:checked=move || target.get() == n on:change=move |_| target.set(n2.clone()) /></td>
                }
            });
            let verdict = if r.fits { "fits" } else { "does not fit" };
            view! {
                <tr data-node=r.node.clone() data-fits=r.fits.to_string()>
                    {radio}
                    <td class="pvrb-name">{r.node.clone()}</td>
                    <td>{verdict}</td>
                    <td class="pvrb-num">{format!("{:.1}%", r.use_after)}</td>
                    <td class="pvrb-why">{r.reason.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let pick_head = pick.map(|_| view! { <th></th> });
    view! {
        <table id=id class="pvrb-grid">
            <thead><tr>{pick_head}<th>"Node"</th><th>"Verdict"</th><th class="pvrb-num">"Use after"</th><th>"Why"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// The suggested target for a guest on `current`: the best node that fits and is not its own.
pub fn suggested(answer: &BestNodeAnswer, current: &str) -> Option<String> {
    answer.ranks.iter().find(|r| r.fits && r.node != current).map(|r| r.node.clone())
}

/// Move one guest: the ranked targets, the engine's suggestion preselected, and a one-step job.
#[component]
pub fn MigrateDialog(moving: RwSignal<Option<Moving>>) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let Some(m) = moving.get_untracked() else { return ().into_any() };
    ctx.dialog_open.set(true);
    let answer = RwSignal::new(None::<BestNodeAnswer>);
    let target = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(true);
    let close = move || {
        moving.set(None);
        ctx.dialog_open.set(false);
    };
    let (o, vmid, current) = (ctx.opts.get_value(), m.vmid, m.node.clone());
    spawn_local(async move {
        match api::best_node(&o, &BestNodeRequest { guest: None, vmid: Some(vmid) }).await {
            Ok(a) => {
                target.try_set(suggested(&a, &current).unwrap_or_default());
                answer.try_set(Some(a));
            }
            Err(e) => {
                error.try_set(Some(e.message));
            }
        }
        busy.try_set(false);
    });
    let from = m.node.clone();
    let go = move |_| {
        let (o, from, to) = (ctx.opts.get_value(), from.clone(), target.get_untracked());
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::migrate(&o, vmid, &from, &to).await {
                Ok(id) => {
                    let mut seed =
                        Progress { job_id: id, steps: vec![], end: None, channel: "live", error: None };
                    if let Ok(v) = api::job(&o, id).await {
                        seed.replace(v);
                    }
                    ctx.follow_job(seed);
                    ctx.jobs_changed.try_update(|n| *n += 1);
                    close();
                }
                Err(e) => {
                    error.try_set(Some(e.message));
                }
            }
            busy.try_set(false);
        });
    };
    let current = m.node.clone();
    let ranks = move || {
        answer.with(|a| {
            a.as_ref().map(|a| ranks_table("migrate-ranks", &a.ranks, Some((target, current.clone()))))
        })
    };
    let blocked = move || {
        if busy.get() {
            Some("Working…".to_owned())
        } else if target.with(String::is_empty) {
            Some("No node fits this guest".to_owned())
        } else {
            ctx.denied(crate::caps::MIGRATE)
        }
    };
    view! {
        <div class="pvrb-overlay" on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Escape" { close() }>
            <div id="migrate" class="pvrb-dialog" role="dialog" aria-modal="true" aria-labelledby="migrate-head">
                <h3 id="migrate-head">{format!("Migrate {} ({}) from {}", m.vmid, m.name, m.node)}</h3>
                <p class="pvrb-muted">"Ranked by the engine with the policy in force, the rules and the capacity; the suggestion is preselected. The service checks the move again as a plan step (rules, capacity, your VM.Migrate, preflight) and runs it as a one-step job."</p>
                <div class="pvrb-scroll pvrb-dialog-list">{ranks}</div>
                <ErrorLine error=error id="migrate-error" />
                <div class="pvrb-toolbar pvrb-dialog-buttons">
                    <button id="migrate-cancel" on:click=move |_| close()>"Cancel"</button>
                    <button id="migrate-go" class="pvrb-primary" disabled=move || blocked().is_some()
                        title=move || blocked().unwrap_or_default() on:click=go>
                        {move || format!("Migrate to {}", target.get())}
                    </button>
                </div>
            </div>
        </div>
    }
    .into_any()
}

/// Where would a new guest go? Cores, memory, disk and tags in; the ranked nodes out.
#[component]
pub fn BestNodeForm() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let cores = RwSignal::new(2.0);
    let mem_gib = RwSignal::new(4.0);
    let disk_gib = RwSignal::new(32.0);
    let tags = RwSignal::new(String::new());
    let answer = RwSignal::new(None::<BestNodeAnswer>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let gib_bytes = |g: f64| (g * (1u64 << 30) as f64) as u64;
    let rank = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let guest = NewGuest {
            name: "new guest".into(),
            kind: GuestKind::Qemu,
            cpus: cores.get_untracked(),
            mem_bytes: gib_bytes(mem_gib.get_untracked()),
            disk_bytes: gib_bytes(disk_gib.get_untracked()),
            tags: tags
                .get_untracked()
                .split([',', ' ', ';'])
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            pool: None,
        };
        let o = ctx.opts.get_value();
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::best_node(&o, &BestNodeRequest { guest: Some(guest), vmid: None }).await {
                Ok(a) => {
                    answer.try_set(Some(a));
                }
                Err(e) => {
                    error.try_set(Some(e.message));
                }
            }
            busy.try_set(false);
        });
    };
    let num = move |sig: RwSignal<f64>| {
        move |ev: leptos::ev::Event| {
            if let Ok(v) = event_target_value(&ev).trim().parse::<f64>() {
                sig.set(v.max(0.0));
            }
        }
    };
    let verdict = move || {
        answer.with(|a| {
            a.as_ref().map(|a| {
                let best = match &a.best {
                    Some(b) => format!("Best node: {b}"),
                    None => "No node fits this guest.".to_owned(),
                };
                view! {
                    <p id="best-node-answer" class="pvrb-summary">{best}</p>
                    {ranks_table("best-node-ranks", &a.ranks, None)}
                }
            })
        })
    };
    view! {
        <details id="best-node" class="pvrb-details">
            <summary>"Where would a new guest go?"</summary>
            <form class="pvrb-toolbar" on:submit=rank>
                <label>"Cores " <input id="best-cores" type="number" min="0" step="1" prop:value=move || cores.get() on:change=num(cores) /></label>
                <label>"Memory (GiB) " <input id="best-mem" type="number" min="0" step="1" prop:value=move || mem_gib.get() on:change=num(mem_gib) /></label>
                <label>"Disk (GiB) " <input id="best-disk" type="number" min="0" step="1" prop:value=move || disk_gib.get() on:change=num(disk_gib) /></label>
                <label title="Tags decide affinity rules (plb_affinity_*, plb_pin_*), separated by commas">"Tags "
                    <input id="best-tags" type="text" prop:value=move || tags.get() on:change=move |ev| tags.set(event_target_value(&ev)) /></label>
                <button id="best-rank" class="pvrb-primary" type="submit" disabled=move || busy.get()>"Rank nodes"</button>
                <span class="pvrb-muted">{move || format!("{} of memory asked", gib(gib_bytes(mem_gib.get())))}</span>
            </form>
            <ErrorLine error=error id="best-node-error" />
            {verdict}
        </details>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(node: &str, fits: bool) -> NodeRank {
        NodeRank { node: node.into(), fits, score: 0.0, use_after: 50.0, reason: String::new() }
    }

    #[test]
    fn the_suggestion_is_the_best_fitting_node_other_than_the_guests_own() {
        let a = BestNodeAnswer {
            best: Some("pve1".into()),
            ranks: vec![rank("pve1", true), rank("pve2", false), rank("pve3", true)],
            request: None,
        };
        assert_eq!(suggested(&a, "pve1").as_deref(), Some("pve3"));
        assert_eq!(suggested(&a, "pve2").as_deref(), Some("pve1"));
        let none = BestNodeAnswer { best: None, ranks: vec![rank("pve1", false)], request: None };
        assert_eq!(suggested(&none, "pve2"), None);
    }
}
