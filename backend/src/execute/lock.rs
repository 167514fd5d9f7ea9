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
}

impl DirLock {
    pub fn new(dir: impl Into<PathBuf>) -> DirLock {
        DirLock { dir: dir.into() }
    }

    fn take(&self, path: &Path, token: &str) -> Option<Guard> {
        match std::fs::create_dir(path) {
            Ok(()) => {
                // On pmxcfs the directory alone is the lock; the owner file lets a holder verify
                // it was not taken over. If it cannot be written we still hold the lock.
                let owner_file = std::fs::write(path.join("owner"), token).is_ok();
                Some(Box::new(DirGuard { path: path.to_owned(), token: token.to_owned(), owner_file }))
            }
            Err(_) => None,
        }
    }
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
        if age(&path).is_none_or(|a| a < ttl) {
            return None;
        }
        let aside = self.dir.join(format!(".{name}.stale-{token}"));
        if std::fs::rename(&path, &aside).is_err() {
            return None;
        }
        if age(&aside).is_some_and(|a| a < ttl) {
            // Someone refreshed or re-took it between our look and the rename: put it back.
            // (A non-empty directory cannot be renamed onto an existing one, so this never
            // clobbers a lock taken in the meantime.)
            let _ = std::fs::rename(&aside, &path);
            return None;
        }
        let _ = std::fs::remove_dir_all(&aside);
        tracing::warn!(lock = %path.display(), "took over a stale executor lock");
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
            std::fs::read_to_string(self.path.join("owner")).is_ok_and(|owner| owner == self.token)
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
}
