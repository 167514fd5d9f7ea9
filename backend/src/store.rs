//! One pattern for every cluster-wide JSON state file in `--state-dir` (settings, schedule,
//! maintenance marks):
//! load (a missing file is the default), update under a lock (this process's mutex, then a
//! cluster-wide `mkdir` lock on pmxcfs so two nodes never lose each other's write), atomic write
//! (`state_file::write_atomically`).
//!
//! Every method blocks (file I/O, lock waits): async code calls them through
//! [`JsonStore::load_async`] / [`JsonStore::update_async`], which run them on tokio's blocking
//! pool, never on a worker thread.

use crate::execute::{ClusterLock, DirLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A holder of the update lock older than this is dead (an update is a read and a write).
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long an update waits for another node's update before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state file {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("state file {path} is not valid: {detail} (fix or delete it)")]
    Corrupt { path: PathBuf, detail: String },
    #[error("state file {path}: another node holds its update lock for over {}s", LOCK_WAIT.as_secs())]
    Busy { path: PathBuf },
}

/// `dir/name`, holding a `T`.
pub struct JsonStore<T> {
    dir: PathBuf,
    name: &'static str,
    local: Mutex<()>,
    lock: DirLock,
    _value: std::marker::PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned + Default> JsonStore<T> {
    pub fn new(dir: &Path, name: &'static str) -> JsonStore<T> {
        JsonStore {
            dir: dir.to_owned(),
            name,
            local: Mutex::new(()),
            lock: DirLock::new(dir.join("lock")),
            _value: std::marker::PhantomData,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    /// The stored value; the default when the file does not exist.
    pub fn load(&self) -> Result<T, StoreError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt { path, detail: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(StoreError::Io { path, detail: e.to_string() }),
        }
    }

    /// Reads, lets `change` edit the value, and writes it back, all under the locks. `change`
    /// returning an error writes nothing.
    pub fn update<R, E: From<StoreError>>(
        &self,
        change: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, E> {
        let _local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let _cluster = self.cluster_lock()?;
        let mut value = self.load()?;
        let out = change(&mut value)?;
        let path = self.path();
        let bytes = serde_json::to_vec_pretty(&value)
            .map_err(|e| StoreError::Io { path: path.clone(), detail: e.to_string() })?;
        crate::state_file::write_atomically(&self.dir, self.name, &bytes)
            .map_err(|e| StoreError::Io { path, detail: e.to_string() })?;
        Ok(out)
    }

    fn cluster_lock(&self) -> Result<crate::execute::Guard, StoreError> {
        let started = Instant::now();
        loop {
            if let Some(guard) = self.lock.try_acquire(self.name, LOCK_TTL) {
                return Ok(guard);
            }
            self.lock_takeable()?;
            if started.elapsed() > LOCK_WAIT {
                return Err(StoreError::Busy { path: self.path() });
            }
            // Blocking on purpose: this runs on the blocking pool (see the `*_async` methods).
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl<T> JsonStore<T> {
    /// After a failed take: when nobody holds the lock, the directory itself refuses it (read
    /// only, not a directory, ...): say that now instead of waiting and blaming another node.
    fn lock_takeable(&self) -> Result<(), StoreError> {
        let lock_dir = self.dir.join("lock");
        if lock_dir.join(self.name).exists() {
            return Ok(()); // held: wait for it, without writes of our own on pmxcfs
        }
        let probe = lock_dir.join(format!(".probe-{}", std::process::id()));
        let refused = match std::fs::create_dir_all(&lock_dir).and_then(|_| std::fs::create_dir(&probe)) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&probe);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => e,
        };
        Err(StoreError::Io {
            path: self.dir.join(self.name),
            detail: format!("cannot take its update lock in {}: {refused}", lock_dir.display()),
        })
    }
}

impl<T: Serialize + DeserializeOwned + Default + Send + 'static> JsonStore<T> {
    /// [`JsonStore::load`] on the blocking pool.
    pub async fn load_async(self: &Arc<Self>) -> Result<T, StoreError> {
        let store = self.clone();
        blocking(move || store.load()).await
    }

    /// [`JsonStore::update`] on the blocking pool.
    pub async fn update_async<R, E>(
        self: &Arc<Self>,
        change: impl FnOnce(&mut T) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        blocking(move || store.update(change)).await
    }
}

/// Runs `f` on tokio's blocking pool; a panic there is re-raised here.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Default, Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Counter {
        n: u32,
    }

    #[test]
    fn updates_from_many_threads_lose_nothing_and_a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(JsonStore::<Counter>::new(&dir.path().join("state"), "c.json"));
        assert_eq!(store.load().unwrap(), Counter { n: 0 });
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let s = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        s.update(|c| {
                            c.n += 1;
                            Ok::<_, StoreError>(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(store.load().unwrap().n, 40);
        let refused: Result<(), StoreError> = store.update(|c| {
            c.n = 0;
            Err(StoreError::Busy { path: "refused".into() })
        });
        assert!(refused.is_err());
        assert_eq!(store.load().unwrap().n, 40);
        assert_eq!(std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_directory_that_refuses_the_lock_is_named_at_once_not_blamed_on_another_node() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").unwrap();
        let store = JsonStore::<Counter>::new(&not_a_dir.join("state"), "c.json");
        let started = Instant::now();
        let e = store.update(|c| {
            c.n = 1;
            Ok::<_, StoreError>(())
        });
        let e = e.unwrap_err();
        assert!(matches!(e, StoreError::Io { .. }), "{e}");
        assert!(e.to_string().contains("cannot take its update lock"), "{e}");
        assert!(started.elapsed() < LOCK_WAIT, "it waited as if another node held the lock");
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.json"), "{not json").unwrap();
        let e = JsonStore::<Counter>::new(dir.path(), "c.json").load().unwrap_err().to_string();
        assert!(e.contains("c.json") && e.contains("fix or delete"), "{e}");
    }
}
