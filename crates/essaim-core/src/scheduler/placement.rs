//! Placement: which task a pulling worker gets, and the lease it gets it under.
//!
//! The order is a policy of its own, kept in one place: first attempts of the
//! highest-priority, oldest job with capacity (a task whose input the worker holds goes
//! first), with a due retry every `retry_every` grants so retries are never starved; then
//! any due retry; then a speculative copy of a straggler. Every one of them goes only to
//! a worker carrying the labels its job requires (`crate::labels`): a job no live worker
//! satisfies keeps its tasks queued. None goes to a worker holding a live attempt of
//! another task of its anti-affinity group (`anti_affinity.rs`).

use super::anti_affinity::GroupsHere;
use super::{Attempt, PullReply, Scheduler};
use crate::ids::{AttemptId, JobId, Millis, TaskId, WorkerId};
use crate::labels::{Labels, satisfies};
use crate::model::{Assignment, Job, Locality, TaskState};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// What a pulling worker may be granted: the kinds it runs and its labels.
/// Borrowed to wake parked pulls, owned while a pull grants.
struct Eligibility<'a> {
    /// Kinds it may be granted for a job that requires no labels: all it runs, minus
    /// the long-running kinds of which it holds its share (`spread.rs`).
    kinds: Cow<'a, BTreeSet<String>>,
    /// Kinds it runs: a job that requires labels is not spread (`spread.rs`), its
    /// tasks go to whichever worker carrying them pulls.
    all_kinds: Cow<'a, BTreeSet<String>>,
    /// Its labels.
    labels: Cow<'a, Labels>,
}

impl Eligibility<'_> {
    /// The kinds of `job`'s tasks the worker may be granted; `None` when it lacks a
    /// label the job requires.
    fn kinds_for(&self, job: &Job) -> Option<&BTreeSet<String>> {
        if job.required_labels.is_empty() {
            Some(&self.kinds)
        } else if satisfies(&self.labels, &job.required_labels) {
            Some(&self.all_kinds)
        } else {
            None
        }
    }

    /// The kinds whose queues are searched for `job`: those of [`Self::kinds_for`], and
    /// for a job with anti-affinity groups and no labels every kind the worker runs (a
    /// stranded task of a kind it holds its share of may still go to it).
    fn kinds_searched_for(&self, job: &Job) -> Option<&BTreeSet<String>> {
        if job.required_labels.is_empty() && !job.anti_affinity.is_empty() {
            Some(&self.all_kinds)
        } else {
            self.kinds_for(job)
        }
    }

    /// Returns true when the worker may take a task of `kind` and `group` of `job`.
    fn allows(&self, here: &GroupsHere, job: &Job, kind: &str, group: Option<&str>) -> bool {
        here.free_of(job.id, group)
            && (self
                .kinds_for(job)
                .is_some_and(|kinds| kinds.contains(kind))
                || here.stranded(job.id, group, kind))
    }

    /// The long-running kinds the worker runs but holds its share of.
    fn full_kinds(&self) -> BTreeSet<String> {
        self.all_kinds.difference(&self.kinds).cloned().collect()
    }
}

impl Scheduler {
    /// Returns true when `worker` would get a task if it pulled now (used to wake
    /// long-polls without granting anything).
    pub fn has_work_for(&self, now: Millis, worker: WorkerId) -> bool {
        let Some(state) = self.workers.get(&worker) else {
            return true;
        };
        if state.draining {
            return false;
        }
        let eligible = Eligibility {
            kinds: self.grantable_kinds(worker),
            all_kinds: Cow::Borrowed(&state.info.kinds),
            labels: Cow::Borrowed(&state.info.labels),
        };
        self.job_order.iter().any(|(_, job_id)| {
            let job = &self.jobs[job_id];
            job.has_capacity()
                && eligible
                    .kinds_for(job)
                    .is_some_and(|kinds| job.has_queued_task_of(kinds))
        }) || self
            .retry_queue
            .first_due_at()
            .is_some_and(|not_before| not_before <= now)
    }

    /// Grants up to `max` new leases to a worker.
    pub fn pull(&mut self, now: Millis, worker_id: WorkerId, max: u32) -> PullReply {
        let Some(worker) = self.workers.get_mut(&worker_id) else {
            return PullReply {
                reregister: true,
                assignments: Vec::new(),
            };
        };
        worker.last_seen = now;
        if worker.draining {
            return PullReply::default();
        }
        let data_dirs = worker.info.data_dirs.clone();
        // Each grant of a long-running task may fill this worker's share of its kind.
        let long_running = worker.info.long_running_kinds.clone();
        let mut eligible: Eligibility<'static> = Eligibility {
            kinds: Cow::Owned(BTreeSet::new()),
            all_kinds: Cow::Owned(worker.info.kinds.clone()),
            labels: Cow::Owned(worker.info.labels.clone()),
        };
        eligible.kinds = Cow::Owned(self.grantable_kinds(worker_id).into_owned());
        let mut assignments = Vec::new();
        while assignments.len() < max as usize {
            let Some((task, speculative)) = self.pick_next(now, worker_id, &eligible, &data_dirs)
            else {
                break;
            };
            let assignment = self.grant(now, worker_id, task, speculative);
            if long_running.contains(&assignment.kind) {
                eligible.kinds = Cow::Owned(self.grantable_kinds(worker_id).into_owned());
            }
            assignments.push(assignment);
        }
        PullReply {
            reregister: false,
            assignments,
        }
    }

    /// Chooses the next task for a worker: first attempts, with a due retry every
    /// `retry_every` grants; then any due retry; then a straggler's speculative copy.
    fn pick_next(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        eligible: &Eligibility<'_>,
        data_dirs: &[String],
    ) -> Option<(TaskId, bool)> {
        let here = self.groups_here(worker_id, &eligible.full_kinds());
        let retry_turn = self.first_attempts_since_retry >= self.config.retry_every;
        if retry_turn && let Some(task) = self.take_due_retry(now, eligible, &here) {
            self.first_attempts_since_retry = 0;
            return Some((task, false));
        }
        if let Some(task) = self.take_first_attempt(now, eligible, &here, data_dirs) {
            self.first_attempts_since_retry += 1;
            return Some((task, false));
        }
        if let Some(task) = self.take_due_retry(now, eligible, &here) {
            self.first_attempts_since_retry = 0;
            return Some((task, false));
        }
        self.find_straggler(now, worker_id, eligible, &here)
            .map(|task| (task, true))
    }

    /// Takes the first queued task of the first job with capacity; among the first
    /// [`LOCALITY_SCAN`] tasks of a queue, one whose input the worker holds goes first.
    fn take_first_attempt(
        &mut self,
        now: Millis,
        eligible: &Eligibility<'_>,
        here: &GroupsHere,
        data_dirs: &[String],
    ) -> Option<TaskId> {
        // No early start on a worker without a free slot (it would queue the attempt
        // behind others), nor while a task of a job with slow start waits behind early
        // attempts: it would be handed back at the next tick.
        let hold_back_early =
            !self.has_free_slot(here.worker) || self.tasks_wait_behind_early_attempts();
        for (_, job_id) in &self.job_order {
            let job = self.jobs.get_mut(job_id).expect("ordered job exists");
            if !job.has_capacity() || job.past_deadline(now) {
                continue;
            }
            let (Some(kinds), Some(share_kinds)) =
                (eligible.kinds_searched_for(job), eligible.kinds_for(job))
            else {
                continue;
            };
            let job_id = *job_id;
            let allowed = |kind: &str, group: Option<&str>| {
                here.free_of(job_id, group)
                    && (share_kinds.contains(kind) || here.stranded(job_id, group, kind))
            };
            let Some((index, locality)) =
                job.take_queued_task(kinds, data_dirs, hold_back_early, allowed)
            else {
                continue;
            };
            match locality {
                Locality::Unconstrained => {}
                Locality::Local => self.stats.local_grants += 1,
                Locality::Remote => self.stats.remote_grants += 1,
            }
            return Some(TaskId::new(job_id, index));
        }
        None
    }

    fn take_due_retry(
        &mut self,
        now: Millis,
        eligible: &Eligibility<'_>,
        here: &GroupsHere,
    ) -> Option<TaskId> {
        let jobs = &self.jobs;
        self.retry_queue.take_first_due(now, |task| {
            let job = &jobs[&task.job];
            job.has_capacity()
                && !job.past_deadline(now)
                && eligible.allows(here, job, job.kind_of(task.index), job.group_of(task.index))
        })
    }

    /// Finds a task whose only attempt runs on another worker for much longer than its
    /// job's median task: the straggler gets a copy here (first result wins).
    fn find_straggler(
        &self,
        now: Millis,
        worker_id: WorkerId,
        eligible: &Eligibility<'_>,
        here: &GroupsHere,
    ) -> Option<TaskId> {
        let mut medians: BTreeMap<JobId, Option<Millis>> = BTreeMap::new();
        for attempt in self.attempts.values() {
            if attempt.worker == worker_id || attempt.speculative {
                continue;
            }
            let job = &self.jobs[&attempt.task.job];
            let Some(multiplier) = job.spec.speculation_multiplier else {
                continue;
            };
            let task = &job.tasks()[attempt.task.index as usize];
            let single_attempt =
                matches!(task.state(), TaskState::Running { attempts } if attempts.len() == 1);
            let kind = job.kind_of(attempt.task.index);
            if !single_attempt
                // An early attempt runs long because it waits for its inputs.
                || !job.stage_complete(job.stage_of(attempt.task.index))
                || !job.has_capacity()
                || job.past_deadline(now)
                || !eligible
                    .kinds_for(job)
                    .is_some_and(|kinds| kinds.contains(kind))
                || !here.free_of(job.id, job.group_of(attempt.task.index))
            {
                continue;
            }
            let median = *medians
                .entry(job.id)
                .or_insert_with(|| job.median_duration(self.config.speculation_min_samples));
            let Some(median) = median else { continue };
            let threshold = ((median as f64) * multiplier) as Millis;
            let threshold = threshold.max(self.config.speculation_min_runtime_ms);
            if now.saturating_sub(attempt.started_at) > threshold {
                return Some(attempt.task);
            }
        }
        None
    }

    fn grant(
        &mut self,
        now: Millis,
        worker_id: WorkerId,
        task_id: TaskId,
        speculative: bool,
    ) -> Assignment {
        let attempt_id = AttemptId(self.attempt_ids.mint());
        let job = self
            .jobs
            .get_mut(&task_id.job)
            .expect("granted task has a job");
        let attempt_number = job.start_attempt(task_id.index, attempt_id, speculative);
        let assignment = job.assignment(task_id.index, attempt_id, attempt_number, speculative);
        self.stats.attempts_started += 1;
        if !assignment.inputs_complete {
            self.stats.early_attempts_started += 1;
        }
        if speculative {
            self.stats.speculative_attempts += 1;
        }
        self.attempts.insert(
            attempt_id,
            Attempt {
                task: task_id,
                worker: worker_id,
                started_at: now,
                lease_expires_at: now.saturating_add(self.config.lease_ms),
                speculative,
            },
        );
        self.workers
            .get_mut(&worker_id)
            .expect("pulling worker exists")
            .held
            .insert(attempt_id);
        assignment
    }
}

impl Scheduler {
    /// Returns true when `job` runs and requires labels that no live, non-draining
    /// worker carries: its tasks wait, queued, until such a worker registers.
    pub fn waits_for_labels(&self, job: &Job) -> bool {
        job.state == crate::model::JobState::Running
            && !job.required_labels.is_empty()
            && !self.workers.values().any(|worker| {
                !worker.draining && satisfies(&worker.info.labels, &job.required_labels)
            })
    }
}
