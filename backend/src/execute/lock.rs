//! The cluster-wide single-executor lock.
//!
//! Only one executor in the cluster may submit migrations at a time (two would plan against
//! the same snapshot and fight). PVE's own cluster file system offers exactly that primitive:
//! in pmxcfs, `mkdir /etc/pve/priv/lock/<name>` succeeds for one caller cluster-wide (it is how
//! `cfs_lock` works), and a lock whose directory is older than its TTL is stale. [`DirLock`]
//! uses those semantics on any directory, so the same code runs on pmxcfs and, in tests, on a
//! temp directory.
//!
//! The holder keeps the lock alive by refreshing the directory's mtime well within the TTL,
//! and checks on each refresh that the directory is still its own (an owner file with a random
//! token), so a holder that was declared stale learns it lost the lock and stops submitting.
//!
//! The owner file also says who holds it: the node's name, its boot id and the holder's pid
//! with the process's start time. A service restarted on the same node (after `kill -9`, a
//! crash, a reboot) sees that the holder named there is no longer running and takes the lock
//! back at once; a lock held from another node keeps its TTL, since no node can see another
//! node's processes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Held while executing; dropping it releases the lock.
pub trait LockGuard: Send + Sync {
    /// Keeps the lock alive. `false` means it is no longer ours: stop submitting.
    fn refresh(&self) -> bool;
}

pub type Guard = Box<dyn LockGuard>;

pub trait ClusterLock: Send + Sync {
    /// `Some` for exactly one caller at a time; a lock not refreshed within `ttl` may be taken
    /// over.
    fn try_acquire(&self, name: &str, ttl: Duration) -> Option<Guard>;
}

/// `mkdir`-based lock in a directory (default `/etc/pve/priv/lock`, pmxcfs).
#[derive(Clone, Debug)]
pub struct DirLock {
    dir: PathBuf,
    /// The node this process runs on (its host name), written into the owner file.
    node: String,
}

/// Who holds a lock: the owner file's fields (`key=value` lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub token: String,
    pub node: String,
    /// `/proc/sys/kernel/random/boot_id`: changes with every boot.
    pub boot: String,
    pub pid: u32,
    /// The process's start time (clock ticks since boot, `/proc/<pid>/stat` field 22): a pid
    /// reused by another process has another start time.
    pub start: u64,
}

impl Owner {
    fn current(token: &str, node: &str) -> Owner {
        let pid = std::process::id();
        Owner {
            token: token.to_owned(),
            node: node.to_owned(),
            boot: boot_id(),
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }

    fn render(&self) -> String {
        format!(
            "token={}\nnode={}\nboot={}\npid={}\nstart={}\n",
            self.token, self.node, self.boot, self.pid, self.start
        )
    }

    /// `None` for an owner file of an older version (the bare token) or a damaged one: such a
    /// lock is judged by its TTL only.
    pub fn parse(text: &str) -> Option<Owner> {
        let field = |k: &str| {
            text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).map(str::to_owned)
        };
        Some(Owner {
            token: field("token")?,
            node: field("node")?,
            boot: field("boot")?,
            pid: field("pid")?.parse().ok()?,
            start: field("start")?.parse().ok()?,
        })
    }

    /// Whether this owner, on `node` (ours), is a process that no longer runs: the node booted
    /// since, or no process with its pid and start time exists. Pure given the two readings.
    pub fn gone(&self, boot_now: &str, start_of: impl Fn(u32) -> Option<u64>) -> bool {
        self.boot != boot_now || start_of(self.pid) != Some(self.start)
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command, which may hold spaces).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

impl DirLock {
    pub fn new(dir: impl Into<PathBuf>) -> DirLock {
        DirLock { dir: dir.into(), node: crate::this_host() }
    }

    /// The same lock as seen from node `node` (tests: two "nodes" on one machine).
    pub fn on_node(mut self, node: &str) -> DirLock {
        self.node = node.to_owned();
        self
    }

    fn take(&self, path: &Path, token: &str) -> Option<Guard> {
        match std::fs::create_dir(path) {
            Ok(()) => {
                // On pmxcfs the directory alone is the lock; the owner file lets a holder verify
                // it was not taken over. If it cannot be written we still hold the lock.
                let owner = Owner::current(token, &self.node).render();
                let owner_file = std::fs::write(path.join("owner"), owner).is_ok();
                Some(Box::new(DirGuard { path: path.to_owned(), token: token.to_owned(), owner_file }))
            }
            Err(_) => None,
        }
    }

    /// The lock at `path` may be taken over: older than `ttl`, or held by a process of this
    /// node that is gone (the token judged, so a rename can check it moved the same lock).
    fn stale(&self, path: &Path, ttl: Duration) -> Option<Staleness> {
        if age(path)? >= ttl {
            return Some(Staleness::Expired);
        }
        let owner = Owner::parse(&std::fs::read_to_string(path.join("owner")).ok()?)?;
        (owner.node == self.node && owner.gone(&boot_id(), process_start))
            .then_some(Staleness::HolderGone(owner))
    }
}

#[derive(Debug)]
enum Staleness {
    Expired,
    /// Held by a process of this node that no longer runs.
    HolderGone(Owner),
}

fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{}-{nanos:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn age(path: &Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(modified).unwrap_or(Duration::ZERO))
}

impl ClusterLock for DirLock {
    fn try_acquire(&self, name: &str, ttl: Duration) -> Option<Guard> {
        if name.is_empty() || name.contains(['/', '\0']) || name.starts_with('.') {
            return None;
        }
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot create the lock directory");
            return None;
        }
        let path = self.dir.join(name);
        let token = unique_token();
        if let Some(g) = self.take(&path, &token) {
            return Some(g);
        }
        // Held. Take it over only when stale, and only through an atomic rename, so of several
        // contenders exactly one moves the stale directory away; the others' renames fail.
        let why = self.stale(&path, ttl)?;
        let aside = self.dir.join(format!(".{name}.stale-{token}"));
        if std::fs::rename(&path, &aside).is_err() {
            return None;
        }
        // Someone refreshed or re-took it between our look and the rename: put it back. (A
        // non-empty directory cannot be renamed onto an existing one, so this never clobbers a
        // lock taken in the meantime.)
        let still_stale = match (&why, self.stale(&aside, ttl)) {
            (_, Some(Staleness::Expired)) => true,
            (Staleness::HolderGone(was), Some(Staleness::HolderGone(now))) => was.token == now.token,
            _ => false,
        };
        if !still_stale {
            let _ = std::fs::rename(&aside, &path);
            return None;
        }
        let _ = std::fs::remove_dir_all(&aside);
        match why {
            Staleness::Expired => tracing::warn!(lock = %path.display(), "took over a stale executor lock"),
            Staleness::HolderGone(o) => tracing::warn!(
                lock = %path.display(), pid = o.pid,
                "took back this node's lock: the process that held it is gone (restart)"
            ),
        }
        self.take(&path, &token)
    }
}

struct DirGuard {
    path: PathBuf,
    token: String,
    /// Whether the owner file could be written (else only the directory's presence is checked).
    owner_file: bool,
}

impl DirGuard {
    fn still_ours(&self) -> bool {
        if self.owner_file {
            std::fs::read_to_string(self.path.join("owner"))
                .is_ok_and(|text| Owner::parse(&text).is_some_and(|o| o.token == self.token))
        } else {
            self.path.is_dir()
        }
    }
}

impl LockGuard for DirGuard {
    fn refresh(&self) -> bool {
        if !self.still_ours() {
            return false;
        }
        // Bump the directory's mtime: its age is what others compare with the TTL.
        std::fs::File::open(&self.path).and_then(|f| f.set_modified(SystemTime::now())).is_ok()
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if self.still_ours() {
            let _ = std::fs::remove_file(self.path.join("owner"));
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pve-rebalancer-lock-{tag}-{}", unique_token()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn exactly_one_holder_and_release_on_drop() {
        let dir = temp_dir("one");
        let (a, b) = (DirLock::new(&dir), DirLock::new(&dir));
        let ttl = Duration::from_secs(60);
        let g = a.try_acquire("exec", ttl).expect("first wins");
        assert!(b.try_acquire("exec", ttl).is_none());
        assert!(g.refresh());
        drop(g);
        assert!(b.try_acquire("exec", ttl).is_some());
        assert!(a.try_acquire("../x", ttl).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_stale_lock_is_taken_over_and_the_old_holder_notices() {
        let dir = temp_dir("stale");
        let lock = DirLock::new(&dir);
        let old = lock.try_acquire("exec", Duration::from_secs(60)).unwrap();
        let past = SystemTime::now() - Duration::from_secs(600);
        std::fs::File::open(dir.join("exec")).unwrap().set_modified(past).unwrap();
        let new = lock.try_acquire("exec", Duration::from_secs(60)).expect("stale lock taken over");
        assert!(!old.refresh(), "the old holder must learn it lost the lock");
        drop(old); // must not remove the new holder's lock
        assert!(new.refresh());
        assert!(lock.try_acquire("exec", Duration::from_secs(60)).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// An owner file as another process would have left it.
    fn leave_owner(dir: &Path, owner: &Owner) {
        std::fs::create_dir_all(dir.join("exec")).unwrap();
        std::fs::write(dir.join("exec").join("owner"), owner.render()).unwrap();
    }

    #[test]
    fn a_lock_left_by_a_dead_process_of_this_node_is_taken_back_at_once() {
        let dir = temp_dir("dead");
        let ttl = Duration::from_secs(600);
        let me = Owner::current("t0", "pve1");
        // A pid that no process has (beyond pid_max), with this boot: gone.
        leave_owner(&dir, &Owner { pid: u32::MAX, ..me.clone() });
        let other_node = DirLock::new(&dir).on_node("pve2");
        assert!(other_node.try_acquire("exec", ttl).is_none(), "another node waits for the TTL");
        let g = DirLock::new(&dir).on_node("pve1").try_acquire("exec", ttl).expect("taken back at once");
        assert!(g.refresh());
        drop(g);
        // Same pid but another start time (pid reused), or another boot: gone too.
        for left in
            [Owner { start: me.start + 1, ..me.clone() }, Owner { boot: "old-boot".into(), ..me.clone() }]
        {
            leave_owner(&dir, &left);
            assert!(other_node.try_acquire("exec", ttl).is_none());
            let g = DirLock::new(&dir).on_node("pve1").try_acquire("exec", ttl);
            assert!(g.is_some(), "{left:?}");
        }
        // A live holder (this very process) keeps it, on its node as on others.
        let holder = DirLock::new(&dir).on_node("pve1").try_acquire("exec", ttl).unwrap();
        assert!(DirLock::new(&dir).on_node("pve1").try_acquire("exec", ttl).is_none());
        assert!(other_node.try_acquire("exec", ttl).is_none());
        drop(holder);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_owner_file_of_an_older_version_is_judged_by_its_ttl() {
        let dir = temp_dir("old");
        std::fs::create_dir_all(dir.join("exec")).unwrap();
        std::fs::write(dir.join("exec").join("owner"), "123-0-abc").unwrap();
        assert!(DirLock::new(&dir).try_acquire("exec", Duration::from_secs(600)).is_none());
        assert!(Owner::parse("123-0-abc").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
