//! The durable record of every job and step, in SQLite.
//!
//! Every state change of a step is written here before it is announced, so after a crash the
//! journal says which steps were in flight and with which UPID; `Executor::recover` reconciles
//! those with PVE instead of submitting anything again. The file is created 0600 (it holds who
//! started what) in a 0700 directory when that is created here.

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::api::{AuditEntry, JobState, JobSummary, JobView, StepCounts, StepState, StepView};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const DEFAULT_PATH: &str = "/var/lib/pve-rebalancer/journal.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal holds unreadable data: {0}")]
    Data(String),
}

type Result<T> = std::result::Result<T, JournalError>;

/// The journal. Writes are small and rare (a few per step), so one connection behind a mutex
/// is enough; callers on the async runtime hold it only for one statement or transaction.
pub struct Journal {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  INTEGER NOT NULL,
    started_by  TEXT NOT NULL,
    state       TEXT NOT NULL,
    finished_at INTEGER,
    message     TEXT,
    plan_json   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    idx         INTEGER NOT NULL,
    vmid        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    from_node   TEXT NOT NULL,
    to_node     TEXT NOT NULL,
    migration   TEXT NOT NULL,
    depends_on  TEXT NOT NULL,
    state       TEXT NOT NULL,
    phase       TEXT,
    upid        TEXT,
    task_upid   TEXT,
    started_at  INTEGER,
    finished_at INTEGER,
    message     TEXT,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    user    TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    job_id  INTEGER
);
CREATE INDEX IF NOT EXISTS audit_by_user ON audit(user);
";

/// One write to record in the audit table (see [`Journal::record_audit`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRecord<'a> {
    /// The PVE user or token who did it.
    pub user: &'a str,
    /// `plan.execute`, `job.cancel`, `settings.update`, `maintenance.enter`, `maintenance.exit`.
    pub action: &'a str,
    /// What it was done to: `job/7`, `node/pve2`, `settings`.
    pub target: &'a str,
    /// One line for people (steps of the plan, the settings diff).
    pub detail: &'a str,
    pub job_id: Option<u64>,
}

/// `(state, count)` rows, by state name.
pub type StateCounts = Vec<(String, u64)>;

/// Which audit entries [`Journal::audit`] returns; `None` = any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub action: Option<String>,
}

/// `GuestKind::Qemu` → `qemu`, as serde names it (one spelling for the API and the file).
fn enum_text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn enum_parse<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|e| JournalError::Data(format!("`{s}`: {e}")))
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal> {
        let io = |source| JournalError::Io { path: path.to_owned(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io)?;
            }
        }
        // Create the file ourselves so it never exists, even briefly, with wider permissions;
        // SQLite gives its -wal and -shm files the database file's mode.
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a step recorded as submitted must survive a power cut, not just a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Journal { conn: Mutex::new(conn), path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new running job and its queued steps in one transaction; returns its id.
    pub fn create_job(&self, plan_json: &str, started_by: &str, now: u64, steps: &[StepView]) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO jobs (created_at, started_by, state, plan_json) VALUES (?1, ?2, ?3, ?4)",
            params![now as i64, started_by, JobState::Running.as_str(), plan_json],
        )?;
        let id = tx.last_insert_rowid();
        for s in steps {
            insert_step(&tx, id, s)?;
        }
        tx.commit()?;
        Ok(id as u64)
    }

    /// Writes a step's current state (everything but its identity).
    pub fn save_step(&self, job_id: u64, s: &StepView) -> Result<()> {
        self.conn().execute(
            "UPDATE steps SET state = ?3, phase = ?4, upid = ?5, task_upid = ?6, started_at = ?7,
                 finished_at = ?8, message = ?9
             WHERE job_id = ?1 AND idx = ?2",
            params![
                job_id as i64,
                s.index as i64,
                s.state.as_str(),
                s.phase,
                s.upid,
                s.task_upid,
                s.started_at.map(|t| t as i64),
                s.finished_at.map(|t| t as i64),
                s.message,
            ],
        )?;
        Ok(())
    }

    pub fn finish_job(&self, job_id: u64, state: JobState, now: u64, message: Option<&str>) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET state = ?2, finished_at = ?3, message = ?4 WHERE id = ?1",
            params![job_id as i64, state.as_str(), now as i64, message],
        )?;
        Ok(())
    }

    /// Ids of jobs in `state`, oldest first.
    pub fn job_ids_in_state(&self, state: JobState) -> Result<Vec<u64>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id FROM jobs WHERE state = ?1 ORDER BY id")?;
        let ids = st.query_map([state.as_str()], |r| r.get::<_, i64>(0))?;
        Ok(ids.collect::<std::result::Result<Vec<_>, _>>()?.into_iter().map(|i| i as u64).collect())
    }

    /// The plan a job was started with, as submitted.
    pub fn plan_json(&self, job_id: u64) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT plan_json FROM jobs WHERE id = ?1", [job_id as i64], |r| r.get(0))
            .optional()?)
    }

    pub fn job(&self, job_id: u64) -> Result<Option<JobView>> {
        let conn = self.conn();
        let Some(head) = conn
            .query_row(
                "SELECT id, created_at, started_by, state, finished_at, message FROM jobs WHERE id = ?1",
                [job_id as i64],
                job_head,
            )
            .optional()?
        else {
            return Ok(None);
        };
        let steps = steps_of(&conn, job_id)?;
        Ok(Some(JobView { job: summary(head, &steps)?, steps }))
    }

    /// The newest `limit` jobs, newest first.
    pub fn jobs(&self, limit: usize) -> Result<Vec<JobSummary>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, created_at, started_by, state, finished_at, message FROM jobs ORDER BY id DESC LIMIT ?1",
        )?;
        let heads = st.query_map([limit as i64], job_head)?.collect::<std::result::Result<Vec<_>, _>>()?;
        heads
            .into_iter()
            .map(|h| {
                let steps = steps_of(&conn, h.0 as u64)?;
                summary(h, &steps)
            })
            .collect()
    }
}

impl Journal {
    /// Records one write (who did what to what) at `now`; returns the entry's id.
    pub fn record_audit(&self, now: u64, r: &AuditRecord<'_>) -> Result<u64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (at, user, action, target, detail, job_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now as i64, r.user, r.action, r.target, r.detail, r.job_id.map(|j| j as i64)],
        )?;
        Ok(conn.last_insert_rowid() as u64)
    }

    /// How many jobs and how many steps are in each state (for `/metrics`), by state name.
    pub fn totals(&self) -> Result<(StateCounts, StateCounts)> {
        let conn = self.conn();
        let count = |sql: &str| -> Result<StateCounts> {
            let mut st = conn.prepare(sql)?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        };
        Ok((
            count("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")?,
            count("SELECT state, COUNT(*) FROM steps GROUP BY state ORDER BY state")?,
        ))
    }

    /// The newest `limit` audit entries matching `filter`, newest first.
    pub fn audit(&self, limit: usize, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, at, user, action, target, detail, job_id FROM audit
             WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR action = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![filter.user, filter.action, limit as i64], |r| {
            Ok(AuditEntry {
                id: r.get::<_, i64>(0)? as u64,
                at: r.get::<_, i64>(1)? as u64,
                user: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: r.get(5)?,
                job_id: r.get::<_, Option<i64>>(6)?.map(|j| j as u64),
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

type JobHead = (i64, i64, String, String, Option<i64>, Option<String>);

fn job_head(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobHead> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn summary(h: JobHead, steps: &[StepView]) -> Result<JobSummary> {
    let (id, created_at, started_by, state, finished_at, message) = h;
    Ok(JobSummary {
        id: id as u64,
        state: JobState::parse(&state).ok_or_else(|| JournalError::Data(format!("job state `{state}`")))?,
        started_by,
        created_at: created_at as u64,
        finished_at: finished_at.map(|t| t as u64),
        message,
        counts: StepCounts::of(steps),
    })
}

fn insert_step(tx: &rusqlite::Transaction<'_>, job_id: i64, s: &StepView) -> Result<()> {
    let deps = serde_json::to_string(&s.depends_on).map_err(|e| JournalError::Data(e.to_string()))?;
    tx.execute(
        "INSERT INTO steps (job_id, idx, vmid, name, kind, from_node, to_node, migration, depends_on,
             state, phase, upid, task_upid, started_at, finished_at, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            job_id,
            s.index as i64,
            s.vmid,
            s.name,
            enum_text(&s.kind),
            s.from,
            s.to,
            enum_text(&s.migration),
            deps,
            s.state.as_str(),
            s.phase,
            s.upid,
            s.task_upid,
            s.started_at.map(|t| t as i64),
            s.finished_at.map(|t| t as i64),
            s.message,
        ],
    )?;
    Ok(())
}

fn steps_of(conn: &Connection, job_id: u64) -> Result<Vec<StepView>> {
    let mut st = conn.prepare(
        "SELECT idx, vmid, name, kind, from_node, to_node, migration, depends_on, state, phase, upid,
                task_upid, started_at, finished_at, message
         FROM steps WHERE job_id = ?1 ORDER BY idx",
    )?;
    type Row = (
        i64,
        u32,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    let rows = st
        .query_map([job_id as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
                r.get(14)?,
            ))
        })?
        .collect::<std::result::Result<Vec<Row>, _>>()?;
    rows.into_iter()
        .map(|r| {
            Ok(StepView {
                index: r.0 as usize,
                vmid: r.1,
                name: r.2,
                kind: enum_parse(&r.3)?,
                from: r.4,
                to: r.5,
                migration: enum_parse(&r.6)?,
                depends_on: serde_json::from_str(&r.7).map_err(|e| JournalError::Data(e.to_string()))?,
                state: StepState::parse(&r.8)
                    .ok_or_else(|| JournalError::Data(format!("step state `{}`", r.8)))?,
                phase: r.9,
                upid: r.10,
                task_upid: r.11,
                started_at: r.12.map(|t| t as u64),
                finished_at: r.13.map(|t| t as u64),
                message: r.14,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{GuestKind, MigrationKind};

    fn temp_path(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        std::env::temp_dir()
            .join(format!("pve-rebalancer-journal-{tag}-{}-{nanos}", std::process::id()))
            .join("journal.sqlite")
    }

    fn step(index: usize) -> StepView {
        StepView {
            index,
            vmid: 100 + index as u32,
            name: "web".into(),
            kind: GuestKind::Lxc,
            from: "a".into(),
            to: "b".into(),
            migration: MigrationKind::Restart,
            depends_on: vec![0],
            state: StepState::Queued,
            phase: None,
            upid: None,
            task_upid: None,
            started_at: None,
            finished_at: None,
            message: None,
        }
    }

    #[test]
    fn jobs_and_steps_survive_reopening_and_the_file_is_private() {
        let path = temp_path("roundtrip");
        let j = Journal::open(&path).unwrap();
        let id = j.create_job("{}", "root@pam", 10, &[step(0), step(3)]).unwrap();
        let mut s = step(3);
        s.state = StepState::Running;
        s.upid = Some("UPID:a:1:2:3:vzmigrate:103:root@pam:".into());
        s.started_at = Some(11);
        j.save_step(id, &s).unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        let v = j.job(id).unwrap().unwrap();
        assert_eq!(v.steps.len(), 2);
        assert_eq!(v.steps[1], s);
        assert_eq!(v.job.state, JobState::Running);
        assert_eq!((v.job.counts.queued, v.job.counts.running), (1, 1));
        assert_eq!(j.job_ids_in_state(JobState::Running).unwrap(), vec![id]);
        j.finish_job(id, JobState::Failed, 20, Some("x")).unwrap();
        let list = j.jobs(10).unwrap();
        assert_eq!((list[0].state, list[0].finished_at), (JobState::Failed, Some(20)));
        assert!(j.job(id + 1).unwrap().is_none());
        assert_eq!(j.plan_json(id).unwrap().as_deref(), Some("{}"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn audit_entries_come_back_newest_first_and_filtered() {
        let path = temp_path("audit");
        let j = Journal::open(&path).unwrap();
        let rec = |user, action, job_id| AuditRecord { user, action, target: "t", detail: "d", job_id };
        j.record_audit(1, &rec("root@pam", "plan.execute", Some(1))).unwrap();
        j.record_audit(2, &rec("ops@pve", "settings.update", None)).unwrap();
        j.record_audit(3, &rec("root@pam", "job.cancel", Some(1))).unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        let all = j.audit(10, &AuditFilter::default()).unwrap();
        assert_eq!(all.iter().map(|e| e.at).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(all[2].job_id, Some(1));
        let root = AuditFilter { user: Some("root@pam".into()), action: None };
        assert_eq!(j.audit(10, &root).unwrap().len(), 2);
        let cancel = AuditFilter { user: Some("root@pam".into()), action: Some("job.cancel".into()) };
        assert_eq!(j.audit(10, &cancel).unwrap().iter().map(|e| e.at).collect::<Vec<_>>(), vec![3]);
        assert_eq!(j.audit(1, &AuditFilter::default()).unwrap().len(), 1);
        j.create_job("{}", "root@pam", 4, &[step(0), step(1)]).unwrap();
        let (jobs, steps) = j.totals().unwrap();
        assert_eq!((jobs, steps), (vec![("running".into(), 1)], vec![("queued".into(), 2)]));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
