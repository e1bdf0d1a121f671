//! The transitions of a job's tasks (the arrows of the diagram in the `model` doc), each
//! keeping the job's counts, queues, live attempts and counters in step.
//!
//! The scheduler calls these once it has decided across jobs; the live path and the
//! replay of the journal call the same methods, so both build the same job.

use super::{
    Assignment, AttemptError, CommittedResult, Job, JobState, RetryQueue, StageOutput, TaskOutput,
    TaskState,
};
use crate::ids::{AttemptId, Millis, TaskId, WorkerId};
use std::collections::BTreeMap;

/// What happens to a task whose last live attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterLastAttempt {
    /// Out of attempts, or the failure is not retryable.
    DeadLetter,
    /// A task of an earlier stage is dead-lettered: this one can never run.
    Skip,
    /// An input was lost while it ran: it waits (pending, unqueued) for the stage before,
    /// which takes longer than any backoff.
    WaitForUpstream,
    /// Retry after a backoff that grows with the attempts made.
    Retry {
        /// Attempts made so far.
        attempts_made: u32,
    },
}

impl Job {
    // ------------------------------------------------------------------ attempts

    /// Leases task `index` to a new attempt (a first one, a retry or a speculative copy);
    /// returns its attempt number.
    pub(crate) fn start_attempt(
        &mut self,
        index: u32,
        attempt_id: AttemptId,
        speculative: bool,
    ) -> u32 {
        let task = &mut self.tasks[index as usize];
        task.attempts_made += 1;
        let attempt_number = task.attempts_made;
        let attempts = match &task.state {
            TaskState::Running { attempts } => {
                let mut attempts = attempts.clone();
                attempts.push(attempt_id);
                attempts
            }
            _ => vec![attempt_id],
        };
        self.set_task_state(index, TaskState::Running { attempts });
        self.live_attempts += 1;
        self.counters.attempts_started += 1;
        if speculative {
            self.counters.speculative_attempts += 1;
        }
        attempt_number
    }

    /// Returns what a worker is told to run for an attempt of task `index`.
    pub(crate) fn assignment(
        &self,
        index: u32,
        attempt_id: AttemptId,
        attempt_number: u32,
        speculative: bool,
    ) -> Assignment {
        let spec = &self.spec.tasks[index as usize];
        Assignment {
            task: TaskId::new(self.id, index),
            attempt: attempt_id,
            attempt_number,
            kind: spec.kind.clone(),
            payload: spec.payload.clone(),
            timeout_ms: self.spec.task_timeout_ms,
            speculative,
            inputs: self.upstream_outputs(index),
            inputs_complete: self.stage_complete(self.stage_of(index)),
            inputs_version: self.inputs_version,
            trace_parent: None,
        }
    }

    /// Ends one live attempt of task `index` (it committed, failed, lost its lease or was
    /// handed back) and returns the task's other live attempts, with which it stays
    /// `Running`. When none is left, the task stays `Running` until the caller moves it on
    /// within the same step.
    pub(crate) fn end_attempt(&mut self, index: u32, attempt_id: AttemptId) -> Vec<AttemptId> {
        self.live_attempts -= 1;
        let TaskState::Running { attempts } = &self.tasks[index as usize].state else {
            return Vec::new();
        };
        let others: Vec<AttemptId> = attempts
            .iter()
            .copied()
            .filter(|id| *id != attempt_id)
            .collect();
        if !others.is_empty() {
            let attempts = others.clone();
            self.set_task_state(index, TaskState::Running { attempts });
        }
        others
    }

    /// An ended attempt was handed back unstarted: it does not count, and unless another
    /// attempt runs, the task goes to the front of its queue.
    pub(crate) fn hand_back(&mut self, index: u32, others_running: bool) {
        let task = &mut self.tasks[index as usize];
        task.attempts_made = task.attempts_made.saturating_sub(1);
        if !others_running {
            self.make_pending(index, true);
        }
    }

    /// An ended attempt was stopped because its inputs can never be complete: it does
    /// not count (a requeued dead letter may let the task run again), and unless another
    /// attempt runs, the task is skipped.
    pub(crate) fn stop_stranded_attempt(&mut self, index: u32, others_running: bool) {
        let task = &mut self.tasks[index as usize];
        task.attempts_made = task.attempts_made.saturating_sub(1);
        if !others_running {
            self.skip_task(index);
        }
    }

    /// Speculative twins stopped because another attempt of task `index` committed were
    /// killed, not failed: like Hadoop's killed attempts they do not count against
    /// `max_attempts` (they would, should the committed output be lost later and the task
    /// run again).
    pub(crate) fn uncount_killed_attempts(&mut self, index: u32, killed: u32) {
        let task = &mut self.tasks[index as usize];
        task.attempts_made = task.attempts_made.saturating_sub(killed);
    }

    /// Counts a result refused because its attempt no longer held the lease.
    pub(crate) fn count_rejected_result(&mut self) {
        self.counters.results_rejected += 1;
    }

    // ------------------------------------------------------------------ outcomes

    /// Commits a result: its duration joins the samples, its task succeeds, its counters
    /// join the sums, and a non-final stage's task keeps where its output lives; the
    /// stages this makes ready (the next one, once its stage is complete or, with slow
    /// start, once enough of it is) are queued.
    pub(crate) fn commit(&mut self, result: &CommittedResult) {
        self.record_duration(result.duration_ms);
        let index = result.task.index;
        let stage = self.stage_of(index);
        let ready_before = self.ready_stages();
        self.set_task_state(index, TaskState::Succeeded);
        self.add_task_counters(&result.output.counters);
        if stage + 1 == self.stage_count() {
            self.results_on_workers |= result.output.file.is_some();
        } else {
            let TaskOutput { file, counters, .. } = &result.output;
            self.tasks[index as usize].output = Some(Box::new(StageOutput {
                attempt: result.attempt,
                worker: result.worker,
                file: file.clone(),
                counters: counters.clone(),
            }));
            self.inputs_version += 1;
            self.queue_stages_now_ready(&ready_before);
        }
    }

    /// Records a failed attempt (already ended) in its task's history and the counters.
    pub(crate) fn record_failure(&mut self, index: u32, error: AttemptError) {
        self.counters.attempts_failed += 1;
        self.tasks[index as usize].push_error(error);
    }

    /// Replays a journaled failure: the attempt counts too, since grants are not journaled.
    pub(crate) fn replay_failure(&mut self, index: u32, error: AttemptError) {
        self.tasks[index as usize].attempts_made += 1;
        self.record_failure(index, error);
    }

    /// Decides what happens to task `index` now that its last live attempt failed.
    pub(crate) fn after_last_attempt_failed(
        &self,
        index: u32,
        retryable: bool,
    ) -> AfterLastAttempt {
        let attempts_made = self.tasks[index as usize].attempts_made;
        if !retryable || attempts_made >= self.spec.max_attempts {
            AfterLastAttempt::DeadLetter
        } else if self.stage_blocked(self.stage_of(index)) {
            AfterLastAttempt::Skip
        } else if !self.task_ready(index) {
            AfterLastAttempt::WaitForUpstream
        } else {
            AfterLastAttempt::Retry { attempts_made }
        }
    }

    /// Puts task `index` in the retry queue until `not_before`.
    pub(crate) fn schedule_retry(
        &mut self,
        index: u32,
        not_before: Millis,
        retries: &mut RetryQueue,
    ) {
        self.set_task_state(index, TaskState::Retrying { not_before });
        retries.insert(not_before, TaskId::new(self.id, index));
    }

    /// Sends task `index` back to `Pending`, queued only if its stage is ready.
    pub(crate) fn return_to_pending(&mut self, index: u32) {
        self.make_pending(index, false);
    }

    /// Skips task `index` (it can never run).
    pub(crate) fn skip_task(&mut self, index: u32) {
        self.set_task_state(index, TaskState::Skipped);
    }

    // ------------------------------------------------------------------ lost outputs

    /// Returns true when `lost_inputs` (reported by an attempt of task `index`) name only
    /// tasks of the stage just before it.
    pub(crate) fn names_upstream_tasks(&self, index: u32, lost_inputs: &[u32]) -> bool {
        let stage = self.stage_of(index);
        if stage == 0 {
            return false;
        }
        let upstream = self.stage_range(stage - 1);
        lost_inputs.iter().all(|index| upstream.contains(index))
    }

    /// Returns true when task `index` keeps an output committed by an attempt older than
    /// `attempt_id` (attempt ids grow with every grant, so an attempt saw only those).
    pub(crate) fn output_older_than(&self, index: u32, attempt_id: AttemptId) -> bool {
        self.tasks[index as usize]
            .output
            .as_ref()
            .is_some_and(|output| output.attempt < attempt_id)
    }

    /// An attempt of task `index` could not read its inputs: the failure is kept in the
    /// history but does not count against its attempts.
    pub(crate) fn record_lost_inputs(&mut self, index: u32, error: AttemptError) {
        let task = &mut self.tasks[index as usize];
        task.attempts_made = task.attempts_made.saturating_sub(1);
        task.push_error(error);
    }

    /// Returns the attempt and worker that produced the committed output of task `index`
    /// while that output is still needed (the next stage has unfinished tasks).
    pub(crate) fn needed_output_origin(&self, index: u32) -> Option<(AttemptId, WorkerId)> {
        let task = &self.tasks[index as usize];
        if task.state != TaskState::Succeeded || !self.output_needed(self.stage_of(index)) {
            return None;
        }
        let output = task
            .output
            .as_ref()
            .expect("a succeeded task of a non-final stage keeps its output");
        Some((output.attempt, output.worker))
    }

    /// Returns the tasks whose needed output is a file served by `worker`. An output
    /// without a file (a part written to shared storage) does not live on the worker.
    pub(crate) fn outputs_served_by(&self, worker: WorkerId) -> Vec<u32> {
        if self.stage_count() < 2 {
            return Vec::new();
        }
        (0..self.tasks.len() as u32)
            .filter(|index| {
                let on_worker = self.tasks[*index as usize]
                    .output
                    .as_ref()
                    .is_some_and(|output| output.worker == worker && output.file.is_some());
                on_worker && self.output_needed(self.stage_of(*index))
            })
            .collect()
    }

    /// Sends a succeeded task of a non-final stage back to `Pending` (its output is lost);
    /// a later stage this makes no longer ready stops being served and its retries wait
    /// with it. Returns true when the task's outputs were now lost as many
    /// times as it may be attempted: it is taken out of the queues and the caller
    /// dead-letters it.
    pub(crate) fn lose_output(
        &mut self,
        index: u32,
        error: AttemptError,
        retries: &mut RetryQueue,
    ) -> bool {
        self.counters.outputs_lost += 1;
        let task = &mut self.tasks[index as usize];
        task.outputs_lost += 1;
        task.push_error(error);
        let ready_before = self.ready_stages();
        if let Some(output) = self.tasks[index as usize].output.take() {
            self.subtract_task_counters(&output.counters);
        }
        self.inputs_version += 1;
        self.make_pending(index, false);
        self.unqueue_stages_no_longer_ready(&ready_before, retries);
        let exhausted = self.tasks[index as usize].outputs_lost >= self.spec.max_attempts;
        if exhausted {
            self.unqueue_task(index);
        }
        exhausted
    }

    // ------------------------------------------------------------------ dead letters

    /// Returns true when task `index` exists and waits in the dead-letter queue.
    pub(crate) fn is_dead_letter(&self, index: u32) -> bool {
        self.tasks
            .get(index as usize)
            .is_some_and(|task| task.state == TaskState::DeadLettered)
    }

    /// Dead-letters task `index`, and skips the waiting tasks of the stages after it: they
    /// need its output, which will never exist. Running ones are skipped when they end.
    pub(crate) fn dead_letter(&mut self, index: u32, retries: &mut RetryQueue) {
        self.set_task_state(index, TaskState::DeadLettered);
        let stage = self.stage_of(index);
        let first_later = self.stage_starts[stage as usize + 1];
        for later in first_later..self.tasks.len() as u32 {
            match self.tasks[later as usize].state {
                TaskState::Retrying { not_before } => {
                    retries.remove(not_before, TaskId::new(self.id, later));
                    self.set_task_state(later, TaskState::Skipped);
                }
                TaskState::Pending => self.set_task_state(later, TaskState::Skipped),
                _ => {}
            }
        }
        for later_stage in stage + 1..self.stage_count() {
            self.unqueue_stage(later_stage);
        }
    }

    /// Removes dead letter `index` for good.
    pub(crate) fn purge(&mut self, index: u32) {
        self.set_task_state(index, TaskState::Purged);
    }

    /// Puts dead letter `index` back with fresh attempts (queued if its stage is ready);
    /// the later stages skipped because of it wait again. Returns true when this reopens
    /// a finished job (the caller serves it again).
    pub(crate) fn requeue_dead_letter(&mut self, index: u32) -> bool {
        let task = &mut self.tasks[index as usize];
        task.attempts_made = 0;
        task.outputs_lost = 0;
        self.make_pending(index, false);
        let stage = self.stage_of(index);
        if !self.stage_blocked(stage + 1) {
            for later in self.stage_starts[stage as usize + 1]..self.tasks.len() as u32 {
                // Queued if their stage is ready (it may be, early, with slow start).
                if self.tasks[later as usize].state == TaskState::Skipped {
                    self.make_pending(later, false);
                }
            }
        }
        if self.state == JobState::Running {
            return false;
        }
        self.state = JobState::Running;
        self.finished_at = None;
        true
    }

    // ------------------------------------------------------------------ the job's end

    /// Skips every queued or retrying task (cancelled job, or deadline passed).
    pub(crate) fn skip_unstarted(&mut self, retries: &mut RetryQueue) {
        self.pending_by_kind.clear();
        for index in 0..self.tasks.len() as u32 {
            let state = &self.tasks[index as usize].state;
            if let TaskState::Retrying { not_before } = state {
                retries.remove(*not_before, TaskId::new(self.id, index));
            }
            if matches!(state, TaskState::Pending | TaskState::Retrying { .. }) {
                self.set_task_state(index, TaskState::Skipped);
            }
        }
    }

    /// Cancels the job, once the caller has ended its live attempts: every unfinished
    /// task is skipped.
    pub(crate) fn cancel(&mut self, reason: &str, now: Millis, retries: &mut RetryQueue) {
        self.skip_unstarted(retries);
        for index in 0..self.tasks.len() as u32 {
            if matches!(self.tasks[index as usize].state, TaskState::Running { .. }) {
                self.set_task_state(index, TaskState::Skipped);
            }
        }
        self.state = JobState::Cancelled {
            reason: reason.to_string(),
        };
        self.finished_at = Some(now);
    }

    /// Ends a running job whose tasks are all terminal; returns true when it did.
    pub(crate) fn finish_if_done(&mut self, now: Millis) -> bool {
        if self.state != JobState::Running || self.counts.unfinished() > 0 {
            return false;
        }
        let tasks = |count: u32| {
            if count == 1 {
                "1 task".to_string()
            } else {
                format!("{count} tasks")
            }
        };
        let counts = self.counts;
        self.state = if counts.dead_lettered + counts.purged > 0 {
            JobState::Failed {
                reason: format!(
                    "{} failed every attempt (see the dead-letter queue)",
                    tasks(counts.dead_lettered + counts.purged)
                ),
            }
        } else if counts.skipped > 0 {
            JobState::Failed {
                reason: format!("deadline passed before {} started", tasks(counts.skipped)),
            }
        } else {
            JobState::Succeeded
        };
        self.finished_at = Some(now);
        true
    }

    // ------------------------------------------------------------------ replay of a snapshot

    /// Restores where a committed task's output lives.
    /// Replays a snapshot's word that some final results are files on workers.
    pub(crate) fn restore_results_on_workers(&mut self) {
        self.results_on_workers = true;
    }

    pub(crate) fn restore_output(&mut self, index: u32, output: StageOutput) {
        self.tasks[index as usize].output = Some(Box::new(output));
    }

    /// Restores the sums of the committed tasks' counters.
    pub(crate) fn restore_task_counters(&mut self, counters: BTreeMap<String, u64>) {
        self.task_counters = counters;
    }

    /// Restores a task's attempt count and failure history.
    pub(crate) fn restore_progress(
        &mut self,
        index: u32,
        attempts_made: u32,
        errors: Vec<AttemptError>,
    ) {
        let task = &mut self.tasks[index as usize];
        task.attempts_made = attempts_made;
        task.errors = errors;
    }

    /// Restores a committed task (its output, if any, is restored separately).
    pub(crate) fn restore_committed(&mut self, index: u32) {
        self.set_task_state(index, TaskState::Succeeded);
    }
}
