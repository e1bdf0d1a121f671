//! Workers and their leases: registration, heartbeats that renew leases, departures, and
//! the passing of time that expires them.
//!
//! A lease is the right of one attempt to commit; every way it can end (commit, failure,
//! hand-back, revocation) goes through `Scheduler::release`, which keeps the lease
//! table, the worker's list and the job's live attempts in step.

use super::{
    Attempt, HeartbeatReply, Output, RETIRED_ATTEMPTS_KEPT, Scheduler, Worker, WorkerInfo,
};
use crate::ids::{AttemptId, JobId, Millis, TaskId, WorkerId};
use crate::model::TaskFailure;
use std::collections::BTreeSet;

impl Scheduler {
    /// Registers a worker and returns its new id.
    pub fn register_worker(&mut self, now: Millis, info: WorkerInfo) -> WorkerId {
        let worker_id = WorkerId(self.worker_ids.mint());
        self.known_kinds.extend(info.kinds.iter().cloned());
        self.workers.insert(
            worker_id,
            Worker {
                info,
                last_seen: now,
                held: BTreeSet::new(),
                cancels: BTreeSet::new(),
                draining: false,
                busy_slots: 0,
            },
        );
        self.stats.workers_registered += 1;
        worker_id
    }

    /// Renews the leases of the attempts a worker still holds and tells it what to stop.
    pub fn heartbeat(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        held: &[AttemptId],
        draining: bool,
        busy_slots: u32,
    ) -> HeartbeatReply {
        let Some(worker) = self.workers.get_mut(&worker_id) else {
            return HeartbeatReply {
                reregister: true,
                cancel: held.to_vec(),
                release_jobs: Vec::new(),
            };
        };
        worker.last_seen = now;
        worker.draining |= draining;
        worker.busy_slots = busy_slots;
        let mut cancel: BTreeSet<AttemptId> = std::mem::take(&mut worker.cancels);
        for attempt_id in held {
            match self.attempts.get_mut(attempt_id) {
                Some(attempt) if attempt.worker == worker_id => {
                    attempt.lease_expires_at = now.saturating_add(self.config.lease_ms);
                }
                // Revoked, or never ours: a zombie the worker must stop.
                _ => {
                    cancel.insert(*attempt_id);
                }
            }
        }
        cancel.extend(self.rebalance(worker_id));
        HeartbeatReply {
            reregister: false,
            cancel: cancel.into_iter().collect(),
            release_jobs: Vec::new(),
        }
    }

    /// A draining worker leaves: `returned` attempts were never started and go back to the
    /// front of the queue; any other attempt it still holds is lost.
    pub fn deregister(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        returned: &[AttemptId],
        out: &mut Vec<Output>,
    ) {
        // Each hand-back goes to the front of its queue, so the newest grant goes back first:
        // the tasks then keep the order they were granted in (attempt ids grow per grant).
        let mut newest_first = returned.to_vec();
        newest_first.sort_unstable_by(|left, right| right.cmp(left));
        for attempt_id in &newest_first {
            let ours = self
                .attempts
                .get(attempt_id)
                .is_some_and(|a| a.worker == worker_id);
            if ours {
                self.hand_back(*attempt_id);
            }
        }
        self.remove_worker(now, worker_id, "worker left", out);
    }

    /// Lets time pass: declares silent workers dead, expires leases and timed-out attempts,
    /// and skips the tasks of jobs past their deadline.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Output>) {
        let silent_workers: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, worker)| {
                now >= worker
                    .last_seen
                    .saturating_add(self.config.worker_timeout_ms)
            })
            .map(|(id, _)| *id)
            .collect();
        for worker_id in silent_workers {
            self.stats.workers_lost += 1;
            self.remove_worker(now, worker_id, "worker lost: no heartbeat", out);
        }

        let mut expired = Vec::new();
        for (attempt_id, attempt) in &self.attempts {
            let lease_expired = now >= attempt.lease_expires_at;
            let timeout = self.jobs[&attempt.task.job].spec.task_timeout_ms;
            // The worker enforces the timeout itself; this catches one that cannot.
            let timed_out = timeout.is_some_and(|limit| {
                now >= attempt
                    .started_at
                    .saturating_add(limit)
                    .saturating_add(self.config.lease_ms)
            });
            if lease_expired {
                expired.push((*attempt_id, "lease expired".to_string()));
            } else if timed_out {
                expired.push((
                    *attempt_id,
                    format!("timed out after {} ms", timeout.unwrap_or(0)),
                ));
            }
        }
        for (attempt_id, reason) in expired {
            self.stats.lease_expiries += 1;
            self.revoke(now, attempt_id, TaskFailure::retryable(reason), out);
        }

        let past_deadline: Vec<JobId> = self
            .job_order
            .iter()
            .map(|(_, job)| *job)
            .filter(|job| self.jobs[job].past_deadline(now))
            .collect();
        for job in past_deadline {
            self.skip_unstarted(job);
            self.stop_stranded_early_attempts(now, job, out);
            self.finish_if_done(now, job, out);
        }
        self.hand_back_early_attempts();
    }

    /// Ends a live attempt: removes it from the lease table and its worker, and from its
    /// job (see [`Job::end_attempt`]). Returns it and the task's other live attempts.
    pub(super) fn release(&mut self, attempt_id: AttemptId) -> (Attempt, Vec<AttemptId>) {
        let attempt = self
            .attempts
            .remove(&attempt_id)
            .expect("released attempt is live");
        if let Some(worker) = self.workers.get_mut(&attempt.worker) {
            worker.held.remove(&attempt_id);
        }
        let others = self
            .jobs
            .get_mut(&attempt.task.job)
            .expect("attempt has a job")
            .end_attempt(attempt.task.index, attempt_id);
        self.retired.insert(attempt_id, attempt.task);
        if self.retired.len() > RETIRED_ATTEMPTS_KEPT {
            self.retired.pop_first();
        }
        (attempt, others)
    }

    /// Ends a live attempt its worker must stop (a speculative loser, a cancelled job's).
    pub(super) fn release_and_cancel(&mut self, attempt_id: AttemptId) {
        let (attempt, _) = self.release(attempt_id);
        if let Some(worker) = self.workers.get_mut(&attempt.worker) {
            worker.cancels.insert(attempt_id);
        }
    }

    /// Takes a lease away from its holder (lost worker, expired lease, timeout): the
    /// attempt counts as failed and its holder, if alive, is told to stop.
    fn revoke(
        &mut self,
        now: Millis,
        attempt_id: AttemptId,
        failure: TaskFailure,
        out: &mut Vec<Output>,
    ) {
        let Some(attempt) = self.attempts.get(&attempt_id) else {
            return;
        };
        if let Some(worker) = self.workers.get_mut(&attempt.worker) {
            worker.cancels.insert(attempt_id);
        }
        self.fail_attempt(now, attempt_id, failure, out);
    }

    /// An attempt handed back unstarted: the task goes to the front of its queue and the
    /// attempt does not count.
    pub(super) fn hand_back(&mut self, attempt_id: AttemptId) {
        let (attempt, still_running) = self.release(attempt_id);
        self.jobs
            .get_mut(&attempt.task.job)
            .expect("handed-back task has a job")
            .hand_back(attempt.task.index, !still_running.is_empty());
    }

    fn remove_worker(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        reason: &str,
        out: &mut Vec<Output>,
    ) {
        let Some(worker) = self.workers.get(&worker_id) else {
            return;
        };
        let held: Vec<AttemptId> = worker.held.iter().copied().collect();
        for attempt_id in held {
            self.stats.lease_expiries += 1;
            self.revoke(now, attempt_id, TaskFailure::retryable(reason), out);
        }
        self.workers.remove(&worker_id);
        // Outputs this worker served are gone with it; recompute those still needed.
        let lost: Vec<TaskId> = self
            .job_order
            .iter()
            .flat_map(|(_, job_id)| {
                let served = self.jobs[job_id].outputs_served_by(worker_id);
                served.into_iter().map(|index| TaskId::new(*job_id, index))
            })
            .collect();
        for task in lost {
            self.lose_output(now, task, "the worker serving it was lost", out);
        }
    }
}
