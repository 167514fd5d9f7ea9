//! The panel's components, one module per view. `Panel` owns the shared state ([`Ctx`], given to
//! every view as context): the loaded cluster, the user's privileges, the job being followed and
//! whether a dialog is open (auto-refresh waits while one is). Views read the cluster signal, so
//! a refresh updates them in place and never throws away a plan or a selection.

mod backtest;
mod common;
mod execute;
mod guests;
mod history;
mod maintenance;
mod nodes;
mod plan;
mod rules;
mod settings;
mod tools;

use crate::api::Failure;
use crate::caps::{denial, Caps, Need};
use crate::live::{self, Follower, Update as Live};
use crate::progress::Progress;
use crate::{api, PanelOptions};
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{ClusterView, HistoryView, JobState, SettingsView};
use shared::Plan;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Balance,
    Maintenance,
    Guests,
    Rules,
    History,
    Backtest,
    Settings,
}

impl Tab {
    const ALL: [Tab; 7] =
        [Tab::Balance, Tab::Maintenance, Tab::Guests, Tab::Rules, Tab::History, Tab::Backtest, Tab::Settings];

    fn label(self) -> &'static str {
        match self {
            Tab::Balance => "Balance",
            Tab::Maintenance => "Maintenance",
            Tab::Guests => "Guests",
            Tab::Rules => "Rules",
            Tab::History => "History",
            Tab::Backtest => "Back-test",
            Tab::Settings => "Settings",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Tab::Balance => "tab-balance",
            Tab::Maintenance => "tab-maintenance",
            Tab::Guests => "tab-guests",
            Tab::Rules => "tab-rules",
            Tab::History => "tab-history",
            Tab::Backtest => "tab-backtest",
            Tab::Settings => "tab-settings",
        }
    }
}

/// What every view shares. All handles, so it is `Copy`.
#[derive(Clone, Copy)]
pub struct Ctx {
    pub opts: StoredValue<PanelOptions>,
    pub cluster: RwSignal<Option<ClusterView>>,
    /// `cluster` as the service sent it (JSON text), which the what-if worker decodes.
    pub cluster_json: StoredValue<std::sync::Arc<str>>,
    /// Unix seconds of the last successful load.
    pub loaded_at: RwSignal<Option<u64>>,
    pub loading: RwSignal<bool>,
    /// The last load's failure (shown above the data when there is data).
    pub error: RwSignal<Option<Failure>>,
    pub caps: RwSignal<Option<Caps>>,
    pub dialog_open: RwSignal<bool>,
    pub job: RwSignal<Option<Progress>>,
    follower: StoredValue<Option<Follower>, LocalStorage>,
    /// The plan last shown (server or simulation), for the Rules view's "why not".
    pub last_plan: RwSignal<Option<Plan>>,
    pub tab: RwSignal<Tab>,
    pub maintenance_node: RwSignal<Option<String>>,
    /// Bumped when a job ends, so History reloads.
    pub jobs_changed: RwSignal<u32>,
    /// The balancing settings in force (trigger level, ignored nodes); `None` until loaded or
    /// when the service does not offer them.
    pub settings: RwSignal<Option<SettingsView>>,
    /// The service's usage samples (`GET /api/v1/cluster/history`), when it keeps them.
    pub history: RwSignal<Option<HistoryView>>,
    /// Spreads seen by this page since it was loaded, the sparkline's fallback.
    pub samples: RwSignal<Vec<Sample>>,
}

/// One load of the cluster as this page saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub at: u64,
    pub memory_spread: f64,
    pub cpu_spread: f64,
}

/// Samples kept in the page: 6 hours at the shortest auto-refresh interval would be 2,160; the
/// sparkline shows the newest ones only.
const MAX_SAMPLES: usize = 360;
/// The window of the service's history the sparkline asks for.
pub const HISTORY_MINUTES: u32 = 180;

impl Ctx {
    fn new(opts: PanelOptions) -> Ctx {
        let caps = opts.caps.clone().filter(Caps::is_known).or_else(api::stored_caps);
        let maintenance = opts.view == "maintenance";
        Ctx {
            maintenance_node: RwSignal::new(opts.node.clone()),
            tab: RwSignal::new(if maintenance { Tab::Maintenance } else { Tab::Balance }),
            opts: StoredValue::new(opts),
            cluster: RwSignal::new(None),
            cluster_json: StoredValue::new(std::sync::Arc::from("")),
            loaded_at: RwSignal::new(None),
            loading: RwSignal::new(false),
            error: RwSignal::new(None),
            caps: RwSignal::new(caps),
            dialog_open: RwSignal::new(false),
            job: RwSignal::new(None),
            follower: StoredValue::new_local(None),
            last_plan: RwSignal::new(None),
            jobs_changed: RwSignal::new(0),
            settings: RwSignal::new(None),
            history: RwSignal::new(None),
            samples: RwSignal::new(Vec::new()),
        }
    }

    pub fn reload(self) {
        if self.loading.get_untracked() {
            return;
        }
        self.loading.set(true);
        let o = self.opts.get_value();
        spawn_local(async move {
            let answer = api::cluster(&o).await;
            // The panel may have been unmounted meanwhile: every write is a `try_`.
            match answer {
                Ok((c, json)) => {
                    self.cluster_json.try_set_value(json.into());
                    let sample =
                        Sample { at: now_secs(), memory_spread: c.memory_spread, cpu_spread: c.cpu_spread };
                    self.samples.try_update(|v| {
                        v.push(sample);
                        if v.len() > MAX_SAMPLES {
                            v.remove(0);
                        }
                    });
                    self.cluster.try_set(Some(c));
                    self.loaded_at.try_set(Some(now_secs()));
                    self.error.try_set(None);
                }
                Err(e) => {
                    self.error.try_set(Some(e));
                }
            }
            self.loading.try_set(false);
            // Settings and history are extras: a service without them (older, or the history
            // not sampled yet) leaves the panel as it was, with the page's own samples.
            if let Ok(v) = api::settings(&o).await {
                self.settings.try_set(Some(v));
            }
            self.history.try_set(api::cluster_history(&o, HISTORY_MINUTES).await.ok());
        });
    }

    /// Tooltip for a button the user's privileges do not allow, `None` if allowed.
    pub fn denied(self, needs: &'static [Need]) -> Option<String> {
        self.caps.with(|c| denial(c.as_ref(), needs))
    }

    /// A job is running (one at a time: the backend answers 409 otherwise).
    pub fn job_running(self) -> bool {
        self.job.with(|j| j.as_ref().is_some_and(|p| !p.finished()))
    }

    /// Shows `seed` and follows job `id` until it ends.
    pub fn follow_job(self, seed: Progress) {
        let id = seed.job_id;
        self.job.set(Some(seed));
        let on = move |u: Live| {
            let mut ended = false;
            self.job.try_update(|j| {
                let Some(p) = j.as_mut().filter(|p| p.job_id == id) else { return };
                match u {
                    Live::Step(s) => p.update(s),
                    Live::End(summary) => {
                        p.finish(summary);
                        ended = true;
                    }
                    Live::View(v) => {
                        ended = v.job.state != JobState::Running;
                        p.replace(v);
                    }
                    Live::Polling => p.channel = "polling",
                    Live::Error(e) => p.error = Some(e),
                }
            });
            if ended {
                self.jobs_changed.try_update(|n| *n += 1);
                self.reload();
            }
        };
        let follower = live::follow(&self.opts.get_value(), id, on);
        self.follower.set_value(Some(follower));
    }

    pub fn dismiss_job(self) {
        self.follower.set_value(None);
        self.job.set(None);
    }
}

pub fn now_secs() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

/// Minutes east of UTC of the browser's zone (JS gives west, hence the sign).
pub fn tz_offset() -> i64 {
    -(js_sys::Date::new_0().get_timezone_offset() as i64)
}

pub fn clock(unix: u64) -> String {
    crate::format::clock(unix, tz_offset())
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Loading,
    Login(String),
    Failed(String),
    Ready,
}

#[component]
pub fn Panel(opts: PanelOptions) -> impl IntoView {
    let ctx = Ctx::new(opts);
    provide_context(ctx);
    ctx.reload();
    let phase = Memo::new(move |_| {
        let has_data = ctx.cluster.with(Option::is_some);
        match ctx.error.get() {
            Some(e) if e.needs_login() => Phase::Login(e.message),
            Some(e) if !has_data => Phase::Failed(e.message),
            _ if has_data => Phase::Ready,
            _ => Phase::Loading,
        }
    });
    // Stop following the job when the panel goes away (ExtJS destroys cards on tab switch).
    on_cleanup(move || {
        ctx.follower.try_update_value(|f| f.take());
    });
    let only_maintenance = ctx.opts.with_value(PanelOptions::maintenance_only);
    // Inside PVE the tab or window title says it already.
    let embedded = ctx.opts.with_value(|o| o.embedded);
    let title = ctx.opts.with_value(|o| match (only_maintenance, &o.node) {
        (true, Some(n)) => format!("Maintenance: {n}"),
        _ => "Rebalancing".to_owned(),
    });
    // PVE's theme, followed live (the watch ends with the panel).
    let theme = RwSignal::new(crate::theme::theme_of(&crate::theme::read_page()));
    let watch = crate::theme::watch(move || {
        theme.try_set(crate::theme::theme_of(&crate::theme::read_page()));
    });
    let watch = StoredValue::new_local(watch);
    on_cleanup(move || {
        watch.try_update_value(|w| w.take());
    });
    view! {
        <div class=move || theme.get().class() data-theme=move || theme.get().word()>
            <div class="pvrb-toolbar pvrb-top">
                {(!embedded).then(|| view! { <span class="pvrb-title" id="panel-title">{title}</span> })}
                {(!only_maintenance).then(|| view! { <Tabs /> })}
                <common::RefreshControl />
            </div>
            {move || (phase.get() == Phase::Ready).then(|| ctx.error.get().map(|e| view! {
                <p class="pvrb-error" role="alert">{format!("Refreshing failed, showing older data. {}", e.message)}</p>
            }))}
            {move || ctx.job.with(Option::is_some).then(|| view! { <execute::JobProgress /> })}
            {move || match phase.get() {
                Phase::Loading => view! { <p class="pvrb-muted">"Loading cluster…"</p> }.into_any(),
                Phase::Login(reason) => view! { <common::Login reason=reason /> }.into_any(),
                Phase::Failed(message) => view! { <p class="pvrb-error" role="alert">{message}</p> }.into_any(),
                Phase::Ready => view! { <Views /> }.into_any(),
            }}
        </div>
    }
}

#[component]
fn Tabs() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let tabs = Tab::ALL
        .into_iter()
        .map(|t| {
            view! {
                <button id=t.id() class="pvrb-tab" role="tab"
                    class:pvrb-active=move || ctx.tab.get() == t
                    aria-selected=move || (ctx.tab.get() == t).to_string()
                    on:click=move |_| ctx.tab.set(t)>{t.label()}</button>
            }
        })
        .collect_view();
    view! { <nav class="pvrb-tabs" role="tablist">{tabs}</nav> }
}

/// Every view stays mounted (hidden when not selected), so a plan, a filter or a page survives
/// switching tabs. Maintenance and History only do work while shown.
#[component]
fn Views() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let hidden = move |t: Tab| ctx.tab.get() != t;
    view! {
        <section id="balance" class="pvrb-view" class:pvrb-hidden=move || hidden(Tab::Balance)>
            <nodes::Summary />
            <nodes::Nodes />
            <plan::PlanView />
        </section>
        <section id="maintenance" class="pvrb-view" class:pvrb-hidden=move || hidden(Tab::Maintenance)>
            {move || (ctx.tab.get() == Tab::Maintenance).then(|| view! { <maintenance::Maintenance /> })}
        </section>
        <section id="guests" class="pvrb-view" class:pvrb-hidden=move || hidden(Tab::Guests)>
            <guests::Guests />
        </section>
        <section id="rules" class="pvrb-view" class:pvrb-hidden=move || hidden(Tab::Rules)>
            <rules::Rules />
        </section>
        <section id="history" class="pvrb-view" class:pvrb-hidden=move || hidden(Tab::History)>
            {move || (ctx.tab.get() == Tab::History).then(|| view! { <history::History /> })}
        </section>
        <section id="backtest" class="pvrb-view" class:pvrb-hidden=move || hidden(Tab::Backtest)>
            {move || (ctx.tab.get() == Tab::Backtest).then(|| view! { <backtest::Backtest /> })}
        </section>
        <section id="settings" class="pvrb-view" class:pvrb-hidden=move || hidden(Tab::Settings)>
            {move || (ctx.tab.get() == Tab::Settings).then(|| view! { <settings::SettingsForm /> })}
        </section>
    }
}

/// Auto-refresh: every `secs` seconds unless a dialog is open or a load is under way.
fn auto_refresh(ctx: Ctx, secs: RwSignal<u32>) {
    let handle = StoredValue::new(None::<leptos::prelude::IntervalHandle>);
    Effect::new(move |_| {
        let s = secs.get();
        if let Some(h) = handle.get_value() {
            h.clear();
        }
        handle.set_value(None);
        if s > 0 {
            let h = set_interval_with_handle(
                move || {
                    if !ctx.dialog_open.get_untracked() {
                        ctx.reload();
                    }
                },
                Duration::from_secs(u64::from(s)),
            )
            .ok();
            handle.set_value(h);
        }
    });
    on_cleanup(move || {
        if let Some(h) = handle.try_get_value().flatten() {
            h.clear();
        }
    });
}
