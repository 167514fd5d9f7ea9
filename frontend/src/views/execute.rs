//! Running a plan: the confirmation that lists exactly what will happen, and the live progress of
//! the job (every step's state, PVE's message when one fails, Cancel).

use super::common::{ErrorLine, StateBadge};
use super::plan::{step_gib, Run, Shown};
use super::Ctx;
use crate::caps::MIGRATE;
use crate::format::{self, count, duration, estimate_secs};
use crate::progress::Progress;
use crate::{api, selection};
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::GuestKind;

fn kind_word(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Qemu => "VM",
        GuestKind::Lxc => "CT",
    }
}

/// Modal confirmation. While it is open auto-refresh waits (`ctx.dialog_open`).
#[component]
pub fn ConfirmExecute(shown: RwSignal<Option<Shown>>, open: RwSignal<bool>) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let close = move || {
        open.try_set(false);
        ctx.dialog_open.try_set(false);
    };
    on_cleanup(move || {
        ctx.dialog_open.try_set(false);
    });
    let snapshot = shown.get_untracked();
    let Some(s) = snapshot else { return ().into_any() };
    let (title_word, button_word) = match &s.run {
        Run::Steps => ("Run", "Run migrations"),
        Run::Enter { .. } => ("Enter maintenance: run", "Enter maintenance"),
        Run::Exit { .. } => ("Exit maintenance: run", "Exit maintenance"),
    };
    let picked: Vec<(usize, &shared::PlanStep)> =
        s.plan.steps.iter().enumerate().filter(|(i, _)| s.selected.contains(i)).collect();
    let sizes: Vec<f64> = picked.iter().map(|(_, st)| step_gib(st)).collect();
    let heading = format!(
        "{title_word} {} ({:.1} GiB, ≈ {})?",
        count(picked.len(), "migration", "migrations"),
        sizes.iter().sum::<f64>(),
        duration(estimate_secs(&sizes, format::ASSUMED_PARALLEL))
    );
    let restarts = picked.iter().filter(|(_, st)| st.migration == shared::MigrationKind::Restart).count();
    let rows = picked
        .iter()
        .map(|(i, st)| {
            view! {
                <tr>
                    <td class="pvrb-num">{i + 1}</td>
                    <td>{format!("{} {} ({})", kind_word(st.kind), st.vmid, st.name)}</td>
                    <td class="pvrb-nowrap">{format!("{} → {}", st.from, st.to)}</td>
                    <td>{format::migration(st.migration)}</td>
                    <td class="pvrb-num pvrb-nowrap">{format!("{:.1} GiB", step_gib(st))}</td>
                </tr>
            }
        })
        .collect_view();
    let go = move |_| {
        let Some(s) = shown.get_untracked() else { return };
        let (o, vmids) = (ctx.opts.get_value(), selection::vmids(&s.plan.steps, &s.selected));
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            // Maintenance answers the plan it ran (planned again at that moment) and maybe no job
            // (nothing to move: the node is marked at once).
            let started = match s.run.clone() {
                Run::Steps => api::execute(&o, &s.json, vmids).await.map(|id| (Some(id), s.plan.clone())),
                Run::Enter { node, mut request } => {
                    request.preview = false;
                    api::enter(&o, &node, &request).await.map(|a| (a.job_id, a.plan))
                }
                Run::Exit { node, mut request } => {
                    request.preview = false;
                    api::exit(&o, &node, &request).await.map(|a| (a.job_id, a.plan))
                }
            };
            match started {
                Ok((Some(id), plan)) => {
                    let selected = if s.fixed() { selection::all(&plan.steps) } else { s.selected.clone() };
                    ctx.follow_job(Progress::queued(id, &plan, &selected));
                    shown.try_update(|x| {
                        if let Some(x) = x {
                            x.executed = Some(id);
                        }
                    });
                    ctx.jobs_changed.try_update(|n| *n += 1);
                    close();
                }
                Ok((None, _)) => {
                    ctx.jobs_changed.try_update(|n| *n += 1);
                    ctx.reload();
                    close();
                }
                Err(e) => {
                    error.try_set(Some(e.message));
                }
            }
            busy.try_set(false);
        });
    };
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Escape" && !busy.get_untracked() {
            close();
        }
    };
    view! {
        <div class="pvrb-overlay" on:keydown=on_key>
            <div class="pvrb-dialog" role="dialog" aria-modal="true" aria-labelledby="confirm-title" id="confirm">
                <h3 id="confirm-title">{heading}</h3>
                <p class="pvrb-muted">"The service runs these migrations through PVE, at most two at a time, in this order where one depends on another. You can cancel what has not started."</p>
                {(restarts > 0).then(|| view! { <p class="pvrb-warn">{format!("{} restart: the container is shut down, moved and started again (brief downtime).", count(restarts, "container", "containers"))}</p> })}
                <div class="pvrb-scroll pvrb-dialog-list">
                    <table id="confirm-steps" class="pvrb-grid">
                        <thead><tr><th class="pvrb-num">"#"</th><th>"Guest"</th><th>"Move"</th><th>"Kind"</th><th class="pvrb-num">"Size"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
                <ErrorLine error=error id="confirm-error" />
                <div class="pvrb-toolbar pvrb-dialog-buttons">
                    <button id="confirm-cancel" disabled=move || busy.get() on:click=move |_| close()>"Back"</button>
                    <button id="confirm-execute" class="pvrb-primary" autofocus disabled=move || busy.get() on:click=go>
                        {move || if busy.get() { "Starting…" } else { button_word }}
                    </button>
                </div>
            </div>
        </div>
    }
    .into_any()
}

/// The followed job: headline, Cancel while it runs, one row per step.
#[component]
pub fn JobProgress() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let cancel_error = RwSignal::new(None::<String>);
    let cancelling = RwSignal::new(false);
    let cancel = move |_| {
        let Some(id) = ctx.job.with_untracked(|j| j.as_ref().map(|p| p.job_id)) else { return };
        let o = ctx.opts.get_value();
        cancelling.set(true);
        spawn_local(async move {
            match api::cancel(&o, id).await {
                Ok(view) => {
                    ctx.job.try_update(|j| {
                        if let Some(p) = j.as_mut().filter(|p| p.job_id == id) {
                            p.replace(view);
                        }
                    });
                    cancel_error.try_set(None);
                }
                Err(e) => {
                    cancel_error.try_set(Some(e.message));
                }
            }
            cancelling.try_set(false);
        });
    };
    let cancel_blocked = move || ctx.denied(MIGRATE);
    let rows = move || {
        ctx.job.with(|j| {
            j.as_ref().map(|p| {
                p.steps
                    .iter()
                    .map(|s| {
                        let detail = match (&s.message, &s.phase) {
                            (Some(m), _) => m.clone(),
                            (None, Some(ph)) => ph.clone(),
                            _ => String::new(),
                        };
                        view! {
                            <tr data-state=s.state.as_str() data-vmid=s.vmid>
                                <td class="pvrb-num">{s.index + 1}</td>
                                <td>{format!("{} {} ({})", kind_word(s.kind), s.vmid, s.name)}</td>
                                <td class="pvrb-nowrap">{format!("{} → {}", s.from, s.to)}</td>
                                <td><StateBadge state=s.state.as_str() /></td>
                                <td class="pvrb-why">{detail}</td>
                            </tr>
                        }
                    })
                    .collect_view()
            })
        })
    };
    let headline = move || ctx.job.with(|j| j.as_ref().map(Progress::headline).unwrap_or_default());
    let finished = move || ctx.job.with(|j| j.as_ref().is_some_and(Progress::finished));
    let state_class = move || {
        ctx.job.with(|j| {
            let state = j.as_ref().and_then(|p| p.end.as_ref()).map_or("running", |e| e.state.as_str());
            format!("pvrb-job pvrb-job-{state}")
        })
    };
    let channel = move || {
        ctx.job.with(|j| {
            j.as_ref().map(|p| match (&p.error, p.channel) {
                (Some(e), _) => format!("Cannot reach the service ({e}); retrying."),
                (None, "polling") => "Updates by polling every second.".into(),
                _ => "Live updates.".into(),
            })
        })
    };
    view! {
        <div id="job" class=state_class>
            <div class="pvrb-toolbar">
                <b id="job-headline">{headline}</b>
                <span class="pvrb-muted" id="job-channel">{move || (!finished()).then(channel)}</span>
                <span class="pvrb-spacer"></span>
                {move || (!finished()).then(|| view! {
                    <button id="job-cancel" disabled=move || cancelling.get() || cancel_blocked().is_some()
                        title=move || cancel_blocked().unwrap_or_else(|| "Stop: running migrations are stopped, queued ones never start".into())
                        on:click=cancel>{move || if cancelling.get() { "Cancelling…" } else { "Cancel job" }}</button>
                })}
                {move || finished().then(|| view! {
                    <button id="job-dismiss" on:click=move |_| ctx.dismiss_job()>"Close"</button>
                })}
            </div>
            <ErrorLine error=cancel_error />
            {move || ctx.job.with(|j| j.as_ref().and_then(|p| p.end.as_ref()).and_then(|e| e.message.clone()))
                .map(|m| view! { <p class="pvrb-muted">{m}</p> })}
            <div class="pvrb-scroll">
                <table id="job-steps" class="pvrb-grid">
                    <thead><tr><th class="pvrb-num">"#"</th><th>"Guest"</th><th>"Move"</th><th>"State"</th><th>"Detail (PVE's message when it failed)"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </div>
    }
}
