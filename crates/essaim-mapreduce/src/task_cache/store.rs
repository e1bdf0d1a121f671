//! The directory of stored map outputs: one entry per [`TaskKey`], two files,
//! `<key>.out` (the `map.out` exactly as the task wrote it) and `<key>.meta` (its
//! SHA-256, length and counters, as JSON).
//!
//! - **Atomic writes.** Each file is written under a temporary name and renamed; the
//!   `.meta` goes last, so an entry without one is not an entry.
//! - **Checked reads.** An output is copied out while hashed; a length or hash that is
//!   not the recorded one (a bit flipped on disk, a half-written file) removes the entry
//!   and reads as a miss, so the task computes its output again.
//! - **Bounded.** After each store, the least recently used entries (the `.meta`'s
//!   modification time, touched at each hit) go until the directory holds at most its
//!   bound.
//! - **An entry in use is never evicted**, by construction: a task that reuses an entry
//!   copies it into its attempt directory, and the job's reducers read that copy, which
//!   lives (as any map output) until the worker's cleanup says the job needs it no
//!   more. Evicting the entry meanwhile only means the next re-run computes it again.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::key::{TaskKey, hex};
use crate::counters::Counters;

/// What `<key>.meta` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EntryMeta {
    /// SHA-256 of `<key>.out`, hexadecimal.
    sha256: String,
    /// Length of `<key>.out`.
    size_bytes: u64,
    /// The counters the task reported when it computed the output.
    counters: std::collections::BTreeMap<String, u64>,
}

/// A map output taken from the store.
#[derive(Debug)]
pub struct Reused {
    /// Length of the copied file.
    pub size_bytes: u64,
    /// The counters of the task that computed it.
    pub counters: Counters,
}

/// The store's directory and bound.
#[derive(Debug)]
pub struct EntryStore {
    dir: PathBuf,
    max_bytes: u64,
}

/// Distinguishes the temporary files of concurrent stores in one process.
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

impl EntryStore {
    /// Opens (creating) the store in `dir`, holding at most `max_bytes`; removes the
    /// temporary files a killed process left.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
        })
    }

    fn path(&self, key: &TaskKey, extension: &str) -> PathBuf {
        self.dir.join(format!("{key}.{extension}"))
    }

    /// Copies the output stored under `key` to `dest` and returns it, or `None` when
    /// there is none or it is corrupt (then it is removed, and so is `dest`).
    pub fn take(&self, key: &TaskKey, dest: &Path) -> std::io::Result<Option<Reused>> {
        let meta_path = self.path(key, "meta");
        let meta: EntryMeta = match std::fs::read(&meta_path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(meta) => meta,
                Err(_) => return self.refuse(key, dest, "unreadable metadata"),
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let source = match File::open(self.path(key, "out")) {
            Ok(file) => file,
            // Evicted (or never completed) since the metadata was read.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let (size, digest) = copy_hashing(source, dest)?;
        if size != meta.size_bytes || hex(&digest) != meta.sha256 {
            return self.refuse(key, dest, "content does not match its hash");
        }
        // The access time of the LRU order.
        if let Ok(file) = File::options().write(true).open(&meta_path) {
            let _ = file.set_modified(SystemTime::now());
        }
        let mut counters = Counters::default();
        for (name, value) in &meta.counters {
            counters.add(name, *value);
        }
        Ok(Some(Reused {
            size_bytes: size,
            counters,
        }))
    }

    fn refuse(&self, key: &TaskKey, dest: &Path, why: &str) -> std::io::Result<Option<Reused>> {
        tracing::warn!(%key, dir = %self.dir.display(), why, "corrupt task cache entry removed");
        self.remove(key);
        let _ = std::fs::remove_file(dest);
        Ok(None)
    }

    fn remove(&self, key: &TaskKey) {
        let _ = std::fs::remove_file(self.path(key, "meta"));
        let _ = std::fs::remove_file(self.path(key, "out"));
    }

    /// Stores the file `output` (with its `counters`) under `key`, then evicts down to
    /// the bound. An output larger than the bound is not stored.
    pub fn put(&self, key: &TaskKey, output: &Path, counters: &Counters) -> std::io::Result<()> {
        let size_bytes = std::fs::metadata(output)?.len();
        if size_bytes > self.max_bytes {
            return Ok(());
        }
        let temporary = self.dir.join(format!(
            ".tmp-{}-{}-{key}",
            std::process::id(),
            TEMPORARY.fetch_add(1, Ordering::Relaxed)
        ));
        let (_, digest) = copy_hashing(File::open(output)?, &temporary)?;
        std::fs::rename(&temporary, self.path(key, "out"))?;
        let meta = EntryMeta {
            sha256: hex(&digest),
            size_bytes,
            counters: counters.clone().into_map(),
        };
        let bytes = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, self.path(key, "meta"))?;
        self.evict_keeping(key)
    }

    /// Removes the least recently used entries until the store holds at most its bound;
    /// `kept` (the entry just stored) goes last. File times tick at the kernel's coarse
    /// clock (a few ms), so an entry used just before may carry the same time as it, and
    /// the one just stored must not be the one evicted for it.
    fn evict_keeping(&self, kept: &TaskKey) -> std::io::Result<()> {
        let mut entries = Vec::new();
        let mut total = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".meta") else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            let out_size = std::fs::metadata(self.dir.join(format!("{stem}.out")))
                .map(|out| out.len())
                .unwrap_or(0);
            let size = meta.len() + out_size;
            total += size;
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push((used, TaskKey::from_hex(stem), size));
        }
        entries.sort_by_key(|(used, key, _)| (key == kept, *used));
        for (_, key, size) in entries {
            if total <= self.max_bytes {
                break;
            }
            self.remove(&key);
            total -= size;
        }
        Ok(())
    }
}

/// Copies `source` to a new file `dest` (fsynced) and returns its length and SHA-256.
fn copy_hashing(source: File, dest: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut reader = BufReader::with_capacity(1 << 20, source);
    let mut writer = BufWriter::with_capacity(1 << 20, File::create(dest)?);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        writer.write_all(&buffer[..read])?;
        size += read as u64;
    }
    let file = writer.into_inner().map_err(|error| error.into_error())?;
    file.sync_all()?;
    Ok((size, hasher.finalize().into()))
}
