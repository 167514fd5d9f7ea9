//! The balancing settings shared by the cluster (`GET`/`PUT /api/v1/settings`). Users without
//! `Sys.Modify` on `/` see them read-only, with a tooltip naming the privilege they lack (the
//! service says which, in `SettingsView::missing_privilege`).

use super::{clock, Ctx};
use crate::api;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::Settings;
use shared::{Method, Mode};

const METHODS: [(Method, &str); 4] = [
    (Method::Memory, "memory"),
    (Method::Cpu, "cpu"),
    (Method::Disk, "disk"),
    (Method::Weighted, "weighted"),
];
const MODES: [(Mode, &str); 4] = [
    (Mode::Used, "used"),
    (Mode::Assigned, "assigned"),
    (Mode::Percentile, "percentile"),
    (Mode::Psi, "psi"),
];

/// A list typed as `a, b c` → `["a", "b", "c"]`.
fn list(text: &str) -> Vec<String> {
    text.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[component]
pub fn SettingsForm() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let draft = RwSignal::new(None::<Settings>);
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let load_error = RwSignal::new(None::<String>);
    // Fresh on every visit (another admin may have changed them).
    let o = ctx.opts.get_value();
    spawn_local(async move {
        match api::settings(&o).await {
            Ok(v) => {
                draft.try_set(Some(v.settings.clone()));
                ctx.settings.try_set(Some(v));
            }
            Err(e) => {
                load_error.try_set(Some(e.message));
            }
        }
    });
    let view_of = move || ctx.settings.get();
    let denied = move || {
        view_of().filter(|v| !v.writable).map(|v| {
            format!(
                "Read-only: you lack the privilege {} to change the settings.",
                v.missing_privilege.as_deref().unwrap_or("Sys.Modify on /")
            )
        })
    };
    let edit = move |f: &dyn Fn(&mut Settings)| {
        draft.update(|d| {
            if let Some(d) = d {
                f(d);
            }
        });
        saved.set(None);
    };
    // A number field: parsed on change; what does not parse is named and not applied.
    let number = move |field: &'static str, text: String, apply: fn(&mut Settings, f64)| match text
        .trim()
        .parse::<f64>()
    {
        Ok(v) if v.is_finite() => {
            error.set(None);
            edit(&|s| apply(s, v));
        }
        _ => error.set(Some(format!("{field}: `{text}` is not a number."))),
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(s) = draft.get_untracked() else { return };
        if let Err(e) = s.check() {
            error.set(Some(format!("{}: {}. Nothing was saved.", e.field, e.detail)));
            return;
        }
        let o = ctx.opts.get_value();
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::save_settings(&o, &s).await {
                Ok(v) => {
                    draft.try_set(Some(v.settings.clone()));
                    ctx.settings.try_set(Some(v));
                    saved.try_set(Some("Saved; the next plan uses these settings.".into()));
                }
                Err(e) => {
                    error.try_set(Some(e.message));
                }
            }
            busy.try_set(false);
        });
    };
    let revert = move |_| {
        draft.set(ctx.settings.get_untracked().map(|v| v.settings));
        error.set(None);
        saved.set(None);
    };
    let form = move || {
        let d = draft.get()?;
        let read_only = denied().is_some();
        let methods = METHODS
            .iter()
            .map(|(m, w)| view! { <option value=*w selected=d.method == *m>{*w}</option> })
            .collect_view();
        let modes = MODES
            .iter()
            .map(|(m, w)| view! { <option value=*w selected=d.mode == *m>{*w}</option> })
            .collect_view();
        let schedule = d.schedule_interval_secs.map(|s| (s / 60).to_string()).unwrap_or_default();
        let stamp = view_of().and_then(|v| match (v.updated_by, v.updated_at) {
            (Some(by), Some(at)) => Some(format!("Last changed by {by} at {}.", clock(at))),
            _ => None,
        });
        Some(view! {
            // novalidate: our check names the field and the allowed range; the browser's own bubble
            // would only block the submit.
            <form id="settings-form" class="pvrb-settings" novalidate=true on:submit=save>
                <fieldset id="settings-fields" disabled=read_only title=denied().unwrap_or_default()>
                    <label>"Method "<select id="set-method" on:change=move |ev| {
                        let v = event_target_value(&ev);
                        if let Some((m, _)) = METHODS.iter().find(|(_, w)| *w == v) { edit(&|s| s.method = *m) }
                    }>{methods}</select></label>
                    <label>"Mode "<select id="set-mode" on:change=move |ev| {
                        let v = event_target_value(&ev);
                        if let Some((m, _)) = MODES.iter().find(|(_, w)| *w == v) { edit(&|s| s.mode = *m) }
                    }>{modes}</select></label>
                    <label title="Balancing starts when max − min node usage exceeds this many percentage points">
                        "Trigger (balanciness, points) "
                        <input id="set-balanciness" type="number" min="0" max="100" step="0.5" value=d.balanciness.to_string()
                            on:change=move |ev| number("balanciness", event_target_value(&ev), |s, v| s.balanciness = v) />
                    </label>
                    <label title="Points of the gap between source and target a move must close">
                        "Minimum gain (points) "
                        <input id="set-min-gain" type="number" min="0" max="100" step="0.5" value=d.min_gain.to_string()
                            on:change=move |ev| number("min_gain", event_target_value(&ev), |s, v| s.min_gain = v) />
                    </label>
                    <label>"Migrations per plan "
                        <input id="set-max-moves" type="number" min="0" max="10000" value=d.max_moves.to_string()
                            on:change=move |ev| number("max_moves", event_target_value(&ev), |s, v| s.max_moves = v as u32) />
                    </label>
                    <label title="Empty: balancing runs only when someone asks">
                        "Automatic run every (minutes, empty = off) "
                        <input id="set-schedule" type="number" min="1" max="10080" value=schedule
                            on:change=move |ev| {
                                let t = event_target_value(&ev);
                                if t.trim().is_empty() {
                                    error.set(None);
                                    edit(&|s| s.schedule_interval_secs = None);
                                } else {
                                    number("schedule_interval_secs", t, |s, v| s.schedule_interval_secs = Some((v * 60.0) as u64));
                                }
                            } />
                    </label>
                    <label>"Migrations at once (cluster) "
                        <input id="set-max-parallel" type="number" min="1" max="64" value=d.max_parallel.to_string()
                            on:change=move |ev| number("max_parallel", event_target_value(&ev), |s, v| s.max_parallel = v as u32) />
                    </label>
                    <label>"Migrations at once (per node) "
                        <input id="set-max-per-node" type="number" min="1" max="64" value=d.max_per_node.to_string()
                            on:change=move |ev| number("max_per_node", event_target_value(&ev), |s, v| s.max_per_node = v as u32) />
                    </label>
                    <label title="Names or prefix* patterns, separated by commas">"Ignored nodes "
                        <input id="set-ignore-nodes" value=d.ignore_nodes.join(", ")
                            on:change=move |ev| { let v = list(&event_target_value(&ev)); edit(&|s| s.ignore_nodes = v.clone()) } />
                    </label>
                    <label title="Guest names or prefix* patterns, separated by commas">"Ignored guests "
                        <input id="set-ignore-guests" value=d.ignore_guests.join(", ")
                            on:change=move |ev| { let v = list(&event_target_value(&ev)); edit(&|s| s.ignore_guests = v.clone()) } />
                    </label>
                </fieldset>
                <div class="pvrb-toolbar">
                    <button id="settings-save" class="primary" type="submit" disabled=move || busy.get() || denied().is_some()
                        title=move || denied().unwrap_or_else(|| "Store for the whole cluster".into())>"Save"</button>
                    <button id="settings-revert" type="button" disabled=move || denied().is_some() on:click=revert>"Revert"</button>
                    {move || denied().map(|d| view! { <span class="pvrb-muted" id="settings-readonly">{d}</span> })}
                    {stamp.map(|s| view! { <span class="pvrb-muted">{s}</span> })}
                </div>
            </form>
        })
    };
    view! {
        {move || load_error.get().map(|e| view! { <p class="pvrb-error" role="alert">{e}</p> })}
        {move || (draft.with(Option::is_none) && load_error.with(Option::is_none))
            .then(|| view! { <p class="pvrb-muted">"Loading settings…"</p> })}
        {form}
        {move || error.get().map(|e| view! { <p class="pvrb-error" role="alert" id="settings-error">{e}</p> })}
        {move || saved.get().map(|m| view! { <p class="pvrb-ok" id="settings-saved">{m}</p> })}
    }
}
