//! The dead-letter queue: tasks out of attempts wait there for an operator, who may put
//! them back with fresh attempts or purge them for good.

use super::{Output, Scheduler};
use crate::ids::{JobId, Millis, TaskId};
use crate::journal::JournalEvent;
use crate::model::{JobState, TaskState};
use std::cmp::Reverse;

/// What an operator does with dead letters.
#[derive(Debug, Clone, Copy)]
enum DeadLetterAction {
    /// Back to the queue with fresh attempts.
    Requeue,
    /// Removed for good.
    Purge,
}

impl Scheduler {
    /// Returns the dead-lettered tasks of `job` (every job when `None`).
    pub fn dead_letters(&self, job: Option<JobId>) -> Vec<TaskId> {
        let mut found = Vec::new();
        for (job_id, job_state) in &self.jobs {
            if job.is_some_and(|wanted| wanted != *job_id) || job_state.counts().dead_lettered == 0
            {
                continue;
            }
            for (index, task) in job_state.tasks().iter().enumerate() {
                if *task.state() == TaskState::DeadLettered {
                    found.push(TaskId::new(*job_id, index as u32));
                }
            }
        }
        found
    }

    /// Returns the number of tasks in the dead-letter queue.
    pub fn dead_letter_count(&self) -> u64 {
        self.jobs
            .values()
            .map(|job| u64::from(job.counts().dead_lettered))
            .sum()
    }

    /// Puts dead letters back in the queue with fresh attempts; returns how many.
    pub fn requeue_dead_letters(
        &mut self,
        now: Millis,
        tasks: &[TaskId],
        out: &mut Vec<Output>,
    ) -> u32 {
        self.act_on_dead_letters(now, tasks, DeadLetterAction::Requeue, out)
    }

    /// Removes dead letters for good; returns how many.
    pub fn purge_dead_letters(
        &mut self,
        now: Millis,
        tasks: &[TaskId],
        out: &mut Vec<Output>,
    ) -> u32 {
        self.act_on_dead_letters(now, tasks, DeadLetterAction::Purge, out)
    }

    /// Journals, then applies, an operator's action on those of `tasks` it applies to;
    /// returns how many.
    fn act_on_dead_letters(
        &mut self,
        now: Millis,
        tasks: &[TaskId],
        action: DeadLetterAction,
        out: &mut Vec<Output>,
    ) -> u32 {
        let tasks: Vec<TaskId> = tasks
            .iter()
            .copied()
            .filter(|task| match action {
                DeadLetterAction::Requeue => self.is_requeueable(*task),
                DeadLetterAction::Purge => self.is_dead_letter(*task),
            })
            .collect();
        if tasks.is_empty() {
            return 0;
        }
        let count = tasks.len() as u32;
        let event = match action {
            DeadLetterAction::Requeue => JournalEvent::DeadLettersRequeued {
                tasks: tasks.clone(),
                at: now,
            },
            DeadLetterAction::Purge => JournalEvent::DeadLettersPurged {
                tasks: tasks.clone(),
                at: now,
            },
        };
        out.push(Output::Persist(event));
        for task in tasks {
            match action {
                DeadLetterAction::Requeue => self.apply_requeue(task),
                DeadLetterAction::Purge => self.apply_purge(task),
            }
        }
        count
    }

    /// A dead letter can go back to the queue unless its job was cancelled: a cancelled
    /// job stays cancelled (its dead letters can only be inspected or purged).
    pub(super) fn is_requeueable(&self, task: TaskId) -> bool {
        let cancelled = self
            .jobs
            .get(&task.job)
            .is_some_and(|j| matches!(j.state, JobState::Cancelled { .. }));
        self.is_dead_letter(task) && !cancelled
    }

    pub(super) fn is_dead_letter(&self, task: TaskId) -> bool {
        self.jobs
            .get(&task.job)
            .is_some_and(|job| job.is_dead_letter(task.index))
    }

    /// Dead-letters a task that ran out of attempts; later stages can no longer run.
    pub(super) fn dead_letter(&mut self, now: Millis, task_id: TaskId, out: &mut Vec<Output>) {
        self.jobs
            .get_mut(&task_id.job)
            .expect("task has a job")
            .dead_letter(task_id.index, &mut self.retry_queue);
        self.stats.dead_lettered += 1;
        out.push(Output::Persist(JournalEvent::TaskDeadLettered {
            task: task_id,
            at: now,
        }));
        self.stop_stranded_early_attempts(now, task_id.job, out);
        self.finish_if_done(now, task_id.job, out);
    }

    /// Purges a dead letter (the caller checked it is one).
    pub(super) fn apply_purge(&mut self, task: TaskId) {
        self.jobs
            .get_mut(&task.job)
            .expect("dead letter has a job")
            .purge(task.index);
    }

    /// Requeues a dead letter (the caller checked it may be); a finished job runs again.
    pub(super) fn apply_requeue(&mut self, task: TaskId) {
        let job = self
            .jobs
            .get_mut(&task.job)
            .expect("requeued task has a job");
        if job.requeue_dead_letter(task.index) {
            self.job_order
                .insert((Reverse(job.spec.priority), task.job));
        }
    }
}
