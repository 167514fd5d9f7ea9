//! `/access/*` and `/version`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ok, ApiError, ApiResult, Ctx, Params};
use crate::auth::{Acl, Identity};
use crate::server::{Sim, World};

pub fn version(w: &World) -> ApiResult {
    let v = &w.cluster.version;
    ok(json!({ "version": v.text, "release": v.release(), "repoid": "5a1b0c7e", "console": "xtermjs" }))
}

pub fn permissions(w: &World, cx: &Ctx) -> ApiResult {
    let acl = cx.acl(w);
    let target = match cx.params.str("userid") {
        None => cx.ident.clone(),
        Some(u) => {
            let own = u == cx.ident.userid || cx.ident.tokenid.as_deref() == Some(u.as_str());
            if !own {
                cx.require(w, "/access", "Sys.Audit")?;
            }
            match u.split_once('!') {
                Some((user, _)) => {
                    Identity { userid: user.into(), tokenid: Some(u.clone()), by_ticket: false }
                }
                None => Identity { userid: u.clone(), tokenid: None, by_ticket: false },
            }
        }
    };
    let mut map = acl.permissions_map(&target);
    if let Some(p) = cx.params.str("path") {
        let privs = acl.privs(&target, &p);
        map = BTreeMap::from([(p, privs.into_iter().map(|x| (x, 1u8)).collect())]);
    }
    ok(json!(map))
}

fn cap(acl: &Acl, id: &Identity) -> Value {
    let pick = |path: &str, prefixes: &[&str]| -> Value {
        let m: BTreeMap<String, u8> = acl
            .privs(id, path)
            .into_iter()
            .filter(|p| prefixes.iter().any(|x| p.starts_with(x)))
            .map(|p| (p, 1))
            .collect();
        json!(m)
    };
    json!({
        "vms": pick("/vms", &["VM.", "Permissions.Modify"]),
        "storage": pick("/storage", &["Datastore.", "Permissions.Modify"]),
        "access": pick("/access", &["User.", "Group.", "Permissions.Modify"]),
        "nodes": pick("/nodes", &["Sys.", "Permissions.Modify"]),
        "dc": pick("/", &["Sys.Audit", "Sys.Modify", "SDN.", "Realm."]),
        "sdn": pick("/sdn", &["SDN.", "Permissions.Modify"]),
        "mapping": pick("/mapping", &["Mapping.", "Permissions.Modify"]),
    })
}

/// `POST /access/ticket`: password login, ticket renewal, or verify-only with `path`+`privs`.
pub fn login(sim: &Sim, w: &World, params: &Params, now: i64) -> ApiResult {
    let username = params.required("username")?;
    let password = params.required("password")?;
    let realm = params.str("realm");
    let acl = Acl { users: &w.cluster.users, acls: &w.cluster.acls };
    let fail = || ApiError::new(401, "authentication failure");
    let userid = if password.starts_with("PVE:") {
        // renewal: a valid ticket of the same user as password
        let uid = super::check_ticket(sim, w, &password, now).ok_or_else(fail)?;
        let wanted = if username.contains('@') {
            username.clone()
        } else {
            format!("{username}@{}", realm.as_deref().unwrap_or("pam"))
        };
        if uid != wanted {
            return Err(fail());
        }
        uid
    } else {
        acl.check_password(&username, realm.as_deref(), &password).ok_or_else(fail)?
    };
    let id = Identity { userid: userid.clone(), tokenid: None, by_ticket: true };
    if let Some(path) = params.str("path") {
        let privs = params.str("privs").unwrap_or_default();
        for p in privs.split([',', ';', ' ']).filter(|p| !p.is_empty()) {
            if !acl.has(&id, &path, p) {
                return Err(fail());
            }
        }
        return ok(json!({ "username": userid }));
    }
    ok(json!({
        "username": userid,
        "ticket": sim.signer.ticket(&userid, now),
        "CSRFPreventionToken": sim.signer.csrf(&userid, now),
        "clustername": w.cluster.name,
        "cap": cap(&acl, &id),
    }))
}
