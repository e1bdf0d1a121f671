//! What must hold within one job after every step: its counts, stage tallies, queues and
//! live attempts agree with its task states. The scheduler checks the indexes shared by
//! jobs (leases, workers, the retry queue, the job order) and calls this for each job.

use super::{Job, JobState, TaskCounts, TaskState};
use crate::ids::AttemptId;
use std::collections::BTreeMap;

impl Job {
    /// Checks the job against its task states, given which attempts hold a lease and how
    /// many of them are this job's; returns the number of its retrying tasks, or what is
    /// wrong.
    pub(crate) fn check_invariants(
        &self,
        is_live: impl Fn(AttemptId) -> bool,
        leases_held: u32,
    ) -> Result<usize, String> {
        let job_id = self.id;
        let pending_queued = self.queued_task_tally()?;
        let mut counts = TaskCounts::default();
        let mut retrying_tasks = 0usize;
        for (index, task) in self.tasks.iter().enumerate() {
            let index = index as u32;
            *counts.slot(&task.state) += 1;
            match &task.state {
                TaskState::Running { attempts } => {
                    if attempts.is_empty() || attempts.len() > 2 {
                        return Err(format!(
                            "task {job_id}/{index} runs {} attempts",
                            attempts.len()
                        ));
                    }
                    if let Some(attempt) = attempts.iter().find(|attempt| !is_live(**attempt)) {
                        return Err(format!(
                            "task {job_id}/{index} lists dead attempt {attempt}"
                        ));
                    }
                }
                TaskState::Retrying { .. } => retrying_tasks += 1,
                _ => {}
            }
            let queued = pending_queued.get(&index).copied().unwrap_or(0);
            let ready = self.task_ready(index);
            let expected = u32::from(task.state == TaskState::Pending && ready);
            if matches!(task.state, TaskState::Retrying { .. }) && !ready {
                return Err(format!(
                    "task {job_id}/{index} retries in a stage not ready"
                ));
            }
            let keeps_output = task.output.is_some();
            let should_keep =
                task.state == TaskState::Succeeded && self.stage_of(index) + 1 < self.stage_count();
            if keeps_output != should_keep {
                return Err(format!(
                    "task {job_id}/{index} is {:?} and keeps an output: {keeps_output}",
                    task.state
                ));
            }
            if queued != expected {
                return Err(format!(
                    "task {job_id}/{index} is {:?} and queued {queued} times",
                    task.state
                ));
            }
        }
        self.check_stage_tallies()?;
        if counts != self.counts {
            return Err(format!(
                "job {job_id} counts {:?} != recomputed {counts:?}",
                self.counts
            ));
        }
        self.check_live_attempts(leases_held)?;
        if self.state != JobState::Running && counts.unfinished() > 0 {
            return Err(format!(
                "job {job_id} is {:?} with unfinished tasks {counts:?}",
                self.state
            ));
        }
        Ok(retrying_tasks)
    }

    /// Returns how many times each task is queued, checking it is queued under its kind.
    fn queued_task_tally(&self) -> Result<BTreeMap<u32, u32>, String> {
        let mut pending_queued = BTreeMap::new();
        for (kind, queue) in &self.pending_by_kind {
            for index in queue {
                if self.spec.tasks[*index as usize].kind != *kind {
                    return Err(format!(
                        "task {}/{index} queued under the wrong kind",
                        self.id
                    ));
                }
                *pending_queued.entry(*index).or_insert(0u32) += 1;
            }
        }
        Ok(pending_queued)
    }

    fn check_stage_tallies(&self) -> Result<(), String> {
        for stage in 0..self.stage_count() {
            let unfinished = self
                .stage_range(stage)
                .filter(|index| self.tasks[*index as usize].state != TaskState::Succeeded)
                .count() as u32;
            let waiting = self
                .stage_range(stage)
                .filter(|index| {
                    matches!(
                        self.tasks[*index as usize].state,
                        TaskState::Pending | TaskState::Retrying { .. }
                    )
                })
                .count() as u32;
            if waiting != self.stage_waiting[stage as usize] {
                return Err(format!(
                    "job {} stage {stage} has {waiting} waiting tasks, counted {}",
                    self.id, self.stage_waiting[stage as usize]
                ));
            }
            if unfinished != self.stage_unfinished[stage as usize] {
                return Err(format!(
                    "job {} stage {stage} has {unfinished} unfinished tasks, counted {}",
                    self.id, self.stage_unfinished[stage as usize]
                ));
            }
        }
        Ok(())
    }

    fn check_live_attempts(&self, leases_held: u32) -> Result<(), String> {
        if leases_held != self.live_attempts {
            return Err(format!(
                "job {} live attempts {} != {leases_held}",
                self.id, self.live_attempts
            ));
        }
        if let Some(limit) = self.spec.max_concurrency
            && leases_held > limit
        {
            return Err(format!(
                "job {} runs {leases_held} attempts over its limit {limit}",
                self.id
            ));
        }
        Ok(())
    }
}
