//! The reporter: delivers finished attempts to the coordinator, many per call.
//!
//! Batching is what lets one coordinator absorb tens of thousands of results per
//! second: while one ReportResults call is in flight, results pile up in the channel,
//! and the next call takes all of them. There is at most one call in flight, so results
//! of one worker are committed in the order they finished.
//!
//! A result is kept (and retried with backoff) until the coordinator acknowledges it,
//! for as long as the worker lives. It is dropped only when it can no longer count: its
//! session is over (the coordinator forgot this worker and fenced its attempts off), or
//! the coordinator refuses the batch as malformed, or the drain gives up on delivery.
//!
//! The channel is unbounded because the dispatcher must never wait on the coordinator
//! (it also answers heartbeats); it stays small in practice because nothing is pulled
//! while the coordinator is unreachable.

use std::time::Duration;

use essaim_proto::{Coordinators, attempt_result_to_wire, v1};
use essaim_telemetry::WorkerMetrics;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::attempt::FinishedAttempt;
use crate::backoff::RetryBackoff;
use crate::session::{SessionState, call_status, wait_for_session};

/// Report retry delays: capped exponential, full jitter.
pub(crate) const REPORT_BACKOFF_BASE: Duration = Duration::from_millis(50);
pub(crate) const REPORT_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Most results in one call.
const MAX_RESULTS_PER_REPORT: usize = 4096;
/// Most inline output bytes in one call, well under the 64 MiB message limit.
const MAX_INLINE_BYTES_PER_REPORT: usize = 16 * 1024 * 1024;
/// How long one ReportResults call may take (it waits for the results to be durable).
const REPORT_RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// A finished attempt, converted for the wire once.
struct PendingResult {
    generation: u64,
    wire: v1::AttemptResult,
}

impl PendingResult {
    fn from_finished(finished: FinishedAttempt) -> Self {
        let duration_ms = u64::try_from(finished.duration.as_millis()).unwrap_or(u64::MAX);
        let wire = attempt_result_to_wire(finished.attempt_id, &finished.outcome, duration_ms);
        Self {
            generation: finished.generation,
            wire,
        }
    }

    fn inline_bytes(&self) -> usize {
        match &self.wire.outcome {
            Some(v1::attempt_result::Outcome::Success(output)) => output.inline.len(),
            _ => 0,
        }
    }
}

/// Everything the reporter needs.
pub(crate) struct Reporter {
    /// The coordinators; results go to the leader.
    pub coordinators: Coordinators,
    /// Finished attempts, from the dispatcher; closed when the dispatcher stops.
    pub results_rx: mpsc::UnboundedReceiver<FinishedAttempt>,
    /// The current registration.
    pub session_rx: watch::Receiver<SessionState>,
    /// Asks the runtime to register again, naming the session that is over.
    pub reregister_tx: mpsc::UnboundedSender<u64>,
    /// Where deliveries are counted.
    pub metrics: WorkerMetrics,
    /// Fires when the drain gives up on undelivered results.
    pub abandon: CancellationToken,
    /// Delays between failed calls.
    pub backoff: RetryBackoff,
}

impl Reporter {
    /// Delivers results until the dispatcher has stopped and every result is delivered
    /// (or dropped, see the module doc).
    pub(crate) async fn run(mut self) {
        while let Some(first) = self.results_rx.recv().await {
            let batch = self.take_batch(first);
            self.deliver(batch).await;
        }
        tracing::debug!("reporter flushed every result");
    }

    /// Takes `first` and every result already waiting, up to the batch limits.
    fn take_batch(&mut self, first: FinishedAttempt) -> Vec<PendingResult> {
        let first = PendingResult::from_finished(first);
        let mut inline_bytes = first.inline_bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_RESULTS_PER_REPORT && inline_bytes < MAX_INLINE_BYTES_PER_REPORT {
            let Ok(next) = self.results_rx.try_recv() else {
                break;
            };
            let next = PendingResult::from_finished(next);
            inline_bytes += next.inline_bytes();
            batch.push(next);
        }
        batch
    }

    /// Delivers one batch, retrying until it is acknowledged or can no longer count.
    async fn deliver(&mut self, mut batch: Vec<PendingResult>) {
        loop {
            if self.abandon.is_cancelled() {
                tracing::error!(
                    lost = batch.len(),
                    "drain gave up delivering attempt results"
                );
                return;
            }
            let session = tokio::select! {
                biased;
                () = self.abandon.cancelled() => continue,
                session = wait_for_session(&mut self.session_rx) => session,
            };
            let Some(session) = session else {
                self.metrics.results_fenced_total.inc_by(batch.len() as u64);
                tracing::debug!(
                    dropped = batch.len(),
                    "dropping results: no longer registered"
                );
                return;
            };
            let before = batch.len();
            batch.retain(|pending| pending.generation == session.generation);
            if batch.len() < before {
                let fenced = before - batch.len();
                self.metrics.results_fenced_total.inc_by(fenced as u64);
                tracing::debug!(
                    dropped = before - batch.len(),
                    "dropping results of an older registration"
                );
            }
            if batch.is_empty() {
                return;
            }

            let request = v1::ReportResultsRequest {
                worker_id: session.worker_id,
                results: batch.iter().map(|pending| pending.wire.clone()).collect(),
            };
            let coordinators = self.coordinators.clone();
            let call = coordinators.try_once(REPORT_RPC_TIMEOUT, |mut client| async move {
                client.report_results(request).await
            });
            let answer = tokio::select! {
                biased;
                () = self.abandon.cancelled() => continue,
                answer = call => answer,
            };
            let failure = match answer.map_err(call_status) {
                Ok(response) => {
                    self.backoff.reset();
                    if response.reregister {
                        self.metrics.results_fenced_total.inc_by(batch.len() as u64);
                        tracing::warn!(
                            dropped = batch.len(),
                            "coordinator no longer knows this worker; its results are fenced off"
                        );
                        let _runtime_gone = self.reregister_tx.send(session.generation);
                        return;
                    }
                    self.metrics
                        .results_reported_total
                        .inc_by(batch.len() as u64);
                    if response.rejected > 0 {
                        tracing::debug!(
                            rejected = response.rejected,
                            "coordinator rejected late or zombie results"
                        );
                    }
                    return;
                }
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    // The same bytes would be refused again: retrying cannot help.
                    tracing::error!(
                        lost = batch.len(),
                        %status,
                        "coordinator refused the results as malformed"
                    );
                    return;
                }
                Err(status) => status.to_string(),
            };
            let delay = self.backoff.next_delay();
            tracing::warn!(
                pending = batch.len(),
                failures = self.backoff.consecutive_failures(),
                retry_in_ms = delay.as_millis() as u64,
                error = %failure,
                "failed to report results; retrying"
            );
            tokio::select! {
                () = self.abandon.cancelled() => {}
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}
