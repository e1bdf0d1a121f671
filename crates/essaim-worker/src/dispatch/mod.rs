//! The dispatcher: the one task that owns every attempt this worker holds.
//!
//! Pulled attempts wait in a local FIFO queue until a slot is free; running attempts
//! are tracked with their cancellation tokens. Owning both in one task (reached by
//! message, never by a lock) is what makes the counts exact: the capacity the pull loop
//! asks for, the held attempts a heartbeat renews, and the queue handed back on drain are
//! all read from the same state, between two messages.
//!
//! Slots: at most `slots` attempts run at once. An attempt keeps its slot until its task
//! has really ended, even after it was cancelled, so that a command being killed is not
//! running alongside its replacement. Attempts whose executor
//! [runs instantly](crate::Executor::runs_instantly) run in place, without a task.
//!
//! Results: an attempt cancelled by the coordinator, by a re-registration or by the end
//! of the drain is not reported (the coordinator no longer holds its lease, or revokes it
//! when the worker deregisters); every other outcome goes to the reporter.
mod handle;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use essaim_core::{Assignment, AttemptId, TaskFailure};
use essaim_telemetry::WorkerMetrics;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use self::handle::DispatcherCommand;
pub(crate) use self::handle::{DispatcherHandle, DispatcherInbox, HeldAttempts};
use crate::ExecutorRegistry;
use crate::attempt::{AttemptSettings, FinishedAttempt, PreparedAttempt, run_attempt};

/// Instant attempts run in place before the dispatcher yields to the runtime, so that a
/// large batch of no-ops does not hold a runtime thread for long.
const INSTANT_RUNS_BEFORE_YIELD: u32 = 64;
/// How long cancelled attempts may take to stop when the dispatcher finishes, before
/// their tasks are aborted.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);
struct QueuedAttempt {
    generation: u64,
    assignment: Assignment,
}

struct RunningAttempt {
    generation: u64,
    cancel: CancellationToken,
    /// Cancelled by the coordinator, a reset or the drain: its outcome is discarded.
    cancelled: bool,
    started: tokio::time::Instant,
    /// False for a long-running kind's attempt, which runs beside the slots.
    holds_slot: bool,
}

/// The dispatcher's state; see the module doc.
pub(crate) struct Dispatcher {
    slots: usize,
    prefetch: crate::Prefetch,
    /// Moving average of recent attempt durations, which sizes an adaptive prefetch.
    mean_task_seconds: Option<f64>,
    settings: AttemptSettings,
    executors: Arc<ExecutorRegistry>,
    metrics: WorkerMetrics,
    results_tx: mpsc::UnboundedSender<FinishedAttempt>,
    /// The current session; attempts of older sessions are dropped.
    generation: u64,
    queue: VecDeque<QueuedAttempt>,
    running: HashMap<AttemptId, RunningAttempt>,
    /// Which attempt each task runs, to name the attempt of a task that panicked.
    attempt_of_task: HashMap<tokio::task::Id, AttemptId>,
    tasks: JoinSet<FinishedAttempt>,
    draining: bool,
    capacity_waiter: Option<oneshot::Sender<u32>>,
    idle_waiters: Vec<oneshot::Sender<()>>,
}

/// How the dispatcher is set up.
pub(crate) struct DispatcherSetup {
    /// Attempts run at once.
    pub slots: u32,
    /// Extra attempts queued locally.
    pub prefetch: crate::Prefetch,
    /// What attempts are told about the worker.
    pub settings: AttemptSettings,
    /// The executors of the advertised kinds.
    pub executors: Arc<ExecutorRegistry>,
    /// Where counts go.
    pub metrics: WorkerMetrics,
    /// Where finished attempts go.
    pub results_tx: mpsc::UnboundedSender<FinishedAttempt>,
    /// The first session's generation.
    pub generation: u64,
}

impl Dispatcher {
    /// Returns the dispatcher, to be run with [`Dispatcher::run`], and its handle.
    pub(crate) fn new(setup: DispatcherSetup) -> (Self, DispatcherHandle, DispatcherInbox) {
        let (handle, inbox) = handle::channel();
        let dispatcher = Self {
            slots: setup.slots as usize,
            prefetch: setup.prefetch,
            mean_task_seconds: None,
            settings: setup.settings,
            executors: setup.executors,
            metrics: setup.metrics,
            results_tx: setup.results_tx,
            generation: setup.generation,
            queue: VecDeque::new(),
            running: HashMap::new(),
            attempt_of_task: HashMap::new(),
            tasks: JoinSet::new(),
            draining: false,
            capacity_waiter: None,
            idle_waiters: Vec::new(),
        };
        (dispatcher, handle, inbox)
    }

    /// Runs until [`DispatcherHandle::finish`] (or until every handle is dropped).
    pub(crate) async fn run(mut self, inbox: DispatcherInbox) {
        let DispatcherInbox { mut commands_rx } = inbox;
        loop {
            self.start_queued_attempts().await;
            self.answer_waiters();
            tokio::select! {
                command = commands_rx.recv() => {
                    let Some(command) = command else { break };
                    if let DispatcherCommand::Finish { reply_tx } = command {
                        let returned = self.finish().await;
                        let _caller_gone = reply_tx.send(returned);
                        return;
                    }
                    self.handle(command);
                }
                Some(joined) = self.tasks.join_next_with_id() => self.on_task_joined(joined),
            }
        }
        self.finish().await;
    }

    fn handle(&mut self, command: DispatcherCommand) {
        match command {
            DispatcherCommand::Assign {
                generation,
                assignments,
            } => {
                if generation != self.generation {
                    // Leased to a worker id the coordinator has forgotten: fenced off.
                    tracing::debug!(
                        dropped = assignments.len(),
                        "dropping attempts of an older registration"
                    );
                    return;
                }
                self.queue
                    .extend(assignments.into_iter().map(|assignment| QueuedAttempt {
                        generation,
                        assignment,
                    }));
            }
            DispatcherCommand::AwaitCapacity { reply_tx } => {
                // Only the pull loop asks, one question at a time. While draining the
                // question is dropped unanswered: nothing more is wanted.
                if !self.draining {
                    self.capacity_waiter = Some(reply_tx);
                }
            }
            DispatcherCommand::ReportHeld { reply_tx } => {
                let _caller_gone = reply_tx.send(self.held_attempts());
            }
            DispatcherCommand::Cancel { attempt_ids } => self.cancel(&attempt_ids),
            DispatcherCommand::Reset {
                generation,
                reply_tx,
            } => {
                tracing::debug!(
                    queued = self.queue.len(),
                    running = self.running.len(),
                    "dropping every local attempt"
                );
                self.generation = generation;
                self.queue.clear();
                self.cancel_every_running_attempt();
                let _caller_gone = reply_tx.send(());
            }
            DispatcherCommand::StartDraining => {
                self.draining = true;
                // Dropping the waiter tells the pull loop that nothing more is wanted.
                self.capacity_waiter = None;
            }
            DispatcherCommand::AwaitIdle { reply_tx } => self.idle_waiters.push(reply_tx),
            DispatcherCommand::CancelRunning => self.cancel_every_running_attempt(),
            DispatcherCommand::Finish { .. } => {
                debug_assert!(false, "Finish is handled by the run loop");
            }
        }
    }

    /// Returns how many more attempts the worker wants: free slots plus prefetch, minus
    /// what is already queued.
    fn capacity(&self) -> u32 {
        let wanted = self.slots + self.prefetch.attempts(self.slots, self.mean_task_seconds);
        let held = self.busy_slots() + self.queue.len();
        u32::try_from(wanted.saturating_sub(held)).unwrap_or(u32::MAX)
    }

    fn answer_waiters(&mut self) {
        let capacity = self.capacity();
        if !self.draining
            && capacity > 0
            && let Some(reply_tx) = self.capacity_waiter.take()
        {
            let _caller_gone = reply_tx.send(capacity);
        }
        if self.running.is_empty() {
            for reply_tx in self.idle_waiters.drain(..) {
                let _caller_gone = reply_tx.send(());
            }
        }
    }

    fn held_attempts(&self) -> HeldAttempts {
        let running = self
            .running
            .iter()
            .filter(|(_, attempt)| !attempt.cancelled)
            .map(|(attempt_id, _)| *attempt_id);
        let queued = self.queue.iter().map(|queued| queued.assignment.attempt);
        HeldAttempts {
            attempt_ids: running.chain(queued).collect(),
            busy_slots: u32::try_from(self.busy_slots()).unwrap_or(u32::MAX),
        }
    }

    /// Returns how many slots running attempts hold (long-running kinds hold none).
    fn busy_slots(&self) -> usize {
        self.running
            .values()
            .filter(|attempt| attempt.holds_slot)
            .count()
    }

    fn cancel(&mut self, attempt_ids: &[AttemptId]) {
        for attempt_id in attempt_ids {
            if let Some(running) = self.running.get_mut(attempt_id) {
                tracing::debug!(
                    attempt = %attempt_id,
                    "coordinator cancelled the attempt"
                );
                running.cancelled = true;
                running.cancel.cancel();
            }
        }
        self.queue
            .retain(|queued| !attempt_ids.contains(&queued.assignment.attempt));
    }

    fn cancel_every_running_attempt(&mut self) {
        for running in self.running.values_mut() {
            running.cancelled = true;
            running.cancel.cancel();
        }
    }

    /// Starts queued attempts while slots are free (none while draining); attempts of
    /// long-running kinds start at once, beside the slots.
    async fn start_queued_attempts(&mut self) {
        if self.draining {
            return;
        }
        let (beside_slots, in_slots): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|queued| self.executors.is_long_running(&queued.assignment.kind));
        self.queue = in_slots;
        for queued in beside_slots {
            self.start_attempt(queued).await;
        }
        let mut instant_runs = 0;
        while self.busy_slots() < self.slots {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            if self.start_attempt(queued).await {
                instant_runs += 1;
                if instant_runs % INSTANT_RUNS_BEFORE_YIELD == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Starts one attempt; returns true when it ran in place.
    async fn start_attempt(&mut self, queued: QueuedAttempt) -> bool {
        let QueuedAttempt {
            generation,
            assignment,
        } = queued;
        let attempt_id = assignment.attempt;
        self.metrics.attempts_started_total.inc();
        let Some(executor) = self.executors.get(&assignment.kind).cloned() else {
            // The coordinator only hands out advertised kinds; another worker may run it.
            let failure = TaskFailure::retryable(format!(
                "worker has no executor for kind `{}`",
                assignment.kind
            ));
            self.record_outcome(FinishedAttempt {
                generation,
                attempt_id,
                outcome: Err(failure),
                duration: Duration::ZERO,
            });
            return true;
        };
        let holds_slot = !executor.long_running();
        let prepared = PreparedAttempt::new(&self.settings, generation, assignment, executor);
        let cancel = CancellationToken::new();
        if prepared.runs_instantly() {
            let finished = run_attempt(prepared, cancel).await;
            self.record_outcome(finished);
            return true;
        }
        let task = self.tasks.spawn(run_attempt(prepared, cancel.clone()));
        self.attempt_of_task.insert(task.id(), attempt_id);
        let started = tokio::time::Instant::now();
        self.running.insert(
            attempt_id,
            RunningAttempt {
                generation,
                cancel,
                cancelled: false,
                started,
                holds_slot,
            },
        );
        self.metrics.busy_slots.set(self.busy_slots() as i64);
        false
    }

    fn on_task_joined(&mut self, joined: Result<(tokio::task::Id, FinishedAttempt), JoinError>) {
        let (task_id, finished) = match joined {
            Ok((task_id, finished)) => (task_id, Some(finished)),
            Err(join_error) => (join_error.id(), self.panicked_attempt(&join_error)),
        };
        self.attempt_of_task.remove(&task_id);
        let Some(finished) = finished else {
            return;
        };
        let Some(running) = self.running.remove(&finished.attempt_id) else {
            return;
        };
        self.metrics.busy_slots.set(self.busy_slots() as i64);
        if running.cancelled {
            self.metrics.attempts_cancelled_total.inc();
            tracing::debug!(
                attempt = %finished.attempt_id,
                "cancelled attempt ended; not reported"
            );
            return;
        }
        self.record_outcome(finished);
    }

    /// Turns a panicked (or aborted) attempt task into a failure of its attempt.
    fn panicked_attempt(&self, join_error: &JoinError) -> Option<FinishedAttempt> {
        let attempt_id = *self.attempt_of_task.get(&join_error.id())?;
        let running = self.running.get(&attempt_id)?;
        tracing::error!(
            attempt = %attempt_id,
            error = %join_error,
            "executor panicked"
        );
        Some(FinishedAttempt {
            generation: running.generation,
            attempt_id,
            outcome: Err(TaskFailure::retryable(format!(
                "the executor panicked: {join_error}"
            ))),
            duration: running.started.elapsed(),
        })
    }

    /// Counts a finished attempt and hands it to the reporter.
    fn record_outcome(&mut self, finished: FinishedAttempt) {
        match &finished.outcome {
            Ok(output) => {
                self.metrics.attempts_succeeded_total.inc();
                self.metrics.record_attempt_counters(&output.counters);
            }
            Err(_) => {
                self.metrics.attempts_failed_total.inc();
            }
        }
        let seconds = finished.duration.as_secs_f64();
        self.metrics.task_duration_seconds.observe(seconds);
        // An exponential moving average: recent tasks weigh most, one outlier little.
        self.mean_task_seconds = Some(match self.mean_task_seconds {
            None => seconds,
            Some(mean) => 0.9 * mean + 0.1 * seconds,
        });
        if finished.generation != self.generation {
            return;
        }
        if self.results_tx.send(finished).is_err() {
            tracing::error!("the reporter has stopped; an attempt result is lost");
        }
    }

    /// Waits for every attempt task to end, then returns the queued attempts of the
    /// current session (never started, so they can be handed back).
    async fn finish(&mut self) -> Vec<AttemptId> {
        self.draining = true;
        self.capacity_waiter = None;
        let deadline = tokio::time::Instant::now() + FINISH_TIMEOUT;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => self.on_task_joined(joined),
                Ok(None) => break,
                Err(_elapsed) => {
                    // An executor that ignores its cancellation token: a bug in that
                    // executor. Aborting its task is the only way left to stop it.
                    tracing::error!(
                        stuck = self.tasks.len(),
                        timeout_ms = FINISH_TIMEOUT.as_millis() as u64,
                        "attempts did not stop after cancellation; aborting them"
                    );
                    self.tasks.shutdown().await;
                    break;
                }
            }
        }
        self.running.clear();
        self.metrics.busy_slots.set(0);
        for reply_tx in self.idle_waiters.drain(..) {
            let _caller_gone = reply_tx.send(());
        }
        let current_generation = self.generation;
        self.queue
            .drain(..)
            .filter(|queued| queued.generation == current_generation)
            .map(|queued| queued.assignment.attempt)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_telemetry::prometheus_client::registry::Registry;

    struct TestDispatcher {
        handle: DispatcherHandle,
        results_rx: mpsc::UnboundedReceiver<FinishedAttempt>,
        task: tokio::task::JoinHandle<()>,
        _scratch: tempfile::TempDir,
    }

    fn start(slots: u32, prefetch: u32) -> TestDispatcher {
        let prefetch = crate::Prefetch::Fixed(prefetch);
        let scratch = tempfile::tempdir().unwrap();
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let (dispatcher, handle, inbox) = Dispatcher::new(DispatcherSetup {
            slots,
            prefetch,
            settings: AttemptSettings {
                scratch_root: scratch.path().to_path_buf(),
                file_server_url: "http://127.0.0.1:9".into(),
                worker_name: "tester".into(),
                file_credentials: Default::default(),
                job_files: Arc::new(crate::job_files::JobFileCache::new(
                    scratch.path(),
                    &[],
                    None,
                    &Default::default(),
                )),
                inputs_source: Arc::new(crate::inputs_watch::NoCoordinator),
                tls: Default::default(),
            },
            executors: Arc::new(ExecutorRegistry::with_builtins(false)),
            metrics: WorkerMetrics::register(&mut Registry::default()),
            results_tx,
            generation: 1,
        });
        let task = tokio::spawn(dispatcher.run(inbox));
        TestDispatcher {
            handle,
            results_rx,
            task,
            _scratch: scratch,
        }
    }

    fn assignment(attempt_id: u64, kind: &str, payload: &str) -> Assignment {
        Assignment {
            task: essaim_core::TaskId::new(essaim_core::JobId(1), attempt_id as u32),
            attempt: AttemptId(attempt_id),
            attempt_number: 1,
            kind: kind.into(),
            payload: payload.as_bytes().to_vec(),
            timeout_ms: None,
            speculative: false,
            inputs: Vec::new(),
            inputs_complete: true,
            inputs_version: 0,
            trace_parent: None,
        }
    }

    fn ids(ids: &[u64]) -> Vec<AttemptId> {
        ids.iter().copied().map(AttemptId).collect()
    }

    #[tokio::test]
    async fn instant_attempts_are_reported_and_free_their_capacity() {
        let mut test = start(2, 1);
        assert_eq!(test.handle.await_capacity().await, Some(3));
        let noops = (1..=3).map(|id| assignment(id, "noop", "")).collect();
        test.handle.assign(1, noops).await;
        assert_eq!(test.handle.await_capacity().await, Some(3));
        let mut reported = Vec::new();
        for _ in 0..3 {
            reported.push(test.results_rx.recv().await.unwrap().attempt_id);
        }
        assert_eq!(reported, ids(&[1, 2, 3]));
        assert!(test.handle.finish().await.is_empty());
        test.task.await.unwrap();
    }

    #[tokio::test]
    async fn queued_attempts_wait_for_a_slot_and_are_handed_back_on_drain() {
        let mut test = start(1, 2);
        let sleeps = (1..=3).map(|id| assignment(id, "sleep", "60000")).collect();
        test.handle.assign(1, sleeps).await;
        let held = test.handle.held_attempts().await.unwrap();
        assert_eq!(held.busy_slots, 1);
        assert_eq!(held.attempt_ids, ids(&[1, 2, 3]));
        test.handle.start_draining().await;
        assert_eq!(test.handle.await_capacity().await, None);
        test.handle.cancel_running().await;
        test.handle.await_idle().await;
        assert_eq!(test.handle.finish().await, ids(&[2, 3]));
        test.task.await.unwrap();
        // The cancelled attempt is not reported; the reporter's channel is closed.
        assert!(test.results_rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn coordinator_cancellation_and_reset_drop_attempts_unreported() {
        let mut test = start(2, 0);
        let sleeps = vec![
            assignment(1, "sleep", "60000"),
            assignment(2, "sleep", "60000"),
        ];
        test.handle.assign(1, sleeps).await;
        test.handle.cancel(ids(&[1])).await;
        test.handle.await_capacity().await;
        let held = test.handle.held_attempts().await.unwrap();
        assert_eq!(held.attempt_ids, ids(&[2]));
        test.handle.reset(2).await;
        // Attempts pulled under the forgotten registration are dropped.
        test.handle.assign(1, vec![assignment(3, "noop", "")]).await;
        test.handle.assign(2, vec![assignment(4, "noop", "")]).await;
        assert_eq!(
            test.results_rx.recv().await.unwrap().attempt_id,
            AttemptId(4)
        );
        test.handle.await_idle().await;
        assert!(test.handle.finish().await.is_empty());
        test.task.await.unwrap();
        assert!(test.results_rx.recv().await.is_none());
    }
}
