//! `/nodes/{node}/tasks/*`, `/cluster/tasks` and the cluster log (`/cluster/log`).

use serde_json::{json, Value};

use super::{ok, ApiError, ApiResult, Ctx, Reply};
use crate::server::World;
use crate::tasks::{Task, Upid};

fn owns(cx: &Ctx, t: &Task) -> bool {
    t.user == cx.ident.task_user() || t.user == cx.ident.userid
}

fn status_kind(t: &Task) -> &'static str {
    match t.exitstatus.as_deref() {
        None => "running",
        Some("OK") => "ok",
        Some(s) if s.starts_with("WARNINGS") => "warning",
        Some(_) => "error",
    }
}

pub fn list(w: &World, cx: &Ctx, node: &str) -> ApiResult {
    let p = &cx.params;
    let start = p.int("start")?.unwrap_or(0).max(0) as usize;
    let limit = p.int("limit")?.unwrap_or(50).max(0) as usize;
    let vmid = p.int("vmid")?;
    let since = p.int("since")?;
    let until = p.int("until")?;
    let errors = p.bool("errors")?.unwrap_or(false);
    let typefilter = p.str("typefilter");
    let userfilter = p.str("userfilter");
    let statusfilter: Option<Vec<String>> =
        p.str("statusfilter").map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let source = p.str("source").unwrap_or_else(|| "archive".into());
    if !["archive", "active", "all"].contains(&source.as_str()) {
        return Err(ApiError::param(
            "source",
            format!("value '{source}' does not have a value in the enumeration 'archive, active, all'"),
        ));
    }
    let audit = cx.has(w, &format!("/nodes/{node}"), "Sys.Audit");
    let mut rows: Vec<&Task> = w
        .cluster
        .tasks
        .all()
        .iter()
        .filter(|t| t.node == node)
        .filter(|t| audit || owns(cx, t))
        .filter(|t| match source.as_str() {
            "active" => t.running(),
            "archive" => !t.running(),
            _ => true,
        })
        .filter(|t| vmid.is_none_or(|v| t.id == v.to_string()))
        .filter(|t| typefilter.as_deref().is_none_or(|f| t.kind == f))
        .filter(|t| userfilter.as_deref().is_none_or(|f| t.user.contains(f)))
        .filter(|t| since.is_none_or(|s| t.starttime >= s))
        .filter(|t| until.is_none_or(|u| t.starttime <= u))
        .filter(|t| !errors || status_kind(t) == "error")
        .filter(|t| statusfilter.as_ref().is_none_or(|f| f.iter().any(|x| x == status_kind(t))))
        .collect();
    rows.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
    let total = rows.len() as u64;
    let data: Vec<Value> = rows.into_iter().skip(start).take(limit).map(Task::list_row).collect();
    Ok(Reply { data: Value::Array(data), total: Some(total) })
}

pub fn cluster_tasks(w: &World, cx: &Ctx) -> ApiResult {
    let mut rows: Vec<&Task> = w
        .cluster
        .tasks
        .all()
        .iter()
        .filter(|t| owns(cx, t) || cx.has(w, &format!("/nodes/{}", t.node), "Sys.Audit"))
        .collect();
    rows.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
    ok(Value::Array(rows.into_iter().map(Task::list_row).collect()))
}

/// `GET /cluster/log`: the entries PVE's task machinery writes to the cluster log, "starting task
/// UPID" and "end task UPID STATUS", newest first; without `Sys.Syslog` on `/` only the caller's
/// own (PVE filters by user). Without `max`, 50 entries (the schema check has refused `max` < 1).
pub fn cluster_log(w: &World, cx: &Ctx) -> ApiResult {
    let max = cx.params.int("max")?.map_or(50, |m| m.max(1) as usize);
    let all = cx.has(w, "/", "Sys.Syslog");
    let mut entries: Vec<(i64, Value)> = Vec::new();
    for t in w.cluster.tasks.all().iter().filter(|t| all || owns(cx, t)) {
        let entry = |time: i64, msg: String| {
            json!({"time": time, "node": t.node, "user": t.user, "tag": "pvedaemon", "pid": t.pid,
                   "pri": 6, "msg": msg})
        };
        entries.push((t.starttime, entry(t.starttime, format!("starting task {}", t.upid))));
        if let (Some(end), Some(status)) = (t.endtime, &t.exitstatus) {
            entries.push((end, entry(end, format!("end task {} {status}", t.upid))));
        }
    }
    // uid: the entry's place in the log (oldest 1), so ids stay stable as entries are added.
    entries.sort_by_key(|(time, _)| *time);
    let mut rows: Vec<Value> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut e))| {
            let uid = i + 1;
            e["uid"] = uid.into();
            e["id"] = format!("{uid}:{}", e["node"].as_str().unwrap_or_default()).into();
            e
        })
        .collect();
    rows.reverse();
    rows.truncate(max);
    ok(Value::Array(rows))
}

fn find<'w>(w: &'w World, cx: &Ctx, node: &str, upid: &str) -> Result<&'w Task, ApiError> {
    let u = Upid::parse(upid).ok_or_else(|| ApiError::param("upid", "unable to parse worker upid"))?;
    if u.node != node {
        return Err(ApiError::die("no such task"));
    }
    let t = w.cluster.tasks.get(upid).ok_or_else(|| ApiError::die("no such task"))?;
    if !owns(cx, t) {
        cx.require(w, &format!("/nodes/{node}"), "Sys.Audit")?;
    }
    Ok(t)
}

pub fn dispatch(w: &mut World, cx: &Ctx, node: &str, tail: &[&str]) -> ApiResult {
    let m = cx.method.as_str();
    match (m, tail) {
        ("GET", []) => list(w, cx, node),
        ("GET", [upid]) => {
            find(w, cx, node, upid)?;
            ok(json!([{"name": "log"}, {"name": "status"}]))
        }
        ("GET", [upid, "status"]) => {
            let t = find(w, cx, node, upid)?;
            let mut v = json!({
                "upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
                "type": t.kind, "id": t.id, "user": t.user.split('!').next().unwrap_or(&t.user),
                "status": if t.running() { "running" } else { "stopped" },
            });
            if let Some(tok) = t.user.split_once('!').map(|x| x.1) {
                v["tokenid"] = tok.into();
            }
            if let Some(e) = &t.exitstatus {
                v["exitstatus"] = e.clone().into();
            }
            ok(v)
        }
        ("GET", [upid, "log"]) => {
            let t = find(w, cx, node, upid)?;
            let start = cx.params.int("start")?.unwrap_or(0).max(0) as usize;
            let limit = cx.params.int("limit")?.unwrap_or(50).max(0) as usize;
            let mut lines: Vec<&str> = t.log.iter().map(String::as_str).collect();
            if lines.is_empty() {
                lines.push("no content");
            }
            let total = lines.len() as u64;
            let rows: Vec<Value> = lines
                .iter()
                .enumerate()
                .skip(start)
                .take(limit)
                .map(|(i, l)| json!({"n": i + 1, "t": l}))
                .collect();
            Ok(Reply { data: Value::Array(rows), total: Some(total) })
        }
        ("DELETE", [upid]) => {
            let t = find(w, cx, node, upid)?;
            if !owns(cx, t) {
                cx.require(w, &format!("/nodes/{node}"), "Sys.Modify")?;
            }
            w.cluster.stop_task(upid, cx.now);
            ok(Value::Null)
        }
        _ => Err(ApiError::not_implemented(m, cx.path)),
    }
}
