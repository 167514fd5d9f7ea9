//! Small pieces every view uses: usage bars, the refresh control, the login form.

use super::{auto_refresh, clock, Ctx};
use crate::api;
use crate::format::{bar_class, bar_width};
use leptos::prelude::*;
use leptos::task::spawn_local;

/// A usage bar with PVE's warning/critical colours; the label is the tooltip. `reserve` (percent
/// of capacity kept free) draws a mark where the usable part ends.
#[component]
pub fn Bar(
    percent: f64,
    #[prop(into)] label: String,
    #[prop(optional)] reserve: Option<f64>,
) -> impl IntoView {
    let mark = reserve.filter(|r| *r > 0.0).map(|r| {
        view! { <div class="pvrb-reserve" style=format!("left:{:.1}%", bar_width(100.0 - r))></div> }
    });
    view! {
        <div class=bar_class(percent) title=label>
            <div class="pvrb-fill" style=format!("width:{:.1}%", bar_width(percent))></div>
            {mark}
            <span>{format!("{percent:.1}%")}</span>
        </div>
    }
}

/// A small line of percentages (0–100) over time; `title` says what and over which window.
#[component]
pub fn Sparkline(
    values: Vec<Option<f64>>,
    #[prop(into)] title: String,
    #[prop(into)] id: String,
) -> impl IntoView {
    let points = crate::format::sparkline(&values, 120.0, 24.0);
    view! {
        <svg id=id class="pvrb-spark" width="120" height="24" viewBox="0 0 120 24" role="img">
            <title>{title}</title>
            <polyline points=points fill="none" stroke="currentColor" stroke-width="1.5" />
        </svg>
    }
}

/// A state word in a coloured pill (`done`, `failed`, …); the colour comes from the CSS class.
#[component]
pub fn StateBadge(#[prop(into)] state: String) -> impl IntoView {
    view! { <span class=format!("pvrb-badge pvrb-state-{state}")>{state.clone()}</span> }
}

/// Refresh now, the auto-refresh interval, and when the data was loaded.
#[component]
pub fn RefreshControl() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let secs = RwSignal::new(30u32);
    auto_refresh(ctx, secs);
    let status = move || {
        if ctx.loading.get() {
            "Loading…".to_owned()
        } else if ctx.dialog_open.get() && secs.get() > 0 {
            "Auto-refresh paused".to_owned()
        } else {
            ctx.loaded_at.get().map(|t| format!("Updated {}", &clock(t)[11..])).unwrap_or_default()
        }
    };
    view! {
        <span class="pvrb-refresh">
            <span class="pvrb-muted" id="refresh-status">{status}</span>
            <label title="Reload the cluster this often (paused while a dialog is open)">
                "Auto "
                <select id="refresh-interval" on:change=move |ev| secs.set(event_target_value(&ev).parse().unwrap_or(0))>
                    <option value="0">"off"</option>
                    <option value="10">"10 s"</option>
                    <option value="30" selected>"30 s"</option>
                    <option value="60">"1 min"</option>
                    <option value="300">"5 min"</option>
                </select>
            </label>
            <button id="reload" disabled=move || ctx.loading.get() on:click=move |_| ctx.reload()>"Refresh"</button>
        </span>
    }
}

/// Shown when the backend wants credentials (standalone; inside the PVE UI the page's ticket is
/// sent along). The password goes to PVE through the backend and is not kept.
#[component]
pub fn Login(reason: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let (user, set_user) = signal(String::from("root@pam"));
    let (password, set_password) = signal(String::new());
    let (error, set_error) = signal(None::<String>);
    let (busy, set_busy) = signal(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (o, u, p) = (ctx.opts.get_value(), user.get(), password.get());
        set_busy.set(true);
        spawn_local(async move {
            match api::login(&o, &u, &p).await {
                Ok(caps) => {
                    if caps.is_some() {
                        ctx.caps.set(caps);
                    }
                    ctx.error.set(None);
                    ctx.reload();
                }
                Err(e) => set_error.set(Some(e.message)),
            }
            set_busy.try_set(false);
        });
    };
    view! {
        <form id="login" class="pvrb-login" on:submit=submit>
            <p class="pvrb-muted">{reason}</p>
            <label>"User name" <input id="login-user" autocomplete="username" prop:value=move || user.get()
                on:input=move |ev| set_user.set(event_target_value(&ev)) /></label>
            <label>"Password" <input id="login-password" type="password" autocomplete="current-password"
                on:input=move |ev| set_password.set(event_target_value(&ev)) /></label>
            <button id="login-submit" type="submit" disabled=move || busy.get()>"Log in"</button>
            <ErrorLine error=error />
        </form>
    }
}

/// The error line under a form or action, shown while `error` is set (screen readers announce
/// it). One component for every such line: an inline `move || error.get().map(…)` at each place
/// would be its own copy of Leptos' rendering code in the size-budgeted module.
#[component]
pub fn ErrorLine(
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(optional)] id: Option<&'static str>,
) -> impl IntoView {
    move || error.get().map(|e| view! { <p class="pvrb-error" role="alert" id=id>{e}</p> })
}
