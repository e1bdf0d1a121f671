//! Long-running tasks (stream units and other tasks that run until stopped) are spread
//! evenly over the workers, and move when workers join or leave.
//!
//! Such a task holds no slot (a worker runs any number of them side by side), so the
//! pull order alone would pile them on whichever worker pulls first. Instead each worker
//! may hold at most its **share** of a long-running kind: the kind's live tasks (over
//! every running job) divided by the live, non-draining workers that run it, rounded up.
//!
//! When a worker joins, the share falls: at its next heartbeat a worker hands back its
//! newest attempts of the kind above its share — they go back to the front of their
//! queue and the worker is told to stop them — and the joining worker, under its share,
//! pulls them. The mover is left at its share, so it cannot take them back: moves never
//! ping-pong. Counts end within the share, not exactly even (7 tasks on 3 workers may
//! settle at 3, 3, 1): evening them further would need to hand a task to one chosen
//! worker, and a worker whose slots are full of batch work does not pull; a task held
//! back for it would wait on that work (the deterministic simulation found that
//! liveness bug in an earlier, even-handed rule). A draining worker hands back every
//! long-running attempt at once: its units move now, without waiting for the worker to
//! leave and without counting a failure. A dead worker's attempts are revoked as any
//! others and land on the workers under their share.
//!
//! A hand-back is not journaled (leases never are), and the task's new owner resumes
//! from whatever the task itself committed, which is the executor's business (a stream
//! unit restarts from its checkpoint in PostgreSQL).
//!
//! Tasks of an anti-affinity group count in shares, but move only off a draining worker,
//! and one may go above a worker's share when no other worker may take it
//! (`anti_affinity.rs`).
//!
//! Tasks of a job that requires worker labels are left out of shares, counts and moves:
//! a share over every worker would stop the few carrying the labels short of the job's
//! tasks, which no other worker may take. They go to whichever worker carrying the
//! labels pulls (spreading them over those workers is not done yet).

use super::{Scheduler, Worker};
use crate::ids::{AttemptId, WorkerId};
use crate::model::JobState;
use std::borrow::Cow;
use std::collections::BTreeSet;

impl Scheduler {
    /// Returns the kinds `worker_id` may be granted now: all it runs, minus the
    /// long-running kinds of which it already holds its share. Borrowed when nothing
    /// is left out (the common case, asked for every parked pull).
    pub(super) fn grantable_kinds(&self, worker_id: WorkerId) -> Cow<'_, BTreeSet<String>> {
        let Some(worker) = self.workers.get(&worker_id) else {
            return Cow::Owned(BTreeSet::new());
        };
        let full: Vec<&String> = worker
            .info
            .long_running_kinds
            .iter()
            .filter(|kind| self.held_of_kind(worker, kind) >= self.share_of(kind))
            .collect();
        if full.is_empty() {
            return Cow::Borrowed(&worker.info.kinds);
        }
        let mut kinds = worker.info.kinds.clone();
        for kind in full {
            kinds.remove(kind);
        }
        Cow::Owned(kinds)
    }

    /// Hands back the long-running attempts `worker_id` holds above its share (all of
    /// them while it drains) and returns them: the worker must stop them.
    pub(super) fn rebalance(&mut self, worker_id: WorkerId) -> Vec<AttemptId> {
        let Some(worker) = self.workers.get(&worker_id) else {
            return Vec::new();
        };
        let mut moved = Vec::new();
        for kind in &worker.info.long_running_kinds {
            let held = self.attempts_of_kind(worker, kind);
            let moves = if worker.draining {
                held.len()
            } else {
                held.len().saturating_sub(self.share_of(kind))
            };
            if moves == 0 {
                continue;
            }
            // A task of an anti-affinity group moves only off a draining worker: it may
            // be stranded here (`anti_affinity.rs`), and would come straight back.
            let mut movable: Vec<AttemptId> = held
                .into_iter()
                .filter(|attempt_id| worker.draining || !self.in_group(*attempt_id))
                .collect();
            let moves = moves.min(movable.len());
            let keep = movable.len() - moves;
            // Attempt ids grow per grant: the newest go, the oldest stay put.
            movable.sort_unstable();
            moved.extend(movable.split_off(keep));
        }
        // Newest first, each to the front of its queue: the queue keeps grant order.
        for attempt_id in moved.iter().rev() {
            self.hand_back(*attempt_id);
            self.stats.attempts_moved += 1;
        }
        moved
    }

    /// Returns a worker's share of `kind`'s live tasks (rounded up): the tasks that may
    /// run (a job's concurrency limit caps its own), over the workers that can take
    /// them now — live, not draining, and with a free slot, since a worker whose slots
    /// are all busy does not pull (it takes its share once a slot frees).
    fn share_of(&self, kind: &str) -> usize {
        let live: usize = self
            .jobs
            .values()
            .filter(|job| job.state == JobState::Running && job.required_labels.is_empty())
            .map(|job| {
                let live = job.live_tasks_of_kind(kind);
                job.spec
                    .max_concurrency
                    .map_or(live, |limit| live.min(limit as usize))
            })
            .sum();
        let workers = self
            .workers
            .values()
            .filter(|worker| {
                !worker.draining
                    && worker.info.kinds.contains(kind)
                    && worker.busy_slots < worker.info.slots
            })
            .count();
        live.div_ceil(workers.max(1))
    }

    /// Returns true when the attempt's task has an anti-affinity group.
    fn in_group(&self, attempt_id: AttemptId) -> bool {
        self.attempts.get(&attempt_id).is_some_and(|attempt| {
            self.jobs
                .get(&attempt.task.job)
                .is_some_and(|job| job.group_of(attempt.task.index).is_some())
        })
    }

    fn held_of_kind(&self, worker: &Worker, kind: &str) -> usize {
        self.attempts_of_kind(worker, kind).len()
    }

    fn attempts_of_kind(&self, worker: &Worker, kind: &str) -> Vec<AttemptId> {
        worker
            .held
            .iter()
            .filter(|attempt_id| {
                self.attempts.get(attempt_id).is_some_and(|attempt| {
                    self.jobs.get(&attempt.task.job).is_some_and(|job| {
                        job.required_labels.is_empty() && job.kind_of(attempt.task.index) == kind
                    })
                })
            })
            .copied()
            .collect()
    }
}
