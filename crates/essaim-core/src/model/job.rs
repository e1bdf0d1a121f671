//! A job and the numbers it keeps about itself: its tasks' states, the counts and stage
//! tallies kept in step with them, its queues of pending tasks, its live attempts and its
//! counters.
//!
//! Every change to those numbers goes through a method of [`Job`] (here, and the
//! transitions in `job_transitions.rs`), so each has one owner; the scheduler decides
//! across jobs (which job serves a worker, which attempt holds a lease) and calls them.

use super::{JobCounters, JobState, StageCounts, Task, TaskCounts, TaskState, UpstreamOutput};
use crate::ids::{JobId, Millis};
use crate::model::FileRef;
use crate::spec::JobSpec;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Most recent task durations kept per job to estimate the median.
const DURATION_SAMPLES: usize = 512;

/// How deep a queue is searched for a task whose input the pulling worker holds.
const LOCALITY_SCAN: usize = 64;

/// A job: its spec, its tasks and the queues of its pending tasks.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The validated spec.
    pub spec: JobSpec,
    /// Where it stands.
    pub state: JobState,
    /// When it was accepted.
    pub submitted_at: Millis,
    /// When it became terminal.
    pub finished_at: Option<Millis>,
    /// Counters of attempts (written only by the job's own methods).
    pub counters: JobCounters,
    /// A later job submitted with the same key cancels this one while it runs.
    pub supersede_key: Option<String>,
    /// What processes its data: the job definition and its version, and the build of
    /// the program that planned it (SPEC §10: versions kept apart). Shown with the job;
    /// the builds of the workers that ran its attempts are shown beside it.
    pub processing_version: Option<String>,
    /// The principal that submitted it: only it, or an admin, may cancel it (decided by
    /// the coordinator, which knows roles); `None` when submitted without credentials.
    pub owner: Option<String>,
    /// Labels a worker must carry to run its tasks; empty for any worker.
    pub required_labels: crate::labels::Labels,
    /// Anti-affinity groups of its tasks, by task index (tasks without one are absent):
    /// two tasks of one group never run on one worker at the same time.
    pub anti_affinity: BTreeMap<u32, String>,
    pub(super) tasks: Vec<Task>,
    /// Pending task indexes by kind, in queue order; only tasks of ready stages.
    pub(super) pending_by_kind: BTreeMap<String, VecDeque<u32>>,
    pub(super) counts: TaskCounts,
    /// Attempts currently leased, for the concurrency limit.
    pub(super) live_attempts: u32,
    /// Sums of the counters reported by committed tasks.
    pub(super) task_counters: BTreeMap<String, u64>,
    /// First task index of each stage, plus the task count at the end.
    pub(super) stage_starts: Vec<u32>,
    /// Tasks of each stage that have not succeeded.
    pub(super) stage_unfinished: Vec<u32>,
    /// Tasks of each stage waiting for a slot (pending or retrying): while a stage has
    /// some, the next stage does not start early (see `slow_start.rs`).
    pub(super) stage_waiting: Vec<u32>,
    /// With slow start, the share of a stage that must succeed before the next starts.
    pub(super) slow_start: Option<f64>,
    /// Grows each time an output of a non-final stage is committed or lost, so a task
    /// started early can tell whether its inputs changed.
    pub(super) inputs_version: u64,
    /// The stages holding tasks of each kind (tasks never change kind).
    stages_of_kind: BTreeMap<String, Vec<u32>>,
    /// Whether a task of the final stage committed a file left on its worker: those
    /// files are the job's results, so its scratch files stay until it is forgotten.
    pub(super) results_on_workers: bool,
    duration_samples: Vec<Millis>,
    next_sample_slot: usize,
}

/// Where a task taken from a queue stands with respect to the pulling worker's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locality {
    /// The task names no input paths.
    Unconstrained,
    /// The worker holds one of the task's input paths.
    Local,
    /// The worker holds none of them.
    Remote,
}

impl Job {
    /// Returns a job whose tasks are all pending and not yet queued (see
    /// [`Job::queue_first_stage`] and [`Job::rebuild_pending_queues`]).
    pub(crate) fn new(id: JobId, spec: JobSpec, submitted_at: Millis) -> Self {
        let task_count = spec.tasks.len();
        let tasks = (0..task_count).map(|_| Task::pending()).collect();
        let stage_count = spec.tasks.last().map_or(1, |task| task.stage as usize + 1);
        let mut stage_starts = vec![0u32; stage_count + 1];
        let mut stage_unfinished = vec![0u32; stage_count];
        let mut stages_of_kind: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (index, task) in spec.tasks.iter().enumerate() {
            stage_unfinished[task.stage as usize] += 1;
            stage_starts[task.stage as usize + 1] = index as u32 + 1;
            let stages = stages_of_kind.entry(task.kind.clone()).or_default();
            if stages.last() != Some(&task.stage) {
                stages.push(task.stage);
            }
        }
        let counts = TaskCounts {
            pending: task_count as u32,
            ..TaskCounts::default()
        };
        Self {
            id,
            spec,
            state: JobState::Running,
            submitted_at,
            finished_at: None,
            counters: JobCounters::default(),
            supersede_key: None,
            processing_version: None,
            owner: None,
            required_labels: crate::labels::Labels::new(),
            anti_affinity: BTreeMap::new(),
            tasks,
            pending_by_kind: BTreeMap::new(),
            counts,
            live_attempts: 0,
            task_counters: BTreeMap::new(),
            stage_starts,
            stage_waiting: stage_unfinished.clone(),
            stage_unfinished,
            slow_start: None,
            inputs_version: 0,
            stages_of_kind,
            results_on_workers: false,
            duration_samples: Vec::new(),
            next_sample_slot: 0,
        }
    }

    // ------------------------------------------------------------------ read side

    /// Returns the job's tasks in index order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Returns whether some of the job's results are files left on workers (a final-stage
    /// task committed a file rather than an inline result).
    pub fn results_on_workers(&self) -> bool {
        self.results_on_workers
    }

    /// Returns the attempts of this job leased right now.
    pub fn live_attempts(&self) -> u32 {
        self.live_attempts
    }

    /// Returns how many tasks are in each state.
    pub fn counts(&self) -> TaskCounts {
        self.counts
    }

    /// Returns the sums of the counters reported by committed tasks.
    pub fn task_counters(&self) -> &BTreeMap<String, u64> {
        &self.task_counters
    }

    /// Returns the number of stages (1 for a one-stage job).
    pub fn stage_count(&self) -> u32 {
        self.spec.tasks.last().map_or(1, |task| task.stage + 1)
    }

    /// Returns the kind of each stage's first task, in stage order (MapReduce stages are
    /// named by it: `mapreduce.map`, `mapreduce.reduce`…).
    pub fn stage_kinds(&self) -> Vec<&str> {
        self.stage_starts[..self.stage_starts.len() - 1]
            .iter()
            .map(|start| {
                self.spec
                    .tasks
                    .get(*start as usize)
                    .map_or("", |task| task.kind.as_str())
            })
            .collect()
    }

    /// Returns the task counts of every stage, in stage order. Walks every task.
    pub fn stage_counts(&self) -> Vec<StageCounts> {
        let mut stages = vec![StageCounts::default(); self.stage_count() as usize];
        for (task, spec) in self.tasks.iter().zip(&self.spec.tasks) {
            let stage = &mut stages[spec.stage as usize];
            stage.total += 1;
            match task.state {
                TaskState::Succeeded => stage.succeeded += 1,
                TaskState::Running { .. } => stage.running += 1,
                TaskState::DeadLettered | TaskState::Purged | TaskState::Skipped => {
                    stage.failed += 1
                }
                TaskState::Pending | TaskState::Retrying { .. } => {}
            }
        }
        stages
    }

    /// Returns the median of recent task durations once `min_samples` are known.
    pub fn median_duration(&self, min_samples: usize) -> Option<Millis> {
        if self.duration_samples.len() < min_samples.max(1) {
            return None;
        }
        let mut samples = self.duration_samples.clone();
        let middle = samples.len() / 2;
        Some(*samples.select_nth_unstable(middle).1)
    }

    /// Returns true while the job's concurrency limit allows one more attempt.
    pub(crate) fn has_capacity(&self) -> bool {
        self.spec
            .max_concurrency
            .is_none_or(|limit| self.live_attempts < limit)
    }

    /// Returns true once the deadline has passed.
    pub(crate) fn past_deadline(&self, now: Millis) -> bool {
        self.spec.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Returns the kind of task `index`.
    /// Returns the anti-affinity group of a task, if it has one.
    pub fn group_of(&self, index: u32) -> Option<&str> {
        self.anti_affinity.get(&index).map(String::as_str)
    }

    pub(crate) fn kind_of(&self, index: u32) -> &str {
        &self.spec.tasks[index as usize].kind
    }

    /// Returns how many tasks of kind `kind` are not terminal (pending, retrying or
    /// running). Walks only the stages holding tasks of that kind.
    pub(crate) fn live_tasks_of_kind(&self, kind: &str) -> usize {
        let Some(stages) = self.stages_of_kind.get(kind) else {
            return 0;
        };
        stages
            .iter()
            .map(|stage| {
                let range = self.stage_starts[*stage as usize] as usize
                    ..self.stage_starts[*stage as usize + 1] as usize;
                self.tasks[range.clone()]
                    .iter()
                    .zip(&self.spec.tasks[range])
                    .filter(|(task, spec)| spec.kind == kind && !task.state.is_terminal())
                    .count()
            })
            .sum()
    }

    // ------------------------------------------------------------------ stages

    /// Returns the stage of task `index`.
    pub(crate) fn stage_of(&self, index: u32) -> u32 {
        self.spec.tasks[index as usize].stage
    }

    /// Returns the task indexes of stage `stage`.
    pub(crate) fn stage_range(&self, stage: u32) -> std::ops::Range<u32> {
        self.stage_starts[stage as usize]..self.stage_starts[stage as usize + 1]
    }

    /// Returns true when tasks of `stage` may run: every task of the stage before has
    /// succeeded, or the stage may start early (see `slow_start.rs`).
    pub(crate) fn stage_ready(&self, stage: u32) -> bool {
        self.stage_complete(stage) || self.stage_open_early(stage)
    }

    /// Returns true when every task of the stage before `stage` has succeeded (always
    /// for stage 0).
    pub(crate) fn stage_complete(&self, stage: u32) -> bool {
        stage == 0 || self.stage_unfinished[stage as usize - 1] == 0
    }

    /// Returns true when task `index` may run now.
    pub(crate) fn task_ready(&self, index: u32) -> bool {
        self.stage_ready(self.stage_of(index))
    }

    /// Returns true when a task of `stage` has succeeded and its output is still needed:
    /// the job runs, `stage` is not the last and the next stage has unfinished tasks. A
    /// finished job reads nothing (a requeued dead letter reopens it; its readers then
    /// report what they cannot read).
    pub(crate) fn output_needed(&self, stage: u32) -> bool {
        let next = stage as usize + 1;
        self.state == JobState::Running
            && next < self.stage_unfinished.len()
            && self.stage_unfinished[next] > 0
    }

    /// Returns true when a task of a stage before `stage` is dead-lettered or purged:
    /// tasks of `stage` can never run.
    pub(crate) fn stage_blocked(&self, stage: u32) -> bool {
        let end = self.stage_starts[stage as usize];
        self.tasks[..end as usize]
            .iter()
            .any(|task| matches!(task.state, TaskState::DeadLettered | TaskState::Purged))
    }

    /// Returns the outputs a task of stage s > 0 reads: those of every task of stage s - 1.
    pub(crate) fn upstream_outputs(&self, index: u32) -> Vec<UpstreamOutput> {
        let stage = self.stage_of(index);
        if stage == 0 {
            return Vec::new();
        }
        self.stage_range(stage - 1)
            .filter_map(|upstream| {
                let output = self.tasks[upstream as usize].output.as_ref()?;
                Some(UpstreamOutput {
                    task_index: upstream,
                    attempt: output.attempt,
                    file: output.file.clone().unwrap_or(FileRef {
                        url: String::new(),
                        size_bytes: 0,
                    }),
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------ queues

    /// Returns true when a task of one of `kinds` is queued and not held back (see
    /// [`Job::held_back`]).
    pub(crate) fn has_queued_task_of(&self, kinds: &BTreeSet<String>) -> bool {
        self.pending_by_kind.iter().any(|(kind, queue)| {
            kinds.contains(kind) && queue.iter().any(|index| !self.task_held_back(*index))
        })
    }

    /// Takes the first queued task of the first of `kinds` with one, leaving the tasks
    /// of held-back stages queued (every early stage when `hold_back_early`, see
    /// `slow_start.rs`) and those not `allowed` (anti-affinity, `placement.rs`); among
    /// the first [`LOCALITY_SCAN`] tasks of a queue whose first task names input paths,
    /// one whose input lies under `data_dirs` goes first.
    pub(crate) fn take_queued_task(
        &mut self,
        kinds: &BTreeSet<String>,
        data_dirs: &[String],
        hold_back_early: bool,
        allowed: impl Fn(&str, Option<&str>) -> bool,
    ) -> Option<(u32, Locality)> {
        let held_back = self.held_back_stages(hold_back_early);
        let specs = &self.spec.tasks;
        let groups = &self.anti_affinity;
        for (kind, queue) in self.pending_by_kind.iter_mut() {
            if !kinds.contains(kind) {
                continue;
            }
            // Tasks of a stage held back, and those the worker may not take (see
            // `allowed`), stay queued, in their place, behind the others.
            let grantable = |index: &u32| {
                let spec = &specs[*index as usize];
                !held_back.contains(&spec.stage)
                    && allowed(&spec.kind, groups.get(index).map(String::as_str))
            };
            let Some(first) = queue.iter().position(grantable) else {
                continue;
            };
            if specs[queue[first] as usize].locality.is_empty() {
                let index = queue.remove(first).expect("position is in the queue");
                return Some((index, Locality::Unconstrained));
            }
            let local = queue.iter().take(LOCALITY_SCAN).position(|index| {
                grantable(index) && is_local(&specs[*index as usize].locality, data_dirs)
            });
            let index = queue
                .remove(local.unwrap_or(first))
                .expect("position is in the queue");
            let locality = if local.is_some() {
                Locality::Local
            } else {
                Locality::Remote
            };
            return Some((index, locality));
        }
        None
    }

    /// Queues the tasks of the first stage of a newly submitted job, in task order.
    pub(crate) fn queue_first_stage(&mut self) {
        self.queue_stage(0);
    }

    /// Rebuilds the queues from the task states (after recovery), in task order.
    pub(crate) fn rebuild_pending_queues(&mut self) {
        self.pending_by_kind.clear();
        for index in 0..self.tasks.len() as u32 {
            if self.tasks[index as usize].state == TaskState::Pending && self.task_ready(index) {
                self.enqueue_pending(index, false);
            }
        }
    }

    /// Removes the pending tasks of `stage` from the queues (their stage is no longer
    /// ready).
    pub(super) fn unqueue_stage(&mut self, stage: u32) {
        let range = self.stage_range(stage);
        for queue in self.pending_by_kind.values_mut() {
            queue.retain(|index| !range.contains(index));
        }
    }

    /// Removes one task from the queues.
    pub(super) fn unqueue_task(&mut self, index: u32) {
        for queue in self.pending_by_kind.values_mut() {
            queue.retain(|queued| *queued != index);
        }
    }

    /// Queues every pending task of `stage` (which just became ready), in task order.
    pub(super) fn queue_stage(&mut self, stage: u32) {
        for index in self.stage_range(stage) {
            if self.tasks[index as usize].state == TaskState::Pending {
                self.enqueue_pending(index, false);
            }
        }
    }

    /// Puts a pending task at the back (first attempts) or front (handed back) of its queue.
    fn enqueue_pending(&mut self, index: u32, at_front: bool) {
        let kind = self.spec.tasks[index as usize].kind.clone();
        let queue = self.pending_by_kind.entry(kind).or_default();
        if at_front {
            queue.push_front(index);
        } else {
            queue.push_back(index);
        }
    }

    /// Makes a task pending, queued (at the front or back) only when its stage is ready.
    pub(super) fn make_pending(&mut self, index: u32, at_front: bool) {
        self.set_task_state(index, TaskState::Pending);
        if self.task_ready(index) {
            self.enqueue_pending(index, at_front);
        }
    }

    /// Moves task `index` to `state`, keeping the counts and stage tallies in step.
    pub(super) fn set_task_state(&mut self, index: u32, state: TaskState) {
        let task = &mut self.tasks[index as usize];
        let stage = self.spec.tasks[index as usize].stage as usize;
        match (&task.state, &state) {
            (TaskState::Succeeded, TaskState::Succeeded) => {}
            (TaskState::Succeeded, _) => self.stage_unfinished[stage] += 1,
            (_, TaskState::Succeeded) => self.stage_unfinished[stage] -= 1,
            _ => {}
        }
        let waits =
            |state: &TaskState| matches!(state, TaskState::Pending | TaskState::Retrying { .. });
        match (waits(&task.state), waits(&state)) {
            (true, false) => self.stage_waiting[stage] -= 1,
            (false, true) => self.stage_waiting[stage] += 1,
            _ => {}
        }
        *self.counts.slot(&task.state) -= 1;
        *self.counts.slot(&state) += 1;
        task.state = state;
    }

    // ------------------------------------------------------------------ counters

    /// Adds a committed task's counters to the job's sums.
    pub(super) fn add_task_counters(&mut self, counters: &BTreeMap<String, u64>) {
        for (name, value) in counters {
            let sum = self.task_counters.entry(name.clone()).or_default();
            *sum = sum.saturating_add(*value);
        }
    }

    /// Takes a lost output's counters back out of the job's sums.
    pub(super) fn subtract_task_counters(&mut self, counters: &BTreeMap<String, u64>) {
        for (name, value) in counters {
            if let Some(sum) = self.task_counters.get_mut(name) {
                *sum = sum.saturating_sub(*value);
            }
        }
    }

    /// Records a successful attempt's duration for the straggler threshold.
    pub(super) fn record_duration(&mut self, duration_ms: Millis) {
        if self.duration_samples.len() < DURATION_SAMPLES {
            self.duration_samples.push(duration_ms);
        } else {
            self.duration_samples[self.next_sample_slot] = duration_ms;
            self.next_sample_slot = (self.next_sample_slot + 1) % DURATION_SAMPLES;
        }
    }
}

/// Returns true when one of `paths` lies under one of the worker's `data_dirs` (a
/// component-wise prefix: `/data/a` holds `/data/a/x` but not `/data/ab`).
pub(crate) fn is_local(paths: &[String], data_dirs: &[String]) -> bool {
    paths.iter().any(|path| {
        data_dirs.iter().any(|dir| {
            let dir = dir.trim_end_matches('/');
            path.strip_prefix(dir)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || dir.is_empty())
        })
    })
}
