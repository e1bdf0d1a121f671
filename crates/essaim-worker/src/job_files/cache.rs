//! The worker's cache of job files: `<scratch>/job-files/sha256/<hash>`, each file
//! fetched once from the coordinator's artifact store, checked against its hash as it
//! arrives, and made read-only; then linked into attempts' working directories.
//!
//! Why the cache lives under the scratch root: it is the worker's own disk, and a hard
//! link from there into an attempt directory (also under the scratch root) stays on one
//! file system. The file server cannot reach it: its URLs start with a decimal job id.
//!
//! Concurrency: a file reaches its cached name by one atomic rename of a whole, checked
//! download, so a reader sees it whole or not at all, even if two processes share the
//! directory. Within the process, attempts that need the same hash at once wait on one
//! gate per hash, so the first downloads and the others find the file (fetched once per
//! worker). A download abandoned half-way (its attempt cancelled) leaves nothing: its
//! temporary file is removed when it is dropped.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use essaim_registry::client::{ClientError, RegistryClient};

use super::{JobFiles, JobFilesError, check_job_files};

/// Directory of the cache, under the worker's scratch root. Not a decimal number, so
/// never a job's directory.
pub const JOB_FILES_CACHE_DIR: &str = "job-files";
/// Directory of whole, checked files, named by their hash.
const CACHED_DIR: &str = "sha256";
/// Directory of downloads in progress.
const TEMPORARY_DIR: &str = "tmp";
/// The actor the registry records for a worker's reads (reads are not audited).
const ACTOR: &str = "essaim-worker";
/// Mode of a cached file: read-only, so that a task cannot change the bytes other
/// attempts link to; executable, so that a script with a `#!` line runs as `./map.py`.
const CACHED_FILE_MODE: u32 = 0o555;

/// A worker's cache of job files; see the module doc.
#[derive(Debug)]
pub struct JobFileCache {
    root: PathBuf,
    /// The coordinators' artifact stores, tried in order (a standby has none to give).
    sources: Vec<RegistryClient>,
    next_temporary: AtomicU64,
    /// One gate per hash being fetched. A std mutex: held only to find a gate, never
    /// across an `.await`.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl JobFileCache {
    /// Returns the cache under `scratch_root`, fetching from the coordinators at
    /// `coordinator_urls` (`http://HOST:PORT`) with the cluster `token`. A URL the
    /// registry client cannot use is left out with a warning: jobs without files run
    /// as before, and a job with files fails naming the reason.
    pub fn new(
        scratch_root: &Path,
        coordinator_urls: &[String],
        token: Option<&str>,
        trust: &essaim_tls::ClientTrust,
    ) -> Self {
        let mut sources = Vec::new();
        for url in coordinator_urls {
            match RegistryClient::new_trusting(url, token, ACTOR, trust) {
                Ok(client) => sources.push(client),
                Err(error) => {
                    tracing::warn!(%url, %error, "job files cannot be fetched from this coordinator URL");
                }
            }
        }
        Self {
            root: scratch_root.join(JOB_FILES_CACHE_DIR),
            sources,
            next_temporary: AtomicU64::new(0),
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// Makes every file of `files` appear in `dir` (created if needed) under its name:
    /// fetched into the cache if it is not there yet, then hard-linked (copied when the
    /// cache is on another file system).
    ///
    /// A hard link rather than a symbolic link: a program finds its neighbours through
    /// its own path (Python puts a script's real directory first on `sys.path`, so a
    /// shipped `map.py` imports a shipped `helper.py` only if its real directory is the
    /// working directory).
    pub async fn stage(&self, files: &JobFiles, dir: &Path) -> Result<(), JobFilesError> {
        check_job_files(files)?;
        for (name, sha256) in files {
            let cached = self.fetch(name, sha256).await?;
            create_dir(name, dir).await?;
            link_or_copy(name, &cached, &dir.join(name)).await?;
        }
        Ok(())
    }

    /// Returns the cached file of `sha256` (the job's file `name`), downloading it first
    /// unless it is cached. `sha256` must be checked hex (see [`check_job_files`]).
    pub async fn fetch(&self, name: &str, sha256: &str) -> Result<PathBuf, JobFilesError> {
        let cached = self.root.join(CACHED_DIR).join(sha256);
        if is_file(&cached).await {
            return Ok(cached);
        }
        let gate = self.gate(sha256);
        let held = gate.lock().await;
        // Another attempt may have fetched it while this one waited.
        let fetched = if is_file(&cached).await {
            Ok(())
        } else {
            self.download(name, sha256, &cached).await
        };
        drop(held);
        self.gates
            .lock()
            .expect("the gate map is never left inconsistent")
            .remove(sha256);
        fetched.map(|()| cached)
    }

    fn gate(&self, sha256: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self
            .gates
            .lock()
            .expect("the gate map is never left inconsistent");
        Arc::clone(gates.entry(sha256.to_string()).or_default())
    }

    /// Downloads `sha256` from the first coordinator that has it, into a temporary file
    /// that is renamed to `cached` once checked.
    async fn download(&self, name: &str, sha256: &str, cached: &Path) -> Result<(), JobFilesError> {
        let temporary_dir = self.root.join(TEMPORARY_DIR);
        create_dir(name, &temporary_dir).await?;
        create_dir(name, &self.root.join(CACHED_DIR)).await?;
        let number = self.next_temporary.fetch_add(1, Ordering::Relaxed);
        let temporary = temporary_dir.join(format!("{sha256}-{}-{number}", std::process::id()));
        let _remove_unless_renamed = RemoveOnDrop(temporary.clone());
        let mut failures = Vec::new();
        for source in &self.sources {
            match source.download_artifact(sha256, &temporary).await {
                Ok(_) => {
                    let permissions = std::fs::Permissions::from_mode(CACHED_FILE_MODE);
                    tokio::fs::set_permissions(&temporary, permissions)
                        .await
                        .map_err(io_error(name, "make read-only", &temporary))?;
                    return tokio::fs::rename(&temporary, cached)
                        .await
                        .map_err(io_error(name, "move into the cache", cached));
                }
                Err(error) => failures.push((source.url().to_string(), error)),
            }
        }
        Err(fetch_failure(name, sha256, failures))
    }
}

/// Returns the error of a file no coordinator gave: the most telling answer (corrupt
/// bytes, then "not stored"), else what each said.
fn fetch_failure(name: &str, sha256: &str, failures: Vec<(String, ClientError)>) -> JobFilesError {
    if failures.is_empty() {
        return JobFilesError::Fetch {
            name: name.to_string(),
            sha256: sha256.to_string(),
            reason: "this worker knows no coordinator URL (http://HOST:PORT) to fetch it from"
                .to_string(),
        };
    }
    for (_, error) in &failures {
        if let ClientError::Corrupt { expected, actual } = error {
            return JobFilesError::Corrupt {
                name: name.to_string(),
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
    }
    // "Not stored" is final only when every coordinator says so: a standby answers 404
    // for the store it does not serve while the leader may just be unreachable.
    let all_not_found = failures
        .iter()
        .all(|(_, error)| error.status() == Some(404));
    if all_not_found && let Some((url, error)) = failures.first() {
        return JobFilesError::NotFound {
            name: name.to_string(),
            sha256: sha256.to_string(),
            reason: format!("{url} answered: {error}"),
        };
    }
    let reasons: Vec<String> = failures
        .iter()
        .map(|(url, error)| format!("{url}: {}", essaim_core::error_chain::error_chain(error)))
        .collect();
    JobFilesError::Fetch {
        name: name.to_string(),
        sha256: sha256.to_string(),
        reason: reasons.join("; "),
    }
}

/// Hard-links `cached` to `link`, or copies it when they are on different file systems.
async fn link_or_copy(name: &str, cached: &Path, link: &Path) -> Result<(), JobFilesError> {
    match tokio::fs::hard_link(cached, link).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::CrossesDevices => {
            tokio::fs::copy(cached, link)
                .await
                .map(|_| ())
                .map_err(io_error(name, "copy the job file to", link))
        }
        Err(error) => Err(io_error(name, "link the job file to", link)(error)),
    }
}

async fn create_dir(name: &str, dir: &Path) -> Result<(), JobFilesError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_error(name, "create directory", dir))
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|metadata| metadata.is_file())
}

fn io_error<'a>(
    name: &'a str,
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> JobFilesError + 'a {
    move |source| JobFilesError::Io {
        name: name.to_string(),
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Removes a download's temporary file (and the client's `.partial` beside it) when
/// dropped; after the rename there is nothing left to remove.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // Small unlinks of files that usually no longer exist: cheap enough to do here.
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("partial"));
    }
}

#[cfg(test)]
mod tests;
