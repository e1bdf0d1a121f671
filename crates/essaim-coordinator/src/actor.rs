//! The actor: the only task that touches the scheduler and appends to the journal.
//!
//! Requests arrive as [`Command`]s on a channel. The actor takes every command waiting
//! (up to [`MAX_BATCH`]), applies them all to the scheduler, makes the resulting journal
//! events durable in ONE transaction, and only then sends the replies. That is group
//! commit: while one batch is being written, the next one queues up, so the cost of an
//! fsync is shared by everyone who arrived meanwhile. Nothing is acknowledged before it
//! is durable.
//!
//! Long-polls (workers pulling with nothing to do, clients waiting for a job) are parked
//! here and answered when the state changes or their deadline passes.
//!
//! The journal is any [`Journal`] (the embedded redb file today): the actor relies only on
//! its contract, that a batch is durable once `append` returns and that any write error is
//! fatal.

mod clock;
mod observe;

use crate::auth::{Principal, Role};
use crate::inputs_watch::ParkedWatches;
use crate::observatory::Observatory;
use essaim_core::{
    HeartbeatReply, JobError, JobId, JobState, JournalEvent, Output, PullReply, RawJobSpec,
    ReportReply, ReportedResult, Scheduler, SchedulerStats, SpecError, TaskId, WorkerId,
    WorkerInfo,
};
use essaim_store::{Journal, StoreError};
use essaim_telemetry::{BuildInfo, CoordinatorMetrics, Health, JobOutcome};
use observe::{log_attempt_outcome, log_grants};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Most commands applied in one batch (one journal transaction).
pub const MAX_BATCH: usize = 4096;

/// What a [`Query`] reads: the scheduler's state and the observatory's record.
pub struct QueryView<'a> {
    /// The scheduler.
    pub scheduler: &'a Scheduler,
    /// History and queue statistics (mutable: reading the cluster's window moves it to
    /// the present).
    pub observatory: &'a mut Observatory,
    /// The actor's clock, in milliseconds since the Unix epoch.
    pub now: u64,
}

/// A read of the scheduler's state, run inside the actor between batches.
pub type Query = Box<dyn FnOnce(QueryView<'_>) + Send>;

/// A request to the actor, with the channel its reply goes to.
/// Why an exclusive submission was refused.
#[derive(Debug)]
pub enum ExclusiveRefusal {
    /// This running job has the same name.
    Running(JobId),
    /// The spec is invalid.
    Spec(SpecError),
}

/// Why a cancellation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CancelRefusal {
    /// No such job, or it already finished.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The caller neither submitted the job nor is an admin.
    #[error("job {job} belongs to principal `{owner}`: only it or an admin may cancel it", job = .job.0)]
    NotOwner {
        /// The job.
        job: JobId,
        /// Who submitted it.
        owner: String,
    },
}

// Fields mirror the arguments of the scheduler method named in each variant's doc.
#[allow(missing_docs)]
pub enum Command {
    /// See [`Scheduler::submit`].
    Submit {
        raw: RawJobSpec,
        reply: oneshot::Sender<Result<JobId, SpecError>>,
    },
    /// [`Scheduler::submit`] unless a running job has the same name (a pipeline runs
    /// once): checked and submitted in one step of the actor, so two racing submissions
    /// cannot both pass.
    SubmitExclusive {
        raw: RawJobSpec,
        reply: oneshot::Sender<Result<JobId, ExclusiveRefusal>>,
    },
    /// See [`Scheduler::register_worker`].
    Register {
        info: WorkerInfo,
        reply: oneshot::Sender<WorkerId>,
    },
    /// See [`Scheduler::heartbeat`].
    Heartbeat {
        worker: WorkerId,
        held: Vec<essaim_core::AttemptId>,
        draining: bool,
        busy_slots: u32,
        scratch_jobs: Vec<JobId>,
        reply: oneshot::Sender<HeartbeatReply>,
    },
    /// See [`Scheduler::pull`]; parked until work arrives or `wait` passes.
    Pull {
        worker: WorkerId,
        max: u32,
        wait: Duration,
        reply: oneshot::Sender<PullReply>,
    },
    /// See [`Scheduler::report`].
    Report {
        worker: WorkerId,
        results: Vec<ReportedResult>,
        reply: oneshot::Sender<ReportReply>,
    },
    /// See [`Scheduler::deregister`].
    Deregister {
        worker: WorkerId,
        returned: Vec<essaim_core::AttemptId>,
        reply: oneshot::Sender<()>,
    },
    /// See [`Scheduler::cancel_job`]; only the job's owner or an admin may.
    Cancel {
        job: JobId,
        by: Arc<Principal>,
        reply: oneshot::Sender<Result<(), CancelRefusal>>,
    },
    /// See [`Scheduler::requeue_dead_letters`].
    Requeue {
        tasks: DeadLetterTarget,
        reply: oneshot::Sender<u32>,
    },
    /// See [`Scheduler::purge_dead_letters`].
    Purge {
        tasks: DeadLetterTarget,
        reply: oneshot::Sender<u32>,
    },
    /// See [`Scheduler::upstream_inputs`]; parked until the job's inputs version passes
    /// `known_version` or `wait` passes.
    WatchInputs {
        worker: WorkerId,
        attempt: essaim_core::AttemptId,
        known_version: u64,
        wait: Duration,
        reply: oneshot::Sender<crate::inputs_watch::WatchAnswer>,
    },
    /// Replies when the job is terminal or `wait` passes.
    WaitJob {
        job: JobId,
        wait: Duration,
        reply: oneshot::Sender<()>,
    },
    /// Runs a read-only closure on the scheduler.
    Query(Query),
}

/// Which dead letters an operator acts on.
#[derive(Debug, Clone)]
pub enum DeadLetterTarget {
    /// Every dead letter of a job.
    Job(JobId),
    /// These tasks.
    Tasks(Vec<TaskId>),
}

struct ParkedPull {
    worker: WorkerId,
    max: u32,
    until: Instant,
    reply: oneshot::Sender<PullReply>,
}

struct ParkedWait {
    until: Instant,
    reply: oneshot::Sender<()>,
}

/// A reply held back until the batch is durable.
pub(crate) type DeferredReply = Box<dyn FnOnce() + Send>;

/// Returns the wall clock in milliseconds since the Unix epoch.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The actor's state.
pub struct Actor {
    pub(crate) scheduler: Scheduler,
    /// Taken out while a write runs on a blocking thread.
    pub(crate) journal: Option<Box<dyn Journal>>,
    pub(crate) metrics: CoordinatorMetrics,
    pub(crate) health: Health,
    pub(crate) tick_every: Duration,
    observatory: Observatory,
    parked_pulls: Vec<ParkedPull>,
    parked_waits: BTreeMap<JobId, Vec<ParkedWait>>,
    parked_watches: ParkedWatches,
    last_stats: SchedulerStats,
    clock: clock::SchedulerClock,
    retention: Retention,
    events_since_compaction: u64,
    last_retention_check: Instant,
}

/// How long finished jobs are kept and when the journal is compacted.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Finished jobs (and their results) are forgotten this long after they finished.
    pub keep_finished_jobs: Duration,
    /// The journal is rewritten as a snapshot once it grew by this many events.
    pub compact_after_events: u64,
    /// How often finished jobs are looked for.
    pub check_every: Duration,
}

impl Actor {
    /// Returns an actor around a recovered scheduler and its journal.
    pub fn new(
        scheduler: Scheduler,
        journal: Box<dyn Journal>,
        metrics: CoordinatorMetrics,
        health: Health,
        tick_every: Duration,
        retention: Retention,
        observatory: Observatory,
    ) -> Self {
        let last_stats = scheduler.stats();
        let events_since_compaction = journal.len();
        Self {
            scheduler,
            journal: Some(journal),
            metrics,
            health,
            tick_every,
            observatory,
            parked_pulls: Vec::new(),
            parked_waits: BTreeMap::new(),
            parked_watches: ParkedWatches::default(),
            last_stats,
            clock: clock::SchedulerClock::start(),
            retention,
            events_since_compaction,
            last_retention_check: Instant::now(),
        }
    }

    /// Runs until `shutdown` fires or a journal write fails (then the process must stop:
    /// its state is ahead of the disk). Returns the journal error, if any.
    pub async fn run(
        mut self,
        mut commands_rx: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> Result<(), StoreError> {
        let mut ticker = tokio::time::interval(self.tick_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<Command> = Vec::with_capacity(MAX_BATCH);
        loop {
            let next_park_deadline = self.earliest_parked_deadline();
            let mut tick = false;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                received = commands_rx.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        break; // every sender is gone
                    }
                }
                _ = ticker.tick() => tick = true,
                _ = sleep_until_optional(next_park_deadline) => {}
            }
            self.process(tick, &mut batch).await?;
        }
        // Parked requests get an empty answer rather than a broken connection.
        for parked in self.parked_pulls.drain(..) {
            let _ = parked.reply.send(PullReply::default());
        }
        self.parked_watches.drain(&self.scheduler);
        Ok(())
    }

    fn earliest_parked_deadline(&self) -> Option<Instant> {
        let pulls = self.parked_pulls.iter().map(|p| p.until);
        let waits = self.parked_waits.values().flatten().map(|w| w.until);
        let watches = self.parked_watches.earliest_deadline();
        pulls.chain(waits).chain(watches).min()
    }

    /// Applies one batch, makes it durable, then replies.
    async fn process(&mut self, tick: bool, batch: &mut Vec<Command>) -> Result<(), StoreError> {
        // Time that never goes backwards, and that a step of the wall clock does not
        // move (see `clock`).
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        let mut replies: Vec<DeferredReply> = Vec::with_capacity(batch.len());
        if tick {
            self.scheduler.tick(now, &mut out);
        }
        for command in batch.drain(..) {
            self.apply(now, command, &mut out, &mut replies);
        }
        self.serve_parked_pulls(now, tick, &mut replies);
        self.parked_watches.serve(&self.scheduler, &mut replies);

        let mut events: Vec<JournalEvent> = Vec::new();
        let mut finished = Vec::new();
        for output in out {
            match output {
                Output::Persist(event) => {
                    log_attempt_outcome(&event);
                    self.observatory.record(&event, &self.scheduler);
                    if let JournalEvent::TaskSucceeded { result, .. } = &event {
                        self.metrics
                            .task_duration_seconds
                            .observe(result.duration_ms as f64 / 1000.0);
                        for (name, value) in &result.output.counters {
                            self.metrics.record_task_counter(name, *value);
                        }
                    }
                    events.push(event);
                }
                Output::JobFinished { job, state } => finished.push((job, state)),
            }
        }
        if !events.is_empty() {
            self.events_since_compaction += events.len() as u64;
            self.persist(events).await?;
        }
        for reply in replies {
            reply();
        }
        for (job, state) in finished {
            self.on_job_finished(job, &state);
        }
        self.expire_parked_waits();
        self.update_metrics(tick);
        if tick {
            self.observatory
                .refresh_if_due(now, &self.scheduler, &self.metrics);
        }
        if tick {
            self.apply_retention(now).await?;
        }
        Ok(())
    }

    /// Forgets long-finished jobs and rewrites the journal as a snapshot when it has
    /// grown enough (or jobs were forgotten): coordinator memory and journal size stay
    /// bounded by the retention settings, not by the number of jobs ever submitted.
    async fn apply_retention(&mut self, now: u64) -> Result<(), StoreError> {
        let retention_due = self.last_retention_check.elapsed() >= self.retention.check_every;
        let journal_grew = self.events_since_compaction >= self.retention.compact_after_events;
        if !retention_due && !journal_grew {
            return Ok(());
        }
        self.last_retention_check = Instant::now();
        let keep_ms = self.retention.keep_finished_jobs.as_millis() as u64;
        let forgotten = self.scheduler.forget_jobs_finished_before(now, keep_ms);
        if forgotten.is_empty() && !journal_grew {
            return Ok(());
        }
        let snapshot = self.scheduler.snapshot(now);
        let snapshot_len = snapshot.len();
        let forgotten_count = forgotten.len();
        self.write_journal("journal compaction", move |journal| {
            journal.compact(&snapshot, &forgotten)
        })
        .await?;
        // Count growth from here: a large snapshot (a huge running job) must not trigger
        // the next compaction by itself.
        self.events_since_compaction = 0;
        info!(
            events = snapshot_len,
            forgotten_jobs = forgotten_count,
            "journal compacted"
        );
        Ok(())
    }

    async fn persist(&mut self, events: Vec<JournalEvent>) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let event_count = events.len();
        self.write_journal("journal write", move |journal| journal.append(&events))
            .await?;
        self.metrics
            .journal_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .journal_batch_events
            .observe(event_count as f64);
        Ok(())
    }

    /// Runs one write on the journal off the async workers (redb's commit fsyncs). A
    /// failed write makes the coordinator unready and is returned: the caller stops, so
    /// that nothing unjournaled is ever acknowledged.
    async fn write_journal(
        &mut self,
        what: &'static str,
        write: impl FnOnce(&mut dyn Journal) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let mut journal = self
            .journal
            .take()
            .expect("the journal is only taken during a write");
        let (journal, result) = tokio::task::spawn_blocking(move || {
            let result = write(journal.as_mut());
            (journal, result)
        })
        .await
        .expect("the journal thread does not panic");
        self.journal = Some(journal);
        if let Err(error) = &result {
            error!(error = %error, what, "journal failed; stopping so that nothing unjournaled is acknowledged");
            self.health.set_not_ready("journal unavailable");
        }
        result
    }

    fn apply(
        &mut self,
        now: u64,
        command: Command,
        out: &mut Vec<Output>,
        replies: &mut Vec<DeferredReply>,
    ) {
        match command {
            Command::Submit { raw, reply } => {
                let result = self.submit(now, raw, out);
                replies.push(Box::new(move || {
                    let _ = reply.send(result);
                }));
            }
            Command::SubmitExclusive { raw, reply } => {
                let running = self
                    .scheduler
                    .jobs()
                    .find(|job| job.spec.name == raw.name && job.state == JobState::Running)
                    .map(|job| job.id);
                let result = match running {
                    Some(job) => Err(ExclusiveRefusal::Running(job)),
                    None => self.submit(now, raw, out).map_err(ExclusiveRefusal::Spec),
                };
                replies.push(Box::new(move || {
                    let _ = reply.send(result);
                }));
            }
            Command::Register { info, reply } => {
                let name = info.name.clone();
                let slots = info.slots;
                let worker = self.scheduler.register_worker(now, info);
                self.observatory.worker_registered(worker, &name);
                info!(worker = %worker, name = %name, slots, "worker registered");
                replies.push(Box::new(move || {
                    let _ = reply.send(worker);
                }));
            }
            Command::Heartbeat {
                worker,
                held,
                draining,
                busy_slots,
                scratch_jobs,
                reply,
            } => {
                let mut answer = self
                    .scheduler
                    .heartbeat(now, worker, &held, draining, busy_slots);
                answer.release_jobs = self.scheduler.releasable_jobs(&scratch_jobs);
                replies.push(Box::new(move || {
                    let _ = reply.send(answer);
                }));
            }
            Command::WatchInputs {
                worker,
                attempt,
                known_version,
                wait,
                reply,
            } => self.parked_watches.ask(
                &self.scheduler,
                crate::inputs_watch::InputsQuestion {
                    worker,
                    attempt,
                    known_version,
                    until: Instant::now() + wait,
                },
                reply,
                replies,
            ),
            Command::Pull {
                worker,
                max,
                wait,
                reply,
            } => {
                let answer = self.scheduler.pull(now, worker, max);
                log_grants(worker, &answer);
                if answer.assignments.is_empty() && !answer.reregister && !wait.is_zero() {
                    self.parked_pulls.push(ParkedPull {
                        worker,
                        max,
                        until: Instant::now() + wait,
                        reply,
                    });
                } else {
                    replies.push(Box::new(move || {
                        let _ = reply.send(answer);
                    }));
                }
            }
            Command::Report {
                worker,
                results,
                reply,
            } => {
                let answer = self.scheduler.report(now, worker, results, out);
                replies.push(Box::new(move || {
                    let _ = reply.send(answer);
                }));
            }
            Command::Deregister {
                worker,
                returned,
                reply,
            } => {
                self.scheduler.deregister(now, worker, &returned, out);
                info!(worker = %worker, returned = returned.len(), "worker left");
                replies.push(Box::new(move || {
                    let _ = reply.send(());
                }));
            }
            Command::Cancel { job, by, reply } => {
                let result = self.cancel(now, job, &by, out);
                replies.push(Box::new(move || {
                    let _ = reply.send(result);
                }));
            }
            Command::Requeue { tasks, reply } => {
                let tasks = self.resolve(tasks);
                let count = self.scheduler.requeue_dead_letters(now, &tasks, out);
                replies.push(Box::new(move || {
                    let _ = reply.send(count);
                }));
            }
            Command::Purge { tasks, reply } => {
                let tasks = self.resolve(tasks);
                let count = self.scheduler.purge_dead_letters(now, &tasks, out);
                replies.push(Box::new(move || {
                    let _ = reply.send(count);
                }));
            }
            Command::WaitJob { job, wait, reply } => {
                let running = self
                    .scheduler
                    .job(job)
                    .is_some_and(|j| j.state == JobState::Running);
                if running && !wait.is_zero() {
                    self.parked_waits.entry(job).or_default().push(ParkedWait {
                        until: Instant::now() + wait,
                        reply,
                    });
                } else {
                    replies.push(Box::new(move || {
                        let _ = reply.send(());
                    }));
                }
            }
            Command::Query(query) => query(QueryView {
                scheduler: &self.scheduler,
                observatory: &mut self.observatory,
                now,
            }),
        }
    }

    /// Submits a job, counting and logging the outcome.
    fn submit(
        &mut self,
        now: u64,
        raw: RawJobSpec,
        out: &mut Vec<Output>,
    ) -> Result<JobId, SpecError> {
        let mut raw = raw;
        if raw.processing_version.trim().is_empty() {
            // A client that named none: the built-in work of this coordinator's build.
            raw.processing_version = BuildInfo::of_this_process().processing_version(None);
        }
        let result = self.scheduler.submit(now, raw, out);
        match &result {
            Ok(job) => {
                self.metrics.jobs_submitted_total.inc();
                info!(job = %job, "job submitted");
            }
            Err(error) => warn!(error = %error, "job refused"),
        }
        result
    }

    /// Cancels `job` for `by`, who must be its owner or an admin (a job submitted
    /// without credentials has no owner: any submitter may cancel it).
    fn cancel(
        &mut self,
        now: u64,
        job: JobId,
        by: &Principal,
        out: &mut Vec<Output>,
    ) -> Result<(), CancelRefusal> {
        let owner = self.scheduler.job(job).and_then(|job| job.owner.clone());
        if let Some(owner) = owner.filter(|owner| *owner != by.name && !by.may(Role::Admin)) {
            return Err(CancelRefusal::NotOwner { job, owner });
        }
        let reason = format!("cancelled by principal `{}`", by.name);
        Ok(self.scheduler.cancel_job(now, job, &reason, out)?)
    }

    fn resolve(&self, target: DeadLetterTarget) -> Vec<TaskId> {
        match target {
            DeadLetterTarget::Job(job) => self.scheduler.dead_letters(Some(job)),
            DeadLetterTarget::Tasks(tasks) => tasks,
        }
    }

    /// Answers parked pulls that now have work, whose worker is gone, whose deadline
    /// passed, or whose caller hung up. On ticks every parked pull is retried, because a
    /// straggler's speculative copy is found only by a real pull.
    fn serve_parked_pulls(&mut self, now: u64, tick: bool, replies: &mut Vec<DeferredReply>) {
        if self.parked_pulls.is_empty() {
            return;
        }
        let instant = Instant::now();
        let mut still_parked = Vec::with_capacity(self.parked_pulls.len());
        for parked in std::mem::take(&mut self.parked_pulls) {
            if parked.reply.is_closed() {
                continue;
            }
            let expired = instant >= parked.until;
            if expired || tick || self.scheduler.has_work_for(now, parked.worker) {
                let answer = self.scheduler.pull(now, parked.worker, parked.max);
                log_grants(parked.worker, &answer);
                if !answer.assignments.is_empty() || answer.reregister || expired {
                    let reply = parked.reply;
                    replies.push(Box::new(move || {
                        let _ = reply.send(answer);
                    }));
                    continue;
                }
            }
            still_parked.push(parked);
        }
        self.parked_pulls = still_parked;
    }

    fn on_job_finished(&mut self, job: JobId, state: &JobState) {
        let outcome = match state {
            JobState::Succeeded => JobOutcome::Succeeded,
            JobState::Failed { .. } => JobOutcome::Failed,
            JobState::Cancelled { .. } => JobOutcome::Cancelled,
            JobState::Running => return,
        };
        let submitted_at = self.scheduler.job(job).map(|job| job.submitted_at);
        let duration = submitted_at
            .map(|submitted_at| wall_clock_ms().saturating_sub(submitted_at))
            .unwrap_or_default();
        self.metrics
            .record_job_finished(outcome, Duration::from_millis(duration));
        info!(job = %job, state = state.name(), reason = state.reason(), "job finished");
        for waiter in self.parked_waits.remove(&job).unwrap_or_default() {
            let _ = waiter.reply.send(());
        }
    }

    fn expire_parked_waits(&mut self) {
        if self.parked_waits.is_empty() {
            return;
        }
        let instant = Instant::now();
        for waiters in self.parked_waits.values_mut() {
            for waiter in std::mem::take(waiters) {
                if instant >= waiter.until || waiter.reply.is_closed() {
                    let _ = waiter.reply.send(());
                } else {
                    waiters.push(waiter);
                }
            }
        }
        self.parked_waits.retain(|_, waiters| !waiters.is_empty());
    }
}

async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
