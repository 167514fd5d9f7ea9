//! Entry point of the wasm module. Standalone it mounts the panel on `<body>`; inside the PVE UI
//! the loader sets `window.__pveRebalancerEmbedded = true` first and calls `mount_panel` itself.
//! The exports live in the binary crate so that they are kept in the module trunk builds.

use frontend::views::Panel;
use frontend::{PanelOptions, STYLE};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;

fn ensure_style() {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return };
    if doc.get_element_by_id("pvrb-style").is_some() {
        return;
    }
    if let (Ok(style), Some(head)) = (doc.create_element("style"), doc.head()) {
        style.set_id("pvrb-style");
        style.set_text_content(Some(STYLE));
        let _ = head.append_child(&style);
    }
}

/// A mounted panel; `unmount()` removes it and stops its work (ExtJS destroys cards on tab switch).
#[wasm_bindgen]
pub struct PanelHandle {
    mounted: Option<Box<dyn std::any::Any>>,
}

#[wasm_bindgen]
impl PanelHandle {
    pub fn unmount(&mut self) {
        self.mounted.take();
    }
}

/// Mounts the panel into `element`. `options` is `{apiBase, view, node, user, csrfToken, caps}`.
#[wasm_bindgen]
pub fn mount_panel(element: web_sys::HtmlElement, options: JsValue) -> Result<PanelHandle, JsValue> {
    ensure_style();
    let mut opts: PanelOptions = if options.is_undefined() || options.is_null() {
        PanelOptions::default()
    } else {
        // Through JSON text, like every answer of the API: one decoder in the size-budgeted
        // module instead of serde-wasm-bindgen's second one (docs/BENCHMARKS.md, Panel).
        js_sys::JSON::stringify(&options)
            .ok()
            .and_then(|text| text.as_string())
            .ok_or_else(|| "not JSON".to_owned())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|e| JsValue::from_str(&format!("mount_panel options: {e}")))?
    };
    opts.embedded = true;
    let handle = leptos::mount::mount_to(element, move || view! { <Panel opts=opts.clone() /> });
    Ok(PanelHandle { mounted: Some(Box::new(handle)) })
}

fn main() {
    console_error_panic_hook::set_once();
    let embedded = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("__pveRebalancerEmbedded"))
        .map(|v| v.is_truthy())
        .unwrap_or(false);
    if !embedded {
        ensure_style();
        let opts = standalone_options();
        leptos::mount::mount_to_body(move || view! { <Panel opts=opts.clone() /> });
    }
}

/// Standalone, `?view=maintenance&node=pve2` opens one node's maintenance view, as the node
/// toolbar button does inside PVE (handy for bookmarks and tests).
fn standalone_options() -> PanelOptions {
    let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok();
    let get = |k: &str| params.as_ref().and_then(|p| p.get(k)).filter(|v| !v.is_empty());
    PanelOptions { view: get("view").unwrap_or_default(), node: get("node"), ..PanelOptions::default() }
}
