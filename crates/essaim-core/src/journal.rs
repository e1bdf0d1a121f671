//! Journal events: the facts the coordinator makes durable before acknowledging anything.
//!
//! Only what cannot be rebuilt is journaled: submissions, commits, failures, dead
//! letters and operator actions. Leases are not: after a restart every unfinished task is
//! pending again, the old attempts are unknown to the new incarnation, and their results
//! are rejected. That keeps one fsync per batch of results rather than one per grant, at
//! the price of re-running the attempts that were in flight — at-least-once execution,
//! exactly-once commit.

use crate::ids::{JobId, Millis, TaskId};
use crate::model::{AttemptError, CommittedResult, StageOutput};
use crate::spec::JobSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the journal event encoding; stored by the journal, checked on open.
pub const JOURNAL_FORMAT_VERSION: u32 = 2;

/// One durable fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JournalEvent {
    /// A job was accepted.
    JobSubmitted {
        /// Its id.
        job: JobId,
        /// Its validated spec.
        spec: JobSpec,
        /// When.
        at: Millis,
    },
    /// A task's one result was committed.
    TaskSucceeded {
        /// The result.
        result: CommittedResult,
        /// When.
        at: Millis,
    },
    /// An attempt failed, lost its lease or timed out.
    AttemptFailed {
        /// The task.
        task: TaskId,
        /// What happened.
        error: AttemptError,
    },
    /// A task ran out of attempts.
    TaskDeadLettered {
        /// The task.
        task: TaskId,
        /// When.
        at: Millis,
    },
    /// A client cancelled a job.
    JobCancelled {
        /// The job.
        job: JobId,
        /// Why.
        reason: String,
        /// When.
        at: Millis,
    },
    /// An operator put dead letters back in the queue, with fresh attempts.
    DeadLettersRequeued {
        /// The tasks.
        tasks: Vec<TaskId>,
        /// When.
        at: Millis,
    },
    /// An operator removed dead letters for good.
    DeadLettersPurged {
        /// The tasks.
        tasks: Vec<TaskId>,
        /// When.
        at: Millis,
    },
    /// Snapshot only: these tasks of a job committed (their outputs are already stored).
    TasksCommitted {
        /// The job.
        job: JobId,
        /// Their indexes.
        tasks: Vec<u32>,
        /// When the snapshot was taken.
        at: Millis,
    },
    /// Snapshot only: some of a job's final results are files left on workers, which
    /// must not be released with its intermediate files.
    ResultsOnWorkers {
        /// The job.
        job: JobId,
    },
    /// Snapshot only: a task's attempt count and error history.
    TaskProgress {
        /// The task.
        task: TaskId,
        /// Attempts counted against its limit.
        attempts_made: u32,
        /// Its most recent failures.
        errors: Vec<AttemptError>,
    },
    /// A committed output of a non-final stage was lost (its worker died, or a task of
    /// the next stage could not read it): the task runs again.
    TaskOutputLost {
        /// The task whose output was lost.
        task: TaskId,
        /// The loss, as recorded in the task's error history.
        error: AttemptError,
    },
    /// Snapshot only: where the committed outputs of non-final stages live.
    OutputLocations {
        /// The job.
        job: JobId,
        /// Task index and output location.
        outputs: Vec<(u32, StageOutput)>,
    },
    /// Snapshot only: the sums of a job's task counters.
    TaskCountersSummed {
        /// The job.
        job: JobId,
        /// The sums.
        counters: BTreeMap<String, u64>,
    },
    /// Snapshot only: job ids below this were used, even by jobs since forgotten.
    JobIdsReserved {
        /// The next job id to hand out.
        next_job: u64,
    },
    /// A job was submitted with a supersede key: a later job with the same key cancels
    /// it while it runs. (An event of its own, after `JobSubmitted`, so that journals
    /// written before supersede keys existed read as they are.)
    JobSupersedeKey {
        /// The job.
        job: JobId,
        /// The key.
        key: String,
    },
    /// A job was submitted with a processing version (its definition and the build that
    /// planned it). An event of its own after `JobSubmitted`, for the same reason as
    /// `JobSupersedeKey`.
    JobProcessingVersion {
        /// The job.
        job: JobId,
        /// The version.
        version: String,
    },
    /// A job of several stages was submitted with slow start: its second stage may start
    /// once this share of the first has succeeded, its tasks reading the outputs
    /// committed so far and then those that follow. An event of its own after
    /// `JobSubmitted`, for the same reason as `JobSupersedeKey`.
    JobSlowStart {
        /// The job.
        job: JobId,
        /// The share, from 0.0 to 1.0 (exclusive: 1.0 is no slow start).
        share: f64,
    },
    /// A job was submitted by a named principal, its owner: only it (or an admin) may
    /// cancel the job, and its supersede key replaces only its own jobs. An event of its
    /// own after `JobSubmitted`, for the same reason as `JobSupersedeKey`.
    JobOwner {
        /// The job.
        job: JobId,
        /// The principal's name.
        owner: String,
    },
    /// A job was submitted with labels its workers must carry: only a worker carrying
    /// every one (same value) is granted its tasks. An event of its own after
    /// `JobSubmitted`, for the same reason as `JobSupersedeKey`.
    JobPlacement {
        /// The job.
        job: JobId,
        /// The labels, sorted by key.
        required_labels: Vec<(String, String)>,
    },
    /// A job was submitted with anti-affinity groups: two of its tasks of one group never
    /// run on one worker at the same time (a shard's replicas, a model's replicas). An
    /// event of its own after `JobSubmitted`, for the same reason as `JobSupersedeKey`.
    JobAntiAffinity {
        /// The job.
        job: JobId,
        /// The group of each task that has one, by task index, in task order.
        groups: Vec<(u32, String)>,
    },
}
