//! Outcomes of attempts: the first valid result of a task commits, failures are recorded
//! and lead to a retry (with full-jitter backoff), a dead letter or a skip, and results
//! from attempts that no longer hold their lease are refused.

use super::{Output, ReportReply, Scheduler};
use crate::backoff::full_jitter_delay;
use crate::ids::{AttemptId, Millis, WorkerId};
use crate::journal::JournalEvent;
use crate::model::{
    AfterLastAttempt, AttemptError, CommittedResult, ReportedResult, TaskFailure, TaskOutput,
};

impl Scheduler {
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
                // An attempt started early cannot have read every input while its
                // upstream stage is incomplete (a worker that does not ask for the rest):
                // its success would be a silent partial result.
                Ok(_) if self.is_early(result.attempt) => {
                    let failure = TaskFailure::retryable(
                        "finished before its upstream stage was complete: the worker did not \
                         wait for the rest of its inputs (a build without slow start?)",
                    );
                    self.fail_attempt(now, result.attempt, failure, out);
                }
                Ok(output) => self.commit(now, result.attempt, output, result.duration_ms, out),
                Err(failure) => self.fail_attempt(now, result.attempt, failure, out),
            }
        }
        reply
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
        let losers = others.len() as u32;
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
        let job = self
            .jobs
            .get_mut(&task_id.job)
            .expect("committed task has a job");
        job.commit(&result);
        job.uncount_killed_attempts(task_id.index, losers);
        out.push(Output::Persist(JournalEvent::TaskSucceeded {
            result,
            at: now,
        }));
        self.finish_if_done(now, task_id.job, out);
    }

    /// Records a failed attempt; when it was the task's last live attempt, schedules a
    /// retry or dead-letters the task.
    pub(super) fn fail_attempt(
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
}
