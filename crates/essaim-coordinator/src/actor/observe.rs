//! What the actor tells the outside besides its replies: the metrics it sets after every
//! batch from the scheduler's counters, and one log line per attempt event, carrying
//! the correlation id the worker and the command use too.

use super::Actor;
use essaim_core::{JobState, JournalEvent, PullReply, WorkerId};
use tracing::warn;

impl Actor {
    pub(super) fn update_metrics(&mut self, tick: bool) {
        let stats = self.scheduler.stats();
        let last = self.last_stats;
        let metrics = &self.metrics;
        // The scheduler counts since start; the metrics get what changed in this batch.
        let counters = [
            (
                &metrics.attempts_started_total,
                stats.attempts_started,
                last.attempts_started,
            ),
            (
                &metrics.attempts_failed_total,
                stats.attempts_failed,
                last.attempts_failed,
            ),
            (
                &metrics.tasks_committed_total,
                stats.tasks_committed,
                last.tasks_committed,
            ),
            (
                &metrics.results_rejected_total,
                stats.results_rejected,
                last.results_rejected,
            ),
            (
                &metrics.lease_expiries_total,
                stats.lease_expiries,
                last.lease_expiries,
            ),
            (
                &metrics.retries_scheduled_total,
                stats.retries_scheduled,
                last.retries_scheduled,
            ),
            (
                &metrics.dead_lettered_total,
                stats.dead_lettered,
                last.dead_lettered,
            ),
            (
                &metrics.speculative_attempts_total,
                stats.speculative_attempts,
                last.speculative_attempts,
            ),
            (
                &metrics.early_attempts_total,
                stats.early_attempts_started,
                last.early_attempts_started,
            ),
            (
                &metrics.early_attempts_handed_back_total,
                stats.early_attempts_handed_back,
                last.early_attempts_handed_back,
            ),
            (
                &metrics.workers_registered_total,
                stats.workers_registered,
                last.workers_registered,
            ),
            (
                &metrics.workers_lost_total,
                stats.workers_lost,
                last.workers_lost,
            ),
            (
                &metrics.outputs_lost_total,
                stats.outputs_lost,
                last.outputs_lost,
            ),
            (
                &metrics.local_grants_total,
                stats.local_grants,
                last.local_grants,
            ),
            (
                &metrics.remote_grants_total,
                stats.remote_grants,
                last.remote_grants,
            ),
        ];
        for (counter, now, before) in counters {
            counter.inc_by(now - before);
        }
        self.last_stats = stats;
        if !tick {
            return;
        }
        // Gauges need a walk over jobs and workers: once per tick, not per batch.
        let (mut workers, mut slots, mut busy) = (0i64, 0i64, 0i64);
        for (_, worker) in self.scheduler.workers() {
            workers += 1;
            slots += i64::from(worker.info.slots);
            busy += i64::from(worker.busy_slots);
        }
        let (mut pending, mut running) = (0i64, 0i64);
        for job in self
            .scheduler
            .jobs()
            .filter(|job| job.state == JobState::Running)
        {
            let counts = job.counts();
            pending += i64::from(counts.pending + counts.retrying);
            running += i64::from(counts.running);
        }
        metrics.workers.set(workers);
        metrics.slots.set(slots);
        metrics.busy_slots.set(busy);
        metrics.tasks_pending.set(pending);
        metrics.tasks_running.set(running);
        metrics
            .dlq_size
            .set(self.scheduler.dead_letter_count() as i64);
    }
}

// ---------------------------------------------------------------- attempt logs
//
// One line per attempt event, carrying the correlation id the worker puts on its
// attempt span and in the command's ESSAIM_CORRELATION_ID, so that one search finds an
// attempt in the coordinator's log, the worker's log and the command's output.

/// Logs every lease of a pull reply at debug level (one line per attempt: never on by
/// default, and skipped without formatting anything when debug is off).
pub(super) fn log_grants(worker: WorkerId, reply: &PullReply) {
    if reply.assignments.is_empty() || !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    for assignment in &reply.assignments {
        let task = assignment.task;
        tracing::debug!(
            job = task.job.0,
            task = task.index,
            attempt = %assignment.attempt,
            correlation_id = %essaim_proto::correlation_id(task.job.0, task.index, assignment.attempt.0),
            worker = %worker,
            attempt_number = assignment.attempt_number,
            speculative = assignment.speculative,
            "attempt granted"
        );
    }
}

/// Logs an attempt outcome as its event goes to the journal: a commit at debug level, a
/// failure (a lease that expired or an attempt that timed out included) as a warning.
/// Should the journal write fail, the coordinator says so and stops.
pub(super) fn log_attempt_outcome(event: &JournalEvent) {
    match event {
        JournalEvent::TaskSucceeded { result, .. } => tracing::debug!(
            job = result.task.job.0,
            task = result.task.index,
            attempt = %result.attempt,
            correlation_id = %essaim_proto::correlation_id(result.task.job.0, result.task.index, result.attempt.0),
            worker = %result.worker,
            duration_ms = result.duration_ms,
            "attempt committed"
        ),
        JournalEvent::AttemptFailed { task, error } => warn!(
            job = task.job.0,
            task = task.index,
            attempt = %error.attempt,
            correlation_id = %essaim_proto::correlation_id(task.job.0, task.index, error.attempt.0),
            worker = %error.worker,
            retryable = error.failure.retryable,
            reason = %error.failure.message,
            "attempt failed"
        ),
        _ => {}
    }
}
