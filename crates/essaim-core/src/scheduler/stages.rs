//! Jobs of several stages: the committed output of a task of a non-final stage is read
//! by the next stage, and when it is lost (its worker died, or a reader could not read
//! it) the task runs again and the next stage waits for its new output.

use super::{Output, Scheduler};
use crate::ids::{AttemptId, JobId, Millis, TaskId};
use crate::journal::JournalEvent;
use crate::model::{AttemptError, JobState, TaskFailure};

impl Scheduler {
    /// Returns, of the jobs a worker keeps files for, those whose files nobody will read
    /// again: jobs no longer known (forgotten after retention), and finished jobs of
    /// several stages whose final results are all inline (their files are intermediate
    /// outputs, needed only while the job runs). The files of a finished one-stage job,
    /// or of a staged job whose last stage committed files, are its results and stay
    /// until it is forgotten.
    pub fn releasable_jobs(&self, jobs: &[JobId]) -> Vec<JobId> {
        jobs.iter()
            .copied()
            .filter(|job| match self.jobs.get(job) {
                None => *job < JobId(self.next_job),
                Some(job) => {
                    job.state != JobState::Running
                        && job.stage_count() > 1
                        && !job.results_on_workers()
                }
            })
            .collect()
    }

    /// Returns true when a failure's `lost_inputs` name tasks of the stage just before
    /// the failed attempt's (anything else is an ordinary failure).
    pub(super) fn reports_lost_inputs(&self, attempt_id: AttemptId, failure: &TaskFailure) -> bool {
        let Some(attempt) = self.attempts.get(&attempt_id) else {
            return false;
        };
        self.jobs[&attempt.task.job].names_upstream_tasks(attempt.task.index, &failure.lost_inputs)
    }

    /// An attempt could not read some upstream outputs: they are recomputed (unless they
    /// already were since the attempt started), and the task waits for them without the
    /// failure counting against its attempts.
    pub(super) fn take_lost_inputs(
        &mut self,
        now: Millis,
        attempt_id: AttemptId,
        failure: TaskFailure,
        out: &mut Vec<Output>,
    ) {
        let (attempt, still_running) = self.release(attempt_id);
        let task_id = attempt.task;
        for upstream in &failure.lost_inputs {
            let upstream = TaskId::new(task_id.job, *upstream);
            // An output committed after this attempt was granted is a new one it never saw.
            if self.jobs[&task_id.job].output_older_than(upstream.index, attempt_id) {
                let why = format!("attempt {attempt_id} could not read it");
                self.lose_output(now, upstream, &why, out);
            }
        }
        let job = self.jobs.get_mut(&task_id.job).expect("task has a job");
        let error = AttemptError {
            attempt: attempt_id,
            worker: attempt.worker,
            at: now,
            failure,
        };
        job.record_lost_inputs(task_id.index, error);
        if !still_running.is_empty() {
            return;
        }
        if job.stage_blocked(job.stage_of(task_id.index)) {
            job.skip_task(task_id.index);
            self.finish_if_done(now, task_id.job, out);
            return;
        }
        job.return_to_pending(task_id.index);
    }

    /// A committed output of a non-final stage is gone: the task runs again, or is
    /// dead-lettered when its outputs were lost as many times as it may be attempted.
    pub(super) fn lose_output(
        &mut self,
        now: Millis,
        task_id: TaskId,
        why: &str,
        out: &mut Vec<Output>,
    ) {
        let job = self.jobs.get_mut(&task_id.job).expect("task has a job");
        let Some((attempt, worker)) = job.needed_output_origin(task_id.index) else {
            return;
        };
        self.stats.outputs_lost += 1;
        let error = AttemptError {
            attempt,
            worker,
            at: now,
            failure: TaskFailure::retryable(format!("committed output lost: {why}")),
        };
        out.push(Output::Persist(JournalEvent::TaskOutputLost {
            task: task_id,
            error: error.clone(),
        }));
        if job.lose_output(task_id.index, error, &mut self.retry_queue) {
            self.dead_letter(now, task_id, out);
        }
    }
}
