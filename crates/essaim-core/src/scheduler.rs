//! The scheduler: every decision about jobs, tasks, attempts, leases and workers.
//!
//! It is a pure state machine. Each entry point takes the current time and the fact that
//! happened (a worker pulled, a result arrived, time passed), changes the state, returns
//! the reply for the caller and appends to `out` the [`Output`]s the shell must carry out:
//! journal events to make durable *before* replying, and jobs that finished.
//!
//! What it guarantees (checked by [`Scheduler::check_invariants`] and the simulation):
//! - a task commits at most one result, and only from an attempt that holds its lease;
//! - an attempt whose lease was revoked (lost worker, expired lease, timeout, cancelled
//!   job, speculative loser) never commits;
//! - a job never has more live attempts than its concurrency limit;
//! - every task of a terminal job is terminal;
//! - a task of stage s > 0 is granted only when every task of stage s - 1 has succeeded,
//!   and its attempt is handed the committed output of each of them;
//! - a lost upstream output is recomputed before the stage that needs it runs again.

use crate::backoff::full_jitter_delay;
use crate::ids::{AttemptId, IdMint, JobId, Millis, TaskId, WorkerId};
use crate::journal::JournalEvent;
use crate::model::{
    AfterLastAttempt, Assignment, AttemptError, CommittedResult, Job, JobState, Locality,
    ReportedResult, RetryQueue, StageOutput, TaskFailure, TaskOutput, TaskState,
};
use crate::rng::SeededRng;
use crate::spec::{RawJobSpec, SpecError};
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

    // ------------------------------------------------------------------ read side

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

    /// Returns the dead-lettered tasks of `job` (every job when `None`).
    pub fn dead_letters(&self, job: Option<JobId>) -> Vec<TaskId> {
        let mut found = Vec::new();
        for (job_id, job_state) in &self.jobs {
            if job.is_some_and(|wanted| wanted != *job_id) || job_state.counts().dead_lettered == 0
            {
                continue;
            }
            for (index, task) in job_state.tasks().iter().enumerate() {
                if *task.state() == TaskState::DeadLettered {
                    found.push(TaskId::new(*job_id, index as u32));
                }
            }
        }
        found
    }

    /// Returns, of the jobs a worker keeps files for, those whose files nobody will read
    /// again: jobs no longer known (forgotten after retention), and finished jobs of
    /// several stages (intermediate outputs, needed only while the job runs). The files
    /// of a finished one-stage job are its results and stay until it is forgotten.
    pub fn releasable_jobs(&self, jobs: &[JobId]) -> Vec<JobId> {
        jobs.iter()
            .copied()
            .filter(|job| match self.jobs.get(job) {
                None => *job < JobId(self.next_job),
                Some(job) => job.state != JobState::Running && job.stage_count() > 1,
            })
            .collect()
    }

    /// Returns the number of tasks in the dead-letter queue.
    pub fn dead_letter_count(&self) -> u64 {
        self.jobs
            .values()
            .map(|job| u64::from(job.counts().dead_lettered))
            .sum()
    }

    /// Returns true when `worker` would get a task if it pulled now (used to wake
    /// long-polls without granting anything).
    pub fn has_work_for(&self, now: Millis, worker: WorkerId) -> bool {
        let Some(state) = self.workers.get(&worker) else {
            return true;
        };
        if state.draining {
            return false;
        }
        self.job_order.iter().any(|(_, job_id)| {
            let job = &self.jobs[job_id];
            job.has_capacity() && job.has_queued_task_of(&state.info.kinds)
        }) || self
            .retry_queue
            .first_due_at()
            .is_some_and(|not_before| not_before <= now)
    }

    // ------------------------------------------------------------------ clients

    /// Validates and accepts a job.
    pub fn submit(
        &mut self,
        now: Millis,
        raw: RawJobSpec,
        out: &mut Vec<Output>,
    ) -> Result<JobId, SpecError> {
        let known: Vec<String> = self.known_kinds.iter().cloned().collect();
        let spec = raw.validate(&known)?;
        let job_id = JobId(self.next_job);
        self.next_job += 1;
        out.push(Output::Persist(JournalEvent::JobSubmitted {
            job: job_id,
            spec: spec.clone(),
            at: now,
        }));
        self.insert_job(job_id, spec, now);
        Ok(job_id)
    }

    /// Cancels a running job: queued tasks are skipped, live attempts are revoked.
    pub fn cancel_job(
        &mut self,
        now: Millis,
        job_id: JobId,
        reason: &str,
        out: &mut Vec<Output>,
    ) -> Result<(), JobError> {
        let job = self.jobs.get(&job_id).ok_or(JobError::NotFound(job_id))?;
        if job.state != JobState::Running {
            return Err(JobError::AlreadyFinished {
                job: job_id,
                state: job.state.name(),
            });
        }
        out.push(Output::Persist(JournalEvent::JobCancelled {
            job: job_id,
            reason: reason.to_string(),
            at: now,
        }));
        self.apply_cancel(job_id, reason, now);
        let state = self.jobs[&job_id].state.clone();
        out.push(Output::JobFinished { job: job_id, state });
        Ok(())
    }

    /// Puts dead letters back in the queue with fresh attempts; returns how many.
    pub fn requeue_dead_letters(
        &mut self,
        now: Millis,
        tasks: &[TaskId],
        out: &mut Vec<Output>,
    ) -> u32 {
        let tasks: Vec<TaskId> = tasks
            .iter()
            .copied()
            .filter(|t| self.is_requeueable(*t))
            .collect();
        if tasks.is_empty() {
            return 0;
        }
        out.push(Output::Persist(JournalEvent::DeadLettersRequeued {
            tasks: tasks.clone(),
            at: now,
        }));
        for task in &tasks {
            self.apply_requeue(*task);
        }
        tasks.len() as u32
    }

    /// Removes dead letters for good; returns how many.
    pub fn purge_dead_letters(
        &mut self,
        now: Millis,
        tasks: &[TaskId],
        out: &mut Vec<Output>,
    ) -> u32 {
        let tasks: Vec<TaskId> = tasks
            .iter()
            .copied()
            .filter(|t| self.is_dead_letter(*t))
            .collect();
        if tasks.is_empty() {
            return 0;
        }
        out.push(Output::Persist(JournalEvent::DeadLettersPurged {
            tasks: tasks.clone(),
            at: now,
        }));
        for task in &tasks {
            self.jobs
                .get_mut(&task.job)
                .expect("dead letter has a job")
                .purge(task.index);
        }
        tasks.len() as u32
    }

    /// A dead letter can go back to the queue unless its job was cancelled: a cancelled
    /// job stays cancelled (its dead letters can only be inspected or purged).
    fn is_requeueable(&self, task: TaskId) -> bool {
        let cancelled = self
            .jobs
            .get(&task.job)
            .is_some_and(|j| matches!(j.state, JobState::Cancelled { .. }));
        self.is_dead_letter(task) && !cancelled
    }

    fn is_dead_letter(&self, task: TaskId) -> bool {
        self.jobs
            .get(&task.job)
            .is_some_and(|job| job.is_dead_letter(task.index))
    }

    // ------------------------------------------------------------------ workers

    /// Registers a worker and returns its new id.
    pub fn register_worker(&mut self, now: Millis, info: WorkerInfo) -> WorkerId {
        let worker_id = WorkerId(self.worker_ids.mint());
        self.known_kinds.extend(info.kinds.iter().cloned());
        self.workers.insert(
            worker_id,
            Worker {
                info,
                last_seen: now,
                held: BTreeSet::new(),
                cancels: BTreeSet::new(),
                draining: false,
                busy_slots: 0,
            },
        );
        self.stats.workers_registered += 1;
        worker_id
    }

    /// Renews the leases of the attempts a worker still holds and tells it what to stop.
    pub fn heartbeat(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        held: &[AttemptId],
        draining: bool,
        busy_slots: u32,
    ) -> HeartbeatReply {
        let Some(worker) = self.workers.get_mut(&worker_id) else {
            return HeartbeatReply {
                reregister: true,
                cancel: held.to_vec(),
                release_jobs: Vec::new(),
            };
        };
        worker.last_seen = now;
        worker.draining |= draining;
        worker.busy_slots = busy_slots;
        let mut cancel: BTreeSet<AttemptId> = std::mem::take(&mut worker.cancels);
        for attempt_id in held {
            match self.attempts.get_mut(attempt_id) {
                Some(attempt) if attempt.worker == worker_id => {
                    attempt.lease_expires_at = now.saturating_add(self.config.lease_ms);
                }
                // Revoked, or never ours: a zombie the worker must stop.
                _ => {
                    cancel.insert(*attempt_id);
                }
            }
        }
        HeartbeatReply {
            reregister: false,
            cancel: cancel.into_iter().collect(),
            release_jobs: Vec::new(),
        }
    }

    /// Grants up to `max` new leases to a worker.
    pub fn pull(&mut self, now: Millis, worker_id: WorkerId, max: u32) -> PullReply {
        let Some(worker) = self.workers.get_mut(&worker_id) else {
            return PullReply {
                reregister: true,
                assignments: Vec::new(),
            };
        };
        worker.last_seen = now;
        if worker.draining {
            return PullReply::default();
        }
        let kinds = worker.info.kinds.clone();
        let data_dirs = worker.info.data_dirs.clone();
        let mut assignments = Vec::new();
        while assignments.len() < max as usize {
            let Some((task, speculative)) = self.pick_next(now, worker_id, &kinds, &data_dirs)
            else {
                break;
            };
            assignments.push(self.grant(now, worker_id, task, speculative));
        }
        PullReply {
            reregister: false,
            assignments,
        }
    }

    /// Takes in finished attempts: commits the first valid result of each task, records
    /// failures and schedules retries, rejects late and zombie results.
    pub fn report(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        results: Vec<ReportedResult>,
        out: &mut Vec<Output>,
    ) -> ReportReply {
        let mut reply = ReportReply {
            reregister: false,
            rejected: 0,
        };
        match self.workers.get_mut(&worker_id) {
            Some(worker) => worker.last_seen = now,
            None => reply.reregister = true,
        }
        for result in results {
            let holds_lease = self
                .attempts
                .get(&result.attempt)
                .is_some_and(|attempt| attempt.worker == worker_id);
            if !holds_lease {
                reply.rejected += 1;
                self.count_rejected(result.attempt);
                continue;
            }
            match result.outcome {
                Ok(output) => self.commit(now, result.attempt, output, result.duration_ms, out),
                Err(failure) => self.fail_attempt(now, result.attempt, failure, out),
            }
        }
        reply
    }

    /// A draining worker leaves: `returned` attempts were never started and go back to the
    /// front of the queue; any other attempt it still holds is lost.
    pub fn deregister(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        returned: &[AttemptId],
        out: &mut Vec<Output>,
    ) {
        // Each hand-back goes to the front of its queue, so the newest grant goes back first:
        // the tasks then keep the order they were granted in (attempt ids grow per grant).
        let mut newest_first = returned.to_vec();
        newest_first.sort_unstable_by(|left, right| right.cmp(left));
        for attempt_id in &newest_first {
            let ours = self
                .attempts
                .get(attempt_id)
                .is_some_and(|a| a.worker == worker_id);
            if ours {
                self.hand_back(*attempt_id);
            }
        }
        self.remove_worker(now, worker_id, "worker left", out);
    }

    // ------------------------------------------------------------------ time

    /// Lets time pass: declares silent workers dead, expires leases and timed-out attempts,
    /// and skips the tasks of jobs past their deadline.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Output>) {
        let silent_workers: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, worker)| {
                now >= worker
                    .last_seen
                    .saturating_add(self.config.worker_timeout_ms)
            })
            .map(|(id, _)| *id)
            .collect();
        for worker_id in silent_workers {
            self.stats.workers_lost += 1;
            self.remove_worker(now, worker_id, "worker lost: no heartbeat", out);
        }

        let mut expired = Vec::new();
        for (attempt_id, attempt) in &self.attempts {
            let lease_expired = now >= attempt.lease_expires_at;
            let timeout = self.jobs[&attempt.task.job].spec.task_timeout_ms;
            // The worker enforces the timeout itself; this catches one that cannot.
            let timed_out = timeout.is_some_and(|limit| {
                now >= attempt
                    .started_at
                    .saturating_add(limit)
                    .saturating_add(self.config.lease_ms)
            });
            if lease_expired {
                expired.push((*attempt_id, "lease expired".to_string()));
            } else if timed_out {
                expired.push((
                    *attempt_id,
                    format!("timed out after {} ms", timeout.unwrap_or(0)),
                ));
            }
        }
        for (attempt_id, reason) in expired {
            self.stats.lease_expiries += 1;
            self.revoke(now, attempt_id, TaskFailure::retryable(reason), out);
        }

        let past_deadline: Vec<JobId> = self
            .job_order
            .iter()
            .map(|(_, job)| *job)
            .filter(|job| self.jobs[job].past_deadline(now))
            .collect();
        for job in past_deadline {
            self.skip_unstarted(job);
            self.finish_if_done(now, job, out);
        }
    }

    // ------------------------------------------------------------------ decisions

    /// Chooses the next task for a worker: first attempts, with a due retry every
    /// `retry_every` grants; then any due retry; then a straggler's speculative copy.
    fn pick_next(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        kinds: &BTreeSet<String>,
        data_dirs: &[String],
    ) -> Option<(TaskId, bool)> {
        let retry_turn = self.first_attempts_since_retry >= self.config.retry_every;
        if retry_turn && let Some(task) = self.take_due_retry(now, kinds) {
            self.first_attempts_since_retry = 0;
            return Some((task, false));
        }
        if let Some(task) = self.take_first_attempt(now, kinds, data_dirs) {
            self.first_attempts_since_retry += 1;
            return Some((task, false));
        }
        if let Some(task) = self.take_due_retry(now, kinds) {
            self.first_attempts_since_retry = 0;
            return Some((task, false));
        }
        self.find_straggler(now, worker_id, kinds)
            .map(|task| (task, true))
    }

    /// Takes the first queued task of the first job with capacity; among the first
    /// [`LOCALITY_SCAN`] tasks of a queue, one whose input the worker holds goes first.
    fn take_first_attempt(
        &mut self,
        now: Millis,
        kinds: &BTreeSet<String>,
        data_dirs: &[String],
    ) -> Option<TaskId> {
        for (_, job_id) in &self.job_order {
            let job = self.jobs.get_mut(job_id).expect("ordered job exists");
            if !job.has_capacity() || job.past_deadline(now) {
                continue;
            }
            let Some((index, locality)) = job.take_queued_task(kinds, data_dirs) else {
                continue;
            };
            match locality {
                Locality::Unconstrained => {}
                Locality::Local => self.stats.local_grants += 1,
                Locality::Remote => self.stats.remote_grants += 1,
            }
            return Some(TaskId::new(*job_id, index));
        }
        None
    }

    fn take_due_retry(&mut self, now: Millis, kinds: &BTreeSet<String>) -> Option<TaskId> {
        let jobs = &self.jobs;
        self.retry_queue.take_first_due(now, |task| {
            let job = &jobs[&task.job];
            job.has_capacity() && !job.past_deadline(now) && kinds.contains(job.kind_of(task.index))
        })
    }

    /// Finds a task whose only attempt runs on another worker for much longer than its
    /// job's median task: the straggler gets a copy here (first result wins).
    fn find_straggler(
        &self,
        now: Millis,
        worker_id: WorkerId,
        kinds: &BTreeSet<String>,
    ) -> Option<TaskId> {
        let mut medians: BTreeMap<JobId, Option<Millis>> = BTreeMap::new();
        for attempt in self.attempts.values() {
            if attempt.worker == worker_id || attempt.speculative {
                continue;
            }
            let job = &self.jobs[&attempt.task.job];
            let Some(multiplier) = job.spec.speculation_multiplier else {
                continue;
            };
            let task = &job.tasks()[attempt.task.index as usize];
            let single_attempt =
                matches!(task.state(), TaskState::Running { attempts } if attempts.len() == 1);
            let kind = job.kind_of(attempt.task.index);
            if !single_attempt
                || !job.task_ready(attempt.task.index)
                || !job.has_capacity()
                || job.past_deadline(now)
                || !kinds.contains(kind)
            {
                continue;
            }
            let median = *medians
                .entry(job.id)
                .or_insert_with(|| job.median_duration(self.config.speculation_min_samples));
            let Some(median) = median else { continue };
            let threshold = ((median as f64) * multiplier) as Millis;
            let threshold = threshold.max(self.config.speculation_min_runtime_ms);
            if now.saturating_sub(attempt.started_at) > threshold {
                return Some(attempt.task);
            }
        }
        None
    }

    // ------------------------------------------------------------------ transitions

    fn grant(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        task_id: TaskId,
        speculative: bool,
    ) -> Assignment {
        let attempt_id = AttemptId(self.attempt_ids.mint());
        let job = self
            .jobs
            .get_mut(&task_id.job)
            .expect("granted task has a job");
        let attempt_number = job.start_attempt(task_id.index, attempt_id, speculative);
        let assignment = job.assignment(task_id.index, attempt_id, attempt_number, speculative);
        self.stats.attempts_started += 1;
        if speculative {
            self.stats.speculative_attempts += 1;
        }
        self.attempts.insert(
            attempt_id,
            Attempt {
                task: task_id,
                worker: worker_id,
                started_at: now,
                lease_expires_at: now.saturating_add(self.config.lease_ms),
                speculative,
            },
        );
        self.workers
            .get_mut(&worker_id)
            .expect("pulling worker exists")
            .held
            .insert(attempt_id);
        assignment
    }

    /// Ends a live attempt: removes it from the lease table and its worker, and from its
    /// job (see [`Job::end_attempt`]). Returns it and the task's other live attempts.
    fn release(&mut self, attempt_id: AttemptId) -> (Attempt, Vec<AttemptId>) {
        let attempt = self
            .attempts
            .remove(&attempt_id)
            .expect("released attempt is live");
        if let Some(worker) = self.workers.get_mut(&attempt.worker) {
            worker.held.remove(&attempt_id);
        }
        let others = self
            .jobs
            .get_mut(&attempt.task.job)
            .expect("attempt has a job")
            .end_attempt(attempt.task.index, attempt_id);
        self.retired.insert(attempt_id, attempt.task);
        if self.retired.len() > RETIRED_ATTEMPTS_KEPT {
            self.retired.pop_first();
        }
        (attempt, others)
    }

    /// Ends a live attempt its worker must stop (a speculative loser, a cancelled job's).
    fn release_and_cancel(&mut self, attempt_id: AttemptId) {
        let (attempt, _) = self.release(attempt_id);
        if let Some(worker) = self.workers.get_mut(&attempt.worker) {
            worker.cancels.insert(attempt_id);
        }
    }

    fn commit(
        &mut self,
        now: Millis,
        attempt_id: AttemptId,
        output: TaskOutput,
        duration_ms: Millis,
        out: &mut Vec<Output>,
    ) {
        let (attempt, others) = self.release(attempt_id);
        let task_id = attempt.task;
        // Every other attempt of the task (a speculative twin) loses and is told to stop.
        for loser in others {
            self.release_and_cancel(loser);
        }
        self.stats.tasks_committed += 1;
        let result = CommittedResult {
            task: task_id,
            attempt: attempt_id,
            worker: attempt.worker,
            duration_ms,
            output,
        };
        self.jobs
            .get_mut(&task_id.job)
            .expect("committed task has a job")
            .commit(&result);
        out.push(Output::Persist(JournalEvent::TaskSucceeded {
            result,
            at: now,
        }));
        self.finish_if_done(now, task_id.job, out);
    }

    /// Records a failed attempt; when it was the task's last live attempt, schedules a
    /// retry or dead-letters the task.
    fn fail_attempt(
        &mut self,
        now: Millis,
        attempt_id: AttemptId,
        failure: TaskFailure,
        out: &mut Vec<Output>,
    ) {
        if !failure.lost_inputs.is_empty() && self.reports_lost_inputs(attempt_id, &failure) {
            self.take_lost_inputs(now, attempt_id, failure, out);
            return;
        }
        let (attempt, still_running) = self.release(attempt_id);
        let task_id = attempt.task;
        let error = AttemptError {
            attempt: attempt_id,
            worker: attempt.worker,
            at: now,
            failure,
        };
        out.push(Output::Persist(JournalEvent::AttemptFailed {
            task: task_id,
            error: error.clone(),
        }));
        self.stats.attempts_failed += 1;
        let job = self
            .jobs
            .get_mut(&task_id.job)
            .expect("failed task has a job");
        let retryable = error.failure.retryable;
        job.record_failure(task_id.index, error);
        if !still_running.is_empty() {
            return;
        }
        match job.after_last_attempt_failed(task_id.index, retryable) {
            AfterLastAttempt::DeadLetter => self.dead_letter(now, task_id, out),
            AfterLastAttempt::Skip => {
                job.skip_task(task_id.index);
                self.finish_if_done(now, task_id.job, out);
            }
            AfterLastAttempt::WaitForUpstream => job.return_to_pending(task_id.index),
            AfterLastAttempt::Retry { attempts_made } => {
                let delay = full_jitter_delay(
                    &mut self.rng,
                    attempts_made,
                    job.spec.backoff_base_ms,
                    job.spec.backoff_max_ms,
                );
                let not_before = now.saturating_add(delay);
                job.schedule_retry(task_id.index, not_before, &mut self.retry_queue);
                self.stats.retries_scheduled += 1;
            }
        }
    }

    /// Takes a lease away from its holder (lost worker, expired lease, timeout): the
    /// attempt counts as failed and its holder, if alive, is told to stop.
    fn revoke(
        &mut self,
        now: Millis,
        attempt_id: AttemptId,
        failure: TaskFailure,
        out: &mut Vec<Output>,
    ) {
        let Some(attempt) = self.attempts.get(&attempt_id) else {
            return;
        };
        if let Some(worker) = self.workers.get_mut(&attempt.worker) {
            worker.cancels.insert(attempt_id);
        }
        self.fail_attempt(now, attempt_id, failure, out);
    }

    /// An attempt handed back unstarted: the task goes to the front of its queue and the
    /// attempt does not count.
    fn hand_back(&mut self, attempt_id: AttemptId) {
        let (attempt, still_running) = self.release(attempt_id);
        self.jobs
            .get_mut(&attempt.task.job)
            .expect("handed-back task has a job")
            .hand_back(attempt.task.index, !still_running.is_empty());
    }

    fn remove_worker(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        reason: &str,
        out: &mut Vec<Output>,
    ) {
        let Some(worker) = self.workers.get(&worker_id) else {
            return;
        };
        let held: Vec<AttemptId> = worker.held.iter().copied().collect();
        for attempt_id in held {
            self.stats.lease_expiries += 1;
            self.revoke(now, attempt_id, TaskFailure::retryable(reason), out);
        }
        self.workers.remove(&worker_id);
        // Outputs this worker served are gone with it; recompute those still needed.
        let lost: Vec<TaskId> = self
            .job_order
            .iter()
            .flat_map(|(_, job_id)| {
                let served = self.jobs[job_id].outputs_served_by(worker_id);
                served.into_iter().map(|index| TaskId::new(*job_id, index))
            })
            .collect();
        for task in lost {
            self.lose_output(now, task, "the worker serving it was lost", out);
        }
    }

    fn count_rejected(&mut self, attempt_id: AttemptId) {
        self.stats.results_rejected += 1;
        // The attempt is gone from the lease table; credit its job when we still know it.
        let Some(task) = self.retired.get(&attempt_id) else {
            return;
        };
        if let Some(job) = self.jobs.get_mut(&task.job) {
            job.count_rejected_result();
        }
    }

    /// Moves the queued tasks of a job past its deadline to `Skipped`.
    fn skip_unstarted(&mut self, job_id: JobId) {
        self.jobs
            .get_mut(&job_id)
            .expect("job exists")
            .skip_unstarted(&mut self.retry_queue);
    }

    fn finish_if_done(&mut self, now: Millis, job_id: JobId, out: &mut Vec<Output>) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        if !job.finish_if_done(now) {
            return;
        }
        self.job_order.remove(&(Reverse(job.spec.priority), job_id));
        out.push(Output::JobFinished {
            job: job_id,
            state: job.state.clone(),
        });
    }

    /// Dead-letters a task that ran out of attempts; later stages can no longer run.
    fn dead_letter(&mut self, now: Millis, task_id: TaskId, out: &mut Vec<Output>) {
        self.jobs
            .get_mut(&task_id.job)
            .expect("task has a job")
            .dead_letter(task_id.index, &mut self.retry_queue);
        self.stats.dead_lettered += 1;
        out.push(Output::Persist(JournalEvent::TaskDeadLettered {
            task: task_id,
            at: now,
        }));
        self.finish_if_done(now, task_id.job, out);
    }

    /// Returns true when a failure's `lost_inputs` name tasks of the stage just before
    /// the failed attempt's (anything else is an ordinary failure).
    fn reports_lost_inputs(&self, attempt_id: AttemptId, failure: &TaskFailure) -> bool {
        let Some(attempt) = self.attempts.get(&attempt_id) else {
            return false;
        };
        self.jobs[&attempt.task.job].names_upstream_tasks(attempt.task.index, &failure.lost_inputs)
    }

    /// An attempt could not read some upstream outputs: they are recomputed (unless they
    /// already were since the attempt started), and the task waits for them without the
    /// failure counting against its attempts.
    fn take_lost_inputs(
        &mut self,
        now: Millis,
        attempt_id: AttemptId,
        failure: TaskFailure,
        out: &mut Vec<Output>,
    ) {
        let (attempt, still_running) = self.release(attempt_id);
        let task_id = attempt.task;
        for upstream in &failure.lost_inputs {
            let upstream = TaskId::new(task_id.job, *upstream);
            // An output committed after this attempt was granted is a new one it never saw.
            if self.jobs[&task_id.job].output_older_than(upstream.index, attempt_id) {
                let why = format!("attempt {attempt_id} could not read it");
                self.lose_output(now, upstream, &why, out);
            }
        }
        let job = self.jobs.get_mut(&task_id.job).expect("task has a job");
        let error = AttemptError {
            attempt: attempt_id,
            worker: attempt.worker,
            at: now,
            failure,
        };
        job.record_lost_inputs(task_id.index, error);
        if !still_running.is_empty() {
            return;
        }
        if job.stage_blocked(job.stage_of(task_id.index)) {
            job.skip_task(task_id.index);
            self.finish_if_done(now, task_id.job, out);
            return;
        }
        job.return_to_pending(task_id.index);
    }

    /// A committed output of a non-final stage is gone: the task runs again, or is
    /// dead-lettered when its outputs were lost as many times as it may be attempted.
    fn lose_output(&mut self, now: Millis, task_id: TaskId, why: &str, out: &mut Vec<Output>) {
        let job = self.jobs.get_mut(&task_id.job).expect("task has a job");
        let Some((attempt, worker)) = job.needed_output_origin(task_id.index) else {
            return;
        };
        self.stats.outputs_lost += 1;
        let error = AttemptError {
            attempt,
            worker,
            at: now,
            failure: TaskFailure::retryable(format!("committed output lost: {why}")),
        };
        out.push(Output::Persist(JournalEvent::TaskOutputLost {
            task: task_id,
            error: error.clone(),
        }));
        if job.lose_output(task_id.index, error, &mut self.retry_queue) {
            self.dead_letter(now, task_id, out);
        }
    }

    // ------------------------------------------------------------------ shared by live and replay

    fn insert_job(&mut self, job_id: JobId, spec: crate::spec::JobSpec, now: Millis) {
        let priority = spec.priority;
        let mut job = Job::new(job_id, spec, now);
        job.queue_first_stage();
        self.jobs.insert(job_id, job);
        self.job_order.insert((Reverse(priority), job_id));
        self.next_job = self.next_job.max(job_id.0 + 1);
    }

    fn apply_cancel(&mut self, job_id: JobId, reason: &str, now: Millis) {
        let live: Vec<AttemptId> = self
            .attempts
            .iter()
            .filter(|(_, attempt)| attempt.task.job == job_id)
            .map(|(id, _)| *id)
            .collect();
        for attempt_id in live {
            self.release_and_cancel(attempt_id);
        }
        let job = self.jobs.get_mut(&job_id).expect("cancelled job exists");
        job.cancel(reason, now, &mut self.retry_queue);
        self.job_order.remove(&(Reverse(job.spec.priority), job_id));
    }

    fn apply_requeue(&mut self, task: TaskId) {
        let job = self
            .jobs
            .get_mut(&task.job)
            .expect("requeued task has a job");
        if job.requeue_dead_letter(task.index) {
            self.job_order
                .insert((Reverse(job.spec.priority), task.job));
        }
    }

    /// Applies one journaled event during recovery. Queues are rebuilt afterwards.
    fn replay(&mut self, event: JournalEvent) {
        let mut ignored = Vec::new();
        match event {
            JournalEvent::JobSubmitted { job, spec, at } => {
                let priority = spec.priority;
                self.jobs.insert(job, Job::new(job, spec, at));
                self.job_order.insert((Reverse(priority), job));
                self.next_job = self.next_job.max(job.0 + 1);
            }
            JournalEvent::TaskSucceeded { result, at } => {
                let Some(job) = self.jobs.get_mut(&result.task.job) else {
                    return;
                };
                job.commit(&result);
                self.finish_if_done(at, result.task.job, &mut ignored);
            }
            JournalEvent::AttemptFailed { task, error } => {
                let Some(job) = self.jobs.get_mut(&task.job) else {
                    return;
                };
                job.replay_failure(task.index, error);
            }
            JournalEvent::TaskDeadLettered { task, at } => {
                let Some(job) = self.jobs.get_mut(&task.job) else {
                    return;
                };
                job.dead_letter(task.index, &mut self.retry_queue);
                self.finish_if_done(at, task.job, &mut ignored);
            }
            JournalEvent::TaskOutputLost { task, error } => {
                let Some(job) = self.jobs.get_mut(&task.job) else {
                    return;
                };
                if *job.tasks()[task.index as usize].state() == TaskState::Succeeded {
                    // Dead-lettering after too many losses is journaled on its own.
                    job.lose_output(task.index, error, &mut self.retry_queue);
                }
            }
            JournalEvent::OutputLocations { job, outputs } => {
                let Some(state) = self.jobs.get_mut(&job) else {
                    return;
                };
                for (index, output) in outputs {
                    state.restore_output(index, output);
                }
            }
            JournalEvent::TaskCountersSummed { job, counters } => {
                if let Some(state) = self.jobs.get_mut(&job) {
                    state.restore_task_counters(counters);
                }
            }
            JournalEvent::JobCancelled { job, reason, at } => {
                if self
                    .jobs
                    .get(&job)
                    .is_some_and(|j| j.state == JobState::Running)
                {
                    self.apply_cancel(job, &reason, at);
                }
            }
            JournalEvent::DeadLettersRequeued { tasks, .. } => {
                for task in tasks {
                    if self.is_requeueable(task) {
                        self.apply_requeue(task);
                    }
                }
            }
            JournalEvent::TasksCommitted { job, tasks, at } => {
                let Some(state) = self.jobs.get_mut(&job) else {
                    return;
                };
                for index in tasks {
                    state.restore_committed(index);
                }
                self.finish_if_done(at, job, &mut ignored);
            }
            JournalEvent::TaskProgress {
                task,
                attempts_made,
                errors,
            } => {
                let Some(job) = self.jobs.get_mut(&task.job) else {
                    return;
                };
                job.restore_progress(task.index, attempts_made, errors);
            }
            JournalEvent::JobIdsReserved { next_job } => {
                self.next_job = self.next_job.max(next_job);
            }
            JournalEvent::DeadLettersPurged { tasks, at } => {
                for task in tasks {
                    if self.is_dead_letter(task) {
                        self.jobs
                            .get_mut(&task.job)
                            .expect("checked")
                            .purge(task.index);
                    }
                    self.finish_if_done(at, task.job, &mut ignored);
                }
            }
        }
    }

    fn rebuild_queues(&mut self) {
        for job in self.jobs.values_mut() {
            job.rebuild_pending_queues();
        }
    }

    // ------------------------------------------------------------------ retention and snapshots

    /// Forgets jobs that finished at least `retention_ms` ago; returns them. Their events
    /// disappear from the journal at the next snapshot, their results with them.
    pub fn forget_jobs_finished_before(&mut self, now: Millis, retention_ms: Millis) -> Vec<JobId> {
        let expired: Vec<JobId> = self
            .jobs
            .values()
            .filter(|job| job.state != JobState::Running)
            .filter(|job| {
                job.finished_at
                    .is_some_and(|at| at.saturating_add(retention_ms) <= now)
            })
            .map(|job| job.id)
            .collect();
        for job in &expired {
            self.jobs.remove(job);
        }
        expired
    }

    /// Returns the smallest list of journal events from which [`Scheduler::recover`]
    /// rebuilds today's jobs: a compacted journal. Leases are not part of it (they never
    /// are), nor are the outputs of committed tasks (they stay in the results table).
    pub fn snapshot(&self, now: Millis) -> Vec<JournalEvent> {
        let mut events = vec![JournalEvent::JobIdsReserved {
            next_job: self.next_job,
        }];
        for (job_id, job) in &self.jobs {
            events.push(JournalEvent::JobSubmitted {
                job: *job_id,
                spec: job.spec.clone(),
                at: job.submitted_at,
            });
            let mut committed = Vec::new();
            let mut dead_letters = Vec::new();
            let mut purged = Vec::new();
            for (index, task) in job.tasks().iter().enumerate() {
                let task_id = TaskId::new(*job_id, index as u32);
                // Attempts in flight are forgotten by a restart (leases are not journaled):
                // count only finished ones, as replaying the full journal would.
                let in_flight = match task.state() {
                    TaskState::Running { attempts } => attempts.len() as u32,
                    _ => 0,
                };
                let attempts_made = task.attempts_made().saturating_sub(in_flight);
                // A committed task's attempt count no longer matters: the snapshot stays
                // proportional to failures, not to the work done.
                let count_matters = attempts_made > 0 && *task.state() != TaskState::Succeeded;
                if count_matters || !task.errors().is_empty() {
                    events.push(JournalEvent::TaskProgress {
                        task: task_id,
                        attempts_made,
                        errors: task.errors().to_vec(),
                    });
                }
                match task.state() {
                    TaskState::Succeeded => committed.push(index as u32),
                    TaskState::DeadLettered => dead_letters.push(task_id),
                    TaskState::Purged => {
                        dead_letters.push(task_id);
                        purged.push(task_id);
                    }
                    _ => {}
                }
            }
            let finished_at = job.finished_at.unwrap_or(now);
            if !committed.is_empty() {
                events.push(JournalEvent::TasksCommitted {
                    job: *job_id,
                    tasks: committed,
                    at: finished_at,
                });
            }
            let outputs: Vec<(u32, StageOutput)> = job
                .tasks()
                .iter()
                .enumerate()
                .filter_map(|(index, task)| Some((index as u32, task.output()?.clone())))
                .collect();
            if !outputs.is_empty() {
                events.push(JournalEvent::OutputLocations {
                    job: *job_id,
                    outputs,
                });
            }
            if !job.task_counters().is_empty() {
                events.push(JournalEvent::TaskCountersSummed {
                    job: *job_id,
                    counters: job.task_counters().clone(),
                });
            }
            for task in dead_letters {
                events.push(JournalEvent::TaskDeadLettered {
                    task,
                    at: finished_at,
                });
            }
            if !purged.is_empty() {
                events.push(JournalEvent::DeadLettersPurged {
                    tasks: purged,
                    at: finished_at,
                });
            }
            if let JobState::Cancelled { reason } = &job.state {
                events.push(JournalEvent::JobCancelled {
                    job: *job_id,
                    reason: reason.clone(),
                    at: finished_at,
                });
            }
        }
        events
    }

    // ------------------------------------------------------------------ invariants

    /// Checks that every index agrees with the task states; returns what is wrong.
    /// Cheap enough for tests after every step, too slow for production hot paths.
    pub fn check_invariants(&self) -> Result<(), String> {
        let live_by_job = self.check_leases()?;
        let queued_retries = self.check_retry_queue()?;
        let mut retrying_tasks = 0usize;
        for (job_id, job) in &self.jobs {
            let leases_held = live_by_job.get(job_id).copied().unwrap_or(0);
            retrying_tasks +=
                job.check_invariants(|attempt| self.attempts.contains_key(&attempt), leases_held)?;
            let ordered = self
                .job_order
                .contains(&(Reverse(job.spec.priority), *job_id));
            let running = job.state == JobState::Running;
            if ordered != running {
                return Err(format!(
                    "job {job_id} is {:?} but ordered={ordered}",
                    job.state
                ));
            }
        }
        if retrying_tasks != queued_retries {
            return Err(format!(
                "{retrying_tasks} retrying tasks but {queued_retries} queued retries"
            ));
        }
        Ok(())
    }

    /// Checks that every lease belongs to a running task and to a worker listing it, and
    /// that every worker lists only its leases; returns the leases of each job.
    fn check_leases(&self) -> Result<BTreeMap<JobId, u32>, String> {
        let mut live_by_job: BTreeMap<JobId, u32> = BTreeMap::new();
        for (attempt_id, attempt) in &self.attempts {
            *live_by_job.entry(attempt.task.job).or_default() += 1;
            let job = self
                .jobs
                .get(&attempt.task.job)
                .ok_or("attempt of unknown job")?;
            let task = &job.tasks()[attempt.task.index as usize];
            let TaskState::Running { attempts } = task.state() else {
                return Err(format!(
                    "attempt {attempt_id} live but task {} is {:?}",
                    attempt.task,
                    task.state()
                ));
            };
            if !attempts.contains(attempt_id) {
                return Err(format!(
                    "attempt {attempt_id} missing from task {}",
                    attempt.task
                ));
            }
            let worker = self
                .workers
                .get(&attempt.worker)
                .ok_or_else(|| format!("attempt {attempt_id} held by unknown worker"))?;
            if !worker.held.contains(attempt_id) {
                return Err(format!("worker does not list its attempt {attempt_id}"));
            }
        }
        for (worker_id, worker) in &self.workers {
            for attempt_id in &worker.held {
                let ours = self
                    .attempts
                    .get(attempt_id)
                    .is_some_and(|a| a.worker == *worker_id);
                if !ours {
                    return Err(format!(
                        "worker {worker_id} holds attempt {attempt_id} that is not its lease"
                    ));
                }
            }
        }
        Ok(live_by_job)
    }

    /// Checks that every retry queue entry is a task retrying at that time; returns how
    /// many entries there are.
    fn check_retry_queue(&self) -> Result<usize, String> {
        let mut queued_retries = 0usize;
        for (not_before, task) in self.retry_queue.iter() {
            queued_retries += 1;
            let state = self.jobs[&task.job].tasks()[task.index as usize].state();
            if *state
                != (TaskState::Retrying {
                    not_before: *not_before,
                })
            {
                return Err(format!(
                    "retry queue entry for {task} but task is {state:?}"
                ));
            }
        }
        Ok(queued_retries)
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
