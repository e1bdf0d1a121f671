//! Recovery: replaying journaled events into the state a previous incarnation had, and
//! the compacted journal (a snapshot) that replays to the same jobs.
//!
//! Replay calls the same `Job` transitions as the live path; leases are never journaled,
//! so a recovered scheduler starts with none and the queues are rebuilt at the end.

use super::Scheduler;
use crate::ids::{Millis, TaskId};
use crate::journal::JournalEvent;
use crate::model::{Job, JobState, StageOutput, TaskState};
use std::cmp::Reverse;

impl Scheduler {
    /// Applies one journaled event during recovery. Queues are rebuilt afterwards.
    pub(super) fn replay(&mut self, event: JournalEvent) {
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
                // Live, the job was running when it was cancelled. Replayed, it may
                // already look failed: attempts are not journaled, so a job kept running
                // only by attempts in flight (early reducers after a dead letter) ends
                // at the dead letter. The journal says how it ended: cancelled, and a
                // later requeue of its dead letters must be refused as it was live.
                if self
                    .jobs
                    .get(&job)
                    .is_some_and(|j| matches!(j.state, JobState::Running | JobState::Failed { .. }))
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
            JournalEvent::ResultsOnWorkers { job } => {
                if let Some(state) = self.jobs.get_mut(&job) {
                    state.restore_results_on_workers();
                }
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
            JournalEvent::JobSupersedeKey { job, key } => self.set_supersede_key(job, key),
            JournalEvent::JobSlowStart { job, share } => self.set_slow_start(job, share),
            JournalEvent::JobOwner { job, owner } => self.set_owner(job, owner),
            JournalEvent::JobPlacement {
                job,
                required_labels,
            } => self.set_required_labels(job, required_labels.into_iter().collect()),
            JournalEvent::JobAntiAffinity { job, groups } => {
                self.set_anti_affinity(job, groups.into_iter().collect());
            }
            JournalEvent::JobProcessingVersion { job, version } => {
                self.set_processing_version(job, version);
            }
            JournalEvent::JobIdsReserved { next_job } => {
                self.next_job = self.next_job.max(next_job);
            }
            JournalEvent::DeadLettersPurged { tasks, at } => {
                for task in tasks {
                    if self.is_dead_letter(task) {
                        self.apply_purge(task);
                    }
                    self.finish_if_done(at, task.job, &mut ignored);
                }
            }
        }
    }

    pub(super) fn rebuild_queues(&mut self) {
        for job in self.jobs.values_mut() {
            job.rebuild_pending_queues();
        }
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
            if let Some(key) = &job.supersede_key {
                events.push(JournalEvent::JobSupersedeKey {
                    job: *job_id,
                    key: key.clone(),
                });
            }
            if let Some(version) = &job.processing_version {
                events.push(JournalEvent::JobProcessingVersion {
                    job: *job_id,
                    version: version.clone(),
                });
            }
            if let Some(owner) = &job.owner {
                events.push(JournalEvent::JobOwner {
                    job: *job_id,
                    owner: owner.clone(),
                });
            }
            if let Some(share) = job.slow_start() {
                events.push(JournalEvent::JobSlowStart {
                    job: *job_id,
                    share,
                });
            }
            if !job.required_labels.is_empty() {
                events.push(JournalEvent::JobPlacement {
                    job: *job_id,
                    required_labels: job.required_labels.clone().into_iter().collect(),
                });
            }
            if !job.anti_affinity.is_empty() {
                events.push(JournalEvent::JobAntiAffinity {
                    job: *job_id,
                    groups: job.anti_affinity.clone().into_iter().collect(),
                });
            }
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
            if job.results_on_workers() {
                events.push(JournalEvent::ResultsOnWorkers { job: *job_id });
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
}
