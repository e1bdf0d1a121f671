//! `--task-cache DIR` and `--task-cache-max-bytes`: the store of map outputs that
//! incremental re-runs reuse (`essaim_mapreduce::task_cache`), on `essaim worker` and
//! on `essaim run`, which passes them to the workers of its embedded cluster. Off
//! unless a directory is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use essaim_mapreduce::task_cache::{DEFAULT_TASK_CACHE_MAX_BYTES, TaskCache};

/// The task cache's options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TaskCacheArgs {
    /// Keep map outputs in this directory, keyed by the job's configuration, the
    /// binary and the content of the inputs, and reuse them when a job maps the same
    /// inputs again (incremental re-runs of wordcount, grep, index). Off by default.
    #[arg(long, env = "ESSAIM_MAPREDUCE_TASK_CACHE", value_name = "DIR")]
    pub task_cache: Option<PathBuf>,
    /// Most bytes the task cache holds; the least recently used outputs go first
    /// (default: 10GiB).
    #[arg(
        long,
        env = "ESSAIM_MAPREDUCE_TASK_CACHE_MAX_BYTES",
        value_parser = super::mapreduce::parse_size,
        value_name = "SIZE"
    )]
    pub task_cache_max_bytes: Option<u64>,
}

impl TaskCacheArgs {
    /// The bound, or its default.
    pub fn max_bytes(&self) -> u64 {
        self.task_cache_max_bytes
            .unwrap_or(DEFAULT_TASK_CACHE_MAX_BYTES)
    }

    /// The arguments that give a worker process these options.
    pub fn worker_args(&self) -> Vec<std::ffi::OsString> {
        let Some(dir) = &self.task_cache else {
            return Vec::new();
        };
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        vec![
            "--task-cache".into(),
            dir.into_os_string(),
            "--task-cache-max-bytes".into(),
            self.max_bytes().to_string().into(),
        ]
    }

    /// Opens the cache, if asked for.
    pub fn open(&self) -> anyhow::Result<Option<Arc<TaskCache>>> {
        let Some(dir) = &self.task_cache else {
            return Ok(None);
        };
        let version = code_version()?;
        let cache = TaskCache::open(dir, self.max_bytes(), &version).map_err(|error| {
            anyhow::anyhow!("cannot open the task cache {}: {error}", dir.display())
        })?;
        tracing::info!(dir = %dir.display(), code = %version, "task cache on");
        Ok(Some(Arc::new(cache)))
    }
}

/// The code version of the map outputs this process computes: the crate version and
/// the SHA-256 of the running executable, so that any rebuild (a changed job, even from
/// an uncommitted tree, whose build revision would not change) stores apart.
fn code_version() -> anyhow::Result<String> {
    let executable = std::env::current_exe()?;
    let digest = hash_executable(&executable)?;
    Ok(format!("{}+{digest}", env!("CARGO_PKG_VERSION")))
}

fn hash_executable(path: &Path) -> anyhow::Result<String> {
    let hash = essaim_mapreduce::task_cache::hash_file(path).map_err(|error| {
        anyhow::anyhow!("cannot hash the executable {}: {error}", path.display())
    })?;
    Ok(hash.iter().map(|byte| format!("{byte:02x}")).collect())
}
