//! The independent oracle: it watches the journal the scheduler emits and the assignments
//! it hands out, and checks the guarantees of the module doc after every step, after a
//! recovery from the journal, and at the end of a run.

use super::{KINDS, SimFailure, World, scheduler_config, worker_labels};
use crate::ids::{AttemptId, JobId, TaskId};
use crate::journal::JournalEvent;
use crate::model::{JobState, TaskState};
use crate::scheduler::{Output, Scheduler};
use std::collections::BTreeSet;

impl World {
    /// Records what the scheduler made durable and checks every commit against the oracle.
    pub(super) fn absorb(&mut self, out: Vec<Output>) {
        for output in out {
            let Output::Persist(event) = output else {
                continue;
            };
            match &event {
                JournalEvent::TaskSucceeded { result, .. } => {
                    self.report.commits += 1;
                    let attempt = result.attempt;
                    let problem = if let Some(previous) = self.committed.get(&result.task) {
                        Some(format!(
                            "task {} committed twice ({previous} then {attempt})",
                            result.task
                        ))
                    } else if self.granted.get(&attempt) != Some(&result.task) {
                        Some(format!(
                            "task {} committed from attempt {attempt} never granted for it",
                            result.task
                        ))
                    } else if self.failed_or_stopped.contains(&attempt) {
                        Some(format!(
                            "task {} committed from revoked or stopped attempt {attempt}",
                            result.task
                        ))
                    } else if attempt.epoch() != self.epoch {
                        Some(format!(
                            "task {} committed from attempt {attempt} of an older coordinator",
                            result.task
                        ))
                    } else if self.cancelled_jobs.contains(&result.task.job) {
                        Some(format!(
                            "task {} committed after its job was cancelled",
                            result.task
                        ))
                    } else {
                        None
                    };
                    if let Some(problem) = problem {
                        // Remember it; `check` reports it with the trace.
                        self.log(format!("VIOLATION {problem}"));
                        self.violation.get_or_insert(problem);
                    }
                    self.committed.insert(result.task, attempt);
                }
                JournalEvent::AttemptFailed { error, .. } => {
                    self.failed_or_stopped.insert(error.attempt);
                }
                JournalEvent::TaskDeadLettered { .. } => self.report.dead_lettered += 1,
                JournalEvent::TaskOutputLost { task, .. } => {
                    // Recomputed: the task may commit once more.
                    self.committed.remove(task);
                    self.report.outputs_lost += 1;
                }
                _ => {}
            }
            self.journal.push(event);
        }
    }

    /// Every attempt goes to a worker carrying the labels its job required when it was
    /// submitted.
    pub(super) fn check_placement(&mut self, worker_index: usize, task: TaskId) {
        let required = self
            .required_labels
            .get(&task.job)
            .cloned()
            .unwrap_or_default();
        let labels = worker_labels(worker_index);
        if !crate::labels::satisfies(&labels, &required) {
            let problem = format!(
                "task {task} requires {} but went to worker #{worker_index} with `{}`",
                crate::labels::show(&required),
                crate::labels::show(&labels)
            );
            self.log(format!("VIOLATION {problem}"));
            self.violation.get_or_insert(problem);
        }
    }

    /// A task of stage s > 0 is granted only once every task of stage s - 1 committed,
    /// and is handed exactly their committed attempts; a task started early is handed
    /// those committed so far.
    pub(super) fn check_inputs(&mut self, assignment: &crate::model::Assignment) {
        let given: Vec<(u32, AttemptId)> = assignment
            .inputs
            .iter()
            .map(|input| (input.task_index, input.attempt))
            .collect();
        self.check_inputs_of(assignment.task, &given, assignment.inputs_complete);
    }

    /// Checks the inputs `given` to task `task` (complete, or those committed so far).
    pub(super) fn check_inputs_of(
        &mut self,
        task: TaskId,
        given: &[(u32, AttemptId)],
        complete: bool,
    ) {
        let Some(job) = self.scheduler.job(task.job) else {
            return;
        };
        let stage = job.spec.tasks[task.index as usize].stage;
        let expected: Vec<(u32, Option<AttemptId>)> = if stage == 0 {
            Vec::new()
        } else {
            (0..job.spec.tasks.len() as u32)
                .filter(|index| job.spec.tasks[*index as usize].stage == stage - 1)
                .map(|index| {
                    let committed = self.committed.get(&TaskId::new(job.id, index)).copied();
                    (index, committed)
                })
                .collect()
        };
        let expected: Vec<(u32, Option<AttemptId>)> = if complete {
            expected
        } else {
            expected
                .into_iter()
                .filter(|(_, attempt)| attempt.is_some())
                .collect()
        };
        let given: Vec<(u32, Option<AttemptId>)> = given
            .iter()
            .map(|(index, attempt)| (*index, Some(*attempt)))
            .collect();
        if given != expected {
            let problem = format!(
                "task {task} of stage {stage} given inputs {given:?} (complete: {complete}), \
                 expected {expected:?}"
            );
            self.log(format!("VIOLATION {problem}"));
            self.violation.get_or_insert(problem);
        }
    }

    pub(super) fn check(&mut self) -> Result<(), SimFailure> {
        if let Some(problem) = self.violation.take() {
            return Err(self.fail(problem));
        }
        self.scheduler
            .check_invariants()
            .map_err(|problem| self.fail(format!("invariant: {problem}")))?;
        // Recovery, from the journal or from a snapshot (a compacted journal), must give
        // back exactly the committed tasks.
        if self.step.is_multiple_of(25) {
            self.check_recovery_from(self.journal.clone(), "journal")?;
            self.check_recovery_from(self.scheduler.snapshot(self.now), "snapshot")?;
        }
        Ok(())
    }

    fn check_recovery_from(
        &self,
        events: Vec<JournalEvent>,
        source: &str,
    ) -> Result<(), SimFailure> {
        let recovered =
            Scheduler::recover(scheduler_config(self.epoch + 1, self.seed), KINDS, events);
        recovered.check_invariants().map_err(|problem| {
            self.fail(format!(
                "invariant after recovery from the {source}: {problem}"
            ))
        })?;
        if source == "snapshot" {
            let live_jobs: BTreeSet<JobId> = self.scheduler.jobs().map(|job| job.id).collect();
            let recovered_jobs: BTreeSet<JobId> = recovered.jobs().map(|job| job.id).collect();
            if live_jobs != recovered_jobs {
                return Err(self.fail(format!(
                    "snapshot recovery has jobs {recovered_jobs:?}, not {live_jobs:?}"
                )));
            }
        }
        for job in recovered.jobs() {
            let submitted = self
                .required_labels
                .get(&job.id)
                .cloned()
                .unwrap_or_default();
            if job.required_labels != submitted {
                return Err(self.fail(format!(
                    "recovery from the {source} gives job {} labels `{}`, not `{}`",
                    job.id,
                    crate::labels::show(&job.required_labels),
                    crate::labels::show(&submitted)
                )));
            }
            let groups = self.anti_affinity.get(&job.id).cloned().unwrap_or_default();
            if job.anti_affinity != groups {
                return Err(self.fail(format!(
                    "recovery from the {source} gives job {} groups {:?}, not {groups:?}",
                    job.id, job.anti_affinity
                )));
            }
            for (index, task) in job.tasks().iter().enumerate() {
                let task_id = TaskId::new(job.id, index as u32);
                let recovered_commit = *task.state() == TaskState::Succeeded;
                if recovered_commit != self.committed.contains_key(&task_id) {
                    return Err(self.fail(format!(
                        "recovery from the {source} disagrees on task {task_id}: {:?}",
                        task.state()
                    )));
                }
                let live_task = self.scheduler.job(job.id).map(|j| &j.tasks()[index]);
                if source == "snapshot"
                    && let Some(live_task) = live_task
                    && live_task.errors() != task.errors()
                {
                    return Err(self.fail(format!(
                        "snapshot recovery lost the error history of task {task_id}"
                    )));
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_final(&mut self) -> Result<(), SimFailure> {
        let stats = self.scheduler.stats();
        self.report.speculative = stats.speculative_attempts;
        self.report.early_attempts = stats.early_attempts_started;
        self.report.early_handed_back = stats.early_attempts_handed_back;
        for job in self.scheduler.jobs() {
            for (index, task) in job.tasks().iter().enumerate() {
                let task_id = TaskId::new(job.id, index as u32);
                if *task.state() == TaskState::DeadLettered {
                    let errors = task.errors();
                    let gave_up_early = errors.len()
                        < (job.spec.max_attempts as usize).min(crate::model::MAX_ERRORS_PER_TASK)
                        && errors.last().is_none_or(|e| e.failure.retryable);
                    if gave_up_early {
                        return Err(self.fail(format!(
                            "task {task_id} dead-lettered after only {} errors: {errors:?} attempts_made={}",
                            errors.len(), task.attempts_made()
                        )));
                    }
                }
                if *task.state() == TaskState::Succeeded && !self.committed.contains_key(&task_id) {
                    return Err(self.fail(format!(
                        "task {task_id} succeeded without a journaled commit"
                    )));
                }
            }
            let clean = !self.cancelled_jobs.contains(&job.id)
                && job.spec.deadline.is_none()
                && (0..job.tasks().len() as u32).all(|i| {
                    let b = self.behaviours[&TaskId::new(job.id, i)];
                    !b.poison && b.flaky_percent == 0
                })
                && job.tasks().iter().all(|t| t.errors().is_empty());
            if clean && job.state != JobState::Succeeded {
                return Err(self.fail(format!(
                    "job {} had no failure yet ended {:?}",
                    job.id, job.state
                )));
            }
        }
        Ok(())
    }
}
