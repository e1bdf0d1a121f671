//! The heartbeat loop: proves the worker alive, renews the lease of every attempt it
//! holds, and carries the coordinator's cancellations back.
//!
//! It runs on its own timer, independent of pulling and reporting, so that a parked
//! long-poll or a slow report never delays a heartbeat (a late heartbeat means lost
//! leases). It keeps going while the worker drains, since running attempts still need
//! their leases renewed, and announces the drain at once rather than at the next beat.
//!
//! Each beat also lists the jobs that have files in the scratch directory; the
//! coordinator answers which of them nobody will read again (intermediate outputs of a
//! finished MapReduce job, results of a forgotten job), and the worker deletes those.
//! Intermediate files are thus removed only after their job is committed, failed or
//! cancelled — never while a reducer may still need them.
//!
//! Failures are counted and logged, never fatal: the coordinator may be restarting. A
//! worker that could not heart-beat for longer than the worker timeout has been declared
//! dead, so once the coordinator answers again it registers afresh even if the answer
//! does not ask it to.

use essaim_core::AttemptId;
use essaim_core::rng::SeededRng;
use essaim_proto::{Coordinators, v1};
use essaim_telemetry::WorkerMetrics;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::jittered_interval;
use crate::dispatch::DispatcherHandle;
use crate::session::{Session, SessionState, call_status, wait_for_session, wait_for_session_end};

/// Shortest time a heartbeat call may take before it counts as failed.
const MIN_HEARTBEAT_RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything the heartbeat loop needs.
pub(crate) struct HeartbeatLoop {
    /// The coordinators; heartbeats go to the leader.
    pub coordinators: Coordinators,
    /// Where held attempts are read and cancellations sent.
    pub dispatcher: DispatcherHandle,
    /// The current registration.
    pub session_rx: watch::Receiver<SessionState>,
    /// Asks the runtime to register again, naming the session that is over.
    pub reregister_tx: mpsc::UnboundedSender<u64>,
    /// Where failures are counted.
    pub metrics: WorkerMetrics,
    /// Fires when the drain starts: announce it.
    pub drain: CancellationToken,
    /// Fires when heartbeats must stop (after the results are flushed).
    pub stop: CancellationToken,
    /// Jitter of the interval.
    pub rng: SeededRng,
    /// The scratch directory: one subdirectory per job.
    pub scratch_root: std::path::PathBuf,
    /// The executors, whose stream units' progress each heartbeat carries.
    pub executors: std::sync::Arc<crate::ExecutorRegistry>,
}

impl HeartbeatLoop {
    /// Heart-beats until `stop` fires or the dispatcher is gone.
    pub(crate) async fn run(mut self) {
        let mut drain_announced = false;
        let mut last_generation = None;
        let mut last_success = Instant::now();
        loop {
            let session = tokio::select! {
                () = self.stop.cancelled() => return,
                session = wait_for_session(&mut self.session_rx) => session,
            };
            let Some(session) = session else {
                // Closed: nothing to renew, but keep waiting for the stop.
                self.stop.cancelled().await;
                return;
            };
            if last_generation != Some(session.generation) {
                last_generation = Some(session.generation);
                last_success = Instant::now();
            }

            let interval = jittered_interval(&mut self.rng, session.timings.heartbeat_interval);
            let drain_to_announce = self.drain.is_cancelled() && !drain_announced;
            if !drain_to_announce {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    // The coordinator must stop granting work to this worker right away.
                    () = self.drain.cancelled(), if !drain_announced => {}
                    // Registered again: beat under the new id at once.
                    _changed = self.session_rx.changed() => continue,
                    () = tokio::time::sleep(interval) => {}
                }
            }
            if self.drain.is_cancelled() {
                drain_announced = true;
            }
            let Some(held) = self.dispatcher.held_attempts().await else {
                return;
            };
            let stop = self.stop.clone();
            let beat = tokio::select! {
                () = stop.cancelled() => return,
                beat = self.beat(&session, held, &mut last_success) => beat,
            };
            if let BeatOutcome::SessionOver = beat {
                let _runtime_gone = self.reregister_tx.send(session.generation);
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = wait_for_session_end(&mut self.session_rx, session.generation) => {}
                }
            }
        }
    }

    /// Sends one heartbeat and applies the answer.
    async fn beat(
        &mut self,
        session: &Session,
        held: crate::dispatch::HeldAttempts,
        last_success: &mut Instant,
    ) -> BeatOutcome {
        let request = v1::HeartbeatRequest {
            worker_id: session.worker_id,
            held_attempts: held.attempt_ids.iter().map(|attempt| attempt.0).collect(),
            draining: self.drain.is_cancelled(),
            busy_slots: held.busy_slots,
            scratch_jobs: scratch_jobs(&self.scratch_root).await,
            stream_units: self.executors.stream_progress(),
        };
        // A heartbeat older than one interval is worthless; give up on it and send a
        // fresh one rather than let calls pile up.
        let rpc_timeout = session
            .timings
            .heartbeat_interval
            .max(MIN_HEARTBEAT_RPC_TIMEOUT);
        let answer = self
            .coordinators
            .try_once(rpc_timeout, |mut client| async move {
                client.heartbeat(request).await
            })
            .await;
        let failure = match answer.map_err(call_status) {
            Ok(response) => {
                let silent_for = last_success.elapsed();
                *last_success = Instant::now();
                self.metrics.heartbeat_age_seconds.set(0.0);
                let declared_dead = silent_for >= session.timings.worker_timeout;
                if response.reregister || declared_dead {
                    tracing::warn!(
                        worker = %format_args!("{:x}", session.worker_id),
                        silent_for_ms = silent_for.as_millis() as u64,
                        coordinator_asked = response.reregister,
                        "coordinator no longer knows this worker; registering again"
                    );
                    return BeatOutcome::SessionOver;
                }
                if !response.cancel_attempts.is_empty() {
                    tracing::debug!(
                        cancelled = response.cancel_attempts.len(),
                        "coordinator revoked attempts"
                    );
                    let revoked = response
                        .cancel_attempts
                        .into_iter()
                        .map(AttemptId)
                        .collect();
                    self.dispatcher.cancel(revoked).await;
                }
                if !response.release_jobs.is_empty() {
                    release_jobs(&self.scratch_root, response.release_jobs);
                }
                return BeatOutcome::Delivered;
            }
            Err(status) => status.to_string(),
        };
        self.metrics.heartbeat_failures_total.inc();
        self.metrics
            .heartbeat_age_seconds
            .set(last_success.elapsed().as_secs_f64());
        tracing::warn!(
            worker = %format_args!("{:x}", session.worker_id),
            silent_for_ms = last_success.elapsed().as_millis() as u64,
            error = %failure,
            "heartbeat failed; retrying at the next beat"
        );
        BeatOutcome::Failed
    }
}

/// Returns the jobs with a directory under the scratch root (named by their decimal id).
async fn scratch_jobs(scratch_root: &std::path::Path) -> Vec<u64> {
    let mut jobs = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(scratch_root).await else {
        return jobs;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if let Some(job) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        {
            jobs.push(job);
        }
        if jobs.len() >= MAX_SCRATCH_JOBS_PER_BEAT {
            break;
        }
    }
    jobs
}

/// Most scratch jobs named in one heartbeat; the rest wait for later beats.
const MAX_SCRATCH_JOBS_PER_BEAT: usize = 1024;

/// Deletes the scratch directories of released jobs, off the async threads.
fn release_jobs(scratch_root: &std::path::Path, jobs: Vec<u64>) {
    let scratch_root = scratch_root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        for job in jobs {
            let dir = scratch_root.join(job.to_string());
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::debug!(job, "released the scratch files of a finished job"),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(
                    job,
                    dir = %dir.display(),
                    %error,
                    "could not delete the scratch files of a finished job"
                ),
            }
        }
    });
}

enum BeatOutcome {
    Delivered,
    Failed,
    /// The coordinator forgot this worker (or must have).
    SessionOver,
}
