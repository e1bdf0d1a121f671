//! Incremental re-runs: a worker's store of map outputs keyed by their inputs, so that
//! a job run again over mostly unchanged inputs reuses the outputs of the map tasks
//! whose inputs did not change instead of computing them again.
//!
//! A map task's key ([`key`]) hashes the binary's code version, the job's configuration
//! (but where its output goes) and, for each of its splits, the file's path, the SHA-256
//! of its whole content, and the range. On a hit the stored output is copied into the
//! attempt directory as its `map.out` and the task reports the stored counters plus
//! `map.reused.tasks` = 1; on a miss it runs, then its output is stored (best effort: a
//! failed store is logged and the task succeeds). See [`store`] for atomicity, checks,
//! the bound and why an entry in use is never evicted.
//!
//! Reuse is skipped (the task simply runs) for what the key cannot see: jobs whose map
//! output is not a function of the splits and parameters alone
//! ([`JobDefinition::map_outputs_reusable`]: streaming commands, jobs reading side
//! files), skipping mode (its skipped records are published by the attempt), and inputs
//! in object storage (hashing an object means reading it whole, over the network).
//!
//! The content hash of a file is computed once per identity (device, inode, length,
//! modification and change times) for the process's life, so the map tasks of one large
//! file cut into many splits read it once to hash it, not once each.

pub mod key;
pub mod store;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::api::JobDefinition;
use crate::counters;
use crate::payload::{InputSplit, MapTaskPayload};
use crate::sort::{MAP_OUTPUT_FILE, MapOutputFile};
pub use key::{ContentHash, TaskKey, map_task_key};
pub use store::EntryStore;

/// Default bound of a task cache, in bytes (10 GiB).
pub const DEFAULT_TASK_CACHE_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// A file's identity: when it is unchanged, so is its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileIdentity {
    path: PathBuf,
    device: u64,
    inode: u64,
    len: u64,
    modified_ns: i128,
    changed_ns: i128,
}

/// A worker's task cache: the store, the binary's code version, and known file hashes.
#[derive(Debug)]
pub struct TaskCache {
    store: EntryStore,
    code_version: String,
    file_hashes: Mutex<HashMap<FileIdentity, ContentHash>>,
}

impl TaskCache {
    /// Opens the cache in `dir` holding at most `max_bytes`, for a binary whose code is
    /// `code_version` (its version and build revision).
    pub fn open(dir: &Path, max_bytes: u64, code_version: &str) -> std::io::Result<Self> {
        Ok(Self {
            store: EntryStore::open(dir, max_bytes)?,
            code_version: code_version.to_string(),
            file_hashes: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the key of `payload`'s map task, or `None` when its output must not be
    /// reused (see the module documentation) or an input cannot be hashed.
    pub fn key_for(&self, job: &dyn JobDefinition, payload: &MapTaskPayload) -> Option<TaskKey> {
        let config = &payload.config;
        if !config.skip.is_off() || !job.map_outputs_reusable(&config.params) {
            return None;
        }
        let mut splits = Vec::with_capacity(payload.splits.len());
        for split in &payload.splits {
            let hash = self.content_hash(split)?;
            splits.push((split.clone(), hash));
        }
        Some(map_task_key(&self.code_version, config, &splits))
    }

    fn content_hash(&self, split: &InputSplit) -> Option<ContentHash> {
        let essaim_storage::Location::Local(path) =
            essaim_storage::Location::from_path(&split.path)
        else {
            return None;
        };
        let identity = file_identity(&path).ok()?;
        if let Some(hash) = self.lock_hashes().get(&identity) {
            return Some(*hash);
        }
        let hash = hash_file(&path).ok()?;
        // Changed while hashed: the hash may mix two versions.
        if file_identity(&path).ok()? != identity {
            return None;
        }
        self.lock_hashes().insert(identity, hash);
        Some(hash)
    }

    fn lock_hashes(&self) -> std::sync::MutexGuard<'_, HashMap<FileIdentity, ContentHash>> {
        self.file_hashes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Installs the output stored under `key` as `scratch_dir`'s map output, or returns
    /// `None` (a miss, a corrupt entry, or an error reading the store, which is logged).
    pub fn install(&self, key: &TaskKey, scratch_dir: &Path) -> Option<MapOutputFile> {
        let path = scratch_dir.join(MAP_OUTPUT_FILE);
        match self.store.take(key, &path) {
            Ok(Some(reused)) => {
                let mut counters = reused.counters;
                counters.add(counters::MAP_REUSED_TASKS, 1);
                Some(MapOutputFile {
                    path,
                    size_bytes: reused.size_bytes,
                    counters,
                })
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%key, %error, "task cache unreadable; computing the output");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a computed map output under `key`; a failure is logged, never returned.
    pub fn store(&self, key: &TaskKey, output: &MapOutputFile) {
        if let Err(error) = self.store.put(key, &output.path, &output.counters) {
            tracing::warn!(%key, %error, "map output not stored in the task cache");
        }
    }
}

fn file_identity(path: &Path) -> std::io::Result<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let nanos = |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    Ok(FileIdentity {
        path: path.to_path_buf(),
        device: meta.dev(),
        inode: meta.ino(),
        len: meta.len(),
        modified_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        changed_ns: nanos(meta.ctime(), meta.ctime_nsec()),
    })
}

/// SHA-256 of the whole file at `path`.
pub fn hash_file(path: &Path) -> std::io::Result<ContentHash> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buffer[..read]);
    }
}
