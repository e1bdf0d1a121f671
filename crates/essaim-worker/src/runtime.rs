//! The worker's life: register, run the loops, register again when the coordinator
//! forgets the worker, and drain.
//!
//! This task owns the session (the only `watch::Sender<SessionState>`) and every other
//! task of the worker, and awaits each of them before it returns. The drain, in order:
//!
//! 1. readiness turns to "draining"; the pull loop stops; the heartbeat loop announces
//!    `draining=true` at once; the dispatcher starts nothing more;
//! 2. running attempts may finish (and be reported) within the drain grace; after it,
//!    the rest are cancelled;
//! 3. the dispatcher stops once every attempt has ended and returns the queued attempts
//!    it never started; the reporter flushes every result (bounded by a timeout);
//! 4. heartbeats stop (they renewed the leases until the last result was delivered);
//! 5. the worker deregisters, handing back the never-started attempts so the coordinator
//!    requeues them at once;
//! 6. the HTTP server stops last, so probes and scrapes answer until the end.

use std::time::Duration;

use essaim_core::AttemptId;
use essaim_core::rng::SeededRng;
use essaim_proto::{Coordinators, v1};
use essaim_telemetry::{Health, WorkerMetrics};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::attempt::AttemptSettings;
use crate::backoff::{RetryBackoff, fresh_seed};
use crate::dispatch::{Dispatcher, DispatcherHandle, DispatcherSetup};
use crate::epoch::EpochFence;
use crate::heartbeat::HeartbeatLoop;
use crate::pull::{PULL_BACKOFF_BASE, PULL_BACKOFF_CAP, PullLoop};
use crate::report::{REPORT_BACKOFF_BASE, REPORT_BACKOFF_CAP, Reporter};
use crate::scratch_guard::ScratchGuard;
use crate::session::{Registrar, Session, SessionState};
use crate::{ExecutorRegistry, WorkerError};

/// How long the reporter may take to deliver the last results once every attempt ended.
const REPORT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries and per-try time limit of the final DeregisterWorker call.
const DEREGISTER_TRIES: u32 = 3;
const DEREGISTER_RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the runtime task owns.
pub(crate) struct Runtime {
    /// Connects and registers.
    pub registrar: Registrar,
    /// The executors of the advertised kinds.
    pub executors: std::sync::Arc<ExecutorRegistry>,
    /// What attempts are told about the worker.
    pub attempt_settings: AttemptSettings,
    /// Attempts run at once.
    pub slots: u32,
    /// Free space the scratch disk keeps (see `crate::scratch_guard`).
    pub scratch_reserve_bytes: u64,
    /// Extra attempts queued locally.
    pub prefetch: crate::Prefetch,
    /// How long running attempts may finish after the drain starts.
    pub drain_grace: Duration,
    /// Where counts go.
    pub metrics: WorkerMetrics,
    /// Readiness.
    pub health: Health,
    /// The current session, read by every loop.
    pub session_tx: watch::Sender<SessionState>,
    /// Fires when the drain starts (a child of the caller's token, so the runtime can
    /// also start it itself after a fatal error).
    pub drain: CancellationToken,
    /// Stops the HTTP server.
    pub http_stop: CancellationToken,
    /// The HTTP server task.
    pub http_server: JoinHandle<std::io::Result<()>>,
}

/// The tasks started once the worker is registered.
struct LoopTasks {
    dispatcher: JoinHandle<()>,
    reporter: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    pull: JoinHandle<()>,
    reporter_abandon: CancellationToken,
    heartbeat_stop: CancellationToken,
}

impl Runtime {
    /// Runs the worker until it has drained, then stops the HTTP server.
    pub(crate) async fn run(mut self) -> Result<(), WorkerError> {
        let outcome = self.register_serve_and_drain().await;
        self.session_tx.send_replace(SessionState::Closed);
        self.http_stop.cancel();
        let served = match (&mut self.http_server).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(WorkerError::HttpServer(error)),
            Err(source) => Err(WorkerError::TaskPanicked {
                task: "http server",
                source,
            }),
        };
        outcome.and(served)
    }

    async fn register_serve_and_drain(&mut self) -> Result<(), WorkerError> {
        let first_generation = 1;
        let Some((session, coordinators)) = self
            .registrar
            .register(first_generation, &self.drain)
            .await?
        else {
            tracing::info!("drain requested before the worker registered; stopping");
            return Ok(());
        };
        self.publish(session);

        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let (reregister_tx, mut reregister_rx) = mpsc::unbounded_channel();
        let (dispatcher, dispatcher_handle, inbox) = Dispatcher::new(DispatcherSetup {
            slots: self.slots,
            prefetch: self.prefetch,
            settings: self.attempt_settings.clone(),
            executors: self.executors.clone(),
            metrics: self.metrics.clone(),
            results_tx,
            generation: session.generation,
        });
        let tasks = self.spawn_loops(
            &coordinators,
            dispatcher,
            inbox,
            &dispatcher_handle,
            results_rx,
            &reregister_tx,
        );
        // Only the loops may ask for a re-registration; the runtime keeps no sender so
        // that the channel closes if they all stop.
        drop(reregister_tx);

        // Serve until the drain starts, registering again whenever the coordinator
        // forgets this worker.
        let mut registered = Some(session);
        let mut fatal = None;
        while let Some(current) = registered {
            let request = tokio::select! {
                () = self.drain.cancelled() => break,
                request = reregister_rx.recv() => request,
            };
            let Some(over_generation) = request else {
                // Every loop has stopped: nothing left to serve.
                break;
            };
            if over_generation != current.generation {
                continue; // a second report of a session already replaced
            }
            match self
                .register_again(&dispatcher_handle, current.generation + 1)
                .await
            {
                Ok(next) => registered = next,
                Err(error) => {
                    fatal = Some(error);
                    registered = None;
                }
            }
        }

        let grace = if fatal.is_some() {
            Duration::ZERO
        } else {
            self.drain_grace
        };
        let registered = self
            .drain_attempts(&dispatcher_handle, &mut reregister_rx, registered, grace)
            .await;
        let stopped = self.stop_loops(tasks, &dispatcher_handle).await;
        if let Some(session) = registered {
            deregister(&coordinators, session, stopped.returned_attempts).await;
        }
        tracing::info!("worker drained and stopped");
        match fatal {
            Some(error) => Err(error),
            None => stopped.outcome,
        }
    }

    fn publish(&self, session: Session) {
        // Ready first: `start_worker` returns as soon as it sees the session, and a
        // caller probing `/readyz` right then must not read "not registered".
        self.health.set_ready();
        self.session_tx
            .send_replace(SessionState::Registered(session));
        tracing::info!(
            worker = %format_args!("{:x}", session.worker_id),
            generation = session.generation,
            heartbeat_interval_ms = session.timings.heartbeat_interval.as_millis() as u64,
            long_poll_ms = session.timings.long_poll.as_millis() as u64,
            "worker registered"
        );
    }

    fn spawn_loops(
        &self,
        coordinators: &Coordinators,
        dispatcher: Dispatcher,
        inbox: crate::dispatch::DispatcherInbox,
        dispatcher_handle: &DispatcherHandle,
        results_rx: mpsc::UnboundedReceiver<crate::attempt::FinishedAttempt>,
        reregister_tx: &mpsc::UnboundedSender<u64>,
    ) -> LoopTasks {
        let reporter_abandon = CancellationToken::new();
        let heartbeat_stop = CancellationToken::new();
        let reporter = Reporter {
            coordinators: coordinators.clone(),
            results_rx,
            session_rx: self.session_tx.subscribe(),
            reregister_tx: reregister_tx.clone(),
            metrics: self.metrics.clone(),
            abandon: reporter_abandon.clone(),
            backoff: RetryBackoff::new(fresh_seed(1), REPORT_BACKOFF_BASE, REPORT_BACKOFF_CAP),
        };
        let heartbeat = HeartbeatLoop {
            coordinators: coordinators.clone(),
            dispatcher: dispatcher_handle.clone(),
            session_rx: self.session_tx.subscribe(),
            reregister_tx: reregister_tx.clone(),
            metrics: self.metrics.clone(),
            drain: self.drain.clone(),
            stop: heartbeat_stop.clone(),
            rng: SeededRng::new(fresh_seed(2)),
            scratch_root: self.attempt_settings.scratch_root.clone(),
            executors: std::sync::Arc::clone(&self.executors),
        };
        let pull = PullLoop {
            coordinators: coordinators.clone(),
            dispatcher: dispatcher_handle.clone(),
            session_rx: self.session_tx.subscribe(),
            reregister_tx: reregister_tx.clone(),
            drain: self.drain.clone(),
            backoff: RetryBackoff::new(fresh_seed(3), PULL_BACKOFF_BASE, PULL_BACKOFF_CAP),
            epoch_fence: EpochFence::default(),
            metrics: self.metrics.clone(),
            scratch: ScratchGuard::new(
                self.attempt_settings.scratch_root.clone(),
                self.scratch_reserve_bytes,
                self.metrics.clone(),
            ),
        };
        LoopTasks {
            dispatcher: tokio::spawn(dispatcher.run(inbox)),
            reporter: tokio::spawn(reporter.run()),
            heartbeat: tokio::spawn(heartbeat.run()),
            pull: tokio::spawn(pull.run()),
            reporter_abandon,
            heartbeat_stop,
        }
    }

    /// Drops every local attempt and registers as session `generation`. Returns `None`
    /// when the drain started before the registration succeeded.
    async fn register_again(
        &mut self,
        dispatcher: &DispatcherHandle,
        generation: u64,
    ) -> Result<Option<Session>, WorkerError> {
        self.session_tx.send_replace(SessionState::Registering);
        self.health.set_not_ready("not registered");
        // Before registering, so that no attempt of the forgotten session is still
        // queued when attempts of the new one arrive.
        dispatcher.reset(generation).await;
        match self.registrar.register(generation, &self.drain).await {
            Ok(Some((session, _same_coordinators))) => {
                self.publish(session);
                Ok(Some(session))
            }
            Ok(None) => {
                self.session_tx.send_replace(SessionState::Closed);
                Ok(None)
            }
            Err(error) => {
                self.session_tx.send_replace(SessionState::Closed);
                Err(error)
            }
        }
    }

    /// Steps 1 and 2 of the drain (see the module doc). Returns the session still
    /// registered, if any.
    async fn drain_attempts(
        &mut self,
        dispatcher: &DispatcherHandle,
        reregister_rx: &mut mpsc::UnboundedReceiver<u64>,
        mut registered: Option<Session>,
        grace: Duration,
    ) -> Option<Session> {
        // Also fires the drain when the runtime stops on its own (a fatal error).
        self.drain.cancel();
        self.health.set_not_ready("draining");
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "draining: pulling no more work; running attempts may finish"
        );
        dispatcher.start_draining().await;
        let grace_over = tokio::time::sleep(grace);
        let idle = dispatcher.await_idle();
        tokio::pin!(grace_over, idle);
        loop {
            tokio::select! {
                () = &mut idle => break,
                () = &mut grace_over => {
                    tracing::warn!(
                        grace_ms = grace.as_millis() as u64,
                        "drain grace is over; cancelling the attempts still running"
                    );
                    dispatcher.cancel_running().await;
                    break;
                }
                Some(over_generation) = reregister_rx.recv() => {
                    let session_is_over = registered
                        .is_some_and(|session| session.generation == over_generation);
                    if session_is_over {
                        // Its attempts are revoked already: stop them and do not
                        // register again, since the worker is leaving.
                        tracing::warn!(
                            "coordinator forgot this worker while it drained; dropping its attempts"
                        );
                        registered = None;
                        self.session_tx.send_replace(SessionState::Closed);
                        dispatcher.reset(over_generation + 1).await;
                    }
                }
            }
        }
        registered
    }

    /// Steps 3 and 4 of the drain: stops and awaits every loop.
    async fn stop_loops(
        &mut self,
        tasks: LoopTasks,
        dispatcher: &DispatcherHandle,
    ) -> StoppedLoops {
        let LoopTasks {
            dispatcher: dispatcher_task,
            mut reporter,
            heartbeat,
            pull,
            reporter_abandon,
            heartbeat_stop,
        } = tasks;
        let mut outcome = joined("pull loop", pull.await);
        let returned_attempts = dispatcher.finish().await;
        outcome = outcome.and(joined("dispatcher", dispatcher_task.await));
        // The dispatcher dropped its sender: the reporter ends once every result is out.
        let flushed = match tokio::time::timeout(REPORT_FLUSH_TIMEOUT, &mut reporter).await {
            Ok(flushed) => flushed,
            Err(_elapsed) => {
                reporter_abandon.cancel();
                reporter.await
            }
        };
        outcome = outcome.and(joined("reporter", flushed));
        heartbeat_stop.cancel();
        outcome = outcome.and(joined("heartbeat loop", heartbeat.await));
        StoppedLoops {
            returned_attempts,
            outcome,
        }
    }
}

struct StoppedLoops {
    /// Attempts pulled but never started.
    returned_attempts: Vec<AttemptId>,
    /// The first panic of a loop, if any.
    outcome: Result<(), WorkerError>,
}

fn joined(
    task: &'static str,
    result: Result<(), tokio::task::JoinError>,
) -> Result<(), WorkerError> {
    result.map_err(|source| WorkerError::TaskPanicked { task, source })
}

/// Step 5 of the drain: leaves the cluster, handing back the attempts never started. A
/// failure only costs time: the coordinator declares the worker dead after its timeout
/// and requeues the attempts then.
async fn deregister(
    coordinators: &Coordinators,
    session: Session,
    returned_attempts: Vec<AttemptId>,
) {
    let returned = returned_attempts.len();
    let returned_attempts: Vec<u64> = returned_attempts.iter().map(|attempt| attempt.0).collect();
    let mut backoff = RetryBackoff::new(
        fresh_seed(4),
        Duration::from_millis(100),
        Duration::from_secs(1),
    );
    for _ in 0..DEREGISTER_TRIES {
        let request = v1::DeregisterWorkerRequest {
            worker_id: session.worker_id,
            returned_attempts: returned_attempts.clone(),
        };
        let answer = coordinators
            .try_once(DEREGISTER_RPC_TIMEOUT, |mut client| async move {
                client.deregister_worker(request).await
            })
            .await;
        let failure = match answer.map_err(crate::session::call_status) {
            Ok(_) => {
                tracing::info!(
                    worker = %format_args!("{:x}", session.worker_id),
                    returned,
                    "worker deregistered"
                );
                return;
            }
            Err(status) => status.to_string(),
        };
        let delay = backoff.next_delay();
        tracing::warn!(
            error = %failure,
            retry_in_ms = delay.as_millis() as u64,
            "failed to deregister"
        );
        tokio::time::sleep(delay).await;
    }
    tracing::warn!(
        returned,
        "could not deregister; the coordinator requeues this worker's attempts once it \
         declares it dead"
    );
}
