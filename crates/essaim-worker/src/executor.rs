//! Executors: what runs one attempt of a task kind, and what it is told about the
//! attempt ([`AttemptContext`]: typed ids, payload, inputs, attempt directory). The
//! registry of kinds a worker advertises is in `registry.rs`.
//!
//! An executor only turns a payload into an output. The worker around it owns everything
//! else: the slot, the timeout, cancellation by the coordinator, the attempt directory,
//! and the report. That split keeps executors small enough to test without a coordinator.
//!
//! Two hints let the dispatcher keep trivial kinds cheap (the target is tens of thousands
//! of no-op attempts per second): [`Executor::runs_instantly`] lets it run an attempt in
//! place instead of spawning a task, and [`Executor::needs_scratch_dir`] lets it skip
//! creating a directory nobody will write to.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use essaim_core::{AttemptId, TaskFailure, TaskId, TaskOutput, UpstreamOutput};
use tokio_util::sync::CancellationToken;

use crate::inputs_watch::InputsWatch;
use crate::job_files::JobFileCache;

/// The future an executor returns: the attempt's output or why it failed.
pub type ExecutionFuture =
    Pin<Box<dyn Future<Output = Result<TaskOutput, TaskFailure>> + Send + 'static>>;

/// Runs attempts of one task kind.
pub trait Executor: Send + Sync + 'static {
    /// Runs one attempt; must stop promptly when `cancel` fires (the coordinator revoked
    /// the attempt, its timeout passed, or the worker is shutting down). What it returns
    /// after a cancellation is discarded.
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture;

    /// Returns true when the attempt writes to [`AttemptContext::scratch_dir`], which the
    /// worker then creates before calling [`Executor::execute`]. Default: true.
    fn needs_scratch_dir(&self, payload: &[u8]) -> bool {
        let _ = payload;
        true
    }

    /// Returns true when the attempt completes without waiting on anything (no I/O, no
    /// timer, no process) and within microseconds; the dispatcher then runs it in place
    /// instead of spawning a task. Default: false.
    fn runs_instantly(&self, payload: &[u8]) -> bool {
        let _ = payload;
        false
    }

    /// Returns true when the kind's attempts run until they are stopped (stream units):
    /// they then hold no slot, a worker runs any number of them side by side, and the
    /// coordinator spreads them evenly over the workers, moving some when workers join,
    /// drain or die. Default: false.
    fn long_running(&self) -> bool {
        false
    }

    /// Registers the executor's own metrics on the worker's `/metrics` (say, a stream
    /// task's consumer lag). Called once, before the worker starts. Default: none.
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let _ = registry;
    }

    /// Returns the progress of the stream units the executor runs now, sent with every
    /// heartbeat (the coordinator's Streams view and recommended stream workers).
    /// Default: none.
    fn stream_progress(&self) -> Vec<essaim_proto::v1::StreamUnitProgress> {
        Vec::new()
    }
}

/// Everything an executor learns about the attempt it runs.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    /// The task: its job and its index in the job.
    pub task: TaskId,
    /// The attempt, also its fencing token.
    pub attempt_id: AttemptId,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt_number: u32,
    /// The task's input.
    pub payload: Vec<u8>,
    /// The attempt's wall-clock limit, enforced by the worker around the executor.
    pub timeout: Option<Duration>,
    /// `job-J/task-T/attempt-A`, to link logs across processes.
    pub correlation_id: String,
    /// `<scratch>/<job>/<task>/<attempt>/`, private to this attempt; created before
    /// `execute` when [`Executor::needs_scratch_dir`] says so.
    pub scratch_dir: PathBuf,
    /// URL prefix under which the files of `scratch_dir` are served.
    pub file_base_url: String,
    /// The worker's display name.
    pub worker_name: String,
    /// For a task of stage s > 0: the committed outputs of stage s - 1, in task order
    /// (those committed so far when `inputs_watch` is set).
    pub inputs: Vec<UpstreamOutput>,
    /// The header other workers' file servers expect for this job's files (its
    /// capability, or the cluster token before the key is known), if any.
    pub file_credential: Option<crate::file_access::FileCredential>,
    /// For a task started early (slow start): asks for the inputs committed after
    /// `inputs`, until they are complete. `None` when `inputs` are complete.
    pub inputs_watch: Option<InputsWatch>,
    /// The worker's cache of job files, which stages a job's shipped files (`--files`)
    /// in a working directory of the attempt.
    pub job_files: Arc<JobFileCache>,
    /// The worker's certificate and trust: a task that serves listens with them and
    /// verifies its peers with them (`serving`).
    pub tls: crate::serving::WorkerTls,
}

impl AttemptContext {
    /// Returns the URL of the file `name` of the attempt directory.
    pub fn file_url(&self, name: &str) -> String {
        format!("{}/{name}", self.file_base_url)
    }

    /// Returns the host the worker advertises (the host of its file server's URL),
    /// which other machines can reach: where a long-running task that serves (a
    /// shard's leaf, a model runner) listens. `None` when the URL has no host.
    pub fn advertised_host(&self) -> Option<String> {
        advertised_host(&self.file_base_url)
    }
}

fn advertised_host(file_base_url: &str) -> Option<String> {
    let rest = file_base_url
        .strip_prefix("http://")
        .or_else(|| file_base_url.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    let (host, _port) = authority.rsplit_once(':')?;
    Some(host.to_owned())
}

/// Returns the private directory of an attempt: `<scratch>/<job>/<task>/<attempt hex>`.
///
/// The file server maps URLs to the same layout, so both sides must call this.
pub(crate) fn attempt_dir(scratch_root: &Path, task: TaskId, attempt_id: AttemptId) -> PathBuf {
    scratch_root
        .join(task.job.to_string())
        .join(task.index.to_string())
        .join(attempt_id.to_string())
}

/// Returns the URL prefix under which an attempt's files are served.
pub(crate) fn attempt_file_base_url(
    file_server_url: &str,
    task: TaskId,
    attempt_id: AttemptId,
) -> String {
    format!(
        "{file_server_url}/files/{}/{}/{attempt_id}",
        task.job, task.index
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_dir_and_url_share_one_layout() {
        let task = TaskId::new(essaim_core::JobId(7), 3);
        let dir = attempt_dir(Path::new("/scratch"), task, AttemptId(0xab));
        assert_eq!(dir, Path::new("/scratch/7/3/ab"));
        let url = attempt_file_base_url("http://h:1", task, AttemptId(0xab));
        assert_eq!(url, "http://h:1/files/7/3/ab");
    }

    #[test]
    fn a_serving_task_listens_on_the_host_the_worker_advertises() {
        assert_eq!(
            advertised_host("http://10.0.0.7:41234/files/3/1/ab").as_deref(),
            Some("10.0.0.7")
        );
        assert_eq!(advertised_host("nonsense"), None);
    }
}
