//! The Rebalancing panel. It runs standalone (served by the backend, `main.rs` mounts it on
//! `<body>`) or inside the PVE web UI, where `pve-integration/pve-rebalancer.js` calls the
//! exported `mount_panel` with the element of an Ext panel and unmounts it when ExtJS destroys
//! the card.
//!
//! - [`api`]: calls to the backend (`/api/v1`), with the PVE ticket's CSRF token on writes.
//! - [`format`]: pure formatting and bar arithmetic, unit-tested natively.
//! - [`views`]: the components.

pub mod api;
pub mod format;
pub mod views;

use serde::Deserialize;

/// What the host page tells the panel (all optional in standalone mode).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PanelOptions {
    /// Base URL of the backend, e.g. `https://pve1:8017`; empty = same origin.
    pub api_base: String,
    /// `cluster` (default) or `maintenance`.
    pub view: String,
    /// The node a maintenance view is for.
    pub node: Option<String>,
    /// `Proxmox.UserName` of the PVE UI.
    pub user: Option<String>,
    /// `Proxmox.CSRFPreventionToken`, sent on writes.
    pub csrf_token: Option<String>,
}

/// The panel's stylesheet, injected once per document (standalone and embedded alike, so the
/// embedded loader has nothing to link).
pub const STYLE: &str = include_str!("../style.css");
