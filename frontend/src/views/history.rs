//! What was done (`GET /api/v1/history`: every write, by whom and when) and the jobs run so far
//! (`GET /api/v1/jobs`): outcome, who started them, when, and their steps on demand.

use super::common::StateBadge;
use super::{clock, Ctx};
use crate::api::{self, Failure};
use crate::audit::{choices, AuditFilter};
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{AuditEntry, JobSummary, JobView};

#[component]
pub fn History() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let jobs = RwSignal::new(None::<Result<Vec<JobSummary>, Failure>>);
    let open = RwSignal::new(None::<Result<JobView, Failure>>);
    let audit = RwSignal::new(None::<Result<Vec<AuditEntry>, Failure>>);
    let filter = RwSignal::new(AuditFilter::default());
    Effect::new(move |_| {
        ctx.jobs_changed.track();
        ctx.loaded_at.track();
        ctx.settings.track();
        let o = ctx.opts.get_value();
        spawn_local(async move {
            let answer = api::jobs(&o, 100).await;
            jobs.try_set(Some(answer));
            let answer = api::audit(&o, 100).await;
            audit.try_set(Some(answer));
        });
    });
    let show = move |id: u64| {
        let o = ctx.opts.get_value();
        spawn_local(async move {
            let answer = api::job(&o, id).await;
            open.try_set(Some(answer));
        });
    };
    let table = move || match jobs.get() {
        None => view! { <p class="pvrb-muted">"Loading jobs…"</p> }.into_any(),
        Some(Err(e)) => view! { <p class="pvrb-error" role="alert">{e.message}</p> }.into_any(),
        Some(Ok(list)) if list.is_empty() => {
            view! { <p class="pvrb-muted" id="history-empty">"No job has run yet."</p> }.into_any()
        }
        Some(Ok(list)) => {
            let rows = list
                .into_iter()
                .map(|j| {
                    let c = &j.counts;
                    let mut steps = vec![format!("{} done", c.done)];
                    for (n, w) in [(c.failed, "failed"), (c.skipped, "skipped"), (c.cancelled, "cancelled"), (c.unknown, "unknown"), (c.running, "running"), (c.queued, "queued")] {
                        if n > 0 {
                            steps.push(format!("{n} {w}"));
                        }
                    }
                    let id = j.id;
                    view! {
                        <tr data-job=j.id data-state=j.state.as_str()>
                            <td class="pvrb-num">{j.id}</td>
                            <td><StateBadge state=j.state.as_str() /></td>
                            <td>{j.started_by.clone()}</td>
                            <td class="pvrb-nowrap">{clock(j.created_at)}</td>
                            <td class="pvrb-nowrap">{j.finished_at.map(clock).unwrap_or_default()}</td>
                            <td>{steps.join(", ")}</td>
                            <td class="pvrb-why">{j.message.clone().unwrap_or_default()}</td>
                            <td><button class="pvrb-link pvrb-job-steps" on:click=move |_| show(id)>"Steps"</button></td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <div class="pvrb-scroll">
                    <table id="history-jobs" class="pvrb-grid">
                        <thead><tr><th class="pvrb-num">"Job"</th><th>"Outcome"</th><th>"Started by"</th><th>"Started"</th><th>"Finished"</th><th>"Steps"</th><th>"Message"</th><th></th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            }.into_any()
        }
    };
    let detail = move || {
        open.get().map(|v| match v {
            Err(e) => view! { <p class="pvrb-error" role="alert">{e.message}</p> }.into_any(),
            Ok(v) => {
                let rows = v
                    .steps
                    .iter()
                    .map(|s| view! {
                        <tr data-state=s.state.as_str()>
                            <td class="pvrb-num">{s.index + 1}</td>
                            <td>{format!("{} ({})", s.vmid, s.name)}</td>
                            <td class="pvrb-nowrap">{format!("{} → {}", s.from, s.to)}</td>
                            <td><StateBadge state=s.state.as_str() /></td>
                            <td class="pvrb-why">{s.message.clone().unwrap_or_default()}</td>
                        </tr>
                    })
                    .collect_view();
                view! {
                    <h4>{format!("Job {} steps", v.job.id)}</h4>
                    <div class="pvrb-scroll">
                        <table id="history-steps" class="pvrb-grid">
                            <thead><tr><th class="pvrb-num">"#"</th><th>"Guest"</th><th>"Move"</th><th>"State"</th><th>"Message"</th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }.into_any()
            }
        })
    };
    let audit_table = move || {
        match audit.get() {
        None => view! { <p class="pvrb-muted">"Loading the audit log…"</p> }.into_any(),
        Some(Err(e)) => view! { <p class="pvrb-error" role="alert">{e.message}</p> }.into_any(),
        Some(Ok(list)) if list.is_empty() => {
            view! { <p class="pvrb-muted" id="audit-empty">"Nothing has been changed through the rebalancer yet."</p> }.into_any()
        }
        Some(Ok(list)) => {
            let f = filter.get();
            let total = list.len();
            let shown: Vec<AuditEntry> = list.into_iter().filter(|e| f.matches(e)).collect();
            let count = format!("{} of {total} shown", shown.len());
            let rows = shown
                .into_iter()
                .map(|a| {
                    let job = a.job_id.map(|id| view! { <button class="pvrb-link pvrb-job-steps" on:click=move |_| show(id)>{format!("job {id}")}</button> });
                    view! {
                        <tr data-action=a.action.clone()>
                            <td class="pvrb-nowrap">{clock(a.at)}</td>
                            <td>{a.user.clone()}</td>
                            <td class="pvrb-nowrap">{a.action.clone()}</td>
                            <td class="pvrb-nowrap">{a.target.clone()}</td>
                            <td class="pvrb-why">{a.detail.clone()}</td>
                            <td>{job}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <p class="pvrb-muted" id="audit-count">{count}</p>
                <div class="pvrb-scroll">
                    <table id="history-audit" class="pvrb-grid">
                        <thead><tr><th>"When"</th><th>"User"</th><th>"Action"</th><th>"Target"</th><th>"Detail"</th><th></th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            }.into_any()
        }
    }
    };
    // The filter's controls follow the log only (not the filter), so typing keeps the focus; a
    // refresh redraws them with the choices in force.
    let audit_filter = move || {
        let Some(Ok(list)) = audit.get() else { return None };
        let f = filter.get_untracked();
        let options = |values: Vec<String>, picked: &str| {
            let picked = picked.to_owned();
            values
                .into_iter()
                .map(|v| {
                    let (selected, label) = (v == picked, v.clone());
                    view! { <option value=v selected=selected>{label}</option> }
                })
                .collect_view()
        };
        let actions = options(choices(&list, |e| &e.action), &f.action);
        let users = options(choices(&list, |e| &e.user), &f.user);
        Some(view! {
            <div class="pvrb-toolbar" id="audit-filter">
                <select id="audit-action" title="Only this action"
                    on:change=move |ev| filter.update(|f| f.action = event_target_value(&ev))>
                    <option value="">"every action"</option>{actions}
                </select>
                <select id="audit-user" title="Only this user"
                    on:change=move |ev| filter.update(|f| f.user = event_target_value(&ev))>
                    <option value="">"every user"</option>{users}
                </select>
                <input id="audit-text" type="search" placeholder="node, job or words" title="Target, detail or user contains"
                    value=f.text
                    on:input=move |ev| filter.update(|f| f.text = event_target_value(&ev)) />
            </div>
        })
    };
    view! {
        <h4>"Changes"</h4>
        {audit_filter}
        {audit_table}
        <h4>"Jobs"</h4>
        {table}
        {detail}
    }
}
