//! The worker side of MapReduce: one [`Executor`] type, registered under the three task
//! kinds, that decodes a task's payload, finds its job, and runs the map, reduce or
//! commit task.
//!
//! CPU work (reading, mapping, sorting, merging, reducing) runs on the blocking pool
//! (`spawn_blocking`), which polls the cancellation token between records; only the
//! shuffle's fetches are async. Every error becomes a [`TaskFailure`] in one place
//! ([`TaskError::into_failure`]): a payload this worker cannot use, or a job it does not
//! know, is permanent; a lost upstream output lists the upstream tasks to re-run.

use std::path::Path;
use std::sync::Arc;

use essaim_core::{FileRef, TaskFailure, TaskOutput};
use essaim_worker::{AttemptContext, ExecutionFuture, Executor, ExecutorRegistry};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::api::JobDefinition;
use crate::commit::run_commit;
use crate::config::JobConfig;
use crate::error::{TaskError, TaskResult};
use crate::map_task::run_map;
use crate::payload::{
    COMMIT_KIND, CommitTaskPayload, MAP_KIND, MapTaskPayload, REDUCE_KIND, ReduceTaskPayload,
};
use crate::reduce_task::reduce_segments;
use crate::registry::JobRegistry;
use crate::shuffle::{RoundsTarget, ShuffleSettings, fetch_partition, fetch_partition_in_rounds};
use crate::skip::map::run_map_skipping;
use crate::skip::record::{map_task_file_name, reduce_task_file_name};
use crate::skip::reduce::{ReduceAttempt, run_reduce_skipping};
use crate::skip::store::publish_task_records;
use crate::sort::MAP_OUTPUT_FILE;
use crate::task_cache::TaskCache;

/// Directory of an attempt where the shuffle puts fetched segments.
const SHUFFLE_DIR: &str = "shuffle";

/// Directory of an attempt where the job's files appear under their names, and where
/// a job that runs programs runs them. A directory of its own: the attempt directory's
/// files are served to other workers by name, the job's files are not theirs to fetch.
const JOB_FILES_DIR: &str = "work";

/// The three kinds of MapReduce tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// [`MAP_KIND`].
    Map,
    /// [`REDUCE_KIND`].
    Reduce,
    /// [`COMMIT_KIND`].
    Commit,
}

impl TaskKind {
    /// Returns the task kind's name, as registered with the worker.
    pub fn name(self) -> &'static str {
        match self {
            Self::Map => MAP_KIND,
            Self::Reduce => REDUCE_KIND,
            Self::Commit => COMMIT_KIND,
        }
    }
}

/// Runs MapReduce tasks of one kind for the jobs of a [`JobRegistry`].
#[derive(Debug, Clone)]
pub struct MapReduceExecutor {
    kind: TaskKind,
    jobs: Arc<JobRegistry>,
    shuffle: ShuffleSettings,
    task_cache: Option<Arc<TaskCache>>,
}

impl MapReduceExecutor {
    /// Returns an executor of `kind` tasks for `jobs`.
    pub fn new(kind: TaskKind, jobs: Arc<JobRegistry>) -> Self {
        Self {
            kind,
            jobs,
            shuffle: ShuffleSettings::default(),
            task_cache: None,
        }
    }

    /// Reuses and stores map outputs in `cache` (incremental re-runs, see
    /// [`crate::task_cache`]).
    pub fn with_task_cache(mut self, cache: Option<Arc<TaskCache>>) -> Self {
        self.task_cache = cache;
        self
    }

    /// Replaces the shuffle's settings (tests use short timeouts).
    pub fn with_shuffle_settings(mut self, shuffle: ShuffleSettings) -> Self {
        self.shuffle = shuffle;
        self
    }
}

/// Registers one [`MapReduceExecutor`] per MapReduce kind in `registry`.
pub fn register_mapreduce_executors(registry: &mut ExecutorRegistry, jobs: Arc<JobRegistry>) {
    register_mapreduce_executors_with(registry, jobs, ShuffleSettings::default());
}

/// Registers one [`MapReduceExecutor`] per MapReduce kind in `registry`, whose shuffles
/// fetch with `shuffle` (a TLS worker's trust roots, say).
pub fn register_mapreduce_executors_with(
    registry: &mut ExecutorRegistry,
    jobs: Arc<JobRegistry>,
    shuffle: ShuffleSettings,
) {
    register_mapreduce_executors_caching(registry, jobs, shuffle, None);
}

/// As [`register_mapreduce_executors_with`], with map tasks that reuse and store their
/// outputs in `task_cache` when there is one.
pub fn register_mapreduce_executors_caching(
    registry: &mut ExecutorRegistry,
    jobs: Arc<JobRegistry>,
    shuffle: ShuffleSettings,
    task_cache: Option<Arc<TaskCache>>,
) {
    for kind in [TaskKind::Map, TaskKind::Reduce, TaskKind::Commit] {
        let executor = MapReduceExecutor::new(kind, Arc::clone(&jobs))
            .with_shuffle_settings(shuffle.clone())
            .with_task_cache(task_cache.clone());
        registry.register(kind.name(), Arc::new(executor));
    }
}

impl Executor for MapReduceExecutor {
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture {
        let executor = self.clone();
        Box::pin(async move {
            let outcome = match executor.kind {
                TaskKind::Map => executor.execute_map(&attempt, cancel.clone()).await,
                TaskKind::Reduce => executor.execute_reduce(&attempt, cancel.clone()).await,
                TaskKind::Commit => executor.execute_commit(&attempt).await,
            };
            outcome.map_err(|error| {
                if !matches!(error, TaskError::Cancelled) {
                    tracing::debug!(kind = executor.kind.name(), %error, "mapreduce task failed");
                }
                failure(error)
            })
        })
    }

    fn needs_scratch_dir(&self, _payload: &[u8]) -> bool {
        self.kind != TaskKind::Commit
    }
}

/// Runs a map task, or takes its output from `cache` when one with its key is there;
/// a computed output is stored there.
fn run_map_cached(
    cache: Option<&TaskCache>,
    job: &dyn JobDefinition,
    payload: &MapTaskPayload,
    scratch_dir: &Path,
    cancel: CancellationToken,
) -> TaskResult<crate::sort::MapOutputFile> {
    let key = cache.and_then(|cache| cache.key_for(job, payload).map(|key| (cache, key)));
    if let Some((cache, key)) = &key
        && let Some(output) = cache.install(key, scratch_dir)
    {
        tracing::debug!(%key, "map output reused");
        return Ok(output);
    }
    let output = run_map(job, payload, scratch_dir, cancel)?;
    if let Some((cache, key)) = key {
        cache.store(&key, &output);
    }
    Ok(output)
}

fn failure(error: TaskError) -> TaskFailure {
    error.into_failure()
}

impl MapReduceExecutor {
    async fn execute_map(
        &self,
        attempt: &AttemptContext,
        cancel: CancellationToken,
    ) -> TaskResult<TaskOutput> {
        let mut payload: MapTaskPayload = decode_payload(&attempt.payload, MAP_KIND)?;
        let job = self.job_for(&payload.config)?;
        stage_job_files(job.as_ref(), &mut payload.config, attempt, &cancel).await?;
        let ships_files = !payload.config.files.is_empty();
        let scratch_dir = attempt.scratch_dir.clone();
        let (task_index, attempt_id) = (attempt.task.index, attempt.attempt_id);
        let attempt_number = attempt.attempt_number;
        let task_cache = self.task_cache.clone();
        let mapped = run_blocking(move || {
            create_dir(&scratch_dir)?;
            if payload.config.skip.is_off() {
                return run_map_cached(
                    task_cache.as_deref(),
                    job.as_ref(),
                    &payload,
                    &scratch_dir,
                    cancel,
                );
            }
            let outcome = run_map_skipping(
                job.as_ref(),
                &payload,
                &scratch_dir,
                task_index,
                attempt_number,
                cancel,
            )?;
            // A first attempt that skipped nothing has nothing to replace.
            if !outcome.skipped.is_empty() || attempt_number > 1 {
                publish_task_records(
                    &payload.config.output(),
                    &map_task_file_name(task_index),
                    attempt_id,
                    &scratch_dir,
                    &outcome.skipped,
                )?;
            }
            Ok(outcome.output)
        })
        .await;
        if ships_files {
            remove_job_files_dir(attempt).await;
        }
        let output = mapped?;
        Ok(TaskOutput {
            inline: Vec::new(),
            file: Some(FileRef {
                url: attempt.file_url(MAP_OUTPUT_FILE),
                size_bytes: output.size_bytes,
            }),
            counters: output.counters.into_map(),
        })
    }

    async fn execute_reduce(
        &self,
        attempt: &AttemptContext,
        cancel: CancellationToken,
    ) -> TaskResult<TaskOutput> {
        let mut payload: ReduceTaskPayload = decode_payload(&attempt.payload, REDUCE_KIND)?;
        let job = self.job_for(&payload.config)?;
        if payload.step >= payload.config.steps || payload.partition >= payload.config.reducers {
            return Err(TaskError::Payload(format!(
                "step {} partition {} of a job of {} steps and {} reducers",
                payload.step, payload.partition, payload.config.steps, payload.config.reducers
            )));
        }
        stage_job_files(job.as_ref(), &mut payload.config, attempt, &cancel).await?;
        let ships_files = !payload.config.files.is_empty();
        let shuffle_dir = attempt.scratch_dir.join(SHUFFLE_DIR);
        tokio::fs::create_dir_all(&shuffle_dir)
            .await
            .map_err(|source| TaskError::io("create directory", &shuffle_dir, source))?;
        let fetch_started = std::time::Instant::now();
        let fetched = match &attempt.inputs_watch {
            None => {
                fetch_partition(
                    &attempt.inputs,
                    payload.partition,
                    payload.config.reducers,
                    &shuffle_dir,
                    attempt.file_credential.as_ref(),
                    &self.shuffle,
                    &cancel,
                )
                .await
            }
            // Started early (slow start): the rest of the map outputs come in rounds.
            Some(watch) => {
                let target = RoundsTarget {
                    partition: payload.partition,
                    partitions: payload.config.reducers,
                    dest_dir: &shuffle_dir,
                    credential: attempt.file_credential.as_ref(),
                    settings: &self.shuffle,
                };
                fetch_partition_in_rounds(&attempt.inputs, watch, target, &cancel).await
            }
        };
        let reduced = match fetched {
            Ok(shuffle) => {
                // Where a reducer's time goes, per upstream (see BENCHMARKS.md).
                tracing::debug!(
                    upstreams = attempt.inputs.len(),
                    segments = shuffle.segments.len(),
                    fetch_ms = fetch_started.elapsed().as_secs_f64() * 1e3,
                    "shuffle fetched"
                );
                let scratch_dir = attempt.scratch_dir.clone();
                let (attempt_id, attempt_number) = (attempt.attempt_id, attempt.attempt_number);
                let segments = shuffle.segments;
                let mut reduced = run_blocking(move || {
                    if payload.config.skip.is_off() {
                        let job = job.as_ref();
                        return reduce_segments(
                            job,
                            &payload,
                            segments,
                            &scratch_dir,
                            attempt_id,
                            cancel,
                        );
                    }
                    let reduce = ReduceAttempt {
                        job: job.as_ref(),
                        payload: &payload,
                        scratch_dir: &scratch_dir,
                        attempt_id,
                        attempt_number,
                    };
                    let skipping = run_reduce_skipping(&reduce, segments, cancel)?;
                    // A first attempt that skipped nothing has nothing to replace; only
                    // the last step skips groups (an earlier one's partitions are not
                    // the output's).
                    let is_last_step = payload.step + 1 >= payload.config.steps;
                    if is_last_step && (!skipping.skipped.is_empty() || attempt_number > 1) {
                        publish_task_records(
                            &payload.config.output(),
                            &reduce_task_file_name(payload.partition),
                            attempt_id,
                            &scratch_dir,
                            &skipping.skipped,
                        )?;
                    }
                    Ok(skipping.outcome)
                })
                .await;
                if let Ok(outcome) = &mut reduced {
                    outcome.counters.merge(&shuffle.counters);
                }
                tracing::debug!(
                    total_ms = fetch_started.elapsed().as_secs_f64() * 1e3,
                    "fetched segments reduced"
                );
                reduced
            }
            Err(error) => Err(error),
        };
        // The fetched segments are read; only a chained step's map output stays.
        if let Err(error) = tokio::fs::remove_dir_all(&shuffle_dir).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!(%error, dir = %shuffle_dir.display(), "failed to remove fetched segments");
        }
        if ships_files {
            remove_job_files_dir(attempt).await;
        }
        let outcome = reduced?;
        let inline = outcome
            .part
            .as_ref()
            .map(|part| part.display().to_string().into_bytes())
            .unwrap_or_default();
        let file = outcome.map_output.as_ref().map(|output| FileRef {
            url: attempt.file_url(MAP_OUTPUT_FILE),
            size_bytes: output.size_bytes,
        });
        Ok(TaskOutput {
            inline,
            file,
            counters: outcome.counters.into_map(),
        })
    }

    async fn execute_commit(&self, attempt: &AttemptContext) -> TaskResult<TaskOutput> {
        let payload: CommitTaskPayload = decode_payload(&attempt.payload, COMMIT_KIND)?;
        self.job_for(&payload.config)?;
        let counters = run_blocking(move || run_commit(&payload)).await?;
        Ok(TaskOutput {
            inline: Vec::new(),
            file: None,
            counters: counters.into_map(),
        })
    }

    /// Checks the payload's configuration (an out-of-range value is refused, never
    /// replaced by a default: see [`crate::config`]), then finds its job and checks the
    /// job's parameters.
    fn job_for(&self, config: &JobConfig) -> TaskResult<Arc<dyn JobDefinition>> {
        config
            .validate()
            .map_err(|error| TaskError::Payload(error.to_string()))?;
        let Some(job) = self.jobs.get(&config.job) else {
            return Err(TaskError::Payload(format!(
                "unknown job `{}`; this worker knows: {}",
                config.job,
                self.jobs.names().join(", ")
            )));
        };
        job.validate(&config.params)?;
        Ok(job)
    }
}

/// Stages the job's files (if it has any) in the attempt's [`JOB_FILES_DIR`], fetching
/// those this worker has not cached, and tells the job's parameters where they are.
async fn stage_job_files(
    job: &dyn JobDefinition,
    config: &mut JobConfig,
    attempt: &AttemptContext,
    cancel: &CancellationToken,
) -> TaskResult<()> {
    if config.files.is_empty() {
        return Ok(());
    }
    let dir = attempt.scratch_dir.join(JOB_FILES_DIR);
    // A download may be large: a revoked attempt stops waiting for it.
    tokio::select! {
        staged = attempt.job_files.stage(&config.files, &dir) => staged?,
        () = cancel.cancelled() => return Err(TaskError::Cancelled),
    }
    job.use_job_files_dir(&mut config.params, &dir);
    Ok(())
}

/// Removes the attempt's [`JOB_FILES_DIR`] once its commands have exited: a map
/// task's directory stays while its output is served, its links and the commands'
/// leftovers need not.
async fn remove_job_files_dir(attempt: &AttemptContext) {
    let dir = attempt.scratch_dir.join(JOB_FILES_DIR);
    if let Err(error) = tokio::fs::remove_dir_all(&dir).await
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::debug!(%error, dir = %dir.display(), "failed to remove the job files' directory");
    }
}

/// Decodes a JSON payload; a malformed one is a permanent failure.
fn decode_payload<T: DeserializeOwned>(payload: &[u8], kind: &str) -> TaskResult<T> {
    serde_json::from_slice(payload)
        .map_err(|error| TaskError::Payload(format!("malformed `{kind}` payload: {error}")))
}

fn create_dir(dir: &Path) -> TaskResult<()> {
    std::fs::create_dir_all(dir).map_err(|source| TaskError::io("create directory", dir, source))
}

/// Runs CPU-bound work on the blocking pool.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> TaskResult<T> + Send + 'static,
) -> TaskResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| TaskError::Internal(format!("the task's thread failed: {error}")))?
}

#[cfg(test)]
mod tests;
