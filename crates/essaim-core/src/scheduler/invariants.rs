//! What must hold after every step, across jobs: leases, workers and the retry queue
//! agree with the task states, and only running jobs are served. The checks within one
//! job are `Job::check_invariants`. Tests and the simulation call this after every step.

use super::Scheduler;
use crate::ids::JobId;
use crate::model::{JobState, TaskState};
use std::cmp::Reverse;
use std::collections::BTreeMap;

impl Scheduler {
    /// Checks that every index agrees with the task states; returns what is wrong.
    /// Cheap enough for tests after every step, too slow for production hot paths.
    pub fn check_invariants(&self) -> Result<(), String> {
        let live_by_job = self.check_leases()?;
        let queued_retries = self.check_retry_queue()?;
        self.check_anti_affinity()?;
        let mut retrying_tasks = 0usize;
        for (job_id, job) in &self.jobs {
            let leases_held = live_by_job.get(job_id).copied().unwrap_or(0);
            retrying_tasks +=
                job.check_invariants(|attempt| self.attempts.contains_key(&attempt), leases_held)?;
            let ordered = self
                .job_order
                .contains(&(Reverse(job.spec.priority), *job_id));
            let running = job.state == JobState::Running;
            if ordered != running {
                return Err(format!(
                    "job {job_id} is {:?} but ordered={ordered}",
                    job.state
                ));
            }
        }
        if retrying_tasks != queued_retries {
            return Err(format!(
                "{retrying_tasks} retrying tasks but {queued_retries} queued retries"
            ));
        }
        Ok(())
    }

    /// Checks that every lease belongs to a running task and to a worker listing it, and
    /// that every worker lists only its leases; returns the leases of each job.
    fn check_leases(&self) -> Result<BTreeMap<JobId, u32>, String> {
        let mut live_by_job: BTreeMap<JobId, u32> = BTreeMap::new();
        for (attempt_id, attempt) in &self.attempts {
            *live_by_job.entry(attempt.task.job).or_default() += 1;
            let job = self
                .jobs
                .get(&attempt.task.job)
                .ok_or("attempt of unknown job")?;
            let task = &job.tasks()[attempt.task.index as usize];
            let TaskState::Running { attempts } = task.state() else {
                return Err(format!(
                    "attempt {attempt_id} live but task {} is {:?}",
                    attempt.task,
                    task.state()
                ));
            };
            if !attempts.contains(attempt_id) {
                return Err(format!(
                    "attempt {attempt_id} missing from task {}",
                    attempt.task
                ));
            }
            let worker = self
                .workers
                .get(&attempt.worker)
                .ok_or_else(|| format!("attempt {attempt_id} held by unknown worker"))?;
            if !worker.held.contains(attempt_id) {
                return Err(format!("worker does not list its attempt {attempt_id}"));
            }
            if !crate::labels::satisfies(&worker.info.labels, &job.required_labels) {
                return Err(format!(
                    "attempt {attempt_id} of a job requiring `{}` is held by a worker with `{}`",
                    crate::labels::show(&job.required_labels),
                    crate::labels::show(&worker.info.labels)
                ));
            }
        }
        for (worker_id, worker) in &self.workers {
            for attempt_id in &worker.held {
                let ours = self
                    .attempts
                    .get(attempt_id)
                    .is_some_and(|a| a.worker == *worker_id);
                if !ours {
                    return Err(format!(
                        "worker {worker_id} holds attempt {attempt_id} that is not its lease"
                    ));
                }
            }
        }
        Ok(live_by_job)
    }

    /// Checks that no worker holds live attempts of two tasks of one anti-affinity group
    /// of a job.
    fn check_anti_affinity(&self) -> Result<(), String> {
        for (worker_id, worker) in &self.workers {
            let mut seen: BTreeMap<(JobId, &str), u32> = BTreeMap::new();
            for attempt_id in &worker.held {
                let Some(attempt) = self.attempts.get(attempt_id) else {
                    continue;
                };
                let job = &self.jobs[&attempt.task.job];
                let Some(group) = job.group_of(attempt.task.index) else {
                    continue;
                };
                let index = attempt.task.index;
                if let Some(other) = seen.insert((job.id, group), index)
                    && other != index
                {
                    return Err(format!(
                        "worker {worker_id} holds tasks {other} and {index} of group `{group}` \
                         of job {}",
                        job.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks that every retry queue entry is a task retrying at that time; returns how
    /// many entries there are.
    fn check_retry_queue(&self) -> Result<usize, String> {
        let mut queued_retries = 0usize;
        for (not_before, task) in self.retry_queue.iter() {
            queued_retries += 1;
            let state = self.jobs[&task.job].tasks()[task.index as usize].state();
            if *state
                != (TaskState::Retrying {
                    not_before: *not_before,
                })
            {
                return Err(format!(
                    "retry queue entry for {task} but task is {state:?}"
                ));
            }
        }
        Ok(queued_retries)
    }
}
