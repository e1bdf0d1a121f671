//! The scheduler: every decision about jobs, tasks, attempts, leases and workers.
//!
//! It is a pure state machine. Each entry point takes the current time and the fact that
//! happened (a worker pulled, a result arrived, time passed), changes the state, returns
//! the reply for the caller and appends to `out` the [`Output`]s the shell must carry out:
//! journal events to make durable *before* replying, and jobs that finished.
//!
//! Task lifecycle, with the file of this folder that decides each arrow (the bookkeeping
//! of every arrow, counts and queues included, is a method of [`Job`]):
//!
//! ```text
//!          pull (placement)              success (outcomes)
//!  Pending ───────▶ Running ──────────────────────▶ Succeeded
//!     ▲    ◀──────  │   │  (first valid result wins; other attempts are cancelled)
//!     │ handed back  │   │ failure (outcomes) / lease lost, timeout (leases)
//!     │ on drain     │   ▼
//!     │ (leases)   Retrying(not_before) ── attempts left ──▶ (pulled from the retry queue)
//!     │              │ no attempts left, or not retryable
//!     │              ▼
//!     └─ requeue ─ DeadLettered ── purge ──▶ Purged                        (dead_letters)
//!
//!  Pending / Retrying ── job cancelled or deadline passed ──▶ Skipped      (jobs, leases)
//!  Succeeded ── output lost while the next stage needs it ──▶ Pending      (stages)
//! ```
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | configuration, public types, the state, the read side |
//! | `placement.rs` | which task a pulling worker gets: first attempts, retries, stragglers, locality |
//! | `anti_affinity.rs` | tasks of one group never on one worker at once, and the spreading |
//! | `leases.rs` | workers, heartbeats, leases and their expiry, the passing of time |
//! | `outcomes.rs` | reported results: commit, failure, retry, rejection |
//! | `stages.rs` | jobs of several stages: lost inputs and lost outputs |
//! | `slow_start.rs` | early attempts: their inputs as they come, hand-backs, stranded ones |
//! | `dead_letters.rs` | the dead-letter queue: requeue and purge |
//! | `jobs.rs` | submission, cancellation, the end of a job, retention |
//! | `recovery.rs` | journal replay and snapshots |
//! | `invariants.rs` | what must hold after every step |
//!
//! What it guarantees (checked by [`Scheduler::check_invariants`] and the simulation):
//! - a task commits at most one result, and only from an attempt that holds its lease;
//! - an attempt whose lease was revoked (lost worker, expired lease, timeout, cancelled
//!   job, speculative loser) never commits;
//! - a job never has more live attempts than its concurrency limit;
//! - no worker holds live attempts of two tasks of one anti-affinity group of a job;
//! - every task of a terminal job is terminal;
//! - a task of stage s > 0 is granted only when every task of stage s - 1 has succeeded,
//!   and its attempt is handed the committed output of each of them; with slow start,
//!   once a share of them has, when none waits for a slot, and its attempt is handed
//!   those committed so far, then asks for the rest (`slow_start.rs`);
//! - early attempts never keep the tasks they wait for from a slot: they are handed
//!   back at the next tick;
//! - a lost upstream output is recomputed before the stage that needs it runs again.

mod anti_affinity;
mod dead_letters;
mod invariants;
mod jobs;
mod leases;
mod outcomes;
mod placement;
mod recovery;
mod slow_start;
mod spread;
mod stages;

#[cfg(test)]
mod tests;

use crate::ids::{AttemptId, IdMint, JobId, Millis, TaskId, WorkerId};
use crate::journal::JournalEvent;
use crate::model::{Assignment, Job, JobState, RetryQueue};
use crate::rng::SeededRng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// Timing and policy of the scheduler; every field has a documented default.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// A worker silent for this long is declared dead (default 5 s).
    pub worker_timeout_ms: Millis,
    /// A lease not renewed by a heartbeat for this long expires (default 5 s).
    pub lease_ms: Millis,
    /// After this many first attempts in a row, a due retry goes first (default 3): retries
    /// wait behind first attempts but get at least one grant in `retry_every + 1`.
    pub retry_every: u32,
    /// Successful tasks a job needs before its median duration is trusted (default 5).
    pub speculation_min_samples: usize,
    /// No task is a straggler before running this long (default 1 s).
    pub speculation_min_runtime_ms: Millis,
    /// Incarnation of the coordinator, from the journal; part of every minted id.
    pub epoch: u64,
    /// Seed of the retry jitter.
    pub seed: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            worker_timeout_ms: 5_000,
            lease_ms: 5_000,
            retry_every: 3,
            speculation_min_samples: 5,
            speculation_min_runtime_ms: 1_000,
            epoch: 1,
            seed: 0,
        }
    }
}

/// What the shell must do after a call, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Make this durable before sending any reply of this batch.
    Persist(JournalEvent),
    /// The job reached a terminal state (wake its waiters).
    JobFinished {
        /// The job.
        job: JobId,
        /// Its final state.
        state: JobState,
    },
}

/// A worker as it registers.
#[derive(Debug, Clone, Default)]
pub struct WorkerInfo {
    /// Display name.
    pub name: String,
    /// Attempts it runs at once.
    pub slots: u32,
    /// Kinds it can run.
    pub kinds: BTreeSet<String>,
    /// Where its file server listens.
    pub file_server_url: String,
    /// Data directories it holds locally; tasks whose locality paths fall under one of
    /// them are granted to it first.
    pub data_dirs: Vec<String>,
    /// Kinds (among `kinds`) whose tasks run until stopped and hold no slot, such as
    /// stream units: they are spread evenly over the workers (see `spread.rs`).
    pub long_running_kinds: BTreeSet<String>,
    /// The build it runs (`version (revision)`), empty when it did not say.
    pub build: String,
    /// Its labels: it is granted only the tasks of jobs whose required labels it carries
    /// (see `crate::labels`).
    pub labels: crate::labels::Labels,
}

/// A registered, live worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// What it told us when it registered.
    pub info: WorkerInfo,
    /// Last sign of life.
    pub last_seen: Millis,
    /// Attempts leased to it.
    pub held: BTreeSet<AttemptId>,
    /// Attempts it must stop, delivered with the next heartbeat reply.
    pub(crate) cancels: BTreeSet<AttemptId>,
    /// True once it said it is draining.
    pub draining: bool,
    /// Slots it reported busy.
    pub busy_slots: u32,
}

/// A live lease.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The task it runs.
    pub task: TaskId,
    /// The worker holding it.
    pub worker: WorkerId,
    /// When it was granted.
    pub started_at: Millis,
    /// When it expires unless renewed.
    pub lease_expires_at: Millis,
    /// True for a straggler's copy.
    pub speculative: bool,
}

/// Reply to a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The worker is unknown: drop everything and register again.
    pub reregister: bool,
    /// Attempts to stop.
    pub cancel: Vec<AttemptId>,
    /// Jobs whose scratch files the worker may delete (see [`Scheduler::releasable_jobs`]).
    pub release_jobs: Vec<JobId>,
}

/// Reply to a pull.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReply {
    /// The worker is unknown: register again.
    pub reregister: bool,
    /// New leases.
    pub assignments: Vec<Assignment>,
}

/// Reply to a report of results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportReply {
    /// The worker is unknown: register again.
    pub reregister: bool,
    /// Results refused (late or zombie attempts).
    pub rejected: u32,
}

/// Why a request about a job was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// No such job.
    #[error("job {0} does not exist")]
    NotFound(JobId),
    /// The job is already terminal.
    #[error("job {job} is already {state}")]
    AlreadyFinished {
        /// The job.
        job: JobId,
        /// Its state.
        state: &'static str,
    },
}

/// Cluster-wide counters since start, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Attempts granted.
    pub attempts_started: u64,
    /// Attempts failed (any reason).
    pub attempts_failed: u64,
    /// Results committed.
    pub tasks_committed: u64,
    /// Results refused.
    pub results_rejected: u64,
    /// Leases that expired or were revoked with their worker.
    pub lease_expiries: u64,
    /// Retries scheduled.
    pub retries_scheduled: u64,
    /// Tasks dead-lettered.
    pub dead_lettered: u64,
    /// Speculative copies started.
    pub speculative_attempts: u64,
    /// Workers registered.
    pub workers_registered: u64,
    /// Workers declared dead.
    pub workers_lost: u64,
    /// Committed outputs found lost (dead worker, reported missing or corrupt).
    pub outputs_lost: u64,
    /// Tasks with locality paths granted to a worker holding one of them.
    pub local_grants: u64,
    /// Tasks with locality paths granted to a worker holding none of them.
    pub remote_grants: u64,
    /// Long-running attempts handed back to spread them over the workers.
    pub attempts_moved: u64,
    /// Attempts started early, before the stage they read was complete (slow start).
    pub early_attempts_started: u64,
    /// Early attempts handed back so that the tasks they waited for got a slot.
    pub early_attempts_handed_back: u64,
}

/// The state machine. See the module doc.
#[derive(Debug, Clone)]
pub struct Scheduler {
    config: SchedulerConfig,
    rng: SeededRng,
    attempt_ids: IdMint,
    worker_ids: IdMint,
    next_job: u64,
    jobs: BTreeMap<JobId, Job>,
    /// Running jobs in the order their tasks are served: priority first, then age.
    job_order: BTreeSet<(Reverse<i32>, JobId)>,
    /// Tasks waiting to be retried, by due time.
    retry_queue: RetryQueue,
    attempts: BTreeMap<AttemptId, Attempt>,
    workers: BTreeMap<WorkerId, Worker>,
    /// Task kinds some worker has advertised, plus those the shell declares built in.
    known_kinds: BTreeSet<String>,
    first_attempts_since_retry: u32,
    stats: SchedulerStats,
    /// Recently ended attempts and their tasks, to credit late results to their job.
    retired: BTreeMap<AttemptId, TaskId>,
}

/// How many ended attempts are remembered for accounting late results.
const RETIRED_ATTEMPTS_KEPT: usize = 65_536;

impl Scheduler {
    /// Returns an empty scheduler. `builtin_kinds` are accepted at submission even when no
    /// worker is registered yet.
    pub fn new(config: SchedulerConfig, builtin_kinds: &[&str]) -> Self {
        Self {
            rng: SeededRng::new(config.seed ^ config.epoch.rotate_left(32)),
            attempt_ids: IdMint::new(config.epoch),
            worker_ids: IdMint::new(config.epoch),
            config,
            next_job: 1,
            jobs: BTreeMap::new(),
            job_order: BTreeSet::new(),
            retry_queue: RetryQueue::default(),
            attempts: BTreeMap::new(),
            workers: BTreeMap::new(),
            known_kinds: builtin_kinds.iter().map(|kind| kind.to_string()).collect(),
            first_attempts_since_retry: 0,
            stats: SchedulerStats::default(),
            retired: BTreeMap::new(),
        }
    }

    /// Rebuilds the state a previous incarnation journaled. `now` is used for jobs that
    /// finish during recovery (and for deadlines, at the next tick).
    pub fn recover(
        config: SchedulerConfig,
        builtin_kinds: &[&str],
        events: impl IntoIterator<Item = JournalEvent>,
    ) -> Self {
        let mut scheduler = Self::new(config, builtin_kinds);
        for event in events {
            scheduler.replay(event);
        }
        scheduler.rebuild_queues();
        scheduler
    }

    /// Returns the configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Returns one job.
    pub fn job(&self, job: JobId) -> Option<&Job> {
        self.jobs.get(&job)
    }

    /// Returns every job, oldest first.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// Returns every live worker.
    pub fn workers(&self) -> impl Iterator<Item = (&WorkerId, &Worker)> {
        self.workers.iter()
    }

    /// Returns one live worker.
    pub fn worker(&self, worker: WorkerId) -> Option<&Worker> {
        self.workers.get(&worker)
    }

    /// Returns every live lease.
    pub fn attempts(&self) -> impl Iterator<Item = (&AttemptId, &Attempt)> {
        self.attempts.iter()
    }

    /// Returns the counters since start.
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    /// Returns the kinds accepted at submission, sorted.
    pub fn known_kinds(&self) -> Vec<String> {
        self.known_kinds.iter().cloned().collect()
    }
}
