//! What the scheduler knows about jobs and tasks, and what workers send back.
//!
//! The task lifecycle is drawn in [`crate::scheduler`], where a reader starts: the
//! scheduler decides each arrow, and each arrow is a method of [`Job`] (in
//! `job_transitions.rs`) that keeps the job's counts, queues and counters in step.
//!
//! Jobs with several stages (MapReduce: map, then reduce): a task of stage s > 0 is
//! *ready* once every task of stage s - 1 has succeeded, or, for a job with slow start,
//! once a share of them has (see `slow_start.rs`); only ready pending tasks sit in the
//! queues. A succeeded task of a non-final stage keeps where its output lives; when
//! that output is lost (its worker died, or a reader reported it missing or corrupt)
//! while the next stage still needs it, the task goes back to `Pending` and the next
//! stage waits for its new output. When a task of stage s is dead-lettered, the
//! unfinished tasks of later stages can never run and are `Skipped`.

pub(crate) mod job;
mod job_invariants;
mod job_transitions;
mod retry_queue;
mod slow_start;

pub use job::Job;
pub(crate) use job::Locality;
pub(crate) use job_transitions::AfterLastAttempt;
pub(crate) use retry_queue::RetryQueue;
pub use slow_start::UpstreamInputs;

use crate::ids::{AttemptId, Millis, TaskId, WorkerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Returns a failure with only a message, retryable or not.
    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        Self {
            message: message.into(),
            exit_code: None,
            stderr_tail: String::new(),
            retryable,
            lost_inputs: Vec::new(),
        }
    }

    /// Returns a retryable failure with only a message (lost leases, timeouts).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(message, true)
    }

    /// Returns a failure with only a message that no other attempt can help.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(message, false)
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
    /// in task order (those committed so far when `inputs_complete` is false).
    pub inputs: Vec<UpstreamOutput>,
    /// False for a task started early (slow start): more inputs are committed later, and
    /// some of these may be lost and committed again; the attempt asks for them
    /// (`Scheduler::upstream_inputs`) until they are complete.
    pub inputs_complete: bool,
    /// The job's inputs version these inputs were read at.
    pub inputs_version: u64,
    /// The W3C `traceparent` of the job's submission, so that the attempt's span joins
    /// its trace. The scheduler leaves it `None`: the coordinator's shell attaches it to
    /// the grant it sends, and the worker reads it off the wire.
    pub trace_parent: Option<String>,
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

/// One task of a job. Its fields change only through the methods of [`Job`].
#[derive(Debug, Clone)]
pub struct Task {
    /// Where it stands; moved only by `Job::set_task_state`, which keeps the counts.
    state: TaskState,
    /// Attempts started since submission or the last requeue from the DLQ.
    attempts_made: u32,
    /// Most recent failures, oldest first.
    errors: Vec<AttemptError>,
    /// For a succeeded task of a non-final stage: where its output lives.
    output: Option<Box<StageOutput>>,
    /// Times its committed output was lost and recomputed (bounded by the job's
    /// attempt limit, so an output that is always corrupt cannot loop forever).
    outputs_lost: u32,
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

    /// Returns the attempts started since submission or the last requeue from the DLQ
    /// (live attempts included).
    pub fn attempts_made(&self) -> u32 {
        self.attempts_made
    }

    /// Returns where the committed output of a succeeded task of a non-final stage lives.
    pub fn output(&self) -> Option<&StageOutput> {
        self.output.as_deref()
    }

    fn pending() -> Self {
        Self {
            state: TaskState::Pending,
            attempts_made: 0,
            errors: Vec::new(),
            output: None,
            outputs_lost: 0,
        }
    }

    fn push_error(&mut self, error: AttemptError) {
        if self.errors.len() == MAX_ERRORS_PER_TASK {
            self.errors.remove(0);
        }
        self.errors.push(error);
    }
}
