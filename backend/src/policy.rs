//! The one place the service, its scheduler, maintenance and the CLI get their policy from: the
//! configuration file's layer, the stored settings, and one request's overrides, resolved by
//! `shared::policy` (the panel's what-if resolves the same way in the browser).

use crate::config::map::FileLayer;
use crate::settings::{SettingsFailure, SettingsStore, Stored};
use shared::api::Settings;
use shared::policy::{resolve, PolicyLayer, PolicyView, Source};
use shared::PlanRequest;
use std::path::Path;
use std::sync::Arc;

/// The layers below a request: the file (if any) and the stored settings.
pub struct Policy {
    file: Option<FileLayer>,
    stored: Arc<SettingsStore>,
}

impl Policy {
    /// The stored settings of `state_dir` over `file` (none: the built-in defaults).
    pub fn new(state_dir: &Path, file: Option<FileLayer>) -> Policy {
        Policy { file, stored: Arc::new(crate::settings::store(state_dir)) }
    }

    /// The policy of a plan asked for now (one-shot: until balanced unless `overrides` caps it)
    /// with `overrides` on top, reading the stored settings now (blocking).
    pub fn resolve(&self, overrides: &PolicyLayer) -> Result<PolicyView, SettingsFailure> {
        Ok(self.view_of(&self.stored.load()?, overrides)?.one_shot())
    }

    /// [`Policy::resolve`] on the blocking pool.
    pub async fn resolve_async(
        self: &Arc<Self>,
        overrides: PolicyLayer,
    ) -> Result<PolicyView, SettingsFailure> {
        let stored = self.stored.load_async().await?;
        Ok(self.view_of(&stored, &overrides)?.one_shot())
    }

    /// The policy of a scheduled run: the per-cycle `max_moves` applies.
    pub async fn resolve_scheduled(self: &Arc<Self>) -> Result<PolicyView, SettingsFailure> {
        let stored = self.stored.load_async().await?;
        self.view_of(&stored, &PolicyLayer::default())
    }

    /// The policy these stored settings make, with `overrides` on top (pure).
    pub fn view_of(&self, stored: &Stored, overrides: &PolicyLayer) -> Result<PolicyView, SettingsFailure> {
        let mut layers = Vec::new();
        if let Some(f) = &self.file {
            layers.push((Source::File, &f.layer));
        }
        layers.push((Source::Stored, &stored.settings));
        let (settings, mut sources) = resolve(&layers);
        if let Some(f) = &self.file {
            // The file layer carries ProxLB's defaults for the keys it lacks: say "default".
            sources.retain(|field, source| *source != Source::File || f.named.contains(field.as_str()));
        }
        settings.check().map_err(SettingsFailure::Invalid)?;
        let mut request = self.file.as_ref().map_or_else(PlanRequest::default, |f| f.base.clone());
        settings.apply_to(&mut request);
        let view = PolicyView { settings, sources, request, bandwidth: None }
            .with_overrides(overrides)
            .map_err(SettingsFailure::Invalid)?;
        if let Err((i, e)) = crate::windows::parse_all(&view.settings.windows) {
            let detail = format!("`{}`: {e}", view.settings.windows[i]);
            return Err(SettingsFailure::Invalid(shared::api::SettingsError { field: "windows", detail }));
        }
        Ok(view)
    }

    /// Stores `changes` over the stored settings, after checking the policy they make; returns
    /// the settings before and the stored file after. Bad input writes nothing (blocking).
    pub fn store(
        &self,
        changes: &PolicyLayer,
        user: &str,
        now: u64,
    ) -> Result<(Settings, Stored), SettingsFailure> {
        self.edit_stored(user, now, |layer| layer.merge(changes))
    }

    /// Removes the stored value of `field` (a known field name), so the file's value or the
    /// default applies again; returns the settings before. Blocking, like [`Policy::store`].
    pub fn reset(&self, field: &str, user: &str, now: u64) -> Result<Settings, SettingsFailure> {
        Ok(self.edit_stored(user, now, |layer| _ = layer.clear(field))?.0)
    }

    /// One write of the stored layer: `edit` changes it, the policy it makes is checked, and
    /// only then is it written with who and when.
    fn edit_stored(
        &self,
        user: &str,
        now: u64,
        edit: impl FnOnce(&mut PolicyLayer),
    ) -> Result<(Settings, Stored), SettingsFailure> {
        self.stored.update(|stored: &mut Stored| {
            let old = self.view_of(stored, &PolicyLayer::default())?.settings;
            let mut next = stored.clone();
            edit(&mut next.settings);
            next.updated_by = Some(user.to_owned());
            next.updated_at = Some(now);
            self.view_of(&next, &PolicyLayer::default())?;
            *stored = next;
            Ok((old, stored.clone()))
        })
    }

    /// The stored file as it is (who wrote it when), blocking.
    pub fn stored(&self) -> Result<Stored, SettingsFailure> {
        Ok(self.stored.load()?)
    }

    /// For [`crate::execute::Executor::set_limits_source`]: the parallelism limits in force,
    /// read at each job start, so a change saved in the panel (on any node: the file is on
    /// pmxcfs) applies to the next job without a restart. Unreadable: the executor's own.
    pub fn limits_source(self: &Arc<Self>) -> crate::execute::LimitsSource {
        let policy = self.clone();
        Arc::new(move || match policy.resolve(&PolicyLayer::default()) {
            Ok(p) => Some((p.settings.max_parallel as usize, p.settings.max_per_node as usize)),
            Err(e) => {
                tracing::error!(error = %e, "stored executor limits not applied");
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> FileLayer {
        crate::config::parse_str(&format!("proxmox_api: {{hosts: [h]}}\n{yaml}"), "t.yaml")
            .unwrap()
            .file_layer()
    }

    #[test]
    fn file_then_stored_then_request_with_sources_and_prox_lb_defaults_shown_as_default() {
        let dir = tempfile::tempdir().unwrap();
        let policy =
            Policy::new(dir.path(), Some(file("balancing: {balanciness: 3, memory_threshold: 80}\n")));
        let view = policy.resolve(&PolicyLayer::default()).unwrap();
        assert_eq!((view.request.balanciness, view.request.overload.memory), (3.0, Some(80.0)));
        assert_eq!(view.sources.get("balanciness"), Some(&Source::File));
        // ProxLB's default `balance_types: []` applies, and is labelled a default.
        assert!(view.settings.balance_types.is_empty());
        assert_eq!(view.sources.get("balance_types"), None);
        let changes: PolicyLayer = serde_json::from_value(serde_json::json!({"balanciness": 4})).unwrap();
        let (old, stored) = policy.store(&changes, "ops@pve", 7).unwrap();
        assert_eq!((old.balanciness, stored.updated_by.as_deref()), (3.0, Some("ops@pve")));
        let view = policy.resolve(&PolicyLayer::default()).unwrap();
        assert_eq!((view.request.balanciness, view.sources["balanciness"]), (4.0, Source::Stored));
        let one: PolicyLayer = serde_json::from_value(serde_json::json!({"balanciness": 6})).unwrap();
        let view = policy.resolve(&one).unwrap();
        assert_eq!((view.request.balanciness, view.sources["balanciness"]), (6.0, Source::Request));
        assert_eq!(view.request.overload.memory, Some(80.0), "the file's threshold still applies");
    }

    #[test]
    fn a_bad_stored_change_names_the_field_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy::new(dir.path(), None);
        let bad: PolicyLayer = serde_json::from_value(serde_json::json!({"max_parallel": 0})).unwrap();
        match policy.store(&bad, "u", 1) {
            Err(SettingsFailure::Invalid(e)) => assert_eq!(e.field, "max_parallel"),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join(crate::settings::FILE).exists());
    }
}
