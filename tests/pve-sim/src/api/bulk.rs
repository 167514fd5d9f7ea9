//! `POST /nodes/{node}/migrateall` and `POST /cluster/bulk-action/guest/migrate` (9.1+).

use std::collections::VecDeque;

use serde_json::Value;

use super::{ok, ApiError, ApiResult, Ctx};
use crate::scenario::GuestType;
use crate::server::World;
use crate::state::Guest;
use crate::tasks::{Bulk, BulkItem};

/// `pve-vmid-list` (`100,101;102 103`) or a JSON/repeated-key array of ids.
fn vmid_list(v: Option<&Value>, name: &str) -> Result<Option<Vec<u32>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let items: Vec<String> = match v {
        Value::Array(a) => {
            a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect()
        }
        Value::Null => return Ok(None),
        other => other
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| other.to_string())
            .split([',', ';', ' ', '\0'])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    };
    let mut out = Vec::new();
    for s in items {
        match s.trim().parse::<u32>() {
            Ok(id) if (100..=999_999_999).contains(&id) => out.push(id),
            _ => return Err(ApiError::param(name, format!("value '{s}' does not look like a valid VM ID"))),
        }
    }
    Ok(Some(out))
}

fn workers(w: &World, cx: &Ctx, default: Option<i64>) -> Result<Option<usize>, ApiError> {
    let p = cx.params.int("max-workers")?.or(cx.params.int("maxworkers")?);
    if let Some(n) = p {
        if !(1..=64).contains(&n) {
            return Err(ApiError::param("max-workers", "value must be between 1 and 64"));
        }
        return Ok(Some(n as usize));
    }
    let dc =
        w.cluster.options.get("max_workers").and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
    Ok(dc.or(default).map(|n| n.clamp(1, 64) as usize))
}

fn word(g: &Guest) -> &'static str {
    if g.spec.kind == GuestType::Qemu {
        "VM"
    } else {
        "CT"
    }
}

fn local_keys(g: &Guest) -> String {
    g.spec.local_resources.iter().map(|r| r.split('=').next().unwrap_or(r)).collect::<Vec<_>>().join(", ")
}

/// `POST /nodes/{node}/migrateall`: every guest on `node` (or those in `vms`) to one `target`.
pub fn migrateall(w: &mut World, cx: &Ctx, node: &str) -> ApiResult {
    let target = cx.params.required("target")?;
    let vms = vmid_list(cx.params.get("vms"), "vms")?;
    let with_local = cx.params.bool("with-local-disks")?.unwrap_or(false);
    if !cx.has(w, "/", "VM.Migrate") {
        match &vms {
            Some(ids) if !ids.is_empty() => {
                for id in ids {
                    cx.require(w, &format!("/vms/{id}"), "VM.Migrate")?;
                }
            }
            _ => return Err(ApiError::forbidden("/", "VM.Migrate")),
        }
    }
    let Some(workers) = workers(w, cx, None)? else {
        return Err(ApiError::die(
            "either 'max-workers' parameter or max_workers in datacenter.cfg must be set!",
        ));
    };
    let c = &w.cluster;
    if !c.nodes.contains_key(&target) {
        return Err(ApiError::die(format!("no such cluster node '{target}'")));
    }
    if target == node {
        return Err(ApiError::die("target is local node."));
    }
    let mut log = Vec::new();
    let mut queue = VecDeque::new();
    for g in c.guests.values().filter(|g| g.node == node) {
        let id = g.spec.vmid;
        if vms.as_ref().is_some_and(|v| !v.contains(&id)) {
            continue;
        }
        if g.spec.kind == GuestType::Qemu && !g.spec.local_resources.is_empty() {
            log.push(format!(
                "skipping VM {id} - can't migrate VM which uses local devices: {}",
                local_keys(g)
            ));
            continue;
        }
        if c.guest_has_local_disk(g) && !with_local {
            log.push(format!(
                "skipping {} {id} - can't migrate with local disks without 'with-local-disks'",
                word(g)
            ));
            continue;
        }
        let running = g.running();
        queue.push_back(BulkItem {
            vmid: id,
            from: node.to_string(),
            online: running && g.spec.kind == GuestType::Qemu,
            restart: running && g.spec.kind == GuestType::Lxc,
        });
    }
    let bulk = Bulk { target, workers, queue, running: vec![], failed: vec![] };
    let user = cx.ident.task_user();
    let World { cluster, faults, .. } = w;
    let upid = cluster.start_bulk(node, "migrateall", &user, cx.now, cx.time_scale, bulk, log, faults);
    ok(upid.into())
}

/// `POST /cluster/bulk-action/guest/migrate` (9.1+): the guests in `vms` (default: all not on
/// `target`) to `target`; running guests need `online` (live for VMs, restart for CTs).
pub fn bulk_migrate(w: &mut World, cx: &Ctx) -> ApiResult {
    if !w.cluster.version.at_least(9, 1) {
        return Err(ApiError::not_implemented("POST", cx.path));
    }
    let target = cx.params.required("target")?;
    let vms = vmid_list(cx.params.get("vms"), "vms")?;
    let online = cx.params.bool("online")?.unwrap_or(false);
    let with_local = cx.params.bool("with-local-disks")?.unwrap_or(false);
    let workers = workers(w, cx, Some(1))?.unwrap_or(1);
    let c = &w.cluster;
    if !c.nodes.contains_key(&target) {
        return Err(ApiError::die(format!("no such cluster node '{target}'")));
    }
    let ids: Vec<u32> = match &vms {
        Some(v) => v.clone(),
        None => c.guests.values().filter(|g| g.node != target).map(|g| g.spec.vmid).collect(),
    };
    for id in &ids {
        cx.require(w, &format!("/vms/{id}"), "VM.Migrate")?;
        if !c.guests.contains_key(id) {
            return Err(ApiError::die(format!(
                "unable to find configuration file for VM {id} - no such machine"
            )));
        }
    }
    let mut log = Vec::new();
    let mut failed = Vec::new();
    let mut queue = VecDeque::new();
    for id in ids {
        let g = &c.guests[&id];
        if g.node == target {
            log.push(format!("{} {id} is already on node '{target}' - skipped", word(g)));
            continue;
        }
        let running = g.running();
        let err = if running && !online {
            Some(format!(
                "can't migrate running {} without --online",
                if g.spec.kind == GuestType::Qemu { "VM" } else { "container" }
            ))
        } else if g.spec.kind == GuestType::Qemu && !g.spec.local_resources.is_empty() {
            Some(format!("can't migrate VM which uses local devices: {}", local_keys(g)))
        } else if running && c.guest_has_local_disk(g) && !with_local {
            Some("can't live migrate attached local disks without with-local-disks option".into())
        } else {
            None
        };
        if let Some(e) = err {
            log.push(format!("{} {id}: {e}", word(g)));
            failed.push(id);
            continue;
        }
        queue.push_back(BulkItem {
            vmid: id,
            from: g.node.clone(),
            online: running && g.spec.kind == GuestType::Qemu,
            restart: running && g.spec.kind == GuestType::Lxc,
        });
    }
    // the task runs on the node that answered the request (the first online node here)
    let local = c.nodes.values().find(|n| n.online).map(|n| n.spec.name.clone()).unwrap_or_default();
    let bulk = Bulk { target, workers, queue, running: vec![], failed };
    let user = cx.ident.task_user();
    let World { cluster, faults, .. } = w;
    let upid = cluster.start_bulk(&local, "bulk-migrate", &user, cx.now, cx.time_scale, bulk, log, faults);
    ok(upid.into())
}
