//! Executors: what runs one attempt of a task kind, and the registry of kinds a worker
//! advertises.
//!
//! An executor only turns a payload into an output. The worker around it owns everything
//! else: the slot, the timeout, cancellation by the coordinator, the attempt directory,
//! and the report. That split keeps executors small enough to test without a coordinator.
//!
//! Two hints let the dispatcher keep trivial kinds cheap (the target is tens of thousands
//! of no-op attempts per second): [`Executor::runs_instantly`] lets it run an attempt in
//! place instead of spawning a task, and [`Executor::needs_scratch_dir`] lets it skip
//! creating a directory nobody will write to.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use essaim_core::{TaskFailure, TaskOutput, UpstreamOutput};
use tokio_util::sync::CancellationToken;

use crate::builtin::{EchoExecutor, FailExecutor, NoopExecutor, SaladExecutor, SleepExecutor};
use crate::command::CommandExecutor;

/// Every kind [`ExecutorRegistry::with_builtins`] can register; `command` only when
/// external commands are allowed.
pub const BUILTIN_KINDS: &[&str] = &["noop", "sleep", "echo", "fail", "salad", "command"];

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

    /// Registers the executor's own metrics on the worker's `/metrics` (say, a stream
    /// task's consumer lag). Called once, before the worker starts. Default: none.
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let _ = registry;
    }
}

/// Everything an executor learns about the attempt it runs.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    /// The job.
    pub job_id: u64,
    /// The task's index in its job.
    pub task_index: u32,
    /// The attempt, also its fencing token.
    pub attempt_id: u64,
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
    /// For a task of stage s > 0: the committed outputs of stage s - 1, in task order.
    pub inputs: Vec<UpstreamOutput>,
    /// The bearer token other workers' file servers expect, if the cluster has one.
    pub file_server_token: Option<String>,
}

impl AttemptContext {
    /// Returns the URL of the file `name` of the attempt directory.
    pub fn file_url(&self, name: &str) -> String {
        format!("{}/{name}", self.file_base_url)
    }
}

/// Returns the private directory of an attempt: `<scratch>/<job>/<task>/<attempt hex>`.
///
/// The file server maps URLs to the same layout, so both sides must call this.
pub(crate) fn attempt_dir(
    scratch_root: &Path,
    job_id: u64,
    task_index: u32,
    attempt_id: u64,
) -> PathBuf {
    scratch_root
        .join(job_id.to_string())
        .join(task_index.to_string())
        .join(format!("{attempt_id:x}"))
}

/// Returns the URL prefix under which an attempt's files are served.
pub(crate) fn attempt_file_base_url(
    file_server_url: &str,
    job_id: u64,
    task_index: u32,
    attempt_id: u64,
) -> String {
    format!("{file_server_url}/files/{job_id}/{task_index}/{attempt_id:x}")
}

/// Returns a failure that no retry can fix (the payload is malformed): the task goes
/// straight to the dead-letter queue.
pub(crate) fn permanent_failure(message: impl Into<String>) -> TaskFailure {
    TaskFailure {
        message: message.into(),
        exit_code: None,
        stderr_tail: String::new(),
        retryable: false,
        lost_inputs: Vec::new(),
    }
}

/// Task kinds this worker can run, each with its executor.
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    executors: BTreeMap<String, Arc<dyn Executor>>,
}

impl fmt::Debug for ExecutorRegistry {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_set()
            .entries(self.executors.keys())
            .finish()
    }
}

impl ExecutorRegistry {
    /// Returns an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a registry of the built-in kinds; `command` (external commands) only when
    /// `allow_commands` is true, since it lets any client run programs on this host.
    pub fn with_builtins(allow_commands: bool) -> Self {
        let mut registry = Self::new();
        registry.register("noop", Arc::new(NoopExecutor));
        registry.register("sleep", Arc::new(SleepExecutor));
        registry.register("echo", Arc::new(EchoExecutor));
        registry.register("fail", Arc::new(FailExecutor));
        registry.register("salad", Arc::new(SaladExecutor));
        if allow_commands {
            registry.register("command", Arc::new(CommandExecutor));
        }
        registry
    }

    /// Registers `executor` for `kind`, replacing any executor registered before for it.
    pub fn register(&mut self, kind: &str, executor: Arc<dyn Executor>) {
        self.executors.insert(kind.to_string(), executor);
    }

    /// Returns the registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        self.executors.keys().cloned().collect()
    }

    /// Lets every executor register its metrics (see [`Executor::register_metrics`]).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        for executor in self.executors.values() {
            executor.register_metrics(registry);
        }
    }

    /// Removes the executor of `kind`, if registered.
    pub(crate) fn unregister(&mut self, kind: &str) -> bool {
        self.executors.remove(kind).is_some()
    }

    /// Returns the executor of `kind`, if registered.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Executor>> {
        self.executors.get(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_kind_is_registered_only_when_allowed() {
        let without = ExecutorRegistry::with_builtins(false).kinds();
        assert_eq!(without, ["echo", "fail", "noop", "salad", "sleep"]);
        let with = ExecutorRegistry::with_builtins(true).kinds();
        assert!(with.contains(&"command".to_string()));
        for kind in &with {
            assert!(
                BUILTIN_KINDS.contains(&kind.as_str()),
                "{kind} is not listed"
            );
        }
    }

    #[test]
    fn attempt_dir_and_url_share_one_layout() {
        let dir = attempt_dir(Path::new("/scratch"), 7, 3, 0xab);
        assert_eq!(dir, Path::new("/scratch/7/3/ab"));
        let url = attempt_file_base_url("http://h:1", 7, 3, 0xab);
        assert_eq!(url, "http://h:1/files/7/3/ab");
    }
}
