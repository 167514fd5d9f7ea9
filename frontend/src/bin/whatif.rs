//! The what-if worker's wasm module (see `frontend::whatif`): it holds the engine, so the module
//! the panel page loads does not. It answers each job posted to it, in order, and says `Ready`
//! first. Built by trunk as a worker (`index.html`), started by `whatif_loader.js`.

use frontend::whatif::{answer, Answer};
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

fn main() {
    console_error_panic_hook::set_once();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let post = {
        let scope = scope.clone();
        move |answer: Answer| {
            let _ = scope.post_message(&answer.to_js());
        }
    };
    let on_message = {
        let post = post.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            post(match ev.data().as_string() {
                Some(job) => answer(&job, js_sys::Date::now),
                None => Answer::Failed("the what-if worker takes JSON text".into()),
            });
        })
    };
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as the page: its handler is never dropped.
    on_message.forget();
    post(Answer::Ready);
}
