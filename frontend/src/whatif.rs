//! What-if in a Web Worker. The engine (`shared::planner`) is most of a plan's code, so it is not
//! in the module the panel page loads: the `whatif` binary (`src/bin/whatif.rs`) is a second
//! wasm module, run in a dedicated worker that the page starts the first time a what-if is asked
//! for (`whatif_loader.js` beside `frontend.js`, found from `frontend.js`'s own URL, so it
//! resolves standalone and under PVE's `/pve2/js/pve-rebalancer/` alike).
//!
//! The page posts a [`Job`] as JSON text (the service's cluster and policy answers as the page
//! received them, and the plan form's overrides); the worker answers each job in order with an
//! [`Answer`] (a plain object, the plan as its JSON text). The answers travel as received, not
//! re-encoded: the worker then decodes
//! them with the same decoder as the page, so it plans on bit-identical numbers (serde_json's
//! default float parser does not round-trip every `f64`), and the first-load module needs no
//! encoder for the snapshot. The worker says [`Answer::Ready`] once it listens; its loader says
//! [`Answer::Failed`] when the worker's own files do not load, and an error the worker does not
//! catch (an engine panic) reaches the page as the worker's `error` event. Either failure is
//! shown in the plan view and the next what-if starts a new worker.

use serde::Deserialize;
use shared::api::ClusterView;
use shared::policy::{PolicyLayer, PolicyView};

/// The page's request: plan the policy with the overrides on the cluster, as the plan view does.
#[derive(Deserialize)]
pub struct Job {
    /// `GET /api/v1/cluster`'s answer, the one the panel shows.
    pub cluster: ClusterView,
    /// `GET /api/v1/policy`'s answer, fetched for this what-if.
    pub policy: PolicyView,
    /// The plan form's overrides.
    pub overrides: PolicyLayer,
}

/// The worker's messages. Posted as plain objects (`{ready: true}`, `{plan, ms}`, `{failed}`), the
/// plan as its JSON text: the page decodes it with the `Plan` decoder it has for the service's
/// plans and keeps the text to execute, so the first-load module needs no decoder of its own.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The worker is listening (its first message).
    Ready,
    /// A job's plan (JSON text) and the engine's time in milliseconds.
    Plan { json: String, ms: f64 },
    /// The worker could not load (before `Ready`), or could not read a job (after it).
    Failed(String),
}

impl Answer {
    /// The message object posted.
    pub fn to_js(&self) -> wasm_bindgen::JsValue {
        use wasm_bindgen::JsValue;
        let object = js_sys::Object::new();
        let set = |key: &str, value: JsValue| {
            let _ = js_sys::Reflect::set(&object, &JsValue::from_str(key), &value);
        };
        match self {
            Answer::Ready => set("ready", JsValue::TRUE),
            Answer::Plan { json, ms } => {
                set("plan", JsValue::from_str(json));
                set("ms", JsValue::from_f64(*ms));
            }
            Answer::Failed(why) => set("failed", JsValue::from_str(why)),
        }
        object.into()
    }

    /// A posted message read back; `None` for anything else.
    pub fn from_js(message: &wasm_bindgen::JsValue) -> Option<Answer> {
        let get = |key: &str| js_sys::Reflect::get(message, &wasm_bindgen::JsValue::from_str(key)).ok();
        if let Some(why) = get("failed").and_then(|v| v.as_string()) {
            return Some(Answer::Failed(why));
        }
        if let Some(json) = get("plan").and_then(|v| v.as_string()) {
            return Some(Answer::Plan { json, ms: get("ms").and_then(|v| v.as_f64()).unwrap_or(0.0) });
        }
        get("ready").filter(|v| v.is_truthy()).map(|_| Answer::Ready)
    }
}

/// The worker's answer to one message: `now` is the clock in milliseconds (the engine itself
/// has none). Pure, so it is tested natively.
pub fn answer(message: &str, now: impl Fn() -> f64) -> Answer {
    match serde_json::from_str::<Job>(message) {
        Ok(job) => match job.policy.with_overrides(&job.overrides) {
            Ok(policy) => {
                let t0 = now();
                let plan = shared::planner::plan(&job.cluster.snapshot, &policy.request);
                let ms = now() - t0;
                match serde_json::to_string(&plan) {
                    Ok(json) => Answer::Plan { json, ms },
                    Err(e) => Answer::Failed(format!("the what-if worker could not encode the plan: {e}")),
                }
            }
            Err(e) => Answer::Failed(format!("{}: {}", e.field, e.detail)),
        },
        Err(e) => Answer::Failed(format!("the what-if worker could not read the job: {e}")),
    }
}

/// The job text: `cluster` and `policy` are the service's answers as received (JSON text).
pub fn job(cluster: &str, policy: &str, overrides: &PolicyLayer) -> Result<String, String> {
    let overrides = serde_json::to_string(overrides).map_err(|e| e.to_string())?;
    Ok(format!("{{\"cluster\":{cluster},\"policy\":{policy},\"overrides\":{overrides}}}"))
}

pub use client::plan;

mod client {
    use super::Answer;
    use js_sys::{Function, Promise};
    use shared::Plan;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{MessageEvent, Worker};

    #[wasm_bindgen]
    extern "C" {
        type ImportMeta;
        #[wasm_bindgen(thread_local_v2, js_namespace = import, js_name = meta)]
        static IMPORT_META: ImportMeta;
        #[wasm_bindgen(method, getter)]
        fn url(this: &ImportMeta) -> String;
    }

    /// The worker's loader, beside this module's `frontend.js`.
    const LOADER: &str = "whatif_loader.js";

    /// One job's resolve and reject.
    type Waiter = (Function, Function);

    struct Client {
        worker: Worker,
        ready: bool,
        /// Jobs posted before the worker was ready.
        queued: Vec<String>,
        /// Waiting for an answer, in the order the jobs were posted.
        waiting: VecDeque<Waiter>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_error: Closure<dyn FnMut(web_sys::Event)>,
    }

    type Shared = Rc<RefCell<Option<Client>>>;

    thread_local! {
        /// The page's worker, started at the first what-if; `None` again after a failure.
        static CLIENT: Shared = Rc::new(RefCell::new(None));
    }

    /// Plans a [`job`](super::job) in the worker: the plan, its JSON text and the engine's
    /// milliseconds, or what failed (the worker did not load or died, or the job was refused).
    pub async fn plan(job: Result<String, String>) -> Result<(Plan, String, f64), String> {
        let job = job?;
        let shared = CLIENT.with(Rc::clone);
        let mut slot = Some(job);
        let answer = Promise::new(&mut |resolve, reject| {
            if let Err(e) = submit(&shared, slot.take().unwrap_or_default(), (resolve, reject.clone())) {
                let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(&e));
            }
        });
        let message = JsFuture::from(answer).await.map_err(|e| e.as_string().unwrap_or_default())?;
        match Answer::from_js(&message) {
            Some(Answer::Plan { json, ms }) => {
                let plan = serde_json::from_str::<Plan>(&json)
                    .map_err(|e| format!("the what-if worker's plan: {e}"))?;
                Ok((plan, json, ms))
            }
            Some(Answer::Failed(e)) => Err(e),
            _ => Err("the what-if worker answered out of turn".into()),
        }
    }

    fn submit(shared: &Shared, job: String, waiter: Waiter) -> Result<(), String> {
        let mut slot = shared.borrow_mut();
        if slot.is_none() {
            *slot = Some(start(shared)?);
        }
        let client = slot.as_mut().expect("started");
        if client.ready {
            client.worker.post_message(&JsValue::from_str(&job)).map_err(js_text)?;
        } else {
            client.queued.push(job);
        }
        client.waiting.push_back(waiter);
        Ok(())
    }

    fn start(shared: &Shared) -> Result<Client, String> {
        let url =
            web_sys::Url::new_with_base(LOADER, &IMPORT_META.with(ImportMeta::url)).map_err(js_text)?.href();
        let worker =
            Worker::new(&url).map_err(|e| format!("starting the what-if worker {url}: {}", js_text(e)))?;
        let on_message = {
            let shared = Rc::downgrade(shared);
            Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                if let Some(shared) = shared.upgrade() {
                    received(&shared, ev.data());
                }
            })
        };
        let on_error = {
            let shared = Rc::downgrade(shared);
            let url = url.clone();
            // An `ErrorEvent` when the worker threw, a plain `Event` when its script did not load.
            Closure::<dyn FnMut(web_sys::Event)>::new(move |ev: web_sys::Event| {
                ev.prevent_default();
                if let Some(shared) = shared.upgrade() {
                    let what = js_sys::Reflect::get(&ev, &JsValue::from_str("message"))
                        .ok()
                        .and_then(|m| m.as_string());
                    let what =
                        what.filter(|m| !m.is_empty()).unwrap_or_else(|| format!("{url} did not load"));
                    fail(&shared, &format!("the what-if worker failed: {what}"));
                }
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Client {
            worker,
            ready: false,
            queued: Vec::new(),
            waiting: VecDeque::new(),
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    fn received(shared: &Shared, message: JsValue) {
        let ready = shared.borrow().as_ref().is_some_and(|c| c.ready);
        if !ready {
            match Answer::from_js(&message) {
                Some(Answer::Ready) => {
                    let mut slot = shared.borrow_mut();
                    let Some(client) = slot.as_mut() else { return };
                    client.ready = true;
                    for job in std::mem::take(&mut client.queued) {
                        if let Err(e) = client.worker.post_message(&JsValue::from_str(&job)) {
                            drop(slot);
                            return fail(shared, &js_text(e));
                        }
                    }
                }
                Some(Answer::Failed(e)) => fail(shared, &e),
                _ => fail(shared, "the what-if worker did not start"),
            }
            return;
        }
        let waiter = shared.borrow_mut().as_mut().and_then(|c| c.waiting.pop_front());
        if let Some((resolve, _)) = waiter {
            let _ = resolve.call1(&JsValue::NULL, &message);
        }
    }

    /// Rejects every waiting job with `why` and drops the worker: the next what-if starts anew.
    fn fail(shared: &Shared, why: &str) {
        let Some(client) = shared.borrow_mut().take() else { return };
        client.worker.terminate();
        for (_, reject) in client.waiting {
            let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(why));
        }
    }

    fn js_text(e: JsValue) -> String {
        e.as_string()
            .or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()))
            .unwrap_or_else(|| "unknown error".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::testkit;

    /// The service's answers as JSON text, and as the page decodes them.
    fn answers() -> (String, String, ClusterView, PolicyView) {
        let cluster = serde_json::to_string(&ClusterView::of(testkit::cluster(7, 5, 60))).unwrap();
        let policy = PolicyView {
            settings: Default::default(),
            sources: Default::default(),
            request: Default::default(),
            bandwidth: None,
        };
        let policy = serde_json::to_string(&policy).unwrap();
        let (c, p) = (serde_json::from_str(&cluster).unwrap(), serde_json::from_str(&policy).unwrap());
        (cluster, policy, c, p)
    }

    #[test]
    fn a_job_is_planned_as_the_page_planned_it() {
        let (cluster, policy, page_cluster, page_policy) = answers();
        let overrides = PolicyLayer { balanciness: Some(3.0), ..PolicyLayer::default() };
        let clock = std::cell::Cell::new(10.0);
        let answer = answer(&job(&cluster, &policy, &overrides).unwrap(), || {
            clock.set(clock.get() + 2.5);
            clock.get()
        });
        let request = page_policy.with_overrides(&overrides).unwrap().request;
        let expected = shared::planner::plan(&page_cluster.snapshot, &request);
        assert!(!expected.steps.is_empty(), "a plan with moves: {:?}", expected.notes);
        // Compared as the posted text: the worker's plan is bit for bit the page's own.
        assert_eq!(answer, Answer::Plan { json: serde_json::to_string(&expected).unwrap(), ms: 2.5 });
    }

    #[test]
    fn a_bad_job_or_override_gets_a_failure_not_a_panic() {
        let failed = |a: Answer, needle: &str| matches!(&a, Answer::Failed(e) if e.contains(needle));
        assert!(failed(answer("{\"cluster\":1}", || 0.0), "could not read"));
        let (cluster, policy, ..) = answers();
        let bad = PolicyLayer { balanciness: Some(-5.0), ..PolicyLayer::default() };
        assert!(failed(answer(&job(&cluster, &policy, &bad).unwrap(), || 0.0), "balanciness"));
    }
}
