//! The Rebalancing panel. It runs standalone (served by the backend, `main.rs` mounts it on
//! `<body>`) or inside the PVE web UI, where `pve-integration/pve-rebalancer.js` calls the
//! exported `mount_panel` with the element of an Ext panel and unmounts it when ExtJS destroys
//! the card.
//!
//! - [`api`]: calls to the backend (`/api/v1`), with the PVE ticket's CSRF token on writes;
//!   [`live`]: following a job (event stream, polling fallback).
//! - Pure logic, unit-tested natively: [`format`] (words, sizes, times, estimates), [`caps`]
//!   (privileges per action), [`selection`] (which steps run), [`progress`] (a job's rows),
//!   [`guests`] (filter, sort, page), [`rule_rows`] (rules merged per group).
//! - [`views`]: the components, one module per view.
//! - [`whatif`]: the what-if engine in a Web Worker (the `whatif` binary), loaded at first use.

pub mod api;
pub mod audit;
pub mod caps;
pub mod format;
pub mod guests;
pub mod headroom;
pub mod live;
pub mod progress;
pub mod rule_rows;
pub mod selection;
pub mod theme;
pub mod views;
pub mod whatif;

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
    /// PVE's `GuiCap` (the user's privileges), to grey out what would be refused.
    pub caps: Option<caps::Caps>,
    /// Mounted by `mount_panel` inside a host page (PVE's tab or window), whose title already
    /// names the view: the panel does not repeat it.
    #[serde(skip)]
    pub embedded: bool,
}

impl PanelOptions {
    /// Opened for one node's maintenance (the node toolbar button), not the whole cluster.
    pub fn maintenance_only(&self) -> bool {
        self.view == "maintenance" && self.node.is_some()
    }
}

/// The panel's stylesheet, injected once per document (standalone and embedded alike, so the
/// embedded loader has nothing to link).
pub const STYLE: &str = include_str!("../style.css");
