//! The JSON shapes of the REST API. Each derives its OpenAPI schema, so the document
//! served at `/api/v1/openapi.json` cannot drift from what the handlers send.

use super::{Failure, MAX_RESULTS_PER_CALL, MAX_TASK_INDEX, bad_request};
use crate::queue::QueueStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// An error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// What went wrong and what to do about it.
    pub error: String,
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
    /// What processes its data: the job definition and its version, and the build that
    /// planned it; the builds of the workers that ran it are in the history's `workers`.
    pub processing_version: Option<String>,
    /// The principal that submitted it: only it or an admin may cancel it (none when
    /// submitted without credentials).
    pub owner: Option<String>,
    /// Labels a worker must carry to run its tasks (empty: any worker).
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
    /// True while it runs and no live worker carries its required labels: its tasks
    /// wait, queued, for such a worker to register.
    #[serde(default)]
    pub waiting_for_labels: bool,
    /// True while it runs and a task waits because every live worker that could take
    /// it holds another task of its anti-affinity group.
    #[serde(default)]
    pub waiting_for_anti_affinity: bool,
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
    /// The build it ran when its first attempt was recorded, if known.
    pub build: Option<String>,
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
    /// The build it runs, `version (revision)`; empty when it did not say.
    pub build: String,
    /// Its labels: jobs that require labels run only on workers carrying them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
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
    /// The job's file capability: sent in the `x-essaim-capability` header, it fetches
    /// the job's file results (`file_url`) from the workers' file servers.
    pub file_capability: String,
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
    pub(super) fn checked(self) -> Result<(u32, u32), Failure> {
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
