//! History import for the back-test: PVE's RRD series of every node and guest for the last N
//! days, and its task log's migrations, into a `shared::backtest::History`.
//!
//! An explicit action, not the polling path: one `rrddata` call per node and per guest (PVE has
//! no bulk RRD call), at most `concurrency` in flight and at most `calls_per_sec` started per
//! second so PVE stays responsive. Each series is cached as a small JSON file in the cache
//! directory as soon as it arrives, so an interrupted import resumes where it stopped (a cached
//! series younger than [`FRESH_SECS`] is not fetched again); after an import the oldest files go
//! until the directory is under its size limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::backtest::{
    BacktestRequest, GuestHistory, History, NamedPolicy, NodeHistory, PastMigration, Resource, Series,
};
use shared::policy::{PolicyLayer, PolicyView};
use shared::{ClusterSnapshot, GuestKind, Method};

use crate::pve::{wire, PveClient, PveError};

/// Where the history cache goes by default: node-local, not the cluster file system (pmxcfs keeps
/// small files for all nodes; RRD copies do not belong there).
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/pve-rebalancer/history";

/// A cached series this young is reused as is (resume); an older one is fetched again, since
/// its newest rows have moved on.
pub const FRESH_SECS: u64 = 3600;

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Days of history (1 to 365, PVE's `year` RRD).
    pub days: u32,
    /// `rrddata` calls in flight at once.
    pub concurrency: usize,
    /// `rrddata` calls started per second at most.
    pub calls_per_sec: f64,
    /// Where series are cached; `None` = no cache (every import fetches everything).
    pub cache_dir: Option<PathBuf>,
    /// The cache directory is trimmed to this many bytes after an import.
    pub cache_limit_bytes: u64,
}

/// Progress of an import: series done (fetched or from the cache) of all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub from_cache: usize,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("days: {0} is outside 1–365 (PVE keeps a year of RRD history)")]
    Days(u32),
    #[error("concurrency and calls_per_sec must be above 0 (got {0} and {1})")]
    Limits(usize, f64),
    #[error(transparent)]
    Pve(#[from] PveError),
    #[error("history cache {path}: {source}; pass another --cache-dir or fix its permissions")]
    Cache { path: PathBuf, source: std::io::Error },
    #[error("no node has RRD data for the last {0} days")]
    Empty(u32),
}

/// One series as cached: sample time → (cpu cores, memory bytes), `None` for gaps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cached {
    fetched_at: u64,
    rows: Vec<(u64, Option<f64>, Option<f64>)>,
}

/// Which RRD timeframe covers `days` at the finest resolution PVE keeps for it.
pub fn timeframe(days: u32) -> &'static str {
    match days {
        0..=1 => "day",
        2..=7 => "week",
        8..=31 => "month",
        _ => "year",
    }
}

/// Imports the history of the cluster `now` (as collected) for `opts.days` days.
pub async fn import(
    pve: &PveClient,
    now: ClusterSnapshot,
    opts: &ImportOptions,
    progress: impl Fn(Progress),
) -> Result<History, ImportError> {
    check(opts)?;
    if let Some(dir) = &opts.cache_dir {
        std::fs::create_dir_all(dir).map_err(|e| cache_error(dir, e))?;
    }
    let wanted = series_paths(&now, timeframe(opts.days));
    let series = fetch_all(pve, &wanted, opts, progress).await?;
    let migrations = past_migrations(pve).await?;
    if let Some(dir) = &opts.cache_dir {
        trim_cache(dir, opts.cache_limit_bytes).map_err(|e| cache_error(dir, e))?;
    }
    assemble(now, &wanted, series, migrations, opts.days)
}

fn check(opts: &ImportOptions) -> Result<(), ImportError> {
    if !(1..=365).contains(&opts.days) {
        return Err(ImportError::Days(opts.days));
    }
    if opts.concurrency == 0 || opts.calls_per_sec.is_nan() || opts.calls_per_sec <= 0.0 {
        return Err(ImportError::Limits(opts.concurrency, opts.calls_per_sec));
    }
    Ok(())
}

fn cache_error(path: &Path, source: std::io::Error) -> ImportError {
    ImportError::Cache { path: path.to_owned(), source }
}

/// What to fetch: (cache key, API path, whose series). Offline nodes have no fresh RRD; their
/// guests' series live on the node they are on now.
#[derive(Clone, Debug)]
struct Wanted {
    key: String,
    path: String,
    owner: Owner,
}

#[derive(Clone, Debug, PartialEq)]
enum Owner {
    Node(String),
    Guest(u32),
}

fn series_paths(now: &ClusterSnapshot, tf: &str) -> Vec<Wanted> {
    let query = format!("rrddata?timeframe={tf}&cf=AVERAGE");
    let nodes = now.nodes.iter().filter(|n| n.status == shared::NodeStatus::Online).map(|n| Wanted {
        key: format!("node-{}-{tf}", n.name),
        path: format!("/nodes/{}/{query}", n.name),
        owner: Owner::Node(n.name.clone()),
    });
    let guests = now.guests.iter().filter(|g| !g.template).map(|g| {
        let kind = if g.kind == GuestKind::Lxc { "lxc" } else { "qemu" };
        Wanted {
            key: format!("guest-{}-{tf}", g.vmid),
            path: format!("/nodes/{}/{kind}/{}/{query}", g.node, g.vmid),
            owner: Owner::Guest(g.vmid),
        }
    });
    nodes.chain(guests).collect()
}

/// Fetches every wanted series (cached ones reused), bounded and paced; reports progress.
async fn fetch_all(
    pve: &PveClient,
    wanted: &[Wanted],
    opts: &ImportOptions,
    progress: impl Fn(Progress),
) -> Result<Vec<Cached>, ImportError> {
    let pace = Pace::new(opts.calls_per_sec);
    let (pace, dir) = (&pace, opts.cache_dir.as_deref());
    let mut state = Progress { total: wanted.len(), ..Default::default() };
    let mut results: Vec<(usize, Cached)> = Vec::with_capacity(wanted.len());
    // owned items: a stream of borrowed ones is not `Send` for the service's spawned task
    let mut stream = futures_util::stream::iter(wanted.iter().cloned().enumerate())
        .map(|(i, w)| async move { (i, fetch_one(pve, &w, dir, pace).await) })
        .buffer_unordered(opts.concurrency);
    while let Some((i, result)) = stream.next().await {
        let (series, cached) = result?;
        state.done += 1;
        state.from_cache += usize::from(cached);
        progress(state);
        results.push((i, series));
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, s)| s).collect())
}

/// One series: from the cache when fresh, else from PVE (then cached). `true` = from the cache.
async fn fetch_one(
    pve: &PveClient,
    w: &Wanted,
    dir: Option<&Path>,
    pace: &Pace,
) -> Result<(Cached, bool), ImportError> {
    let name = format!("{}.json", w.key);
    let now = crate::unix_now();
    let cached = dir.and_then(|d| read_cached(&d.join(&name)));
    if let Some(c) = cached.filter(|c| now.saturating_sub(c.fetched_at) < FRESH_SECS) {
        return Ok((c, true));
    }
    pace.wait().await;
    let rows: Vec<Value> = pve.get(&w.path).await?;
    let series = Cached { fetched_at: now, rows: rows.iter().filter_map(|r| row(r, &w.owner)).collect() };
    if let Some(dir) = dir {
        let bytes = serde_json::to_vec(&series).expect("plain data serializes");
        crate::state_file::write_atomically(dir, &name, &bytes).map_err(|e| cache_error(dir, e))?;
    }
    Ok((series, false))
}

fn read_cached(file: &Path) -> Option<Cached> {
    serde_json::from_slice(&std::fs::read(file).ok()?).ok()
}

/// One RRD row → (time, cpu cores, memory bytes). PVE's CPU is a fraction of `maxcpu`; a gap has
/// only `time`.
fn row(r: &Value, owner: &Owner) -> Option<(u64, Option<f64>, Option<f64>)> {
    let time = wire::number(r, "time")? as u64;
    let cpu = wire::number(r, "cpu").zip(wire::number(r, "maxcpu")).map(|(c, m)| c * m);
    let mem_key = if matches!(owner, Owner::Node(_)) { "memused" } else { "mem" };
    Some((time, cpu, wire::number(r, mem_key)))
}

/// Starts at most `per_sec` calls per second, whatever the concurrency.
struct Pace {
    gap: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pace {
    fn new(per_sec: f64) -> Pace {
        Pace {
            gap: Duration::from_secs_f64(1.0 / per_sec),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let mut next = self.next.lock().await;
        let at = (*next).max(tokio::time::Instant::now());
        *next = at + self.gap;
        drop(next);
        tokio::time::sleep_until(at).await;
    }
}

/// Successful migrations from `/cluster/tasks` (source node and end time; see `recent.rs`).
async fn past_migrations(pve: &PveClient) -> Result<Vec<PastMigration>, ImportError> {
    let rows: Vec<Value> = pve.get("/cluster/tasks").await?;
    Ok(migrations_from_tasks(&rows))
}

/// Pure: task rows → finished OK `qmigrate`/`vzmigrate`, oldest first.
pub fn migrations_from_tasks(rows: &[Value]) -> Vec<PastMigration> {
    let mut out: Vec<PastMigration> = rows
        .iter()
        .filter(|r| matches!(wire::text(r, "type"), Some("qmigrate" | "vzmigrate")))
        .filter(|r| wire::text(r, "status") == Some("OK"))
        .filter_map(|r| {
            Some(PastMigration {
                vmid: wire::text(r, "id")?.parse().ok()?,
                from: wire::text(r, "node")?.to_owned(),
                at: wire::number(r, "endtime")? as u64,
                started: wire::number(r, "starttime").filter(|s| *s > 0.0).map_or(0, |s| s as u64),
            })
        })
        .collect();
    out.sort_by_key(|m| (m.at, m.vmid));
    out
}

/// The series on one grid: the nodes' sample times within the last `days` (of the newest
/// sample), each series aligned to it by time (missing rows are gaps).
fn assemble(
    now: ClusterSnapshot,
    wanted: &[Wanted],
    series: Vec<Cached>,
    migrations: Vec<PastMigration>,
    days: u32,
) -> Result<History, ImportError> {
    let newest = wanted
        .iter()
        .zip(&series)
        .filter(|(w, _)| matches!(w.owner, Owner::Node(_)))
        .flat_map(|(_, s)| s.rows.iter().map(|r| r.0))
        .max()
        .ok_or(ImportError::Empty(days))?;
    let since = newest.saturating_sub(u64::from(days) * 86400);
    let times = grid_times(wanted, &series, since);
    if times.len() < 2 {
        return Err(ImportError::Empty(days));
    }
    let mut h = History { now, times, migrations, ..Default::default() };
    for (w, s) in wanted.iter().zip(&series) {
        let (cpu, mem) = align(&h.times, s);
        match &w.owner {
            Owner::Node(node) => h.nodes.push(NodeHistory { node: node.clone(), cpu, mem }),
            Owner::Guest(vmid) => h.guests.push(GuestHistory { vmid: *vmid, cpu, mem }),
        }
    }
    Ok(h)
}

/// The first node's sample times after `since` (every node of a cluster has the same RRD grid).
fn grid_times(wanted: &[Wanted], series: &[Cached], since: u64) -> Vec<u64> {
    let first = wanted.iter().position(|w| matches!(w.owner, Owner::Node(_)));
    first.map_or_else(Vec::new, |i| series[i].rows.iter().map(|r| r.0).filter(|t| *t > since).collect())
}

fn align(times: &[u64], s: &Cached) -> (Series, Series) {
    let by_time: BTreeMap<u64, (Option<f64>, Option<f64>)> =
        s.rows.iter().map(|r| (r.0, (r.1, r.2))).collect();
    times.iter().map(|t| by_time.get(t).copied().unwrap_or((None, None))).unzip()
}

/// Deletes the oldest cache files until the directory holds at most `limit` bytes.
pub fn trim_cache(dir: &Path, limit: u64) -> std::io::Result<()> {
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            files.push((meta.modified()?, meta.len(), entry.path()));
        }
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= limit {
            break;
        }
        std::fs::remove_file(&path)?;
        total -= len;
    }
    Ok(())
}

/// Node use above which a sample counts as a node-hour over the threshold, when the policy has
/// no threshold of its own.
pub const DEFAULT_THRESHOLD: f64 = 85.0;

/// The back-test request: the effective policy (as the scheduler runs it, per-cycle cap kept)
/// named `effective`, then each named layer on top of it. A bad layer: `(field, detail)`.
pub fn backtest_request(
    effective: &PolicyView,
    layers: &[(String, PolicyLayer)],
    interval_mins: u64,
) -> Result<BacktestRequest, (String, String)> {
    let mut policies = vec![NamedPolicy { name: "effective".into(), request: effective.request.clone() }];
    for (name, layer) in layers {
        let view = effective.with_overrides(layer).map_err(|e| (format!("{name}: {}", e.field), e.detail))?;
        policies.push(NamedPolicy { name: name.clone(), request: view.request });
    }
    let s = &effective.settings;
    Ok(BacktestRequest {
        interval_secs: interval_mins.saturating_mul(60),
        memory_threshold: s.memory_threshold.unwrap_or(DEFAULT_THRESHOLD),
        cpu_threshold: s.cpu_threshold.unwrap_or(DEFAULT_THRESHOLD),
        spread_on: if s.method == Method::Cpu { Resource::Cpu } else { Resource::Memory },
        policies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeframes_cover_the_days() {
        assert_eq!([1, 7, 8, 31, 90].map(timeframe), ["day", "week", "month", "month", "year"]);
    }

    #[test]
    fn tasks_give_successful_migrations_oldest_first() {
        let rows: Vec<Value> = serde_json::from_str(
            r#"[{"type":"qmigrate","id":"101","node":"b","status":"OK","endtime":20,"starttime":14},
                {"type":"vzmigrate","id":"102","node":"a","status":"OK","endtime":10},
                {"type":"qmigrate","id":"103","node":"a","status":"migration aborted","endtime":5},
                {"type":"vzdump","id":"104","node":"a","status":"OK","endtime":1},
                {"type":"qmigrate","id":"105","node":"a"}]"#,
        )
        .unwrap();
        let got: Vec<(u32, String, u64, u64)> =
            migrations_from_tasks(&rows).into_iter().map(|m| (m.vmid, m.from, m.at, m.started)).collect();
        assert_eq!(got, vec![(102, "a".into(), 10, 0), (101, "b".into(), 20, 14)], "no starttime: 0");
    }

    #[test]
    fn rows_become_cores_and_bytes_and_gaps_stay_gaps() {
        let node = Owner::Node("a".into());
        let r: Value = serde_json::json!({"time": 60, "cpu": 0.25, "maxcpu": 8, "memused": 1024});
        assert_eq!(row(&r, &node), Some((60, Some(2.0), Some(1024.0))));
        assert_eq!(row(&serde_json::json!({"time": 120}), &node), Some((120, None, None)));
        let g: Value = serde_json::json!({"time": 60, "cpu": 0.5, "maxcpu": 2, "mem": 5});
        assert_eq!(row(&g, &Owner::Guest(1)), Some((60, Some(1.0), Some(5.0))));
    }

    #[test]
    fn the_cache_is_trimmed_oldest_first() {
        let dir = std::env::temp_dir().join(format!("pvrb-trim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            std::fs::write(dir.join(name), vec![0u8; 100]).unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64);
            std::fs::File::options().write(true).open(dir.join(name)).unwrap().set_modified(t).unwrap();
        }
        trim_cache(&dir, 250).unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["mid", "new"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
