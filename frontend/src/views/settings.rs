//! The balancing policy shared by the cluster (`GET`/`PUT /api/v1/settings`). Each value shows
//! where it comes from (built-in default, configuration file, stored here), as PVE marks
//! "Default" against set values; Save sends only the fields changed in this form (a
//! `PolicyLayer`), so what another admin stored meanwhile in other fields stays.
//!
//! The form edits the settings as JSON, field by field from one table ([`FIELDS`]); the draft is
//! read back into `Settings` and checked with the engine's own `Settings::check` before anything
//! is sent. Users without `Sys.Modify` on `/` see it read-only, with a tooltip naming the
//! privilege they lack (the service says which, in `SettingsView::missing_privilege`).

use super::common::ErrorLine;
use super::{clock, Ctx};
use crate::api;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::{Map, Value};
use shared::api::{Settings, SettingsView};
use shared::policy::{PolicyLayer, Source};

/// How a field is typed in the form.
#[derive(Clone, Copy)]
enum Kind {
    /// A number; the form shows `stored / scale` (seconds as minutes). `whole`: integers only.
    /// `optional`: empty = `null` (off / no limit).
    Number {
        scale: f64,
        whole: bool,
        optional: bool,
    },
    /// A list typed as `a, b c`.
    List,
    Flag,
    /// One of these JSON values, with its words.
    Choice(&'static [(&'static str, &'static str)]),
}

struct Field {
    key: &'static str,
    label: &'static str,
    help: &'static str,
    kind: Kind,
}

const fn num(scale: f64, whole: bool, optional: bool) -> Kind {
    Kind::Number { scale, whole, optional }
}

/// The settings an admin changes in the panel, in the order they are shown; the JSON names are
/// `Settings`'s own.
const FIELDS: &[Field] = &[
    Field {
        key: "method",
        label: "Method",
        help: "Which resource the balance is measured on",
        kind: Kind::Choice(&[
            ("\"memory\"", "memory"),
            ("\"cpu\"", "CPU"),
            ("\"disk\"", "disk"),
            ("\"weighted\"", "weighted"),
        ]),
    },
    Field {
        key: "mode",
        label: "Mode",
        help: "Which figure of it",
        kind: Kind::Choice(&[
            ("\"used\"", "used"),
            ("\"assigned\"", "assigned"),
            ("\"percentile\"", "percentile"),
            ("\"psi\"", "pressure (PSI)"),
        ]),
    },
    Field {
        key: "level",
        label: "Threshold level",
        help: "DRS-like level 1–5 in place of balanciness and minimum gain",
        kind: Kind::Choice(&[
            ("null", "off (balanciness)"),
            ("1", "1 (mandatory only)"),
            ("2", "2"),
            ("3", "3"),
            ("4", "4"),
            ("5", "5 (aggressive)"),
        ]),
    },
    Field {
        key: "balanciness",
        label: "Trigger (balanciness, points)",
        help: "Balancing starts when max − min node usage exceeds this many percentage points",
        kind: num(1.0, false, false),
    },
    Field {
        key: "min_gain",
        label: "Minimum gain (points)",
        help: "Points of the gap between source and target a move must close",
        kind: num(1.0, false, false),
    },
    Field {
        key: "max_moves",
        label: "Migrations per plan",
        help: "At most this many migrations in one plan",
        kind: num(1.0, true, false),
    },
    Field {
        key: "max_gib",
        label: "GiB moved per plan",
        help: "Memory plus local disk moved by one plan; empty = no limit",
        kind: num(1.0, false, true),
    },
    Field {
        key: "migration_bandwidth_mib_s",
        label: "Migration bandwidth (MiB/s)",
        help: "Prices a move in seconds; empty = measured from recent migrations, else 500",
        kind: num(1.0, false, true),
    },
    Field {
        key: "memory_threshold",
        label: "Memory threshold (%)",
        help: "A node at or above this memory use triggers balancing whatever the spread; empty = off",
        kind: num(1.0, false, true),
    },
    Field {
        key: "cpu_threshold",
        label: "CPU threshold (%)",
        help: "The same for CPU; empty = off",
        kind: num(1.0, false, true),
    },
    Field {
        key: "disk_threshold",
        label: "Disk threshold (%)",
        help: "The same for disk; empty = off",
        kind: num(1.0, false, true),
    },
    Field {
        key: "memory_reserve_gib",
        label: "Memory reserve per node (GiB)",
        help: "Memory kept free on every node",
        kind: num(1.0, false, false),
    },
    Field {
        key: "ignore_nodes",
        label: "Ignored nodes",
        help: "Node names or prefix* patterns, separated by commas",
        kind: Kind::List,
    },
    Field {
        key: "ignore_guests",
        label: "Ignored guests",
        help: "Guest names or prefix* patterns, separated by commas",
        kind: Kind::List,
    },
    Field {
        key: "balance_types",
        label: "Guest types moved",
        help: "Which guests balancing may move (ProxLB balance_types)",
        kind: Kind::Choice(&[
            ("[\"vm\",\"ct\"]", "VMs and containers"),
            ("[\"vm\"]", "VMs only"),
            ("[\"ct\"]", "containers only"),
            ("[]", "none (plan only)"),
        ]),
    },
    Field {
        key: "live",
        label: "Migrate running VMs live",
        help: "Off: only stopped VMs move (PVE cannot move a running VM offline)",
        kind: Kind::Flag,
    },
    Field {
        key: "with_local_disks",
        label: "Move guests with local disks",
        help: "PVE copies the disks (with-local-disks)",
        kind: Kind::Flag,
    },
    Field {
        key: "cooldown_secs",
        label: "Cooldown (minutes)",
        help: "A migrated guest is left alone by balancing this long",
        kind: num(60.0, true, false),
    },
    Field {
        key: "schedule_interval_secs",
        label: "Automatic run every (minutes)",
        help: "Empty: balancing runs only when someone asks",
        kind: num(60.0, true, true),
    },
    Field {
        key: "windows",
        label: "Execution windows",
        help:
            "When scheduled runs may execute, e.g. mon-fri 22:00-06:00, separated by commas; empty = always",
        kind: Kind::List,
    },
    Field {
        key: "max_parallel",
        label: "Migrations at once (cluster)",
        help: "Migrations in flight at once, cluster-wide (1–64)",
        kind: num(1.0, true, false),
    },
    Field {
        key: "max_per_node",
        label: "Migrations at once (per node)",
        help: "Migrations in flight per node, as source or target (1–64)",
        kind: num(1.0, true, false),
    },
];

/// A list typed as `a, b c` → `["a", "b", "c"]`; windows keep their inner spaces
/// (`mon-fri 22:00-06:00`), so they split on commas only.
fn list(key: &str, text: &str) -> Vec<String> {
    let parts: Vec<&str> =
        if key == "windows" { text.split(',').collect() } else { text.split([',', ' ']).collect() };
    parts.into_iter().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// What the form shows for a JSON value of `kind`.
fn text_of(kind: Kind, v: &Value) -> String {
    match (kind, v) {
        (_, Value::Null) => String::new(),
        (Kind::Number { scale, .. }, Value::Number(n)) => {
            let x = n.as_f64().unwrap_or_default() / scale;
            format!("{}", (x * 1000.0).round() / 1000.0)
        }
        (Kind::List, Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
        _ => v.to_string(),
    }
}

/// The JSON value typed text stands for, or why it does not fit.
fn value_of(field: &Field, text: &str) -> Result<Value, String> {
    let t = text.trim();
    match field.kind {
        Kind::Number { optional: true, .. } if t.is_empty() => Ok(Value::Null),
        Kind::Number { scale, whole, .. } => {
            let x: f64 = t
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| format!("`{t}` is not a number"))?;
            let stored = x * scale;
            if !whole {
                return Ok(serde_json::json!(stored));
            }
            if stored < 0.0 || stored.fract() != 0.0 {
                return Err(format!("`{t}` is not a whole number of 0 or more"));
            }
            Ok(serde_json::json!(stored as u64))
        }
        Kind::List => Ok(serde_json::json!(list(field.key, t))),
        Kind::Flag => Ok(Value::Bool(t == "true")),
        Kind::Choice(_) => serde_json::from_str(t).map_err(|e| e.to_string()),
    }
}

/// Settings as a JSON object. Through a string, like every other JSON in the panel: a second
/// path (`to_value`/`from_value`) would compile a second serializer or deserializer per type
/// into the size-budgeted module (docs/BENCHMARKS.md, Panel).
fn as_json(s: &Settings) -> Map<String, Value> {
    match serde_json::to_string(s).map(|t| serde_json::from_str(&t)) {
        Ok(Ok(Value::Object(m))) => m,
        _ => Map::new(),
    }
}

/// A JSON object as `T`, through the same string decoder as the API's answers (see `as_json`).
fn from_object<T: serde::de::DeserializeOwned>(m: Map<String, Value>) -> Result<T, String> {
    serde_json::from_str(&Value::Object(m).to_string()).map_err(|e| e.to_string())
}

/// The draft as settings, checked by the engine's rules: the settings, or the words to show.
fn checked(draft: &Map<String, Value>) -> Result<Settings, String> {
    let s: Settings = from_object(draft.clone())?;
    s.check().map_err(|e| format!("{}: {}", e.field, e.detail))?;
    Ok(s)
}

/// The fields the draft changes from `saved`: the JSON of the `PolicyLayer` that
/// `PUT /api/v1/settings` takes. Sent as this object, not decoded into a `PolicyLayer` first:
/// `checked` has checked the values, the service checks the body, and the panel's size-budgeted
/// module needs no `PolicyLayer` decoder (21 KB of code, docs/BENCHMARKS.md, Panel).
fn changes(saved: &Settings, draft: &Map<String, Value>) -> Map<String, Value> {
    let before = as_json(saved);
    draft.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The names of the fields `changes` sets, in the settings' order.
fn changed_fields(changes: &Map<String, Value>) -> Vec<&'static str> {
    PolicyLayer::FIELDS.iter().copied().filter(|f| changes.contains_key(*f)).collect()
}

/// PVE's way of marking a value: where it comes from, in a word.
fn source_word(source: Source) -> &'static str {
    match source {
        Source::Default => "default",
        Source::File => "file",
        Source::Stored => "stored",
        Source::Request => "request",
    }
}

fn source_title(source: Source) -> &'static str {
    match source {
        Source::Default => "Nobody set it: the built-in default",
        Source::File => "Set in the configuration file (proxlb.yaml); a stored value would override it",
        Source::Stored => "Stored for the cluster in this view (overrides the configuration file)",
        Source::Request => "Set for one request",
    }
}

#[component]
pub fn SettingsForm() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let draft = RwSignal::new(None::<Map<String, Value>>);
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let load_error = RwSignal::new(None::<String>);
    let load = move |v: SettingsView| {
        draft.try_set(Some(as_json(&v.settings)));
        ctx.settings.try_set(Some(v));
    };
    // Fresh on every visit (another admin may have changed them).
    let o = ctx.opts.get_value();
    spawn_local(async move {
        match api::settings(&o).await {
            Ok(v) => load(v),
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
    let edit = move |field: &'static Field, text: String| match value_of(field, &text) {
        Ok(v) => {
            error.set(None);
            saved.set(None);
            draft.update(|d| {
                if let Some(d) = d {
                    d.insert(field.key.to_owned(), v);
                }
            });
        }
        Err(e) => error.set(Some(format!("{}: {e}. Not applied.", field.key))),
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (Some(d), Some(before)) = (draft.get_untracked(), ctx.settings.get_untracked()) else { return };
        let layer = match checked(&d).map(|_| changes(&before.settings, &d)) {
            Ok(l) => l,
            Err(e) => {
                error.set(Some(format!("{e}. Nothing was saved.")));
                return;
            }
        };
        if layer.is_empty() {
            saved.set(Some("Nothing changed; nothing to save.".into()));
            return;
        }
        let o = ctx.opts.get_value();
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::save_settings_object(&o, &layer).await {
                Ok(v) => {
                    let n = changed_fields(&layer).join(", ");
                    load(v);
                    saved.try_set(Some(format!("Saved {n}; the next plan uses these settings.")));
                }
                Err(e) => {
                    error.try_set(Some(e.message));
                }
            }
            busy.try_set(false);
        });
    };
    let revert = move |_| {
        draft.set(ctx.settings.get_untracked().map(|v| as_json(&v.settings)));
        error.set(None);
        saved.set(None);
    };
    // One stored value forgotten: the file's value or the default shows again.
    let reset = move |field: &'static str| {
        let o = ctx.opts.get_value();
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::reset_setting(&o, field).await {
                Ok(v) => {
                    // Only this field's value changes in the form: other unsaved edits stay.
                    let value = as_json(&v.settings).get(field).cloned().unwrap_or(Value::Null);
                    draft.try_update(|d| d.as_mut().map(|d| d.insert(field.to_owned(), value)));
                    ctx.settings.try_set(Some(v));
                    saved.try_set(Some(format!(
                        "Reset {field}; the next plan uses the file's value or the default."
                    )));
                }
                Err(e) => {
                    error.try_set(Some(e.message));
                }
            }
            busy.try_set(false);
        });
    };
    let row = move |field: &'static Field| {
        let id = format!("set-{}", field.key.replace('_', "-"));
        // Its own field only: an edit elsewhere must not write this input back (it may be mid-edit).
        let value = Memo::new(move |_| {
            draft.with(|d| d.as_ref().and_then(|d| d.get(field.key).cloned()).unwrap_or(Value::Null))
        });
        let value = move || value.get();
        let input = match field.kind {
            Kind::Choice(options) => {
                let opts = options
                    .iter()
                    .map(|(json, words)| view! { <option value=*json>{*words}</option> })
                    .collect_view();
                // The option whose JSON equals the value (compared as JSON, so `["vm","ct"]` matches).
                let current = move || {
                    let v = value();
                    options
                        .iter()
                        .find(|(json, _)| serde_json::from_str::<Value>(json).ok().as_ref() == Some(&v))
                        .map_or("", |(json, _)| *json)
                };
                view! { <select id=id class="pvrb-select" prop:value=current on:change=move |ev| edit(field, event_target_value(&ev))>{opts}</select> }.into_any()
            }
            Kind::Flag => view! {
                <input id=id type="checkbox" class="pvrb-check" prop:checked=move || value() == Value::Bool(true)
                    on:change=move |ev| edit(field, event_target_checked(&ev).to_string()) />
            }
            .into_any(),
            Kind::Number { optional, .. } => view! {
                <input id=id type="text" inputmode="decimal" class="pvrb-input" placeholder=if optional { "off" } else { "" }
                    prop:value=move || text_of(field.kind, &value())
                    on:change=move |ev| edit(field, event_target_value(&ev)) />
            }
            .into_any(),
            Kind::List => view! {
                <input id=id type="text" class="pvrb-input" prop:value=move || text_of(field.kind, &value())
                    on:change=move |ev| edit(field, event_target_value(&ev)) />
            }
            .into_any(),
        };
        // Where the value comes from; "changed" until saved.
        let mark = move || {
            let v = view_of()?;
            let stored = as_json(&v.settings).get(field.key).cloned();
            let changed =
                draft.with(|d| d.as_ref().map(|d| d.get(field.key).cloned()) != Some(stored.clone()));
            let source = v.sources.get(field.key).copied().unwrap_or_default();
            let (word, title, class) = if changed {
                ("changed", "Changed here, not saved yet", "pvrb-src pvrb-src-changed")
            } else {
                (source_word(source), source_title(source), "pvrb-src")
            };
            let resettable = source == Source::Stored && !changed && v.writable;
            Some(view! {
                <span class=class data-source=word title=title>{word}</span>
                {resettable.then(|| view! {
                    <button type="button" class="pvrb-link" id=format!("reset-{}", field.key.replace('_', "-"))
                        title="Forget the stored value: the configuration file's value or the default applies"
                        disabled=move || busy.get() on:click=move |_| reset(field.key)>"reset"</button>
                })}
            })
        };
        view! {
            <div class="pvrb-field" data-field=field.key title=field.help>
                <label for=format!("set-{}", field.key.replace('_', "-"))>{field.label}</label>
                {input}
                <span id=format!("src-{}", field.key.replace('_', "-"))>{mark}</span>
            </div>
        }
    };
    // The form is built once the draft is there; each field then follows the draft by itself
    // (rebuilding the form on every edit would replace the input being typed in).
    let loaded = Memo::new(move |_| draft.with(Option::is_some));
    let form = move || {
        loaded.get().then_some(())?;
        let read_only = denied().is_some();
        let stamp = view_of().and_then(|v| match (v.updated_by, v.updated_at) {
            (Some(by), Some(at)) => Some(format!("Last changed by {by} at {}.", clock(at))),
            _ => None,
        });
        let rows = FIELDS.iter().map(row).collect_view();
        Some(view! {
            // novalidate: our check names the field and the allowed range; the browser's own bubble
            // would only block the submit.
            <form id="settings-form" class="pvrb-settings" novalidate=true on:submit=save>
                <fieldset id="settings-fields" disabled=read_only title=denied().unwrap_or_default()>{rows}</fieldset>
                <div class="pvrb-toolbar">
                    <button id="settings-save" class="pvrb-primary" type="submit" disabled=move || busy.get() || denied().is_some()
                        title=move || denied().unwrap_or_else(|| "Store the changed fields for the whole cluster".into())>"Save"</button>
                    <button id="settings-revert" type="button" disabled=move || denied().is_some() on:click=revert>"Revert"</button>
                    {move || denied().map(|d| view! { <span class="pvrb-muted" id="settings-readonly">{d}</span> })}
                    {stamp.map(|s| view! { <span class="pvrb-muted">{s}</span> })}
                </div>
            </form>
        })
    };
    view! {
        <ErrorLine error=load_error />
        {move || (draft.with(Option::is_none) && load_error.with(Option::is_none))
            .then(|| view! { <p class="pvrb-muted">"Loading settings…"</p> })}
        {form}
        <ErrorLine error=error id="settings-error" />
        {move || saved.get().map(|m| view! { <p class="pvrb-ok" id="settings-saved">{m}</p> })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(key: &str) -> &'static Field {
        FIELDS.iter().find(|f| f.key == key).unwrap()
    }

    #[test]
    fn every_field_is_a_settings_field() {
        let names = as_json(&Settings::default());
        for f in FIELDS {
            assert!(names.contains_key(f.key), "{} is not a Settings field", f.key);
        }
    }

    #[test]
    fn typed_text_becomes_the_stored_json() {
        assert_eq!(value_of(field("cooldown_secs"), "30"), Ok(serde_json::json!(1800)));
        assert_eq!(value_of(field("max_gib"), " "), Ok(Value::Null));
        assert!(value_of(field("max_moves"), "2.5").is_err());
        assert!(value_of(field("balanciness"), "ten").is_err());
        assert_eq!(
            value_of(field("windows"), "mon-fri 22:00-06:00, sat"),
            Ok(serde_json::json!(["mon-fri 22:00-06:00", "sat"]))
        );
        assert_eq!(value_of(field("balance_types"), "[\"vm\"]"), Ok(serde_json::json!(["vm"])));
        assert_eq!(text_of(field("schedule_interval_secs").kind, &serde_json::json!(900)), "15");
    }

    #[test]
    fn only_the_changed_fields_are_sent() {
        let saved = Settings::default();
        let mut draft = as_json(&saved);
        draft.insert("balanciness".into(), serde_json::json!(7.0));
        draft.insert("max_gib".into(), serde_json::json!(64.0));
        let body = changes(&saved, &draft);
        assert_eq!(changed_fields(&body), vec!["balanciness", "max_gib"]);
        // The body is the layer the service takes, with only those fields.
        let layer: PolicyLayer = from_object(body).unwrap();
        assert_eq!(layer.set_fields(), vec!["balanciness", "max_gib"]);
        assert_eq!(layer.max_gib, Some(Some(64.0)));
        // An out-of-range draft is refused by the engine's own check, naming the field.
        draft.insert("max_parallel".into(), serde_json::json!(0));
        assert!(checked(&draft).unwrap_err().starts_with("max_parallel"));
    }
}
