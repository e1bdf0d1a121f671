//! Anti-affinity: two tasks of one job that share a group (the replicas of one shard,
//! the replicas of one model) never run on one worker at the same time.
//!
//! The rule is **required**, not preferred: a worker holding a live attempt of a task
//! of the group is granted no other task of it — first attempt, retry or speculative
//! copy alike. A group larger than the workers that may take it leaves its extra tasks
//! queued (the job says it waits, as for labels) until a worker joins or a replica ends;
//! a preferred rule would let them pile on one worker, which is what a replica exists
//! to avoid (one lost worker would take the shard with it).
//!
//! With the spreading of long-running kinds (`spread.rs`) the two rules could starve a
//! task: a worker under its share may hold the group while the only workers free of it
//! are at their share. Such a task is **stranded**, and a worker at its share may take
//! it anyway; the spreading then hands back one of that worker's *ungrouped* tasks (a
//! task of a group is never handed back to spread, only when its worker drains), which
//! the worker under its share takes. Moves still never ping-pong: a stranded task stays
//! where it went, and the ungrouped task goes to a worker the rule does not stop.

use super::Scheduler;
use crate::ids::{AttemptId, JobId, WorkerId};
use crate::model::{Job, JobState, TaskState};
use std::collections::{BTreeMap, BTreeSet};

/// What anti-affinity allows one pulling worker, computed before each pick (a grant
/// changes it).
#[derive(Debug)]
pub(super) struct GroupsHere {
    /// The pulling worker.
    pub(super) worker: WorkerId,
    /// The groups of each job the worker holds a live attempt of.
    held: BTreeMap<JobId, BTreeSet<String>>,
    /// `(job, group, kind)`: the worker holds its share of `kind`, yet may take a task
    /// of the group, which no other worker under its share may take.
    stranded: BTreeSet<(JobId, String, String)>,
}

impl GroupsHere {
    /// Returns true when the worker holds no live attempt of `group` of `job`.
    pub(super) fn free_of(&self, job: JobId, group: Option<&str>) -> bool {
        group.is_none_or(|group| {
            self.held
                .get(&job)
                .is_none_or(|groups| !groups.contains(group))
        })
    }

    /// Returns true when the worker may take a task of `kind` and `group` of `job`
    /// though it holds its share of the kind.
    pub(super) fn stranded(&self, job: JobId, group: Option<&str>, kind: &str) -> bool {
        group.is_some_and(|group| {
            self.stranded
                .contains(&(job, group.to_string(), kind.to_string()))
        })
    }
}

/// Another worker, as [`Scheduler::groups_here`] looks at it.
struct OtherWorker {
    /// The kinds it may be granted now (under its share of the long-running ones).
    grantable: BTreeSet<String>,
    /// The groups of each job it holds a live attempt of.
    held: BTreeMap<JobId, BTreeSet<String>>,
}

impl OtherWorker {
    /// Returns true when it may take a task of `kind` and `group` of `job`.
    fn takes(&self, job: JobId, group: &str, kind: &str) -> bool {
        self.grantable.contains(kind)
            && self
                .held
                .get(&job)
                .is_none_or(|groups| !groups.contains(group))
    }
}

impl Scheduler {
    /// Returns what anti-affinity allows `worker_id`; `full_kinds` are the long-running
    /// kinds of which it holds its share.
    pub(super) fn groups_here(
        &self,
        worker_id: WorkerId,
        full_kinds: &BTreeSet<String>,
    ) -> GroupsHere {
        // Computed once, at the first task of a full kind.
        let mut others: Option<Vec<OtherWorker>> = None;
        let mut here = GroupsHere {
            worker: worker_id,
            held: self.groups_held_by(worker_id),
            stranded: BTreeSet::new(),
        };
        if full_kinds.is_empty() {
            return here;
        }
        for job in self.jobs.values() {
            if job.state != JobState::Running || !job.required_labels.is_empty() {
                continue;
            }
            for (index, group) in &job.anti_affinity {
                let kind = job.kind_of(*index);
                let key = (job.id, group.clone(), kind.to_string());
                if full_kinds.contains(kind)
                    && here.free_of(job.id, Some(group))
                    && !here.stranded.contains(&key)
                    && !others
                        .get_or_insert_with(|| self.other_workers(worker_id))
                        .iter()
                        .any(|other| other.takes(job.id, group, kind))
                {
                    here.stranded.insert(key);
                }
            }
        }
        here
    }

    /// Returns the groups of each job `worker_id` holds a live attempt of.
    fn groups_held_by(&self, worker_id: WorkerId) -> BTreeMap<JobId, BTreeSet<String>> {
        let mut held: BTreeMap<JobId, BTreeSet<String>> = BTreeMap::new();
        let Some(worker) = self.workers.get(&worker_id) else {
            return held;
        };
        for attempt_id in &worker.held {
            let Some(attempt) = self.attempts.get(attempt_id) else {
                continue;
            };
            let Some(job) = self.jobs.get(&attempt.task.job) else {
                continue;
            };
            if let Some(group) = job.group_of(attempt.task.index) {
                held.entry(job.id).or_default().insert(group.to_string());
            }
        }
        held
    }

    /// Returns the live, non-draining workers other than `worker_id`, with the kinds
    /// each may be granted (under its share) and the groups it holds.
    fn other_workers(&self, worker_id: WorkerId) -> Vec<OtherWorker> {
        self.workers
            .iter()
            .filter(|(other, worker)| **other != worker_id && !worker.draining)
            .map(|(other, _)| OtherWorker {
                grantable: self.grantable_kinds(*other).into_owned(),
                held: self.groups_held_by(*other),
            })
            .collect()
    }

    /// Returns true when the task of attempt `attempt_id` has an anti-affinity group that
    /// a task of an earlier stage of its job, waiting for a worker, shares: the attempt
    /// keeps that task off its worker (used for early attempts, `slow_start.rs`).
    pub(super) fn holds_group_of_its_upstream(&self, attempt_id: AttemptId) -> bool {
        let attempt = &self.attempts[&attempt_id];
        let job = &self.jobs[&attempt.task.job];
        let Some(group) = job.group_of(attempt.task.index) else {
            return false;
        };
        let stage = job.stage_of(attempt.task.index);
        job.anti_affinity.iter().any(|(index, other)| {
            other == group
                && job.stage_of(*index) < stage
                && matches!(
                    job.tasks()[*index as usize].state(),
                    TaskState::Pending | TaskState::Retrying { .. }
                )
        })
    }

    /// Returns true when `job` runs and a queued task of it waits because every live,
    /// non-draining worker that could take it holds a task of its group.
    pub fn waits_for_anti_affinity(&self, job: &Job) -> bool {
        if job.state != JobState::Running || job.anti_affinity.is_empty() {
            return false;
        }
        let eligible: Vec<(WorkerId, &BTreeSet<String>)> = self
            .workers
            .iter()
            .filter(|(_, worker)| {
                !worker.draining
                    && crate::labels::satisfies(&worker.info.labels, &job.required_labels)
            })
            .map(|(id, worker)| (*id, &worker.info.kinds))
            .collect();
        let held: Vec<_> = eligible
            .iter()
            .map(|(id, kinds)| (*kinds, self.groups_held_by(*id)))
            .collect();
        job.anti_affinity.iter().any(|(index, group)| {
            let waiting = matches!(
                job.tasks()[*index as usize].state(),
                TaskState::Pending | TaskState::Retrying { .. }
            );
            let kind = job.kind_of(*index);
            waiting
                && held.iter().all(|(kinds, groups)| {
                    !kinds.contains(kind)
                        || groups
                            .get(&job.id)
                            .is_some_and(|groups| groups.contains(group))
                })
                && held.iter().any(|(kinds, _)| kinds.contains(kind))
        })
    }
}
