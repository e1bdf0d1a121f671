//! The pull loop: asks the coordinator for as many attempts as the worker can take, and
//! queues them at the dispatcher.
//!
//! One pull is in flight at a time, and it asks for exactly the dispatcher's spare
//! capacity (free slots + prefetch − queued), so the worker never holds more leases than
//! it can start soon. Waiting for work is the coordinator's job (the pull is a long
//! poll); this loop never polls on a timer. Results are not sent here but by the
//! reporter, so that a parked long-poll never delays a result.
//!
//! No pull leaves while the scratch disk is below its reserve (`crate::scratch_guard`):
//! a worker with a full disk would fail every task it took.
//!
//! On drain the loop stops at once, dropping a pull still parked at the coordinator. An
//! attempt granted in that instant is revoked when the worker deregisters (a retryable
//! "worker left" failure) — a rare, bounded cost, preferred to holding the drain up for a
//! whole long poll.

use std::time::Duration;

use essaim_core::AttemptId;
use essaim_core::model::Assignment;
use essaim_proto::{Coordinators, assignment_from_wire, v1};
use essaim_telemetry::WorkerMetrics;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::RetryBackoff;
use crate::dispatch::DispatcherHandle;
use crate::epoch::EpochFence;
use crate::scratch_guard::ScratchGuard;
use crate::session::{SessionState, call_status, wait_for_session, wait_for_session_end};

/// Pull retry delays: capped exponential, full jitter.
pub(crate) const PULL_BACKOFF_BASE: Duration = Duration::from_millis(50);
pub(crate) const PULL_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Time allowed beyond the coordinator's long poll before a pull counts as lost (a
/// connection that died silently).
const PULL_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// Everything the pull loop needs.
pub(crate) struct PullLoop {
    /// The coordinators; pulls go to the leader.
    pub coordinators: Coordinators,
    /// Where capacity is asked and attempts queued.
    pub dispatcher: DispatcherHandle,
    /// The current registration.
    pub session_rx: watch::Receiver<SessionState>,
    /// Asks the runtime to register again, naming the session that is over.
    pub reregister_tx: mpsc::UnboundedSender<u64>,
    /// Fires when the drain starts: pull no more.
    pub drain: CancellationToken,
    /// Delays between failed pulls.
    pub backoff: RetryBackoff,
    /// Refuses grants of a deposed coordinator.
    pub epoch_fence: EpochFence,
    /// Where refused grants are counted.
    pub metrics: WorkerMetrics,
    /// Holds pulls back while the scratch disk is below its reserve.
    pub scratch: ScratchGuard,
}

impl PullLoop {
    /// Pulls until the drain starts, the session is closed, or the dispatcher is gone.
    pub(crate) async fn run(mut self) {
        let drain = self.drain.clone();
        tokio::select! {
            () = drain.cancelled() => {}
            () = self.pull_until_closed() => {}
        }
        tracing::debug!("pull loop stopped");
    }

    /// Converts the granted attempts, refusing (and counting) those of a coordinator
    /// epoch older than one already seen (see `crate::epoch`).
    fn admit_current_epoch(&mut self, granted: Vec<v1::Assignment>) -> Vec<Assignment> {
        let mut admitted = Vec::with_capacity(granted.len());
        for assignment in granted {
            let attempt = AttemptId(assignment.attempt_id);
            if self.epoch_fence.admit(attempt) {
                admitted.push(assignment_from_wire(assignment));
                continue;
            }
            self.metrics.stale_epoch_grants_total.inc();
            tracing::warn!(
                attempt = %attempt,
                epoch = attempt.epoch(),
                newest_epoch = self.epoch_fence.highest_seen(),
                "refusing a grant from a deposed coordinator"
            );
        }
        admitted
    }

    async fn pull_until_closed(&mut self) {
        loop {
            let Some(capacity) = self.dispatcher.await_capacity().await else {
                return;
            };
            self.scratch.wait_for_room().await;
            let Some(session) = wait_for_session(&mut self.session_rx).await else {
                return;
            };
            let request = v1::PullTasksRequest {
                worker_id: session.worker_id,
                max_tasks: capacity,
                results: Vec::new(),
            };
            let rpc_timeout = session.timings.long_poll + PULL_TIMEOUT_MARGIN;
            let answer = self
                .coordinators
                .try_once(rpc_timeout, |mut client| async move {
                    client.pull_tasks(request).await
                })
                .await;
            let failure = match answer.map_err(call_status) {
                Ok(response) => {
                    self.backoff.reset();
                    if response.reregister {
                        tracing::warn!(
                            worker = %format_args!("{:x}", session.worker_id),
                            "coordinator no longer knows this worker; registering again"
                        );
                        let _runtime_gone = self.reregister_tx.send(session.generation);
                        wait_for_session_end(&mut self.session_rx, session.generation).await;
                        continue;
                    }
                    let granted = self.admit_current_epoch(response.assignments);
                    if !granted.is_empty() {
                        self.dispatcher.assign(session.generation, granted).await;
                    }
                    continue;
                }
                Err(status) => status.to_string(),
            };
            let delay = self.backoff.next_delay();
            tracing::warn!(
                worker = %format_args!("{:x}", session.worker_id),
                failures = self.backoff.consecutive_failures(),
                retry_in_ms = delay.as_millis() as u64,
                error = %failure,
                "pull failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}
