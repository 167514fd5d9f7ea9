//! Plans PVE will accept. Collection is O(nodes) and cannot see a VM's local devices (`hostpci`,
//! `usb`, …): only PVE's per-guest migrate precondition (`GET /nodes/{n}/qemu/{id}/migrate`, what
//! PVE's own migrate dialog asks) says so. Asking it for every guest would make collection
//! O(guests); asking it for the few guests a plan moves is cheap. A VM PVE reports local
//! resources for is pinned in the snapshot (the engine then keeps it home and says why) and the
//! plan is made again, so a preview never shows a step the executor would only skip.
//!
//! The executor still checks each step right before submitting (the answer can change); a
//! precondition call that fails here changes nothing and leaves that check to it.

use crate::pve::PveClient;
use futures_util::StreamExt;
use serde_json::Value;
use shared::{ClusterSnapshot, GuestKind, Plan};
use std::collections::BTreeSet;

/// Plans made at most: each round only asks about guests not asked about before, so this bounds
/// the calls to about `ROUNDS × max_moves`.
const ROUNDS: usize = 3;
/// Precondition calls in flight at once.
const CONCURRENCY: usize = 4;

/// `make`'s plan for `snapshot`, made again without the VMs PVE says cannot migrate (they are
/// pinned in `snapshot`, so later plans from it know too).
pub async fn plan(
    pve: &PveClient,
    snapshot: &mut ClusterSnapshot,
    make: impl Fn(&ClusterSnapshot) -> Plan,
) -> Plan {
    let mut asked = BTreeSet::new();
    let mut plan = make(snapshot);
    for _ in 0..ROUNDS {
        let ask: Vec<(u32, String)> = plan
            .steps
            .iter()
            .filter(|s| s.kind == GuestKind::Qemu && asked.insert(s.vmid))
            .map(|s| (s.vmid, s.from.clone()))
            .collect();
        if ask.is_empty() {
            break;
        }
        let answers: Vec<(u32, Vec<String>)> = futures_util::stream::iter(ask)
            .map(|(vmid, from)| async move {
                let answer = pve.get::<Value>(&format!("/nodes/{from}/qemu/{vmid}/migrate")).await;
                (vmid, answer.map(|v| local_resources(&v)).unwrap_or_default())
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut pinned: Vec<String> = Vec::new();
        for (vmid, local) in answers.into_iter().filter(|(_, l)| !l.is_empty()) {
            if let Some(g) = snapshot.guests.iter_mut().find(|g| g.vmid == vmid) {
                pinned.push(format!("{} ({vmid}): {}", g.name, local.join(", ")));
                g.local_resources = local;
            }
        }
        if pinned.is_empty() {
            break;
        }
        pinned.sort();
        plan = make(snapshot);
        plan.notes.push(format!(
            "PVE's migrate check found local resources, so these stay and the plan was made without them: {}",
            pinned.join("; ")
        ));
    }
    plan
}

/// The `local_resources` of a migrate precondition answer (`hostpci0`, `usb1`, …).
fn local_resources(answer: &Value) -> Vec<String> {
    let list = answer.get("local_resources").and_then(Value::as_array);
    list.map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}
