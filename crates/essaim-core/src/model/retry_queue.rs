//! The tasks of every job waiting to be retried, by due time.
//!
//! It is the one index shared by all jobs, so the scheduler holds it; but a task is
//! `Retrying` exactly when it sits here, so only the methods of [`Job`](super::Job) that
//! move a task into or out of `Retrying` add or remove entries (they take the queue as an
//! argument), and the scheduler only reads it or takes a due entry out before granting.

use crate::ids::{Millis, TaskId};
use std::collections::BTreeSet;

/// Tasks waiting to be retried, earliest due first (then by task id).
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryQueue {
    entries: BTreeSet<(Millis, TaskId)>,
}

impl RetryQueue {
    /// Returns the earliest due time, if any task waits.
    pub(crate) fn first_due_at(&self) -> Option<Millis> {
        self.entries.first().map(|(not_before, _)| *not_before)
    }

    /// Returns every entry, earliest due first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Millis, TaskId)> {
        self.entries.iter()
    }

    /// Takes out the earliest task due by `now` that `eligible` accepts; the caller grants
    /// it an attempt right away (which moves it out of `Retrying`).
    pub(crate) fn take_first_due(
        &mut self,
        now: Millis,
        mut eligible: impl FnMut(TaskId) -> bool,
    ) -> Option<TaskId> {
        let chosen = self
            .entries
            .iter()
            .take_while(|(not_before, _)| *not_before <= now)
            .find(|(_, task)| eligible(*task))
            .copied()?;
        self.entries.remove(&chosen);
        Some(chosen.1)
    }

    pub(super) fn insert(&mut self, not_before: Millis, task: TaskId) {
        self.entries.insert((not_before, task));
    }

    pub(super) fn remove(&mut self, not_before: Millis, task: TaskId) {
        self.entries.remove(&(not_before, task));
    }
}
