//! Privileges the user holds, as PVE's UI knows them (`GuiCap`: `{vms: {"VM.Migrate": 1},
//! nodes: {"Sys.Modify": 1}, dc: {"Sys.Audit": 1}, …}`), and what each action needs. The backend
//! checks every call again; this only greys out buttons that would be refused, and says why.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Caps(BTreeMap<String, BTreeMap<String, serde_json::Value>>);

impl Caps {
    pub fn has(&self, section: &str, privilege: &str) -> bool {
        // PVE sends 1; be lenient about true/"1" too.
        self.0.get(section).and_then(|s| s.get(privilege)).is_some_and(|v| match v {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
            serde_json::Value::String(s) => !s.is_empty() && s != "0",
            _ => false,
        })
    }

    /// An empty map means "not told" (the PVE UI passes `{}` when it has no GuiCap yet).
    pub fn is_known(&self) -> bool {
        !self.0.is_empty()
    }
}

/// One privilege an action needs: the GuiCap section, the privilege, and where PVE checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub section: &'static str,
    pub privilege: &'static str,
    pub on: &'static str,
}

/// Running migrations (execute, evacuate, cancel): the backend checks `VM.Migrate` per guest.
pub const MIGRATE: &[Need] = &[Need { section: "vms", privilege: "VM.Migrate", on: "the guests" }];
/// Reading the cluster and planning: `Sys.Audit` on `/`.
pub const AUDIT: &[Need] = &[Need { section: "dc", privilege: "Sys.Audit", on: "/" }];

/// Maintenance enter/exit: `Sys.Modify` on the node, and `VM.Migrate` on the guests it moves.
pub const MAINTAIN: &[Need] = &[
    Need { section: "nodes", privilege: "Sys.Modify", on: "/nodes/<node>" },
    Need { section: "vms", privilege: "VM.Migrate", on: "the guests" },
];

/// `None` when the action is allowed or the privileges are unknown (the backend decides then);
/// otherwise a tooltip naming what is missing.
pub fn denial(caps: Option<&Caps>, needs: &[Need]) -> Option<String> {
    let caps = caps.filter(|c| c.is_known())?;
    let missing: Vec<String> = needs
        .iter()
        .filter(|n| !caps.has(n.section, n.privilege))
        .map(|n| format!("{} on {}", n.privilege, n.on))
        .collect();
    (!missing.is_empty()).then(|| format!("You lack the privilege {} for this.", missing.join(" and ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(json: &str) -> Caps {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn missing_privileges_are_named_and_unknown_caps_allow() {
        let auditor = caps(r#"{"vms":{"VM.Audit":1},"dc":{"Sys.Audit":1},"nodes":{}}"#);
        assert_eq!(
            denial(Some(&auditor), MIGRATE).as_deref(),
            Some("You lack the privilege VM.Migrate on the guests for this.")
        );
        assert_eq!(denial(Some(&auditor), AUDIT), None);
        let admin = caps(r#"{"vms":{"VM.Migrate":1},"dc":{"Sys.Audit":true}}"#);
        assert_eq!(denial(Some(&admin), MIGRATE), None);
        assert_eq!(denial(Some(&admin), AUDIT), None);
        assert_eq!(denial(Some(&Caps::default()), MIGRATE), None, "{{}} = not told");
        assert_eq!(denial(None, MIGRATE), None);
        assert!(!caps(r#"{"vms":{"VM.Migrate":0}}"#).has("vms", "VM.Migrate"));
        assert_eq!(
            denial(Some(&admin), MAINTAIN).as_deref(),
            Some("You lack the privilege Sys.Modify on /nodes/<node> for this.")
        );
    }
}
