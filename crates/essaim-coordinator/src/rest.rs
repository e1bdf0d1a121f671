//! The REST/JSON API: the gRPC read calls (and the operator's few writes: cancel,
//! requeue, purge) for browsers, scripts and `curl`, described by an OpenAPI document
//! at [`OPENAPI_PATH`].
//!
//! Why a second API: gRPC needs generated clients and HTTP/2, and a dashboard or a shell
//! script has neither. The REST side reads the same actor through the same queries, so
//! the two cannot disagree; it also serves what only the dashboard and the job report
//! need (the observatory's history and queue statistics).
//!
//! The cluster token, when set, is required as `Authorization: Bearer <token>` on every
//! `/api/v1` path except the OpenAPI document. Errors are `{"error": "…"}` with the
//! status that says what kind of mistake it was.

use crate::actor::{Command, DeadLetterTarget, QueryView};
use crate::history::{Bucket, DURATION_BOUNDS_MS, OTHER_WORKERS};
use crate::observatory::Observatory;
use crate::observatory::task_state_name;
use crate::queue::QueueStats;
use crate::service::constant_time_eq;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use essaim_core::{Job, JobError, JobId, Scheduler, TaskId, TaskState};
use essaim_store::ResultReader;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Most results one call returns.
const MAX_RESULTS_PER_CALL: u32 = 10_000;
/// Longest-running attempts listed on a job's page.
const LONGEST_RUNNING_LISTED: usize = 10;

/// What the REST handlers need.
#[derive(Clone)]
pub struct RestState {
    /// The actor's command channel.
    pub commands_tx: mpsc::Sender<Command>,
    /// Reads committed results.
    pub results: ResultReader,
    /// The cluster token; `None` accepts anyone.
    pub token: Option<String>,
}

/// An error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// What went wrong and what to do about it.
    pub error: String,
}

struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, Failure>;

fn unavailable() -> Failure {
    Failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "the coordinator is shutting down".into(),
    )
}

fn job_not_found(job: JobId) -> Failure {
    Failure(StatusCode::NOT_FOUND, JobError::NotFound(job).to_string())
}

impl RestState {
    async fn ask<T>(
        &self,
        build: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Failure> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands_tx
            .send(build(reply_tx))
            .await
            .map_err(|_| unavailable())?;
        reply_rx.await.map_err(|_| unavailable())
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(QueryView<'_>) -> T + Send + 'static,
    ) -> Result<T, Failure> {
        self.ask(|reply| {
            Command::Query(Box::new(move |view| {
                let _ = reply.send(read(view));
            }))
        })
        .await
    }
}

// ------------------------------------------------------------------ read models

/// Task counts of one stage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StageView {
    /// Task kind of the stage's first task (`mapreduce.map`, `command`…), to name it.
    pub kind: String,
    /// Tasks of the stage.
    pub total: u32,
    /// Committed.
    pub succeeded: u32,
    /// With an attempt running.
    pub running: u32,
    /// Dead-lettered, purged or skipped.
    pub failed: u32,
}

/// Task counts by state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskCountsView {
    /// Waiting for a first attempt.
    pub pending: u32,
    /// With an attempt running.
    pub running: u32,
    /// Waiting for a retry.
    pub retrying: u32,
    /// Committed.
    pub succeeded: u32,
    /// In the dead-letter queue.
    pub dead_lettered: u32,
    /// Removed from the dead-letter queue.
    pub purged: u32,
    /// Never run (cancelled job or deadline passed).
    pub skipped: u32,
}

/// A job as listed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// Why it failed or was cancelled; empty otherwise.
    pub reason: String,
    /// Its priority (higher first).
    pub priority: i32,
    /// Number of tasks.
    pub total: u32,
    /// Tasks by state.
    pub tasks: TaskCountsView,
    /// Task counts per stage, in stage order.
    pub stages: Vec<StageView>,
    /// Submission time, milliseconds since the Unix epoch.
    pub submitted_unix_ms: u64,
    /// End time, if it ended.
    pub finished_unix_ms: Option<u64>,
    /// Attempts started.
    pub attempts_started: u64,
    /// Attempts failed.
    pub attempts_failed: u64,
    /// Results rejected (late or from a superseded attempt).
    pub results_rejected: u64,
    /// Speculative copies started.
    pub speculative_attempts: u64,
    /// Committed outputs lost and recomputed.
    pub outputs_lost: u64,
}

/// Queue statistics; see the coordinator's `queue` module for the formulas.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Tasks submitted per second (1 min moving average).
    pub arrival_rate: f64,
    /// Tasks committed per second (1 min moving average).
    pub completion_rate: f64,
    /// Mean duration of committed attempts; null until one committed.
    pub mean_service_seconds: Option<f64>,
    /// Pending, retrying and running tasks.
    pub backlog: u64,
    /// Share of the slots running an attempt (0..1).
    pub utilisation: f64,
    /// Backlog growth in tasks/s at current rates (positive: saturating); null when unknown.
    pub backlog_growth_rate: Option<f64>,
    /// True when the backlog grows at current rates: it never drains.
    pub saturated: bool,
    /// Predicted seconds to drain the backlog; null when unknown or never.
    pub drain_seconds: Option<f64>,
    /// Slots needed to absorb arrivals and drain the backlog within the target time.
    pub slots_needed: f64,
    /// Workers needed for that at the target utilisation.
    pub recommended_workers: u64,
}

impl From<&QueueStats> for QueueView {
    fn from(stats: &QueueStats) -> Self {
        Self {
            arrival_rate: stats.arrival_rate,
            completion_rate: stats.completion_rate,
            mean_service_seconds: stats.mean_service_s,
            backlog: stats.backlog,
            utilisation: stats.utilisation,
            backlog_growth_rate: stats.backlog_growth,
            saturated: stats.backlog_growth.is_some_and(|g| g >= 0.0) && stats.backlog > 0,
            drain_seconds: stats.drain_seconds.filter(|s| s.is_finite()),
            slots_needed: stats.slots_needed,
            recommended_workers: stats.recommended_workers,
        }
    }
}

/// Counts of one time bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BucketView {
    /// Start of the bucket, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Tasks submitted.
    pub submitted: u64,
    /// Results committed.
    pub committed: u64,
    /// Attempts failed (errors, lost leases, timeouts).
    pub failed: u64,
    /// Tasks dead-lettered.
    pub dead_lettered: u64,
    /// Committed outputs lost and recomputed.
    pub outputs_lost: u64,
    /// Sum of committed attempts' durations, milliseconds.
    pub busy_ms: u64,
}

fn bucket_view(start_unix_ms: u64, bucket: &Bucket) -> BucketView {
    BucketView {
        start_unix_ms,
        submitted: bucket.submitted,
        committed: bucket.committed,
        failed: bucket.failed,
        dead_lettered: bucket.dead_lettered,
        outputs_lost: bucket.outputs_lost,
        busy_ms: bucket.busy_ms,
    }
}

/// What one worker did for a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerShareView {
    /// The worker's id (hex), or `other` for workers past the per-job limit.
    pub worker_id: String,
    /// Its name.
    pub name: String,
    /// Results it committed.
    pub committed: u64,
    /// Its attempts that failed.
    pub failed: u64,
    /// Sum of the durations of the attempts it committed, milliseconds.
    pub busy_ms: u64,
}

/// Durations of a job's committed attempts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DurationsView {
    /// Upper bounds of the buckets, milliseconds; the last bucket (one more count than
    /// bounds) holds everything longer.
    pub bounds_ms: Vec<u64>,
    /// Attempts per bucket.
    pub counts: Vec<u64>,
    /// Attempts recorded.
    pub count: u64,
    /// Mean, milliseconds.
    pub mean_ms: Option<f64>,
    /// Shortest, milliseconds.
    pub min_ms: Option<u64>,
    /// Upper bound of the median's bucket, milliseconds.
    pub p50_ms: Option<u64>,
    /// Upper bound of the 95th percentile's bucket, milliseconds.
    pub p95_ms: Option<u64>,
    /// Upper bound of the 99th percentile's bucket, milliseconds.
    pub p99_ms: Option<u64>,
    /// Longest, milliseconds.
    pub max_ms: Option<u64>,
}

/// A slow task: committed (from the history) or still running.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlowTaskView {
    /// The task's index.
    pub task_index: u32,
    /// How long it took, or has been running, milliseconds.
    pub duration_ms: u64,
    /// The worker's name.
    pub worker: String,
    /// True when still running.
    pub running: bool,
}

/// A failed attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailureView {
    /// The task's index.
    pub task_index: u32,
    /// The attempt (hex).
    pub attempt_id: String,
    /// The worker's name (or id when it is gone).
    pub worker: String,
    /// When, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What happened.
    pub message: String,
    /// The command's exit code, if it was a command that exited.
    pub exit_code: Option<i32>,
    /// The end of its standard error.
    pub stderr_tail: String,
    /// Whether it may be retried.
    pub retryable: bool,
}

/// A job's past: timeline, worker shares, durations, slowest tasks, recent failures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobHistoryView {
    /// Width of the timeline's buckets, milliseconds.
    pub bucket_ms: u64,
    /// Counts over time, oldest first.
    pub timeline: Vec<BucketView>,
    /// What each worker did.
    pub workers: Vec<WorkerShareView>,
    /// Durations of committed attempts.
    pub durations: DurationsView,
    /// The slowest tasks: running ones first, then the slowest committed.
    pub slowest: Vec<SlowTaskView>,
    /// The most recent failures, newest first.
    pub recent_failures: Vec<FailureView>,
}

/// A job with its history and queue statistics.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    /// The job as listed.
    pub job: JobSummary,
    /// Counters reported by committed tasks, summed.
    pub counters: BTreeMap<String, u64>,
    /// Queue statistics, while it runs.
    pub queue: Option<QueueView>,
    /// What happened so far.
    pub history: JobHistoryView,
}

/// A live worker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Its id (hex).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Slots it offers.
    pub slots: u32,
    /// Slots it reports busy.
    pub busy_slots: u32,
    /// Attempts leased to it.
    pub held_attempts: u32,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_age_ms: u64,
    /// True while it drains.
    pub draining: bool,
    /// Task kinds it runs.
    pub kinds: Vec<String>,
    /// Its file server, if any.
    pub file_server_url: String,
}

/// One second of the cluster's activity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ThroughputPoint {
    /// The second, Unix time.
    pub unix_second: u64,
    /// Tasks submitted.
    pub submitted: u64,
    /// Results committed.
    pub committed: u64,
    /// Attempts failed.
    pub failed: u64,
}

/// The cluster at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Overview {
    /// The coordinator's clock, milliseconds since the Unix epoch.
    pub now_unix_ms: u64,
    /// Live workers.
    pub workers: u32,
    /// Their slots.
    pub slots: u64,
    /// Their busy slots.
    pub busy_slots: u64,
    /// Jobs running.
    pub jobs_running: u32,
    /// Jobs held (running, or finished within the retention).
    pub jobs_total: u32,
    /// Dead letters.
    pub dead_letters: u64,
    /// Tasks pending or retrying, over running jobs.
    pub tasks_waiting: u64,
    /// Tasks running.
    pub tasks_running: u64,
    /// Results committed in the last minute, per second.
    pub committed_per_second_1m: f64,
    /// Cluster-wide queue statistics (null before the first refresh).
    pub queue: Option<QueueView>,
    /// The last 15 minutes, one point a second, oldest first.
    pub throughput: Vec<ThroughputPoint>,
}

/// A dead letter with its error history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    /// The job.
    pub job_id: u64,
    /// The job's name.
    pub job_name: String,
    /// The task's index.
    pub task_index: u32,
    /// Its kind.
    pub kind: String,
    /// Its payload as text when it is UTF-8 (null otherwise).
    pub payload_text: Option<String>,
    /// Payload size, bytes.
    pub payload_bytes: u64,
    /// Its failures, oldest first.
    pub errors: Vec<FailureView>,
}

/// A committed result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResultView {
    /// The task's index.
    pub task_index: u32,
    /// The committed attempt (hex).
    pub attempt_id: String,
    /// The worker that ran it (hex).
    pub worker_id: String,
    /// How long it took, milliseconds.
    pub duration_ms: u64,
    /// The inline output as text when it is UTF-8 (null otherwise).
    pub inline_text: Option<String>,
    /// Size of the inline output, bytes.
    pub inline_bytes: u64,
    /// The output file on its worker's file server, if any.
    pub file_url: Option<String>,
    /// Its size, bytes.
    pub file_bytes: Option<u64>,
    /// The task's counters.
    pub counters: BTreeMap<String, u64>,
}

/// A page of results.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResultsPage {
    /// Results in task order.
    pub results: Vec<ResultView>,
    /// Index to ask from next; equal to the task count when done.
    pub next_task: u32,
}

/// Which dead letters to act on: every one of a job, or some of its tasks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterSelection {
    /// The job.
    #[schema(minimum = 1, maximum = 9007199254740991_u64)]
    #[serde(deserialize_with = "json_integer::u64")]
    pub job_id: u64,
    /// Only these task indexes of the job (every dead letter of the job when absent).
    #[serde(default, deserialize_with = "json_integer::optional_u32s")]
    pub task_indexes: Option<Vec<u32>>,
}

/// JSON integers as JSON Schema defines them: `3` and `3.0` are the same integer (some
/// clients, JavaScript's among them, cannot tell them apart), `3.5` is not one.
mod json_integer {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    fn integral(number: &serde_json::Number) -> Option<u64> {
        number.as_u64().or_else(|| {
            let float = number.as_f64()?;
            // Exact up to 2^53; past it a float may name a neighbour instead.
            (float.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&float))
                .then_some(float as u64)
        })
    }

    pub fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        integral(&number)
            .ok_or_else(|| D::Error::custom(format!("{number} is not a non-negative integer")))
    }

    pub fn optional_u32s<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u32>>, D::Error> {
        let Some(numbers) = Option::<Vec<serde_json::Number>>::deserialize(deserializer)? else {
            return Ok(None);
        };
        numbers
            .iter()
            .map(|number| {
                integral(number)
                    .and_then(|value| u32::try_from(value).ok())
                    .ok_or_else(|| D::Error::custom(format!("{number} is not a task index")))
            })
            .collect::<Result<Vec<u32>, D::Error>>()
            .map(Some)
    }
}

/// How many dead letters an action changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterChange {
    /// Dead letters affected.
    pub affected: u32,
}

/// Query of the paged calls (results, tasks).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// First task index (default 0).
    #[param(minimum = 0, maximum = 2147483647)]
    pub from: Option<u32>,
    /// At most this many (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

impl PageQuery {
    fn checked(self) -> Result<(u32, u32), Failure> {
        let from = self.from.unwrap_or(0);
        let limit = self.limit.unwrap_or(1000);
        if from > MAX_TASK_INDEX {
            return Err(bad_request(format!(
                "from must be at most {MAX_TASK_INDEX}"
            )));
        }
        if !(1..=MAX_RESULTS_PER_CALL).contains(&limit) {
            return Err(bad_request(format!(
                "limit must be between 1 and {MAX_RESULTS_PER_CALL}"
            )));
        }
        Ok((from, limit))
    }
}

/// Query of the dead-letter list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// Only this job's.
    #[param(minimum = 1, maximum = 9007199254740991_u64)]
    pub job: Option<u64>,
}

/// Largest job id the API accepts: 2^53 − 1, the largest integer a JavaScript client
/// reads exactly (ids are handed out from 1 upwards, so none is ever larger).
pub const MAX_JOB_ID: u64 = (1 << 53) - 1;
/// Largest task index the API accepts.
const MAX_TASK_INDEX: u32 = i32::MAX as u32;

fn bad_request(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

fn checked_job_id(id: u64) -> Result<JobId, Failure> {
    if (1..=MAX_JOB_ID).contains(&id) {
        Ok(JobId(id))
    } else {
        Err(bad_request(format!(
            "a job id is between 1 and {MAX_JOB_ID}"
        )))
    }
}

/// The job id of the path, checked; a malformed one is a JSON 400.
struct JobPath(JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        let Path(id) = Path::<u64>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: PathRejection| bad_request(rejection.body_text()))?;
        checked_job_id(id).map(JobPath)
    }
}

/// A query string; a malformed one is a JSON 400.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        let Query(query) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: QueryRejection| bad_request(rejection.body_text()))?;
        Ok(ApiQuery(query))
    }
}

/// A JSON body; a malformed one is a JSON 400 (415 without the JSON content type).
struct ApiJson<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Failure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Failure> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection @ JsonRejection::MissingJsonContentType(_)) => Err(Failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                rejection.body_text(),
            )),
            Err(rejection) => Err(bad_request(rejection.body_text())),
        }
    }
}

// ------------------------------------------------------------------ views

fn stage_views(job: &Job) -> Vec<StageView> {
    job.stage_counts()
        .into_iter()
        .zip(job.stage_kinds())
        .map(|(stage, kind)| StageView {
            kind: kind.to_string(),
            total: stage.total,
            succeeded: stage.succeeded,
            running: stage.running,
            failed: stage.failed,
        })
        .collect()
}

fn job_summary(job: &Job) -> JobSummary {
    let counts = job.counts();
    JobSummary {
        id: job.id.0,
        name: job.spec.name.clone(),
        state: job.state.name().to_string(),
        reason: job.state.reason().to_string(),
        priority: job.spec.priority,
        total: job.tasks().len() as u32,
        tasks: TaskCountsView {
            pending: counts.pending,
            running: counts.running,
            retrying: counts.retrying,
            succeeded: counts.succeeded,
            dead_lettered: counts.dead_lettered,
            purged: counts.purged,
            skipped: counts.skipped,
        },
        stages: stage_views(job),
        submitted_unix_ms: job.submitted_at,
        finished_unix_ms: job.finished_at,
        attempts_started: job.counters.attempts_started,
        attempts_failed: job.counters.attempts_failed,
        results_rejected: job.counters.results_rejected,
        speculative_attempts: job.counters.speculative_attempts,
        outputs_lost: job.counters.outputs_lost,
    }
}

fn failure_view(task_index: u32, error: &essaim_core::AttemptError, worker: String) -> FailureView {
    FailureView {
        task_index,
        attempt_id: error.attempt.to_string(),
        worker,
        at_unix_ms: error.at,
        message: error.failure.message.clone(),
        exit_code: error.failure.exit_code,
        stderr_tail: error.failure.stderr_tail.clone(),
        retryable: error.failure.retryable,
    }
}

/// A worker's name (remembered after it left), or its id when it was never seen.
fn worker_label(
    observatory: &Observatory,
    scheduler: &Scheduler,
    worker: essaim_core::WorkerId,
) -> String {
    observatory
        .worker_name(scheduler, worker)
        .unwrap_or_else(|| worker.to_string())
}

fn history_view(
    scheduler: &Scheduler,
    observatory: &Observatory,
    job: &Job,
    now: u64,
) -> JobHistoryView {
    let history = observatory.history().job(job.id);
    // Running attempts of this job, longest first.
    let mut running: Vec<SlowTaskView> = scheduler
        .attempts()
        .filter(|(_, attempt)| attempt.task.job == job.id)
        .map(|(_, attempt)| SlowTaskView {
            task_index: attempt.task.index,
            duration_ms: now.saturating_sub(attempt.started_at),
            worker: worker_label(observatory, scheduler, attempt.worker),
            running: true,
        })
        .collect();
    running.sort_by_key(|slow| std::cmp::Reverse(slow.duration_ms));
    running.truncate(LONGEST_RUNNING_LISTED);
    let Some(history) = history else {
        return JobHistoryView {
            bucket_ms: crate::history::FIRST_BUCKET_MS,
            timeline: Vec::new(),
            workers: Vec::new(),
            durations: durations_view(&crate::history::DurationHistogram::default()),
            slowest: running,
            recent_failures: Vec::new(),
        };
    };
    let timeline = &history.timeline;
    let mut slowest = running;
    slowest.extend(history.slowest.iter().map(|slow| SlowTaskView {
        task_index: slow.task_index,
        duration_ms: slow.duration_ms,
        worker: slow.worker.clone(),
        running: false,
    }));
    JobHistoryView {
        bucket_ms: timeline.bucket_ms,
        timeline: timeline
            .buckets
            .iter()
            .enumerate()
            .map(|(index, bucket)| {
                bucket_view(
                    timeline.origin_ms + index as u64 * timeline.bucket_ms,
                    bucket,
                )
            })
            .collect(),
        workers: history
            .workers
            .iter()
            .map(|(id, share)| WorkerShareView {
                worker_id: if *id == OTHER_WORKERS {
                    "other".into()
                } else {
                    id.to_string()
                },
                name: share.name.clone(),
                committed: share.committed,
                failed: share.failed,
                busy_ms: share.busy_ms,
            })
            .collect(),
        durations: durations_view(&history.durations),
        slowest,
        recent_failures: history
            .recent_failures
            .iter()
            .rev()
            .map(|failure| failure_view(failure.task_index, &failure.error, failure.worker.clone()))
            .collect(),
    }
}

fn durations_view(durations: &crate::history::DurationHistogram) -> DurationsView {
    let any = durations.count > 0;
    DurationsView {
        bounds_ms: DURATION_BOUNDS_MS.to_vec(),
        counts: durations.counts.to_vec(),
        count: durations.count,
        mean_ms: durations.mean_ms(),
        min_ms: any.then_some(durations.min_ms),
        p50_ms: durations.quantile_upper_bound_ms(0.5),
        p95_ms: durations.quantile_upper_bound_ms(0.95),
        p99_ms: durations.quantile_upper_bound_ms(0.99),
        max_ms: any.then_some(durations.max_ms),
    }
}

fn text_of(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

// ------------------------------------------------------------------ handlers

/// The cluster at a glance: workers, slots, jobs, queue statistics and the last 15
/// minutes of throughput.
#[utoipa::path(get, path = "/api/v1/overview", tag = "cluster",
    responses((status = 200, body = Overview), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn overview(State(state): State<RestState>) -> ApiResult<Overview> {
    let overview = state
        .read(|view| {
            let scheduler = view.scheduler;
            let (mut workers, mut slots, mut busy) = (0u32, 0u64, 0u64);
            for (_, worker) in scheduler.workers() {
                workers += 1;
                slots += u64::from(worker.info.slots);
                busy += u64::from(worker.busy_slots);
            }
            let (mut running_jobs, mut waiting, mut running) = (0u32, 0u64, 0u64);
            let mut total = 0u32;
            for job in scheduler.jobs() {
                total += 1;
                if job.state == essaim_core::JobState::Running {
                    running_jobs += 1;
                    let counts = job.counts();
                    waiting += u64::from(counts.pending + counts.retrying);
                    running += u64::from(counts.running);
                }
            }
            let history = view.observatory.history_mut();
            let last_minute = history.cluster_last(view.now, 60);
            let throughput = history
                .cluster_series(view.now)
                .into_iter()
                .map(|(second, bucket)| ThroughputPoint {
                    unix_second: second,
                    submitted: bucket.submitted,
                    committed: bucket.committed,
                    failed: bucket.failed,
                })
                .collect();
            Overview {
                now_unix_ms: view.now,
                workers,
                slots,
                busy_slots: busy,
                jobs_running: running_jobs,
                jobs_total: total,
                dead_letters: scheduler.dead_letter_count(),
                tasks_waiting: waiting,
                tasks_running: running,
                committed_per_second_1m: last_minute.committed as f64 / 60.0,
                queue: view.observatory.cluster_queue().map(QueueView::from),
                throughput,
            }
        })
        .await?;
    Ok(Json(overview))
}

/// Every job the coordinator holds, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, body = [JobSummary]), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn list_jobs(State(state): State<RestState>) -> ApiResult<Vec<JobSummary>> {
    let jobs = state
        .read(|view| {
            let mut jobs: Vec<JobSummary> = view.scheduler.jobs().map(job_summary).collect();
            jobs.reverse();
            jobs
        })
        .await?;
    Ok(Json(jobs))
}

/// One job with its counters, queue statistics and history.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}", tag = "jobs",
    params(("job_id" = u64, Path, description = "The job's id", minimum = 1, maximum = 9007199254740991_u64)),
    responses((status = 200, body = JobDetail), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn get_job(State(state): State<RestState>, JobPath(job): JobPath) -> ApiResult<JobDetail> {
    state
        .read(move |view| {
            let scheduler = view.scheduler;
            let found = scheduler.job(job)?;
            Some(JobDetail {
                job: job_summary(found),
                counters: found.task_counters().clone(),
                queue: view.observatory.job_queue(job).map(QueueView::from),
                history: history_view(scheduler, view.observatory, found, view.now),
            })
        })
        .await?
        .map(Json)
        .ok_or_else(|| job_not_found(job))
}

/// Committed results of a job, in task order, a page at a time.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/results", tag = "jobs",
    params(("job_id" = u64, Path, description = "The job's id", minimum = 1, maximum = 9007199254740991_u64), PageQuery),
    responses((status = 200, body = ResultsPage), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn job_results(
    State(state): State<RestState>,
    JobPath(job): JobPath,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<ResultsPage> {
    let (from, limit) = query.checked()?;
    let limit = limit as usize;
    let total = state
        .read(move |view| view.scheduler.job(job).map(|j| j.tasks().len() as u32))
        .await?
        .ok_or_else(|| job_not_found(job))?;
    let (found, next_task) =
        crate::views::results_page(state.results.clone(), job, from, limit, total)
            .await
            .map_err(|error| Failure(StatusCode::INTERNAL_SERVER_ERROR, error))?;
    let results = found
        .into_iter()
        .map(|result| ResultView {
            task_index: result.task.index,
            attempt_id: result.attempt.to_string(),
            worker_id: result.worker.to_string(),
            duration_ms: result.duration_ms,
            inline_text: text_of(&result.output.inline),
            inline_bytes: result.output.inline.len() as u64,
            file_url: result.output.file.as_ref().map(|f| f.url.clone()),
            file_bytes: result.output.file.as_ref().map(|f| f.size_bytes),
            counters: result.output.counters,
        })
        .collect();
    Ok(Json(ResultsPage { results, next_task }))
}

/// Cancels a running job: its pending tasks are skipped, its running attempts stopped.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/cancel", tag = "jobs",
    params(("job_id" = u64, Path, description = "The job's id", minimum = 1, maximum = 9007199254740991_u64)),
    responses((status = 200, body = JobSummary), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The job already finished"), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn cancel_job(
    State(state): State<RestState>,
    JobPath(job): JobPath,
) -> ApiResult<JobSummary> {
    match state.ask(|reply| Command::Cancel { job, reply }).await? {
        Ok(()) => {}
        Err(error @ JobError::NotFound(_)) => {
            return Err(Failure(StatusCode::NOT_FOUND, error.to_string()));
        }
        Err(error @ JobError::AlreadyFinished { .. }) => {
            return Err(Failure(StatusCode::CONFLICT, error.to_string()));
        }
    }
    state
        .read(move |view| view.scheduler.job(job).map(job_summary))
        .await?
        .map(Json)
        .ok_or_else(|| job_not_found(job))
}

/// Live workers.
#[utoipa::path(get, path = "/api/v1/workers", tag = "cluster",
    responses((status = 200, body = [WorkerView]), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn list_workers(State(state): State<RestState>) -> ApiResult<Vec<WorkerView>> {
    let workers = state
        .read(|view| {
            view.scheduler
                .workers()
                .map(|(id, worker)| WorkerView {
                    id: id.to_string(),
                    name: worker.info.name.clone(),
                    slots: worker.info.slots,
                    busy_slots: worker.busy_slots,
                    held_attempts: worker.held.len() as u32,
                    last_heartbeat_age_ms: view.now.saturating_sub(worker.last_seen),
                    draining: worker.draining,
                    kinds: worker.info.kinds.iter().cloned().collect(),
                    file_server_url: worker.info.file_server_url.clone(),
                })
                .collect()
        })
        .await?;
    Ok(Json(workers))
}

/// Dead letters (of one job, or of every job) with their error history.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "dead letters",
    params(DeadLettersQuery),
    responses((status = 200, body = [DeadLetterView]), (status = 400, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn list_dead_letters(
    State(state): State<RestState>,
    ApiQuery(query): ApiQuery<DeadLettersQuery>,
) -> ApiResult<Vec<DeadLetterView>> {
    let job = query.job.map(checked_job_id).transpose()?;
    let letters = state
        .read(move |view| {
            let scheduler = view.scheduler;
            let observatory = &*view.observatory;
            scheduler
                .dead_letters(job)
                .into_iter()
                .filter_map(|task: TaskId| {
                    let job = scheduler.job(task.job)?;
                    let spec = &job.spec.tasks[task.index as usize];
                    let record = &job.tasks()[task.index as usize];
                    Some(DeadLetterView {
                        job_id: task.job.0,
                        job_name: job.spec.name.clone(),
                        task_index: task.index,
                        kind: spec.kind.clone(),
                        payload_text: text_of(&spec.payload),
                        payload_bytes: spec.payload.len() as u64,
                        errors: record
                            .errors()
                            .iter()
                            .map(|error| {
                                failure_view(
                                    task.index,
                                    error,
                                    worker_label(observatory, scheduler, error.worker),
                                )
                            })
                            .collect(),
                    })
                })
                .collect()
        })
        .await?;
    Ok(Json(letters))
}

fn selection_target(selection: DeadLetterSelection) -> Result<DeadLetterTarget, Failure> {
    let job = checked_job_id(selection.job_id)?;
    match selection.task_indexes {
        None => Ok(DeadLetterTarget::Job(job)),
        Some(indexes) => {
            if let Some(index) = indexes.iter().find(|index| **index > MAX_TASK_INDEX) {
                return Err(bad_request(format!("task index {index} is out of range")));
            }
            Ok(DeadLetterTarget::Tasks(
                indexes
                    .into_iter()
                    .map(|index| TaskId::new(job, index))
                    .collect(),
            ))
        }
    }
}

/// Puts dead letters back in the queue with fresh attempts.
#[utoipa::path(post, path = "/api/v1/dead-letters/requeue", tag = "dead letters",
    request_body = DeadLetterSelection,
    responses((status = 200, body = DeadLetterChange), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 415, body = ApiError, description = "The body is not sent as application/json")),
    security(("bearer" = [])))]
async fn requeue_dead_letters(
    State(state): State<RestState>,
    ApiJson(selection): ApiJson<DeadLetterSelection>,
) -> ApiResult<DeadLetterChange> {
    let tasks = selection_target(selection)?;
    let affected = state.ask(|reply| Command::Requeue { tasks, reply }).await?;
    Ok(Json(DeadLetterChange { affected }))
}

/// Removes dead letters for good.
#[utoipa::path(post, path = "/api/v1/dead-letters/purge", tag = "dead letters",
    request_body = DeadLetterSelection,
    responses((status = 200, body = DeadLetterChange), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 415, body = ApiError, description = "The body is not sent as application/json")),
    security(("bearer" = [])))]
async fn purge_dead_letters(
    State(state): State<RestState>,
    ApiJson(selection): ApiJson<DeadLetterSelection>,
) -> ApiResult<DeadLetterChange> {
    let tasks = selection_target(selection)?;
    let affected = state.ask(|reply| Command::Purge { tasks, reply }).await?;
    Ok(Json(DeadLetterChange { affected }))
}

/// Tasks of a job with their state, a page at a time (for the job page's task table).
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/tasks", tag = "jobs",
    params(("job_id" = u64, Path, description = "The job's id", minimum = 1, maximum = 9007199254740991_u64), PageQuery),
    responses((status = 200, body = TasksPage), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn job_tasks(
    State(state): State<RestState>,
    JobPath(job): JobPath,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<TasksPage> {
    let (from, limit) = query.checked()?;
    state
        .read(move |view| {
            let found = view.scheduler.job(job)?;
            let end = from.saturating_add(limit).min(found.tasks().len() as u32);
            let tasks = (from.min(end)..end)
                .map(|index| {
                    let task = &found.tasks()[index as usize];
                    let spec = &found.spec.tasks[index as usize];
                    TaskView {
                        index,
                        kind: spec.kind.clone(),
                        stage: spec.stage,
                        state: task_state_name(task.state()).to_string(),
                        failures: task.errors().len() as u32,
                        last_error: task.errors().last().map(|e| e.failure.message.clone()),
                        running_attempts: match task.state() {
                            TaskState::Running { attempts } => {
                                attempts.iter().map(ToString::to_string).collect()
                            }
                            _ => Vec::new(),
                        },
                    }
                })
                .collect();
            Some(TasksPage {
                tasks,
                next_task: end,
                total: found.tasks().len() as u32,
            })
        })
        .await?
        .map(Json)
        .ok_or_else(|| job_not_found(job))
}

/// One task's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// Its index.
    pub index: u32,
    /// Its kind.
    pub kind: String,
    /// Its stage.
    pub stage: u32,
    /// `pending`, `running`, `retrying`, `succeeded`, `dead_lettered`, `purged`, `skipped`.
    pub state: String,
    /// Failures recorded (at most the most recent 16 are kept).
    pub failures: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Attempts running now (hex ids).
    pub running_attempts: Vec<String>,
}

/// A page of tasks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TasksPage {
    /// Tasks in index order.
    pub tasks: Vec<TaskView>,
    /// Index to ask from next; equal to `total` when done.
    pub next_task: u32,
    /// Tasks of the job.
    pub total: u32,
}

// ------------------------------------------------------------------ document

struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The cluster token (--token / ESSAIM_TOKEN), when the coordinator has one",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI description of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "essaim coordinator REST API", description = "Read the cluster's jobs, workers, dead letters and results; cancel jobs; requeue or purge dead letters."),
    paths(overview, list_jobs, get_job, job_results, job_tasks, cancel_job, list_workers,
        list_dead_letters, requeue_dead_letters, purge_dead_letters),
    modifiers(&BearerSecurity),
)]
pub struct ApiDoc;

async fn openapi_document() -> Response {
    match ApiDoc::openapi().to_pretty_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => Failure(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn require_token(
    State(token): State<Option<String>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => Failure(StatusCode::UNAUTHORIZED, "wrong cluster token".into()).into_response(),
        None => Failure(
            StatusCode::UNAUTHORIZED,
            "missing cluster token: send Authorization: Bearer <token>".into(),
        )
        .into_response(),
    }
}

async fn no_such_path() -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        format!("no such API path; the API is described at {OPENAPI_PATH}"),
    )
}

/// Returns the REST router (`/api/v1/...`), to merge with the coordinator's others.
pub fn router(state: RestState) -> Router {
    let token = state.token.clone();
    let api = Router::new()
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{job_id}", get(get_job))
        .route("/api/v1/jobs/{job_id}/results", get(job_results))
        .route("/api/v1/jobs/{job_id}/tasks", get(job_tasks))
        .route("/api/v1/jobs/{job_id}/cancel", post(cancel_job))
        .route("/api/v1/workers", get(list_workers))
        .route("/api/v1/dead-letters", get(list_dead_letters))
        .route("/api/v1/dead-letters/requeue", post(requeue_dead_letters))
        .route("/api/v1/dead-letters/purge", post(purge_dead_letters))
        .route("/api/v1/{*rest}", get(no_such_path).post(no_such_path))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(token, require_token));
    Router::new()
        .route(OPENAPI_PATH, get(openapi_document))
        .merge(api)
}
