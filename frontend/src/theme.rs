//! Light or dark, as PVE's own UI decides it (checked against pve-manager's `index.html.tpl` and
//! `PVE/Service/pveproxy.pm`, and the widget toolkit's `window/ThemeEdit.js` and `Utils.js`).
//! The user's choice (user menu › Color Theme) is the `PVEThemeCookie` cookie: `crisp` (Light),
//! `proxmox-dark` (Proxmox Dark) or `__default__` (auto). pveproxy renders it into the page's
//! head: no theme link for `crisp`; `/pwt/themes/theme-proxmox-dark.css` for `proxmox-dark`; the
//! same link with `media="(prefers-color-scheme: dark)"` for auto, which is also what a missing
//! cookie or one that is not a kebab-case name (`__default__`) gets. Picking a theme sets the
//! cookie and reloads the page, so the link in the page is the truth; the cookie decides only on
//! a page without PVE's link.
//! Standalone (no PVE around) the panel follows `prefers-color-scheme`.
//!
//! The CSS does the rest: the root carries `pvrb-theme-light|dark|auto`, which sets
//! `color-scheme`, and every colour is a `light-dark()` pair (auto follows the browser live).

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Theme {
    Light,
    Dark,
    /// The browser's `prefers-color-scheme`.
    Auto,
}

impl Theme {
    pub fn class(self) -> &'static str {
        match self {
            Theme::Light => "pvrb pvrb-theme-light",
            Theme::Dark => "pvrb pvrb-theme-dark",
            Theme::Auto => "pvrb pvrb-theme-auto",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
            Theme::Auto => "auto",
        }
    }
}

/// What the page says: PVE's dark stylesheet (`Some(media)`, media empty when unconditional),
/// PVE's theme cookie, and whether PVE's UI is around at all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PageTheme {
    pub dark_sheet: Option<String>,
    pub cookie: Option<String>,
    pub in_pve: bool,
}

/// The theme the panel takes from what the page says.
pub fn theme_of(page: &PageTheme) -> Theme {
    if let Some(media) = &page.dark_sheet {
        return if media.contains("prefers-color-scheme") { Theme::Auto } else { Theme::Dark };
    }
    match page.cookie.as_deref() {
        Some("proxmox-dark") => Theme::Dark,
        Some("__default__") => Theme::Auto,
        Some(_) => Theme::Light,
        // PVE without a dark link renders light; a page of our own follows the browser.
        None if page.in_pve => Theme::Light,
        None => Theme::Auto,
    }
}

/// `name`'s value in a `document.cookie` string.
pub fn cookie(all: &str, name: &str) -> Option<String> {
    all.split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

const DARK_SHEET: &str = "link[rel~=stylesheet][href*='theme-proxmox-dark']";

/// Reads the page now.
pub fn read_page() -> PageTheme {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return PageTheme::default() };
    let dark_sheet = doc
        .query_selector(DARK_SHEET)
        .ok()
        .flatten()
        .filter(|l| !l.has_attribute("disabled"))
        .map(|l| l.get_attribute("media").unwrap_or_default());
    let all =
        js_sys::Reflect::get(&doc, &"cookie".into()).ok().and_then(|c| c.as_string()).unwrap_or_default();
    let global = js_sys::global();
    let in_pve = ["Ext", "Proxmox"]
        .iter()
        .any(|g| js_sys::Reflect::get(&global, &(*g).into()).is_ok_and(|v| v.is_object()));
    PageTheme { dark_sheet, cookie: cookie(&all, "PVEThemeCookie"), in_pve }
}

/// Calls `changed` whenever the page's stylesheets change. PVE itself reloads the page on a new
/// theme; this serves hosts that change the link in place (and costs nothing when none does).
/// The observer lives as long as the returned handle.
pub struct Watch {
    observer: web_sys::MutationObserver,
    _callback: Closure<dyn FnMut()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.observer.disconnect();
    }
}

pub fn watch(changed: impl FnMut() + 'static) -> Option<Watch> {
    let head = web_sys::window()?.document()?.head()?;
    let callback = Closure::<dyn FnMut()>::new(changed);
    let observer = web_sys::MutationObserver::new(callback.as_ref().unchecked_ref()).ok()?;
    let init = web_sys::MutationObserverInit::new();
    init.set_child_list(true);
    init.set_subtree(true);
    init.set_attributes(true);
    init.set_attribute_filter(&js_sys::Array::of3(&"media".into(), &"disabled".into(), &"href".into()));
    observer.observe_with_options(&head, &init).ok()?;
    Some(Watch { observer, _callback: callback })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(sheet: Option<&str>, cookie: Option<&str>, in_pve: bool) -> PageTheme {
        PageTheme { dark_sheet: sheet.map(str::to_owned), cookie: cookie.map(str::to_owned), in_pve }
    }

    #[test]
    fn the_pages_stylesheet_decides_then_the_cookie_then_the_browser() {
        assert_eq!(theme_of(&page(Some(""), None, true)), Theme::Dark);
        assert_eq!(
            theme_of(&page(Some("(prefers-color-scheme: dark)"), Some("__default__"), true)),
            Theme::Auto
        );
        // The link is what PVE shows, even when the cookie says otherwise (changed, not reloaded).
        assert_eq!(theme_of(&page(Some(""), Some("crisp"), true)), Theme::Dark);
        assert_eq!(theme_of(&page(None, Some("proxmox-dark"), true)), Theme::Dark);
        assert_eq!(theme_of(&page(None, Some("crisp"), true)), Theme::Light);
        assert_eq!(theme_of(&page(None, None, true)), Theme::Light);
        assert_eq!(theme_of(&page(None, None, false)), Theme::Auto);
    }

    #[test]
    fn cookies_are_found_by_name() {
        let all = "PVEAuthCookie=PVE%3Aroot; PVEThemeCookie=proxmox-dark; x=1";
        assert_eq!(cookie(all, "PVEThemeCookie").as_deref(), Some("proxmox-dark"));
        assert_eq!(cookie(all, "Theme"), None);
    }
}
