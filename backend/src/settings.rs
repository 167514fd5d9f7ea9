//! The balancing settings shared by the whole cluster (`GET`/`PUT /api/v1/settings`).
//!
//! They live in `settings.json` in the state directory (`--state-dir`, default
//! `/etc/pve/pve-rebalancer` on pmxcfs, the same directory as the maintenance marks), so every
//! node's service and panel see one set. Precedence, per field: a value stored there wins over the
//! configuration file's, which wins over the built-in default; a field the file does not hold
//! keeps the configuration's value. Deleting the file returns to the configuration.
//!
//! The file is replaced atomically (temporary file in the same directory + rename, which pmxcfs
//! applies cluster-wide as one change) and created 0640 (root and the `www-data` group of PVE's
//! own files may read it; it holds no secret).

use serde_json::{Map, Value};
use shared::api::{Settings, SettingsError};
use std::path::{Path, PathBuf};

/// pmxcfs: shared by all nodes of the cluster (the maintenance marks live there too).
pub const DEFAULT_STATE_DIR: &str = "/etc/pve/pve-rebalancer";
/// The file in the state directory.
pub const FILE: &str = "settings.json";

#[derive(Debug, thiserror::Error)]
pub enum SettingsStoreError {
    #[error("settings file {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("settings file {path} is not valid: {detail} (fix or delete it; the configuration file's values apply without it)")]
    Corrupt { path: PathBuf, detail: String },
    /// Bad input from a caller: which field and why. Nothing was written.
    #[error("{}: {}", .0.field, .0.detail)]
    Invalid(SettingsError),
}

/// What the file holds besides the values: who wrote it and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub settings: Settings,
    pub updated_by: Option<String>,
    pub updated_at: Option<u64>,
}

/// The settings file and the values it falls back to.
pub struct SettingsStore {
    dir: PathBuf,
    base: Settings,
    /// Serialises read-modify-write in this process.
    write: std::sync::Mutex<()>,
}

impl SettingsStore {
    /// `base`: the configuration's values (or the defaults), used for every field not stored.
    pub fn new(dir: &Path, base: Settings) -> SettingsStore {
        SettingsStore { dir: dir.to_owned(), base, write: Default::default() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The settings in force: stored fields over the base.
    pub fn load(&self) -> Result<Stored, SettingsStoreError> {
        Ok(self.read()?.1)
    }

    /// For [`crate::execute::Executor::set_limits_source`]: the stored parallelism limits, read
    /// at each job start, so a change saved in the panel (on any node: the file is on pmxcfs)
    /// applies to the next job without a restart. An unreadable file keeps the configured limits.
    pub fn limits_source(&self) -> crate::execute::LimitsSource {
        let (dir, base) = (self.dir.clone(), self.base.clone());
        std::sync::Arc::new(move || match SettingsStore::new(&dir, base.clone()).load() {
            Ok(s) => Some((s.settings.max_parallel as usize, s.settings.max_per_node as usize)),
            Err(e) => {
                tracing::error!(error = %e, "stored executor limits not applied");
                None
            }
        })
    }

    /// The settings in force as a plan request, so evacuations and best-node answers honour the
    /// admin's ignore lists and limits as every plan does.
    pub fn plan_request(&self) -> Result<shared::PlanRequest, SettingsStoreError> {
        let mut request = shared::PlanRequest::default();
        self.load()?.settings.apply_to(&mut request);
        Ok(request)
    }

    /// The fields the file holds (only those someone set), and the settings in force.
    fn read(&self) -> Result<(Map<String, Value>, Stored), SettingsStoreError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let none = Stored { settings: self.base.clone(), updated_by: None, updated_at: None };
                return Ok((Map::new(), none));
            }
            Err(e) => return Err(SettingsStoreError::Io { path, detail: e.to_string() }),
        };
        let corrupt = |detail: String| SettingsStoreError::Corrupt { path: path.clone(), detail };
        let file: Value = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let stored = file.get("settings").and_then(Value::as_object).cloned().unwrap_or_default();
        let settings = overlay(&self.base, &stored).map_err(|(k, e)| corrupt(format!("`{k}`: {e}")))?;
        let stored_view = Stored {
            settings,
            updated_by: file.get("updated_by").and_then(Value::as_str).map(str::to_owned),
            updated_at: file.get("updated_at").and_then(Value::as_u64),
        };
        Ok((stored, stored_view))
    }

    /// Applies `changes` (a JSON object of setting → value; absent fields keep theirs), checks
    /// every field, and stores the result. Returns the settings before and after. On bad input
    /// nothing is written and the error names the field.
    pub fn update(
        &self,
        changes: &Value,
        user: &str,
        now: u64,
    ) -> Result<(Settings, Stored), SettingsStoreError> {
        let invalid = |field: &str, detail: String| {
            // Field names come from `Settings`, so they are 'static; an unknown key is named too.
            let field = KNOWN.iter().find(|k| **k == field).copied().unwrap_or("settings");
            SettingsStoreError::Invalid(SettingsError { field, detail })
        };
        let Some(changes) = changes.as_object() else {
            return Err(invalid("settings", "expected a JSON object of setting → value".into()));
        };
        if let Some(k) = changes.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let detail = format!("`{k}` is not a setting; known: {}", KNOWN.join(", "));
            return Err(SettingsStoreError::Invalid(SettingsError { field: "settings", detail }));
        }
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let (mut fields, old) = self.read()?;
        let new = overlay(&old.settings, changes).map_err(|(k, e)| invalid(&k, e))?;
        new.check().map_err(SettingsStoreError::Invalid)?;
        // Only fields someone set are stored, so the others keep following the configuration.
        fields.extend(changes.iter().map(|(k, v)| (k.clone(), v.clone())));
        let file = serde_json::json!({
            "version": 1,
            "updated_by": user,
            "updated_at": now,
            "settings": fields,
        });
        self.write_atomically(&serde_json::to_vec_pretty(&file).unwrap_or_default())?;
        Ok((old.settings, Stored { settings: new, updated_by: Some(user.into()), updated_at: Some(now) }))
    }

    fn write_atomically(&self, bytes: &[u8]) -> Result<(), SettingsStoreError> {
        crate::state_file::write_atomically(&self.dir, FILE, bytes)
            .map_err(|e| SettingsStoreError::Io { path: self.path(), detail: e.to_string() })
    }
}

/// The fields of `Settings`, as JSON names them.
pub const KNOWN: &[&str] = &[
    "method",
    "mode",
    "balanciness",
    "min_gain",
    "max_moves",
    "schedule_interval_secs",
    "max_parallel",
    "max_per_node",
    "ignore_nodes",
    "ignore_guests",
];

/// `base` with each field of `changes` put over it; a field of the wrong type is named with
/// serde's words (each field is tried alone so the error points at the right one).
fn overlay(base: &Settings, changes: &Map<String, Value>) -> Result<Settings, (String, String)> {
    let base_json = match serde_json::to_value(base) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut merged = base_json.clone();
    for (k, v) in changes {
        if !KNOWN.contains(&k.as_str()) {
            continue;
        }
        let mut one = base_json.clone();
        one.insert(k.clone(), v.clone());
        serde_json::from_value::<Settings>(Value::Object(one)).map_err(|e| (k.clone(), e.to_string()))?;
        merged.insert(k.clone(), v.clone());
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| ("settings".into(), e.to_string()))
}

/// `balanciness: 10 → 5; max_moves: 20 → 8` for the audit log; empty when nothing changed.
pub fn diff(old: &Settings, new: &Settings) -> String {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) = (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return String::new();
    };
    KNOWN
        .iter()
        .filter_map(|k| {
            let (x, y) = (a.get(*k)?, b.get(*k)?);
            (x != y).then(|| format!("{k}: {x} → {y}"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The base settings from the configuration file (ProxLB's keys and our `rebalancer:` section).
pub fn from_config(c: &crate::config::ProxlbConfig) -> Settings {
    let req = c.plan_request();
    let exec = c.exec_config();
    let interval = &c.service.schedule;
    Settings {
        method: req.method,
        mode: req.mode,
        balanciness: req.balanciness,
        min_gain: req.min_gain,
        max_moves: req.max_moves,
        // ProxLB balances on its schedule only as a daemon with balancing enabled; `serve`'s
        // scheduler does the same (at least a minute apart, the setting's lower bound).
        schedule_interval_secs: (c.service.daemon && c.balancing.enable)
            .then(|| interval.duration().as_secs().max(60)),
        max_parallel: exec.max_parallel as u32,
        max_per_node: exec.max_per_node as u32,
        ignore_nodes: req.rules.ignore_nodes,
        ignore_guests: req.rules.ignore_guests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        std::env::temp_dir().join(format!("pvrb-settings-{tag}-{}-{nanos}", std::process::id()))
    }

    #[test]
    fn stored_fields_win_over_the_base_and_the_rest_follow_it() {
        let dir = temp_dir("precedence");
        let base = Settings { balanciness: 7.0, max_moves: 3, ..Settings::default() };
        let store = SettingsStore::new(&dir.join("sub"), base.clone());
        assert_eq!(store.load().unwrap().settings, base);
        let (old, new) = store.update(&serde_json::json!({"balanciness": 4.5}), "ops@pve", 99).unwrap();
        assert_eq!(old, base);
        assert_eq!((new.settings.balanciness, new.settings.max_moves), (4.5, 3));
        let mode = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // A new base (the configuration changed): the stored field still wins, the others follow.
        let later = SettingsStore::new(&dir.join("sub"), Settings { max_moves: 9, ..base });
        let got = later.load().unwrap();
        assert_eq!((got.settings.balanciness, got.settings.max_moves), (4.5, 9));
        assert_eq!((got.updated_by.as_deref(), got.updated_at), (Some("ops@pve"), Some(99)));
        assert_eq!(diff(&old, &got.settings), "balanciness: 7.0 → 4.5; max_moves: 3 → 9");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_input_names_the_field_and_writes_nothing() {
        let dir = temp_dir("bad");
        let store = SettingsStore::new(&dir, Settings::default());
        for (body, field) in [
            (serde_json::json!({"balanciness": 500}), "balanciness"),
            (serde_json::json!({"max_moves": "many"}), "max_moves"),
            (serde_json::json!({"method": "ram"}), "method"),
            (serde_json::json!({"balanciess": 5}), "settings"),
            (serde_json::json!([1]), "settings"),
        ] {
            match store.update(&body, "u@pve", 1) {
                Err(SettingsStoreError::Invalid(e)) => assert_eq!(e.field, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(!store.path().exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
