//! Slow start: a stage of a job submitted with a slow-start share may start before the
//! stage it reads has finished, once that share of it has succeeded (Hadoop's
//! `mapreduce.job.reduce.slowstart.completedmaps`). Its tasks then read the outputs
//! committed so far and ask for the others as they come (`Scheduler::upstream_inputs`).
//!
//! Only the second stage (stage 1: MapReduce's reducers of the first step) starts early.
//! Later stages wait for the stage before to complete, as they must when they do not
//! read its outputs as they come: a MapReduce commit task publishes the output once
//! every part is there, and a chained step's reducers gain little from it.
//!
//! A stage is *complete* when every task of the stage before has succeeded, and *early*
//! when it is ready without being complete. Readiness is a function of the task states
//! alone (nothing is latched), so recovery rebuilds it from the journal; it grows with
//! commits and shrinks only when a committed output is lost.
//!
//! Early tasks never take a slot from the stage they wait for: while a task of the
//! stage before waits for a slot (pending or retrying), the early stage is *held back*
//! (its queued tasks stay queued), and the scheduler hands back early attempts when
//! waiting tasks find no free slot (`scheduler/slow_start.rs`).

use super::{Job, RetryQueue, TaskState, UpstreamOutput};
use crate::ids::TaskId;
use std::collections::BTreeSet;

/// The outputs a task reads, as known now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamInputs {
    /// The job's inputs version: it grows with every commit or loss of an output of a
    /// non-final stage.
    pub version: u64,
    /// The committed output of each task of the stage before that has one, in task
    /// order. An output lost and committed again comes back with another attempt.
    pub outputs: Vec<UpstreamOutput>,
    /// True when every task of the stage before has succeeded: `outputs` is the input.
    pub complete: bool,
}

impl Job {
    /// Returns the job's slow-start share, `None` when a stage waits for every task of
    /// the stage before.
    pub fn slow_start(&self) -> Option<f64> {
        self.slow_start
    }

    /// Returns the job's inputs version (see [`UpstreamInputs::version`]).
    pub fn inputs_version(&self) -> u64 {
        self.inputs_version
    }

    /// Gives the job a slow-start share (at submission or replay) and queues the stages
    /// it makes ready.
    pub(crate) fn enable_slow_start(&mut self, share: f64) {
        debug_assert!((0.0..1.0).contains(&share), "validated at submission");
        self.slow_start = Some(share);
        self.rebuild_pending_queues();
    }

    /// Returns how many tasks of the stage before `stage` must have succeeded for `stage`
    /// to start early: the share of them, rounded up.
    fn slow_start_threshold(&self, stage: u32) -> Option<u32> {
        let share = self.slow_start?;
        let upstream = self.stage_range(stage - 1).len() as f64;
        Some((share * upstream).ceil() as u32)
    }

    /// Returns true when `stage` may start before the stage before is complete: it is
    /// the second stage, the job has slow start, and enough of the first has succeeded.
    pub(super) fn stage_open_early(&self, stage: u32) -> bool {
        if stage != 1 || self.stage_complete(stage) {
            return false;
        }
        let Some(threshold) = self.slow_start_threshold(stage) else {
            return false;
        };
        let succeeded = self.stage_range(0).len() as u32 - self.stage_unfinished[0];
        succeeded >= threshold
    }

    /// Returns true when `stage` runs early: ready, but the stage before is not complete.
    pub(crate) fn stage_early(&self, stage: u32) -> bool {
        !self.stage_complete(stage) && self.stage_ready(stage)
    }

    /// Returns true when queued tasks of `stage` must not be granted now: the stage runs
    /// early and a task of the stage before waits for a slot.
    pub(crate) fn held_back(&self, stage: u32) -> bool {
        self.stage_early(stage) && self.stage_waiting[stage as usize - 1] > 0
    }

    /// Returns true when task `index` is queued but held back (see [`Job::held_back`]).
    pub(super) fn task_held_back(&self, index: u32) -> bool {
        self.slow_start.is_some() && self.held_back(self.stage_of(index))
    }

    /// Returns the stages held back now (empty without slow start): every early stage
    /// when `hold_back_early` (a task of some job waits behind early attempts), else
    /// those whose own first stage has a task waiting.
    pub(super) fn held_back_stages(&self, hold_back_early: bool) -> BTreeSet<u32> {
        if self.slow_start.is_none() {
            return BTreeSet::new();
        }
        (1..self.stage_count())
            .filter(|stage| {
                let early = self.stage_early(*stage);
                (hold_back_early && early) || self.held_back(*stage)
            })
            .collect()
    }

    /// Returns how many tasks of the stage before `stage` wait for a slot.
    pub(crate) fn upstream_waiting(&self, stage: u32) -> u32 {
        if stage == 0 {
            return 0;
        }
        self.stage_waiting[stage as usize - 1]
    }

    /// Returns which stages are ready, in stage order.
    pub(super) fn ready_stages(&self) -> Vec<bool> {
        (0..self.stage_count())
            .map(|stage| self.stage_ready(stage))
            .collect()
    }

    /// Queues the pending tasks of every stage that became ready since `before` was
    /// taken (after a commit, which can only make stages ready).
    pub(super) fn queue_stages_now_ready(&mut self, before: &[bool]) {
        for stage in 0..self.stage_count() {
            if !before[stage as usize] && self.stage_ready(stage) {
                self.queue_stage(stage);
            }
        }
    }

    /// Unqueues every stage that stopped being ready since `before` was taken (after a
    /// committed output was lost); its retrying tasks wait again, pending and unqueued.
    pub(super) fn unqueue_stages_no_longer_ready(
        &mut self,
        before: &[bool],
        retries: &mut RetryQueue,
    ) {
        for stage in 0..self.stage_count() {
            if !before[stage as usize] || self.stage_ready(stage) {
                continue;
            }
            self.unqueue_stage(stage);
            for index in self.stage_range(stage) {
                if let TaskState::Retrying { not_before } = self.tasks[index as usize].state {
                    retries.remove(not_before, TaskId::new(self.id, index));
                    self.set_task_state(index, TaskState::Pending);
                }
            }
        }
    }

    /// Returns the outputs task `index` reads, as committed now.
    pub fn upstream_inputs(&self, index: u32) -> UpstreamInputs {
        UpstreamInputs {
            version: self.inputs_version,
            outputs: self.upstream_outputs(index),
            complete: self.stage_complete(self.stage_of(index)),
        }
    }

    /// Returns true when the stage before `stage` can never complete: one of its tasks
    /// is dead-lettered, purged or skipped. A task of `stage` started early would wait
    /// for it forever.
    pub(crate) fn upstream_doomed(&self, stage: u32) -> bool {
        stage > 0
            && self.stage_range(stage - 1).any(|index| {
                matches!(
                    self.tasks[index as usize].state,
                    TaskState::DeadLettered | TaskState::Purged | TaskState::Skipped
                )
            })
    }
}
