//! Slow start across jobs: early attempts (tasks of a stage started before the stage it
//! reads is complete, see `model/slow_start.rs`) learn of the outputs committed after
//! their grant, give their slot back when the tasks they wait for cannot get one, and
//! stop when those tasks can never finish.
//!
//! Why handing back is enough for "early tasks never starve the tasks they wait for":
//! an early stage is held back while a task of the stage before waits, so early attempts
//! start only when every such task runs; a task that must wait again afterwards (a
//! failure, a lost output, a lost worker) gets the slot or the concurrency of the newest
//! early attempt at the next tick. Early attempts of one job can delay tasks of other
//! jobs, never starve them: they become ordinary attempts once the stage before is
//! complete, and that stage never waits behind them. The tasks of a job that requires
//! worker labels count against the free slots of the workers carrying them only, and
//! the early attempts handed back for them are those holding such slots. An early
//! attempt is handed back, too, when a task it waits for shares its anti-affinity group
//! (`anti_affinity.rs`): it keeps that task off its worker, which may be the only one
//! left for it.

use super::{Output, Scheduler, Worker};
use crate::ids::{AttemptId, JobId, Millis, WorkerId};
use crate::labels::satisfies;
use crate::model::UpstreamInputs;
use std::collections::BTreeSet;

impl Scheduler {
    /// Returns the outputs attempt `attempt_id` reads, as committed now (for a task
    /// started early, which asks until they are complete); `None` when the attempt no
    /// longer holds its lease (it must stop).
    pub fn upstream_inputs(&self, attempt_id: AttemptId) -> Option<UpstreamInputs> {
        let attempt = self.attempts.get(&attempt_id)?;
        let job = &self.jobs[&attempt.task.job];
        Some(job.upstream_inputs(attempt.task.index))
    }

    /// Returns true when `worker` holds the lease of attempt `attempt_id`: only its
    /// holder may ask for its inputs (another worker learns nothing of the job).
    pub fn holds(&self, worker: WorkerId, attempt_id: AttemptId) -> bool {
        self.attempts
            .get(&attempt_id)
            .is_some_and(|attempt| attempt.worker == worker)
    }

    /// Returns true when attempt `attempt_id` has something to learn beyond
    /// `known_version`: newer outputs, a complete upstream stage, or a lost lease. It
    /// builds nothing, so that the parked questions of many reducers cost little per
    /// batch when nothing changed for them.
    pub fn inputs_news(&self, attempt_id: AttemptId, known_version: u64) -> bool {
        let Some(attempt) = self.attempts.get(&attempt_id) else {
            return true;
        };
        let job = &self.jobs[&attempt.task.job];
        job.inputs_version() > known_version || job.stage_complete(job.stage_of(attempt.task.index))
    }

    /// Returns true when attempt `attempt_id` waits for inputs its job has not finished
    /// computing (a task of a stage whose previous stage is not complete, in a job with
    /// slow start).
    pub(super) fn is_early(&self, attempt_id: AttemptId) -> bool {
        let attempt = &self.attempts[&attempt_id];
        let job = &self.jobs[&attempt.task.job];
        job.slow_start().is_some() && !job.stage_complete(job.stage_of(attempt.task.index))
    }

    /// Returns the early attempts to hand back now, newest first: those of a job whose
    /// waiting tasks find its concurrency limit reached, then as many as the tasks
    /// waiting in jobs with slow start outnumber the free slots. Empty right after a
    /// tick.
    pub fn early_attempts_to_hand_back(&self) -> Vec<AttemptId> {
        let mut early: Vec<AttemptId> = self
            .attempts
            .keys()
            .copied()
            .filter(|id| self.is_early(*id))
            .collect();
        if early.is_empty() {
            return Vec::new();
        }
        // Newest first: the attempt that has fetched the least gives way.
        early.reverse();
        // An early attempt holding the anti-affinity group of a task it waits for keeps
        // that task off its worker, and cannot end before it: it goes back.
        let mut chosen: BTreeSet<AttemptId> = early
            .iter()
            .copied()
            .filter(|id| self.holds_group_of_its_upstream(*id))
            .collect();
        let mut demand = 0u32;
        // Jobs that require labels find room only on the workers carrying them.
        let mut labelled_demand: Vec<(JobId, u32)> = Vec::new();
        for (_, job_id) in &self.job_order {
            let waiting = self.tasks_waiting_behind_early_attempts(*job_id);
            if waiting == 0 {
                continue;
            }
            let job = &self.jobs[job_id];
            let Some(limit) = job.spec.max_concurrency else {
                if job.required_labels.is_empty() {
                    demand += waiting;
                } else {
                    labelled_demand.push((*job_id, waiting));
                }
                continue;
            };
            // The job's own early attempts must leave room under its limit.
            let headroom = limit.saturating_sub(job.live_attempts());
            let over = waiting.saturating_sub(headroom) as usize;
            let own: Vec<AttemptId> = early
                .iter()
                .copied()
                .filter(|id| self.attempts[id].task.job == *job_id)
                .take(over)
                .collect();
            let wants_slots = waiting.min(headroom + own.len() as u32);
            if job.required_labels.is_empty() {
                demand += wants_slots;
            } else {
                labelled_demand.push((*job_id, wants_slots));
            }
            chosen.extend(own);
        }
        let freed = chosen.iter().filter(|id| self.holds_slot(**id)).count();
        let room = self.free_slots_on(|_| true) + freed as i64;
        let wanted = (i64::from(demand) - room).max(0) as usize;
        // Only attempts that hold a slot: giving back another frees none.
        let others: Vec<AttemptId> = early
            .iter()
            .copied()
            .filter(|id| !chosen.contains(id) && self.holds_slot(*id))
            .take(wanted)
            .collect();
        chosen.extend(others);
        for (job_id, waiting) in labelled_demand {
            let required = &self.jobs[&job_id].required_labels;
            let carries = |worker: &Worker| satisfies(&worker.info.labels, required);
            let there = |id: &AttemptId| {
                self.holds_slot(*id)
                    && self
                        .workers
                        .get(&self.attempts[id].worker)
                        .is_some_and(|worker| !worker.draining && carries(worker))
            };
            let freed = chosen.iter().filter(|id| there(id)).count();
            let room = self.free_slots_on(carries) + freed as i64;
            let wanted = (i64::from(waiting) - room).max(0) as usize;
            let others: Vec<AttemptId> = early
                .iter()
                .copied()
                .filter(|id| !chosen.contains(id) && there(id))
                .take(wanted)
                .collect();
            chosen.extend(others);
        }
        chosen.into_iter().rev().collect()
    }

    /// Returns how many tasks of a job with slow start wait for a slot while a later
    /// stage runs early: tasks of a stage whose own inputs are complete (tasks of an
    /// early stage waiting behind other early ones would only trade places).
    fn tasks_waiting_behind_early_attempts(&self, job_id: JobId) -> u32 {
        let job = &self.jobs[&job_id];
        if job.slow_start().is_none() {
            return 0;
        }
        (1..job.stage_count())
            .filter(|stage| !job.stage_complete(*stage) && job.stage_complete(*stage - 1))
            .map(|stage| job.upstream_waiting(stage))
            .sum()
    }

    /// Returns true when attempt `attempt_id` holds a slot of its worker (attempts of
    /// long-running kinds hold none).
    fn holds_slot(&self, attempt_id: AttemptId) -> bool {
        let attempt = &self.attempts[&attempt_id];
        let kind = self.jobs[&attempt.task.job].kind_of(attempt.task.index);
        self.workers
            .get(&attempt.worker)
            .is_some_and(|worker| !worker.info.long_running_kinds.contains(kind))
    }

    /// Returns true when `worker_id` holds fewer attempts that take a slot than it has
    /// slots (attempts it queued, prefetched, count as held).
    pub(super) fn has_free_slot(&self, worker_id: WorkerId) -> bool {
        let Some(worker) = self.workers.get(&worker_id) else {
            return false;
        };
        let held = worker
            .held
            .iter()
            .filter(|id| self.holds_slot(**id))
            .count();
        held < worker.info.slots as usize
    }

    /// Returns true when a task of a job with slow start waits for a slot while a later
    /// stage of its job may run early (see [`Self::tasks_waiting_behind_early_attempts`]).
    pub(super) fn tasks_wait_behind_early_attempts(&self) -> bool {
        self.job_order
            .iter()
            .any(|(_, job_id)| self.tasks_waiting_behind_early_attempts(*job_id) > 0)
    }

    /// Returns the slots of live, non-draining workers that `on` accepts that no
    /// attempt holds (attempts of long-running kinds hold none); negative when workers
    /// hold more attempts than slots (attempts queued on a worker, prefetched), so that
    /// every attempt handed back counts.
    fn free_slots_on(&self, on: impl Fn(&Worker) -> bool) -> i64 {
        self.workers
            .values()
            .filter(|worker| !worker.draining && on(worker))
            .map(|worker| {
                let held = worker
                    .held
                    .iter()
                    .filter(|id| self.holds_slot(**id))
                    .count() as i64;
                i64::from(worker.info.slots) - held
            })
            .sum()
    }

    /// Hands back the early attempts that keep waiting tasks from a slot (see
    /// [`Scheduler::early_attempts_to_hand_back`]): each worker is told to stop its
    /// attempt, which does not count as a failure, and the task waits at the front of its
    /// queue.
    pub(super) fn hand_back_early_attempts(&mut self) {
        for attempt_id in self.early_attempts_to_hand_back() {
            let worker = self.attempts[&attempt_id].worker;
            if let Some(worker) = self.workers.get_mut(&worker) {
                worker.cancels.insert(attempt_id);
            }
            self.hand_back(attempt_id);
            self.stats.early_attempts_handed_back += 1;
        }
    }

    /// Stops the early attempts of `job_id` whose inputs can never be complete (a task
    /// they wait for was dead-lettered or skipped); their tasks are skipped, as those
    /// still waiting in the queue were.
    pub(super) fn stop_stranded_early_attempts(
        &mut self,
        now: Millis,
        job_id: JobId,
        out: &mut Vec<Output>,
    ) {
        let job = &self.jobs[&job_id];
        if job.slow_start().is_none() {
            return;
        }
        let stranded: Vec<AttemptId> = self
            .attempts
            .iter()
            .filter(|(_, attempt)| attempt.task.job == job_id)
            .filter(|(_, attempt)| {
                let stage = job.stage_of(attempt.task.index);
                !job.stage_complete(stage) && job.upstream_doomed(stage)
            })
            .map(|(id, _)| *id)
            .collect();
        if stranded.is_empty() {
            return;
        }
        for attempt_id in stranded {
            let (attempt, others) = self.release(attempt_id);
            if let Some(worker) = self.workers.get_mut(&attempt.worker) {
                worker.cancels.insert(attempt_id);
            }
            let job = self.jobs.get_mut(&job_id).expect("job exists");
            job.stop_stranded_attempt(attempt.task.index, !others.is_empty());
        }
        self.finish_if_done(now, job_id, out);
    }
}
