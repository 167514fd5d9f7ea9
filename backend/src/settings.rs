//! The cluster-wide stored settings (`GET`/`PUT /api/v1/settings`): one layer of the policy
//! (`shared::policy`), above the configuration file and below one request's overrides.
//!
//! They live in `settings.json` in the state directory (`--state-dir`, default
//! `/etc/pve/pve-rebalancer` on pmxcfs, beside the maintenance marks), so every node's service,
//! panel and CLI see one set. Only fields someone set are stored, so the others keep following
//! the configuration file; deleting the file returns to it. Written through [`JsonStore`]
//! (locked, atomic, 0640: root and the `www-data` group may read it; it holds no secret).

use crate::store::{JsonStore, StoreError};
use serde::{Deserialize, Serialize};
use shared::policy::PolicyLayer;
use std::path::Path;

/// pmxcfs: shared by all nodes of the cluster (the maintenance marks live there too).
pub const DEFAULT_STATE_DIR: &str = "/etc/pve/pve-rebalancer";
/// The file in the state directory.
pub const FILE: &str = "settings.json";

/// `settings.json`: the stored layer, and who wrote it when.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    #[serde(default = "version")]
    pub version: u32,
    #[serde(default)]
    pub updated_by: Option<String>,
    #[serde(default)]
    pub updated_at: Option<u64>,
    #[serde(default)]
    pub settings: PolicyLayer,
}

fn version() -> u32 {
    1
}

/// The settings file of one state directory.
pub type SettingsStore = JsonStore<Stored>;

pub fn store(state_dir: &Path) -> SettingsStore {
    JsonStore::new(state_dir, FILE)
}

/// `balanciness: 10.0 → 5.0; max_moves: 20 → 8` for the audit log; empty when nothing changed.
pub fn diff(old: &shared::api::Settings, new: &shared::api::Settings) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return String::new();
    };
    PolicyLayer::FIELDS
        .iter()
        .filter_map(|k| {
            let (x, y) = (a.get(*k)?, b.get(*k)?);
            (x != y).then(|| format!("{k}: {x} → {y}"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<StoreError> for crate::settings::SettingsFailure {
    fn from(e: StoreError) -> Self {
        SettingsFailure::Store(e)
    }
}

/// Why settings could not be resolved or stored.
#[derive(Debug, thiserror::Error)]
pub enum SettingsFailure {
    /// Bad input: which field and why. Nothing was written.
    #[error("{}: {}", .0.field, .0.detail)]
    Invalid(shared::api::SettingsError),
    #[error("{0}")]
    Store(StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_file_of_the_old_service_reads_as_a_layer() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"version":1,"updated_by":"ops@pve","updated_at":99,"settings":{"balanciness":4.5}}"#;
        std::fs::write(dir.path().join(FILE), old).unwrap();
        let stored = store(dir.path()).load().unwrap();
        assert_eq!(stored.settings.balanciness, Some(4.5));
        assert_eq!(stored.settings.set_fields(), ["balanciness"]);
        assert_eq!((stored.updated_by.as_deref(), stored.updated_at), (Some("ops@pve"), Some(99)));
    }

    #[test]
    fn diff_names_each_changed_field() {
        let old = shared::api::Settings::default();
        let new = shared::api::Settings { balanciness: 4.5, max_moves: 9, ..old.clone() };
        assert_eq!(diff(&old, &new), "balanciness: 10.0 → 4.5; max_moves: 20 → 9");
        assert_eq!(diff(&old, &old), "");
    }
}
