//! One attempt, from its assignment to its outcome: the part of running a task that is
//! the same for every executor.
//!
//! Around the executor, [`run_attempt`] creates the attempt directory when the executor
//! needs one, enforces the attempt's timeout locally (the coordinator only notices a
//! missing result a lease later), opens the span that carries `job`, `task`, `attempt`
//! and `correlation_id` for every log line of the attempt (a child of the job's
//! submission in its trace, when it was traced), measures the run time, and
//! removes the attempt directory unless a file in it is the attempt's result.

use std::sync::Arc;
use std::time::Duration;

use essaim_core::{Assignment, AttemptId, TaskFailure, TaskOutput};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::executor::{AttemptContext, Executor, attempt_dir, attempt_file_base_url};
use crate::inputs_watch::{InputsSource, InputsWatch};
use crate::job_files::JobFileCache;

/// How long an executor may take to stop after its timeout cancelled it, before the
/// worker reports the timeout anyway and frees the slot.
const STOP_AFTER_TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// What the dispatcher needs to know about the worker to turn assignments into attempts.
#[derive(Debug, Clone)]
pub(crate) struct AttemptSettings {
    /// Root of the attempt directories.
    pub scratch_root: std::path::PathBuf,
    /// Base URL of this worker's file server.
    pub file_server_url: String,
    /// The worker's display name.
    pub worker_name: String,
    /// What file servers of other workers expect (a job's capability, or the token).
    pub file_credentials: crate::file_access::FileCredentials,
    /// The cache of job files, shared by every attempt.
    pub job_files: Arc<JobFileCache>,
    /// Answers attempts started early that ask for the rest of their inputs.
    pub inputs_source: Arc<dyn InputsSource>,
    /// The worker's certificate and trust, for the tasks that serve.
    pub tls: crate::serving::WorkerTls,
}

/// An attempt ready to run: its executor, its context, and how to run it.
pub(crate) struct PreparedAttempt {
    /// Runs the attempt's kind.
    pub executor: Arc<dyn Executor>,
    /// What the executor is told.
    pub context: AttemptContext,
    /// The registration the attempt was pulled under (see `session.rs`).
    pub generation: u64,
    /// Whether to create the attempt directory first.
    pub needs_scratch_dir: bool,
    /// The W3C `traceparent` of the job's submission: the attempt span's parent.
    pub trace_parent: Option<String>,
}

impl PreparedAttempt {
    /// Builds the attempt of `assignment`, to be run by `executor`.
    pub(crate) fn new(
        settings: &AttemptSettings,
        generation: u64,
        assignment: Assignment,
        executor: Arc<dyn Executor>,
    ) -> Self {
        let Assignment {
            task,
            attempt,
            attempt_number,
            payload,
            timeout_ms,
            inputs,
            inputs_complete,
            inputs_version,
            trace_parent,
            ..
        } = assignment;
        let inputs_watch = (!inputs_complete).then(|| {
            InputsWatch::new(Arc::clone(&settings.inputs_source), attempt, inputs_version)
        });
        let needs_scratch_dir = executor.needs_scratch_dir(&payload);
        let context = AttemptContext {
            task,
            attempt_id: attempt,
            attempt_number,
            payload,
            timeout: timeout_ms.map(Duration::from_millis),
            correlation_id: essaim_proto::correlation_id(task.job.0, task.index, attempt.0),
            scratch_dir: attempt_dir(&settings.scratch_root, task, attempt),
            file_base_url: attempt_file_base_url(&settings.file_server_url, task, attempt),
            worker_name: settings.worker_name.clone(),
            inputs,
            file_credential: settings.file_credentials.for_job(task.job.0),
            inputs_watch,
            job_files: Arc::clone(&settings.job_files),
            tls: settings.tls.clone(),
        };
        Self {
            executor,
            context,
            generation,
            needs_scratch_dir,
            trace_parent,
        }
    }

    /// Returns true when the dispatcher may run this attempt in place.
    pub(crate) fn runs_instantly(&self) -> bool {
        self.executor.runs_instantly(&self.context.payload)
    }
}

/// A finished attempt, on its way to the reporter.
#[derive(Debug)]
pub(crate) struct FinishedAttempt {
    /// The registration the attempt was pulled under.
    pub generation: u64,
    /// The attempt.
    pub attempt_id: AttemptId,
    /// Its output or its failure.
    pub outcome: Result<TaskOutput, TaskFailure>,
    /// Its run time on this worker.
    pub duration: Duration,
}

/// Runs one attempt to its outcome; see the module doc for what happens around the
/// executor. `cancel` is the coordinator's (or the drain's) cancellation; what the
/// attempt returns after it fired is discarded by the dispatcher.
pub(crate) async fn run_attempt(
    prepared: PreparedAttempt,
    cancel: CancellationToken,
) -> FinishedAttempt {
    let context = &prepared.context;
    let span = tracing::info_span!(
        "attempt",
        job = context.task.job.0,
        task = context.task.index,
        attempt = %context.attempt_id,
        correlation_id = %context.correlation_id,
    );
    // The attempt continues the trace its job was submitted in, across the queue.
    essaim_telemetry::trace_context::set_remote_parent(&span, prepared.trace_parent.as_deref());
    run_attempt_in_span(prepared, cancel).instrument(span).await
}

async fn run_attempt_in_span(
    prepared: PreparedAttempt,
    cancel: CancellationToken,
) -> FinishedAttempt {
    let PreparedAttempt {
        executor,
        context,
        generation,
        needs_scratch_dir,
        trace_parent: _,
    } = prepared;
    let attempt_id = context.attempt_id;
    let scratch_dir = context.scratch_dir.clone();
    let timeout = context.timeout;
    let started = Instant::now();

    if needs_scratch_dir && let Err(error) = tokio::fs::create_dir_all(&scratch_dir).await {
        let message = format!(
            "failed to create the attempt directory `{}`: {error}",
            scratch_dir.display()
        );
        return FinishedAttempt {
            generation,
            attempt_id,
            outcome: Err(TaskFailure::retryable(message)),
            duration: started.elapsed(),
        };
    }

    // A child token, so that a timeout stops this attempt without looking like a
    // cancellation by the coordinator (whose results are discarded, not reported).
    let attempt_cancel = cancel.child_token();
    let mut execution = executor.execute(context, attempt_cancel.clone());
    let outcome = match timeout {
        None => execution.await,
        Some(limit) => match tokio::time::timeout(limit, &mut execution).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => {
                attempt_cancel.cancel();
                // Let the executor clean up (kill its program) before the slot is reused.
                let stopped = tokio::time::timeout(STOP_AFTER_TIMEOUT_GRACE, execution).await;
                if stopped.is_err() {
                    tracing::warn!(
                        grace_ms = STOP_AFTER_TIMEOUT_GRACE.as_millis() as u64,
                        "executor did not stop after the attempt timed out"
                    );
                }
                Err(TaskFailure::retryable(format!(
                    "timed out after {} ms",
                    limit.as_millis()
                )))
            }
        },
    };
    let duration = started.elapsed();

    let result_is_a_file = outcome.as_ref().is_ok_and(|output| output.file.is_some());
    if needs_scratch_dir && !result_is_a_file {
        remove_attempt_dir(&scratch_dir).await;
    }
    match &outcome {
        Ok(_) => tracing::debug!(
            duration_ms = duration.as_millis() as u64,
            "attempt succeeded"
        ),
        Err(failure) => tracing::debug!(
            duration_ms = duration.as_millis() as u64,
            retryable = failure.retryable,
            reason = %failure.message,
            "attempt failed"
        ),
    }
    FinishedAttempt {
        generation,
        attempt_id,
        outcome,
        duration,
    }
}

/// Removes an attempt directory nobody will fetch a file from.
async fn remove_attempt_dir(dir: &std::path::Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(
            %error,
            dir = %dir.display(),
            "failed to remove the attempt directory"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::{EchoExecutor, NoopExecutor, SleepExecutor};

    fn settings(scratch_root: &std::path::Path) -> AttemptSettings {
        AttemptSettings {
            scratch_root: scratch_root.to_path_buf(),
            file_server_url: "http://127.0.0.1:9".into(),
            worker_name: "tester".into(),
            file_credentials: Default::default(),
            job_files: Arc::new(JobFileCache::new(
                scratch_root,
                &[],
                None,
                &Default::default(),
            )),
            inputs_source: Arc::new(crate::inputs_watch::NoCoordinator),
            tls: Default::default(),
        }
    }

    fn assignment(kind: &str, payload: &[u8], timeout_ms: Option<u64>) -> Assignment {
        Assignment {
            task: essaim_core::TaskId::new(essaim_core::JobId(5), 6),
            attempt: AttemptId(0x7f),
            attempt_number: 1,
            kind: kind.into(),
            payload: payload.to_vec(),
            timeout_ms,
            speculative: false,
            inputs: Vec::new(),
            inputs_complete: true,
            inputs_version: 0,
            trace_parent: None,
        }
    }

    #[tokio::test]
    async fn noop_runs_instantly_without_an_attempt_directory() {
        let scratch = tempfile::tempdir().unwrap();
        let prepared = PreparedAttempt::new(
            &settings(scratch.path()),
            3,
            assignment("noop", b"", None),
            Arc::new(NoopExecutor),
        );
        assert!(prepared.runs_instantly());
        assert!(!prepared.needs_scratch_dir);
        assert_eq!(prepared.context.correlation_id, "job-5/task-6/attempt-7f");
        let finished = run_attempt(prepared, CancellationToken::new()).await;
        assert_eq!(finished.generation, 3);
        assert_eq!(finished.outcome.unwrap(), TaskOutput::default());
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn timeout_is_a_retryable_failure_naming_the_limit() {
        let scratch = tempfile::tempdir().unwrap();
        let prepared = PreparedAttempt::new(
            &settings(scratch.path()),
            1,
            assignment("sleep", b"60000", Some(30)),
            Arc::new(SleepExecutor),
        );
        let finished = run_attempt(prepared, CancellationToken::new()).await;
        let failure = finished.outcome.unwrap_err();
        assert!(failure.retryable);
        assert_eq!(failure.message, "timed out after 30 ms");
    }

    #[tokio::test]
    async fn attempt_directory_is_kept_only_when_it_holds_the_result() {
        let scratch = tempfile::tempdir().unwrap();
        let large = vec![b'y'; 100_000];
        let prepared = PreparedAttempt::new(
            &settings(scratch.path()),
            1,
            assignment("echo", &large, None),
            Arc::new(EchoExecutor),
        );
        let dir = prepared.context.scratch_dir.clone();
        assert_eq!(dir, scratch.path().join("5/6/7f"));
        let finished = run_attempt(prepared, CancellationToken::new()).await;
        let file = finished.outcome.unwrap().file.unwrap();
        assert_eq!(file.url, "http://127.0.0.1:9/files/5/6/7f/result");
        assert_eq!(
            std::fs::metadata(dir.join("result")).unwrap().len(),
            100_000
        );
    }
}
