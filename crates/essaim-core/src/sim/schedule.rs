//! The random schedule: each step of the fault phase rolls one event (time passes, a
//! worker pulls, heart-beats, pauses, crashes or restarts, the coordinator restarts or
//! compacts its journal, a client submits, cancels or requeues), then the calm phase lets
//! every job end with no more faults.

use super::{KINDS, SimFailure, TaskBehaviour, World, scheduler_config, worker_labels};
use crate::ids::{AttemptId, JobId, Millis, TaskId};
use crate::labels::Labels;
use crate::model::JobState;
use crate::scheduler::Scheduler;
use crate::spec::{RawJobSpec, TaskSpec};
use std::collections::{BTreeMap, BTreeSet};

impl World {
    pub(super) fn fault_step(&mut self) {
        let roll = self.rng.up_to(999);
        match roll {
            0..=199 => {
                let millis = 1 + self.rng.up_to(150);
                self.advance(millis);
            }
            200..=399 => {
                let worker = self.random_worker();
                self.pull(worker, true);
            }
            400..=549 => self.finish_due_attempts(true),
            550..=699 => self.deliver_messages(true),
            700..=849 => {
                let worker = self.random_worker();
                self.heartbeat(worker);
            }
            850..=869 => self.submit_random_job(),
            870..=884 => {
                let worker = self.random_worker();
                self.crash_worker(worker);
            }
            885..=909 => {
                let worker = self.random_worker();
                self.restart_worker(worker);
            }
            910..=924 => {
                let worker = self.random_worker();
                let pause = 500 + self.rng.up_to(4_000);
                self.workers[worker].paused_until = self.now + pause;
                self.log(format!("worker #{worker} paused for {pause} ms"));
            }
            925..=934 => self.clock_jump(),
            935..=944 => self.restart_coordinator(),
            945..=954 => self.cancel_random_job(),
            955..=969 => self.requeue_dead_letters(),
            970..=979 => self.compact_journal(),
            980..=984 => self.fail_over(),
            985..=994 => self.deposed_acts(),
            995..=996 => self.deposed_steps_down(),
            _ => {
                let millis = self.rng.up_to(2_500);
                self.advance(millis);
            }
        }
    }

    /// No more faults: every worker up, messages delivered, until every job is terminal.
    pub(super) fn calm(&mut self, max_steps: usize) -> Result<(), SimFailure> {
        self.deposed_steps_down();
        for index in 0..self.workers.len() {
            self.workers[index].paused_until = 0;
            if !self.workers[index].alive {
                self.restart_worker(index);
            }
        }
        for step in 0..max_steps {
            self.step = step + 1_000_000;
            self.advance(50);
            for index in 0..self.workers.len() {
                self.heartbeat(index);
                self.pull(index, false);
            }
            self.finish_due_attempts(false);
            self.deliver_messages(false);
            self.check()?;
            if self
                .scheduler
                .jobs()
                .all(|job| job.state != JobState::Running)
            {
                return self.check_final();
            }
        }
        let stuck: Vec<String> = self
            .scheduler
            .jobs()
            .filter(|job| job.state == JobState::Running)
            .map(|job| format!("job {} {:?}", job.id, job.counts()))
            .collect();
        Err(self.fail(format!(
            "liveness: jobs still running after the calm phase: {stuck:?}"
        )))
    }

    fn random_worker(&mut self) -> usize {
        self.rng.up_to(self.workers.len() as u64 - 1) as usize
    }

    fn advance(&mut self, millis: Millis) {
        self.now += millis;
        self.tick();
    }

    fn clock_jump(&mut self) {
        if self.rng.chance(1, 2) {
            let jump = 3_000 + self.rng.up_to(10_000);
            self.log(format!("clock jumps forward {jump} ms"));
            self.now += jump;
        } else {
            let jump = self.rng.up_to(2_000);
            self.log(format!("clock jumps back {jump} ms"));
            self.now = self.now.saturating_sub(jump);
        }
        self.tick();
    }

    fn tick(&mut self) {
        let mut out = Vec::new();
        self.scheduler.tick(self.now, &mut out);
        self.absorb(out);
        let starving = self.scheduler.early_attempts_to_hand_back();
        if !starving.is_empty() {
            let problem = format!("early attempts {starving:?} still hold slots after a tick");
            self.log(format!("VIOLATION {problem}"));
            self.violation.get_or_insert(problem);
        }
    }

    pub(super) fn submit_random_job(&mut self) {
        let task_count = 1 + self.rng.up_to(24) as usize;
        // One job in three has stages (a MapReduce shape): each later stage starts after
        // a random task and holds at least one task.
        let stage_breaks: BTreeSet<usize> = if task_count > 1 && self.rng.chance(1, 3) {
            (0..1 + self.rng.up_to(2))
                .map(|_| 1 + self.rng.up_to(task_count as u64 - 1) as usize)
                .collect()
        } else {
            BTreeSet::new()
        };
        let tasks = (0..task_count)
            .map(|i| TaskSpec {
                kind: KINDS[i % 2].to_string(),
                payload: vec![i as u8],
                stage: stage_breaks.iter().filter(|start| **start <= i).count() as u32,
                ..Default::default()
            })
            .collect();
        let deadline = if self.rng.chance(1, 10) {
            self.now + 500 + self.rng.up_to(5_000)
        } else {
            0
        };
        // Owners scope supersede keys; drawn without the generator, so that adding them
        // left every seed's other draws as they were.
        let owner = ["", "alice", "bob"][task_count % 3].to_string();
        let raw = RawJobSpec {
            name: "sim".into(),
            owner,
            tasks,
            priority: self.rng.up_to(2) as i32,
            max_concurrency: if self.rng.chance(1, 3) {
                1 + self.rng.up_to(3) as u32
            } else {
                0
            },
            max_attempts: 2 + self.rng.up_to(4) as u32,
            deadline,
            task_timeout_ms: if self.rng.chance(1, 5) { 2_000 } else { 0 },
            backoff_base_ms: 20,
            backoff_max_ms: 1_000,
            speculation_multiplier: if self.rng.chance(1, 4) { -1.0 } else { 0.0 },
            supersede_key: if self.rng.chance(1, 6) {
                format!("key-{}", self.rng.up_to(1))
            } else {
                String::new()
            },
            processing_version: if self.rng.chance(1, 2) {
                format!("sim v{}", self.rng.up_to(3))
            } else {
                String::new()
            },
            // Most staged jobs start later stages early, some as soon as submitted.
            slow_start: (!stage_breaks.is_empty() && self.rng.chance(2, 3))
                .then(|| [0.0, 0.05, 0.3, 0.7, 1.0][self.rng.up_to(4) as usize]),
            required_labels: self.draw_required_labels(task_count),
            anti_affinity_groups: draw_anti_affinity_groups(task_count, !stage_breaks.is_empty()),
        };
        let labels = raw.required_labels.clone();
        let groups: BTreeMap<u32, String> = raw
            .anti_affinity_groups
            .iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .map(|(index, group)| (index as u32, group.clone()))
            .collect();
        let key = raw.supersede_key.clone();
        let mut out = Vec::new();
        let job = self
            .scheduler
            .submit(self.now, raw, &mut out)
            .expect("simulated specs are valid");
        for index in 0..task_count as u32 {
            let behaviour = TaskBehaviour {
                duration_ms: 20 + self.rng.up_to(300),
                poison: self.rng.chance(1, 30),
                flaky_percent: if self.rng.chance(1, 5) { 30 } else { 0 },
            };
            self.behaviours.insert(TaskId::new(job, index), behaviour);
        }
        self.log(format!(
            "job {job} submitted with {task_count} tasks{}",
            if labels.is_empty() {
                String::new()
            } else {
                format!(" for workers with {}", crate::labels::show(&labels))
            }
        ));
        self.required_labels.insert(job, labels);
        self.anti_affinity.insert(job, groups);
        self.absorb(out);
        if !key.is_empty() {
            self.check_superseded(job, &key);
        }
    }

    /// The labels a new job requires: none for about two jobs in three, else labels some
    /// simulated worker carries (the calm phase restarts every worker, so the job can
    /// end). Drawn without the generator, as the owner.
    fn draw_required_labels(&self, task_count: usize) -> Labels {
        let choices: [&[(&str, &str)]; 5] = [
            &[],
            &[("gpu", "yes")],
            &[],
            &[("gpu", "yes"), ("zone", "a")],
            &[],
        ];
        let labels: Labels = choices[(task_count / 4) % 5]
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let carried = (0..self.workers.len())
            .any(|index| crate::labels::satisfies(&worker_labels(index), &labels));
        if carried { labels } else { Labels::new() }
    }

    /// After job `newer` was submitted with `key`, no other job of its owner with that
    /// key runs, those of other owners still run, and the ones it cancelled are known as
    /// cancelled (none of their tasks may commit).
    fn check_superseded(&mut self, newer: JobId, key: &str) {
        let superseded_by = format!("superseded by job {}", newer.0);
        let owner = self.scheduler.job(newer).and_then(|job| job.owner.clone());
        let same_key: Vec<(JobId, JobState, bool)> = self
            .scheduler
            .jobs()
            .filter(|job| job.id != newer && job.supersede_key.as_deref() == Some(key))
            .map(|job| (job.id, job.state.clone(), job.owner == owner))
            .collect();
        for (job, state, same_owner) in same_key {
            match state {
                JobState::Cancelled { reason }
                    if !same_owner && reason.starts_with(&superseded_by) =>
                {
                    let problem = format!("job {newer} superseded job {job} of another owner");
                    self.log(format!("VIOLATION {problem}"));
                    self.violation.get_or_insert(problem);
                }
                JobState::Running if same_owner => {
                    let problem = format!("job {job} still runs after job {newer} superseded it");
                    self.log(format!("VIOLATION {problem}"));
                    self.violation.get_or_insert(problem);
                }
                JobState::Cancelled { reason } if reason.starts_with(&superseded_by) => {
                    self.cancelled_jobs.insert(job);
                    self.log(format!("job {job} superseded by job {newer}"));
                }
                _ => {}
            }
        }
    }

    fn cancel_random_job(&mut self) {
        let running: Vec<JobId> = self
            .scheduler
            .jobs()
            .filter(|j| j.state == JobState::Running)
            .map(|j| j.id)
            .collect();
        if running.is_empty() {
            return;
        }
        let job = running[self.rng.up_to(running.len() as u64 - 1) as usize];
        let mut out = Vec::new();
        if self
            .scheduler
            .cancel_job(self.now, job, "cancelled by the simulation", &mut out)
            .is_ok()
        {
            self.cancelled_jobs.insert(job);
            self.log(format!("job {job} cancelled"));
        }
        self.absorb(out);
    }

    fn requeue_dead_letters(&mut self) {
        let letters = self.scheduler.dead_letters(None);
        if letters.is_empty() {
            return;
        }
        let mut out = Vec::new();
        let count = self
            .scheduler
            .requeue_dead_letters(self.now, &letters, &mut out);
        self.log(format!("{count} dead letters requeued"));
        self.absorb(out);
    }

    fn crash_worker(&mut self, index: usize) {
        if !self.workers[index].alive {
            return;
        }
        self.report.worker_crashes += 1;
        let worker = &mut self.workers[index];
        worker.alive = false;
        worker.running.clear();
        if let Some(id) = worker.id {
            self.crashed_ids.insert(id);
        }
        self.log(format!("worker #{index} crashes"));
    }

    fn restart_worker(&mut self, index: usize) {
        if self.workers[index].alive {
            return;
        }
        self.workers[index].alive = true;
        self.workers[index].paused_until = 0;
        self.register(index);
    }

    fn restart_coordinator(&mut self) {
        self.epoch += 1;
        self.report.coordinator_restarts += 1;
        self.log(format!("coordinator restarts (epoch {})", self.epoch));
        self.scheduler = Scheduler::recover(
            scheduler_config(self.epoch, self.seed),
            KINDS,
            self.journal.clone(),
        );
        // Workers learn of the restart at their next heartbeat or pull (reregister).
    }

    /// What a coordinator does periodically: forget long-finished jobs and replace the
    /// journal with a snapshot of what is left.
    fn compact_journal(&mut self) {
        let forgotten = self.scheduler.forget_jobs_finished_before(self.now, 2_000);
        self.journal = self.scheduler.snapshot(self.now);
        self.log(format!(
            "journal compacted to {} events, {} jobs forgotten",
            self.journal.len(),
            forgotten.len()
        ));
    }

    pub(super) fn drop_and_reregister(&mut self, index: usize) {
        let dropped: Vec<AttemptId> = self.workers[index]
            .running
            .drain(..)
            .map(|r| r.attempt)
            .collect();
        self.failed_or_stopped.extend(dropped);
        self.log(format!("worker #{index} re-registers"));
        self.register(index);
    }
}

/// The anti-affinity groups of a new job: none for about two jobs of one stage in three
/// and most jobs of several (groups there change which tasks start early, which other
/// checks need often enough), else groups of 1 to 5 tasks with every fifth task left
/// out; a group larger than the workers that may run it runs a task at a time, as
/// simulated tasks end. Drawn without the generator, as the owner, so that every
/// seed's other draws stay as they were.
fn draw_anti_affinity_groups(task_count: usize, staged: bool) -> Vec<String> {
    let grouped = if staged {
        task_count % 8 == 5
    } else {
        (task_count / 2).is_multiple_of(3)
    };
    if !grouped {
        return Vec::new();
    }
    let groups = 1 + task_count % 5;
    (0..task_count)
        .map(|index| {
            if index % 5 == 4 {
                String::new()
            } else {
                format!("g{}", index % groups)
            }
        })
        .collect()
}
