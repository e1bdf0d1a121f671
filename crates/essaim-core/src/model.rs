//! What the scheduler knows about jobs and tasks, and what workers send back.
//!
//! Task lifecycle (each arrow is one place in `scheduler.rs`):
//!
//! ```text
//!            pull                     success
//!  Pending ───────▶ Running ──────────────────────▶ Succeeded
//!     ▲    ◀──────  │   │  (first valid result wins; other attempts are cancelled)
//!     │  handed back │   │ failure / lease lost / timeout
//!     │  on drain    │   ▼
//!     │         Retrying(not_before) ── attempts left ──▶ (pulled from the retry queue)
//!     │              │ no attempts left, or not retryable
//!     │              ▼
//!     └─ requeue ─ DeadLettered ── purge ──▶ Purged
//!
//!  Pending / Retrying ── job cancelled or deadline passed ──▶ Skipped
//! ```
//!
//! Jobs with several stages (MapReduce: map, then reduce): a task of stage s > 0 is
//! *ready* once every task of stage s - 1 has succeeded; only ready pending tasks sit in
//! the queues. A succeeded task of a non-final stage keeps where its output lives; when
//! that output is lost (its worker died, or a reader reported it missing or corrupt)
//! while the next stage still needs it, the task goes back to `Pending` and the next
//! stage waits for its new output. When a task of stage s is dead-lettered, the
//! unfinished tasks of later stages can never run and are `Skipped`.

use crate::ids::{AttemptId, JobId, Millis, TaskId, WorkerId};
use crate::spec::JobSpec;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Inline results larger than this must be written to a file by the worker.
pub const MAX_INLINE_RESULT_BYTES: usize = 64 * 1024;
/// Most bytes of standard error kept per failed attempt.
pub const MAX_STDERR_TAIL_BYTES: usize = 4 * 1024;
/// Most errors kept in a task's history (the oldest are dropped first).
pub const MAX_ERRORS_PER_TASK: usize = 16;

/// Where a task stands. See the module doc for the transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting in its job's queue for a first (or handed-back) attempt.
    Pending,
    /// Leased to one attempt, or two when a speculative copy runs.
    Running {
        /// The live attempts, oldest first.
        attempts: Vec<AttemptId>,
    },
    /// Failed; waits in the retry queue until `not_before`.
    Retrying {
        /// Earliest time of the next attempt.
        not_before: Millis,
    },
    /// Exactly one result was committed.
    Succeeded,
    /// Out of attempts (or not retryable); waits in the dead-letter queue.
    DeadLettered,
    /// Removed from the dead-letter queue for good.
    Purged,
    /// Never (re)started: the job was cancelled or its deadline passed.
    Skipped,
}

impl TaskState {
    /// Returns true when nothing more will happen to the task unless an operator acts.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::DeadLettered | Self::Purged | Self::Skipped
        )
    }
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Some task is not terminal yet.
    Running,
    /// Every task committed a result.
    Succeeded,
    /// Every task is terminal and some did not succeed.
    Failed {
        /// Why, in words.
        reason: String,
    },
    /// Cancelled by a client.
    Cancelled {
        /// Why, in words.
        reason: String,
    },
}

impl JobState {
    /// Returns the state's name as shown to users.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
        }
    }

    /// Returns the reason of a failed or cancelled job, empty otherwise.
    pub fn reason(&self) -> &str {
        match self {
            Self::Failed { reason } | Self::Cancelled { reason } => reason,
            _ => "",
        }
    }
}

/// A result held by a worker's file server, for outputs too large to send inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Where to fetch it.
    pub url: String,
    /// Its size.
    pub size_bytes: u64,
}

/// What a successful attempt produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskOutput {
    /// Small results, at most [`MAX_INLINE_RESULT_BYTES`].
    pub inline: Vec<u8>,
    /// Large results, left on the worker.
    pub file: Option<FileRef>,
    /// Named counters (records in, bytes out, …), summed per job on commit.
    pub counters: BTreeMap<String, u64>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// What went wrong, in words.
    pub message: String,
    /// Exit code of an external command.
    pub exit_code: Option<i32>,
    /// Last bytes of the command's standard error.
    pub stderr_tail: String,
    /// False when another attempt cannot help.
    pub retryable: bool,
    /// Upstream tasks (previous stage) whose outputs could not be read: they are re-run
    /// and this task waits for them, without the failure counting against its attempts.
    pub lost_inputs: Vec<u32>,
}

impl TaskFailure {
    /// Returns a retryable failure with only a message (lost leases, timeouts).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: None,
            stderr_tail: String::new(),
            retryable: true,
            lost_inputs: Vec::new(),
        }
    }
}

/// One failed attempt in a task's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt.
    pub attempt: AttemptId,
    /// Where it ran.
    pub worker: WorkerId,
    /// When the failure was recorded.
    pub at: Millis,
    /// What happened.
    pub failure: TaskFailure,
}

/// A finished attempt as reported by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedResult {
    /// The attempt (its fencing token).
    pub attempt: AttemptId,
    /// Success or failure.
    pub outcome: Result<TaskOutput, TaskFailure>,
    /// Run time measured by the worker.
    pub duration_ms: Millis,
}

/// The one result committed for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedResult {
    /// The task.
    pub task: TaskId,
    /// The attempt whose result won.
    pub attempt: AttemptId,
    /// Where it ran.
    pub worker: WorkerId,
    /// Its run time.
    pub duration_ms: Millis,
    /// What it produced.
    pub output: TaskOutput,
}

/// A lease handed to a worker: run this task under this attempt id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The task.
    pub task: TaskId,
    /// The attempt id, also its fencing token.
    pub attempt: AttemptId,
    /// 1 for the first attempt.
    pub attempt_number: u32,
    /// Task kind.
    pub kind: String,
    /// Task input.
    pub payload: Vec<u8>,
    /// Longest allowed run.
    pub timeout_ms: Option<Millis>,
    /// True for a copy of a straggler.
    pub speculative: bool,
    /// For a task of stage s > 0: the committed output of every task of stage s - 1,
    /// in task order.
    pub inputs: Vec<UpstreamOutput>,
}

/// The committed output of one task of the previous stage, as handed to a task that
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamOutput {
    /// The upstream task's index in the job.
    pub task_index: u32,
    /// The attempt whose output was committed.
    pub attempt: AttemptId,
    /// Its output file.
    pub file: FileRef,
}

/// Number of tasks of a job in each state; kept in step with every transition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Waiting for a first attempt.
    pub pending: u32,
    /// With a live attempt.
    pub running: u32,
    /// Waiting to be retried.
    pub retrying: u32,
    /// Committed.
    pub succeeded: u32,
    /// In the dead-letter queue.
    pub dead_lettered: u32,
    /// Purged from the dead-letter queue.
    pub purged: u32,
    /// Not run (cancelled or past the deadline).
    pub skipped: u32,
}

impl TaskCounts {
    fn slot(&mut self, state: &TaskState) -> &mut u32 {
        match state {
            TaskState::Pending => &mut self.pending,
            TaskState::Running { .. } => &mut self.running,
            TaskState::Retrying { .. } => &mut self.retrying,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::DeadLettered => &mut self.dead_lettered,
            TaskState::Purged => &mut self.purged,
            TaskState::Skipped => &mut self.skipped,
        }
    }

    /// Returns the number of tasks that are not terminal.
    pub fn unfinished(&self) -> u32 {
        self.pending + self.running + self.retrying
    }
}

/// Per-job counters of attempts, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounters {
    /// Attempts handed to workers.
    pub attempts_started: u64,
    /// Attempts that failed (including lost leases and timeouts).
    pub attempts_failed: u64,
    /// Results refused because their attempt no longer held the lease.
    pub results_rejected: u64,
    /// Speculative copies started.
    pub speculative_attempts: u64,
    /// Committed outputs found lost or corrupt and recomputed.
    pub outputs_lost: u64,
}

/// Task counts of one stage, for progress bars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageCounts {
    /// Tasks in the stage.
    pub total: u32,
    /// Committed.
    pub succeeded: u32,
    /// With a live attempt.
    pub running: u32,
    /// Dead-lettered, purged or skipped.
    pub failed: u32,
}

/// One task of a job.
#[derive(Debug, Clone)]
pub struct Task {
    /// Where it stands; change it only through [`Job::set_task_state`].
    pub(crate) state: TaskState,
    /// Attempts started since submission or the last requeue from the DLQ.
    pub(crate) attempts_made: u32,
    /// Most recent failures, oldest first.
    pub(crate) errors: Vec<AttemptError>,
    /// For a succeeded task of a non-final stage: where its output lives.
    pub(crate) output: Option<Box<StageOutput>>,
    /// Times its committed output was lost and recomputed (bounded by the job's
    /// attempt limit, so an output that is always corrupt cannot loop forever).
    pub(crate) outputs_lost: u32,
}

/// Where the committed output of a task of a non-final stage lives, for the tasks of the
/// next stage that read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageOutput {
    /// The attempt whose result was committed.
    pub attempt: AttemptId,
    /// The worker that ran it (and serves the file).
    pub worker: WorkerId,
    /// The output file, if the task wrote one.
    pub file: Option<FileRef>,
    /// The task's counters, taken back out of the job's sums if the output is lost.
    pub counters: BTreeMap<String, u64>,
}

impl Task {
    /// Returns where the task stands.
    pub fn state(&self) -> &TaskState {
        &self.state
    }

    /// Returns the failures recorded for the task, oldest first.
    pub fn errors(&self) -> &[AttemptError] {
        &self.errors
    }

    pub(crate) fn push_error(&mut self, error: AttemptError) {
        if self.errors.len() == MAX_ERRORS_PER_TASK {
            self.errors.remove(0);
        }
        self.errors.push(error);
    }
}

/// Most recent task durations kept per job to estimate the median.
const DURATION_SAMPLES: usize = 512;

/// A job: its spec, its tasks and the queues of its pending tasks.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The validated spec.
    pub spec: JobSpec,
    /// Where it stands.
    pub state: JobState,
    /// When it was accepted.
    pub submitted_at: Millis,
    /// When it became terminal.
    pub finished_at: Option<Millis>,
    /// Counters of attempts.
    pub counters: JobCounters,
    pub(crate) tasks: Vec<Task>,
    /// Pending task indexes by kind, in queue order.
    pub(crate) pending_by_kind: BTreeMap<String, VecDeque<u32>>,
    pub(crate) counts: TaskCounts,
    /// Attempts currently leased, for the concurrency limit.
    pub(crate) live_attempts: u32,
    /// Sums of the counters reported by committed tasks.
    pub(crate) task_counters: BTreeMap<String, u64>,
    /// First task index of each stage, plus the task count at the end.
    pub(crate) stage_starts: Vec<u32>,
    /// Tasks of each stage that have not succeeded.
    pub(crate) stage_unfinished: Vec<u32>,
    duration_samples: Vec<Millis>,
    next_sample_slot: usize,
}

impl Job {
    /// Returns a job whose tasks are all pending (queues are filled by the caller).
    pub(crate) fn new(id: JobId, spec: JobSpec, submitted_at: Millis) -> Self {
        let task_count = spec.tasks.len();
        let tasks = (0..task_count)
            .map(|_| Task {
                state: TaskState::Pending,
                attempts_made: 0,
                errors: Vec::new(),
                output: None,
                outputs_lost: 0,
            })
            .collect();
        let stage_count = spec.tasks.last().map_or(1, |task| task.stage as usize + 1);
        let mut stage_starts = vec![0u32; stage_count + 1];
        let mut stage_unfinished = vec![0u32; stage_count];
        for (index, task) in spec.tasks.iter().enumerate() {
            stage_unfinished[task.stage as usize] += 1;
            stage_starts[task.stage as usize + 1] = index as u32 + 1;
        }
        let counts = TaskCounts {
            pending: task_count as u32,
            ..TaskCounts::default()
        };
        Self {
            id,
            spec,
            state: JobState::Running,
            submitted_at,
            finished_at: None,
            counters: JobCounters::default(),
            tasks,
            pending_by_kind: BTreeMap::new(),
            counts,
            live_attempts: 0,
            task_counters: BTreeMap::new(),
            stage_starts,
            stage_unfinished,
            duration_samples: Vec::new(),
            next_sample_slot: 0,
        }
    }

    /// Returns the job's tasks in index order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Returns the attempts of this job leased right now.
    pub fn live_attempts(&self) -> u32 {
        self.live_attempts
    }

    /// Returns how many tasks are in each state.
    pub fn counts(&self) -> TaskCounts {
        self.counts
    }

    /// Returns the sums of the counters reported by committed tasks.
    pub fn task_counters(&self) -> &BTreeMap<String, u64> {
        &self.task_counters
    }

    /// Adds a committed task's counters to the job's sums.
    pub(crate) fn add_task_counters(&mut self, counters: &BTreeMap<String, u64>) {
        for (name, value) in counters {
            let sum = self.task_counters.entry(name.clone()).or_default();
            *sum = sum.saturating_add(*value);
        }
    }

    /// Returns the number of stages (1 for a one-stage job).
    pub fn stage_count(&self) -> u32 {
        self.spec.tasks.last().map_or(1, |task| task.stage + 1)
    }

    /// Returns the kind of each stage's first task, in stage order (MapReduce stages are
    /// named by it: `mapreduce.map`, `mapreduce.reduce`…).
    pub fn stage_kinds(&self) -> Vec<&str> {
        self.stage_starts[..self.stage_starts.len() - 1]
            .iter()
            .map(|start| {
                self.spec
                    .tasks
                    .get(*start as usize)
                    .map_or("", |task| task.kind.as_str())
            })
            .collect()
    }

    /// Returns the task counts of every stage, in stage order. Walks every task.
    pub fn stage_counts(&self) -> Vec<StageCounts> {
        let mut stages = vec![StageCounts::default(); self.stage_count() as usize];
        for (task, spec) in self.tasks.iter().zip(&self.spec.tasks) {
            let stage = &mut stages[spec.stage as usize];
            stage.total += 1;
            match task.state {
                TaskState::Succeeded => stage.succeeded += 1,
                TaskState::Running { .. } => stage.running += 1,
                TaskState::DeadLettered | TaskState::Purged | TaskState::Skipped => {
                    stage.failed += 1
                }
                TaskState::Pending | TaskState::Retrying { .. } => {}
            }
        }
        stages
    }

    /// Moves task `index` to `state`, keeping the counts in step.
    pub(crate) fn set_task_state(&mut self, index: u32, state: TaskState) {
        let task = &mut self.tasks[index as usize];
        let stage = self.spec.tasks[index as usize].stage as usize;
        match (&task.state, &state) {
            (TaskState::Succeeded, TaskState::Succeeded) => {}
            (TaskState::Succeeded, _) => self.stage_unfinished[stage] += 1,
            (_, TaskState::Succeeded) => self.stage_unfinished[stage] -= 1,
            _ => {}
        }
        *self.counts.slot(&task.state) -= 1;
        *self.counts.slot(&state) += 1;
        task.state = state;
    }

    /// Returns the stage of task `index`.
    pub(crate) fn stage_of(&self, index: u32) -> u32 {
        self.spec.tasks[index as usize].stage
    }

    /// Returns the task indexes of stage `stage`.
    pub(crate) fn stage_range(&self, stage: u32) -> std::ops::Range<u32> {
        self.stage_starts[stage as usize]..self.stage_starts[stage as usize + 1]
    }

    /// Returns true when tasks of `stage` may run: every task of the stage before has
    /// succeeded.
    pub(crate) fn stage_ready(&self, stage: u32) -> bool {
        stage == 0 || self.stage_unfinished[stage as usize - 1] == 0
    }

    /// Returns true when task `index` may run now.
    pub(crate) fn task_ready(&self, index: u32) -> bool {
        self.stage_ready(self.stage_of(index))
    }

    /// Returns true when a task of `stage` has succeeded and its output is still needed:
    /// `stage` is not the last and the next stage has unfinished tasks.
    pub(crate) fn output_needed(&self, stage: u32) -> bool {
        let next = stage as usize + 1;
        next < self.stage_unfinished.len() && self.stage_unfinished[next] > 0
    }

    /// Returns true when a task of a stage before `stage` is dead-lettered or purged:
    /// tasks of `stage` can never run.
    pub(crate) fn stage_blocked(&self, stage: u32) -> bool {
        let end = self.stage_starts[stage as usize];
        self.tasks[..end as usize]
            .iter()
            .any(|task| matches!(task.state, TaskState::DeadLettered | TaskState::Purged))
    }

    /// Removes the pending tasks of `stage` from the queues (their stage is no longer
    /// ready).
    pub(crate) fn unqueue_stage(&mut self, stage: u32) {
        let range = self.stage_range(stage);
        for queue in self.pending_by_kind.values_mut() {
            queue.retain(|index| !range.contains(index));
        }
    }

    /// Removes one task from the queues.
    pub(crate) fn unqueue_task(&mut self, index: u32) {
        for queue in self.pending_by_kind.values_mut() {
            queue.retain(|queued| *queued != index);
        }
    }

    /// Queues every pending task of `stage` (which just became ready), in task order.
    pub(crate) fn queue_stage(&mut self, stage: u32) {
        for index in self.stage_range(stage) {
            if self.tasks[index as usize].state == TaskState::Pending {
                self.enqueue_pending(index, false);
            }
        }
    }

    /// Takes a lost output's counters back out of the job's sums.
    pub(crate) fn subtract_task_counters(&mut self, counters: &BTreeMap<String, u64>) {
        for (name, value) in counters {
            if let Some(sum) = self.task_counters.get_mut(name) {
                *sum = sum.saturating_sub(*value);
            }
        }
    }

    /// Puts a pending task at the back (first attempts) or front (handed back) of its queue.
    pub(crate) fn enqueue_pending(&mut self, index: u32, at_front: bool) {
        let kind = self.spec.tasks[index as usize].kind.clone();
        let queue = self.pending_by_kind.entry(kind).or_default();
        if at_front {
            queue.push_front(index);
        } else {
            queue.push_back(index);
        }
    }

    /// Records a successful attempt's duration for the straggler threshold.
    pub(crate) fn record_duration(&mut self, duration_ms: Millis) {
        if self.duration_samples.len() < DURATION_SAMPLES {
            self.duration_samples.push(duration_ms);
        } else {
            self.duration_samples[self.next_sample_slot] = duration_ms;
            self.next_sample_slot = (self.next_sample_slot + 1) % DURATION_SAMPLES;
        }
    }

    /// Returns the median of recent task durations once `min_samples` are known.
    pub fn median_duration(&self, min_samples: usize) -> Option<Millis> {
        if self.duration_samples.len() < min_samples.max(1) {
            return None;
        }
        let mut samples = self.duration_samples.clone();
        let middle = samples.len() / 2;
        Some(*samples.select_nth_unstable(middle).1)
    }

    /// Returns true while the job's concurrency limit allows one more attempt.
    pub(crate) fn has_capacity(&self) -> bool {
        self.spec
            .max_concurrency
            .is_none_or(|limit| self.live_attempts < limit)
    }

    /// Returns true once the deadline has passed.
    pub(crate) fn past_deadline(&self, now: Millis) -> bool {
        self.spec.deadline.is_some_and(|deadline| now >= deadline)
    }
}
