//! Following a job: the server-sent event stream (`EventSource` with credentials, so the PVE
//! ticket cookie goes along cross-origin), and polling `GET /jobs/{id}` once a second if the
//! stream cannot be opened or breaks. Everything stops when the `Follower` is dropped, so an
//! unmounted panel leaves no timer or connection behind.

use crate::{api, PanelOptions};
use shared::api::{JobState, JobSummary, JobView, StepView};
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

pub enum Update {
    Step(StepView),
    End(JobSummary),
    /// A full view (polling).
    View(JobView),
    /// Updates now come by polling.
    Polling,
    /// The service could not be asked; polling goes on.
    Error(String),
}

type Listener = Closure<dyn FnMut(web_sys::Event)>;

pub struct Follower {
    alive: Rc<Cell<bool>>,
    source: Option<web_sys::EventSource>,
    _listeners: Vec<Listener>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.alive.set(false);
        if let Some(es) = &self.source {
            es.close();
        }
    }
}

/// Starts following job `id`; `on` gets every update until the job ends or the follower is dropped.
pub fn follow(opts: &PanelOptions, id: u64, on: impl Fn(Update) + 'static) -> Follower {
    let alive = Rc::new(Cell::new(true));
    let on: Rc<dyn Fn(Update)> = Rc::new(on);
    let init = web_sys::EventSourceInit::new();
    init.set_with_credentials(true);
    let Ok(es) = web_sys::EventSource::new_with_event_source_init_dict(&api::events_url(opts, id), &init)
    else {
        poll(opts.clone(), id, alive.clone(), on);
        return Follower { alive, source: None, _listeners: vec![] };
    };
    let data = |ev: &web_sys::Event| ev.dyn_ref::<web_sys::MessageEvent>().and_then(|m| m.data().as_string());
    let mut listeners: Vec<(&str, Listener)> = Vec::new();
    {
        let (on, alive) = (on.clone(), alive.clone());
        listeners.push((
            "step",
            Closure::new(move |ev: web_sys::Event| {
                if let Some(step) =
                    alive.get().then(|| data(&ev)).flatten().and_then(|d| serde_json::from_str(&d).ok())
                {
                    on(Update::Step(step));
                }
            }),
        ));
    }
    {
        let (on, alive, es2) = (on.clone(), alive.clone(), es.clone());
        listeners.push((
            "end",
            Closure::new(move |ev: web_sys::Event| {
                // Closed at once: the server ends the stream, and EventSource would reconnect.
                es2.close();
                if let Some(job) =
                    alive.get().then(|| data(&ev)).flatten().and_then(|d| serde_json::from_str(&d).ok())
                {
                    alive.set(false);
                    on(Update::End(job));
                }
            }),
        ));
    }
    {
        let (on, alive, es2, opts) = (on.clone(), alive.clone(), es.clone(), opts.clone());
        listeners.push((
            "error",
            Closure::new(move |_: web_sys::Event| {
                // A broken or refused stream: poll instead (the stream's reconnects would replay
                // every step and hide a lasting failure).
                es2.close();
                if alive.get() {
                    on(Update::Polling);
                    poll(opts.clone(), id, alive.clone(), on.clone());
                }
            }),
        ));
    }
    for (name, l) in &listeners {
        let _ = es.add_event_listener_with_callback(name, l.as_ref().unchecked_ref());
    }
    Follower { alive, source: Some(es), _listeners: listeners.into_iter().map(|(_, l)| l).collect() }
}

fn poll(opts: PanelOptions, id: u64, alive: Rc<Cell<bool>>, on: Rc<dyn Fn(Update)>) {
    wasm_bindgen_futures::spawn_local(async move {
        while alive.get() {
            match api::job(&opts, id).await {
                Ok(view) if alive.get() => {
                    let ended = view.job.state != JobState::Running;
                    on(Update::View(view));
                    if ended {
                        alive.set(false);
                        return;
                    }
                }
                Ok(_) => return,
                Err(e) if alive.get() => on(Update::Error(e.message)),
                Err(_) => return,
            }
            sleep_ms(1000).await;
        }
    });
}

/// Waits without blocking the page.
pub async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
