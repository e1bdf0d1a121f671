//! What happened over time: the record behind the dashboard's charts, the job report and
//! the queue statistics.
//!
//! The scheduler knows where every task stands *now*; an operator also asks how the job
//! got there: throughput over time, which worker did how much, how long tasks took,
//! when failures came. That history is folded from the journal events the actor makes
//! durable (so a restarted coordinator rebuilds it from the same journal), into
//! aggregates whose size is fixed by constants, never by the number of tasks:
//!
//! - a job's timeline has at most [`MAX_JOB_BUCKETS`] buckets; when it would grow
//!   past that, neighbouring buckets are merged and the bucket width doubles, so a
//!   ten-second job and a ten-hour job both get a full-width chart;
//! - the cluster keeps the last [`CLUSTER_WINDOW_SECONDS`] seconds, one bucket a second;
//! - per-worker shares are capped at [`MAX_WORKERS_PER_JOB`] (the rest count as one);
//! - durations go into a log-scale histogram, with the slowest few kept by task;
//! - only the most recent failures are kept, each with its standard-error tail.
//!
//! Failed attempts carry no duration in the journal, so a worker's busy time counts the
//! attempts it committed. Snapshot events carry no timing, so after a journal compaction
//! the history of the tasks committed before it starts empty (the counts in the
//! scheduler stay exact).

use essaim_core::{AttemptError, CommittedResult, JobId, JournalEvent, Millis, TaskId, WorkerId};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Most buckets in a job's timeline.
pub const MAX_JOB_BUCKETS: usize = 240;
/// Width of a job timeline's buckets until the job outgrows them.
pub const FIRST_BUCKET_MS: Millis = 1000;
/// Seconds of cluster-wide history kept.
pub const CLUSTER_WINDOW_SECONDS: usize = 900;
/// Most workers with their own share in a job's history.
pub const MAX_WORKERS_PER_JOB: usize = 1024;
/// Slowest committed attempts kept per job.
pub const SLOWEST_KEPT: usize = 10;
/// Most recent failures kept per job.
pub const RECENT_FAILURES_KEPT: usize = 20;
/// Upper bounds of the duration histogram: 1 ms doubling 24 times (~2.3 h), then +Inf.
pub const DURATION_BOUNDS_MS: [Millis; 24] = {
    let mut bounds = [0; 24];
    let mut index = 0;
    while index < 24 {
        bounds[index] = 1 << index;
        index += 1;
    }
    bounds
};

/// Counts of what happened in one time bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Tasks submitted.
    pub submitted: u64,
    /// Results committed.
    pub committed: u64,
    /// Attempts that failed (errors, lost leases, timeouts).
    pub failed: u64,
    /// Tasks moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Committed outputs lost and recomputed.
    pub outputs_lost: u64,
    /// Sum of the durations of the committed attempts, in milliseconds.
    pub busy_ms: u64,
}

impl Bucket {
    fn add(&mut self, other: &Bucket) {
        self.submitted += other.submitted;
        self.committed += other.committed;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
        self.outputs_lost += other.outputs_lost;
        self.busy_ms += other.busy_ms;
    }
}

/// A job's counts over time, from its submission, in buckets of equal width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Start of the first bucket.
    pub origin_ms: Millis,
    /// Width of every bucket.
    pub bucket_ms: Millis,
    /// The buckets, oldest first; never more than [`MAX_JOB_BUCKETS`].
    pub buckets: Vec<Bucket>,
}

impl Timeline {
    fn new(origin_ms: Millis) -> Self {
        Self {
            origin_ms,
            bucket_ms: FIRST_BUCKET_MS,
            buckets: Vec::new(),
        }
    }

    /// Returns the bucket holding time `at` (earlier times land in the first bucket),
    /// widening the buckets as often as needed to keep their number bounded.
    fn bucket_at(&mut self, at: Millis) -> &mut Bucket {
        let offset = at.saturating_sub(self.origin_ms);
        let mut index = (offset / self.bucket_ms) as usize;
        while index >= MAX_JOB_BUCKETS {
            self.halve_resolution();
            index = (offset / self.bucket_ms) as usize;
        }
        if self.buckets.len() <= index {
            self.buckets.resize(index + 1, Bucket::default());
        }
        &mut self.buckets[index]
    }

    fn halve_resolution(&mut self) {
        let merged = self
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut sum = pair[0];
                if let Some(second) = pair.get(1) {
                    sum.add(second);
                }
                sum
            })
            .collect();
        self.buckets = merged;
        self.bucket_ms *= 2;
    }
}

/// The last [`CLUSTER_WINDOW_SECONDS`] seconds of the whole cluster, one bucket a second.
#[derive(Debug, Clone)]
pub struct ClusterWindow {
    /// The second (since the Unix epoch) of the newest bucket.
    newest_second: u64,
    buckets: VecDeque<Bucket>,
}

impl ClusterWindow {
    fn new() -> Self {
        Self {
            newest_second: 0,
            buckets: VecDeque::with_capacity(CLUSTER_WINDOW_SECONDS),
        }
    }

    /// Moves the window forward to `now`, opening empty buckets for the seconds passed.
    fn advance(&mut self, now: Millis) {
        let second = now / 1000;
        if self.buckets.is_empty() {
            self.newest_second = second;
            self.buckets.push_back(Bucket::default());
            return;
        }
        if second <= self.newest_second {
            return;
        }
        let gap = (second - self.newest_second).min(CLUSTER_WINDOW_SECONDS as u64);
        for _ in 0..gap {
            if self.buckets.len() == CLUSTER_WINDOW_SECONDS {
                self.buckets.pop_front();
            }
            self.buckets.push_back(Bucket::default());
        }
        self.newest_second = second;
    }

    /// Returns the bucket of time `at`, or `None` when it fell out of the window (or is
    /// ahead of it: the window only moves forward with the clock).
    fn bucket_at(&mut self, at: Millis) -> Option<&mut Bucket> {
        self.advance(at);
        let age = self.newest_second.checked_sub(at / 1000)? as usize;
        let len = self.buckets.len();
        (age < len).then(|| &mut self.buckets[len - 1 - age])
    }

    /// Returns `(second since the epoch, bucket)` pairs, oldest first, up to `now`.
    pub fn series(&mut self, now: Millis) -> Vec<(u64, Bucket)> {
        self.advance(now);
        let first = self.newest_second + 1 - self.buckets.len() as u64;
        self.buckets
            .iter()
            .enumerate()
            .map(|(offset, bucket)| (first + offset as u64, *bucket))
            .collect()
    }

    /// Sums the buckets of the last `seconds` complete seconds before `now`.
    pub fn sum_last(&mut self, now: Millis, seconds: usize) -> Bucket {
        self.advance(now);
        let mut sum = Bucket::default();
        // The newest bucket is the second in progress: leave it out.
        for bucket in self.buckets.iter().rev().skip(1).take(seconds) {
            sum.add(bucket);
        }
        sum
    }
}

/// How a worker is shown: its name and the build it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerLabel {
    /// Its name.
    pub name: String,
    /// Its build, `None` when it did not say or is gone.
    pub build: Option<String>,
}

/// What one worker did for a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerShare {
    /// The worker's name when its first attempt was recorded.
    pub name: String,
    /// The build it ran then, if known.
    pub build: Option<String>,
    /// Results it committed.
    pub committed: u64,
    /// Attempts of it that failed.
    pub failed: u64,
    /// Sum of the durations of the attempts it committed, in milliseconds.
    pub busy_ms: u64,
}

/// A committed attempt, kept among a job's slowest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowTask {
    /// The task's index.
    pub task_index: u32,
    /// Its duration.
    pub duration_ms: Millis,
    /// The worker that ran it.
    pub worker: String,
}

/// A failed attempt, kept among a job's most recent failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentFailure {
    /// The task's index.
    pub task_index: u32,
    /// The failed attempt and where and when it failed.
    pub error: AttemptError,
    /// The worker's name, if it was known.
    pub worker: String,
}

/// Durations of committed attempts, on a log scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Attempts per bucket: bucket `i` holds durations up to [`DURATION_BOUNDS_MS`]`[i]`,
    /// the last one everything longer.
    pub counts: [u64; DURATION_BOUNDS_MS.len() + 1],
    /// Attempts recorded.
    pub count: u64,
    /// Sum of their durations.
    pub sum_ms: u64,
    /// The shortest.
    pub min_ms: Millis,
    /// The longest.
    pub max_ms: Millis,
}

impl Default for DurationHistogram {
    fn default() -> Self {
        Self {
            counts: [0; DURATION_BOUNDS_MS.len() + 1],
            count: 0,
            sum_ms: 0,
            min_ms: Millis::MAX,
            max_ms: 0,
        }
    }
}

impl DurationHistogram {
    fn record(&mut self, duration_ms: Millis) {
        let bucket = DURATION_BOUNDS_MS.partition_point(|bound| *bound < duration_ms);
        self.counts[bucket] += 1;
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(duration_ms);
        self.min_ms = self.min_ms.min(duration_ms);
        self.max_ms = self.max_ms.max(duration_ms);
    }

    /// Returns the mean duration, if any attempt was recorded.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms as f64 / self.count as f64)
    }

    /// Returns an upper bound of the `q` quantile (0..=1): the bound of the bucket it
    /// falls in, capped by the longest duration seen.
    pub fn quantile_upper_bound_ms(&self, q: f64) -> Option<Millis> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let bound = DURATION_BOUNDS_MS
                    .get(index)
                    .copied()
                    .unwrap_or(Millis::MAX);
                return Some(bound.min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }
}

/// Everything kept about one job's past.
#[derive(Debug, Clone)]
pub struct JobHistory {
    /// Counts over time.
    pub timeline: Timeline,
    /// What each worker did.
    pub workers: BTreeMap<WorkerId, WorkerShare>,
    /// Durations of committed attempts.
    pub durations: DurationHistogram,
    /// The slowest committed attempts, slowest first.
    pub slowest: Vec<SlowTask>,
    /// The most recent failures, oldest first.
    pub recent_failures: VecDeque<RecentFailure>,
    /// Totals over the job's life, the same as the timeline's sums.
    pub totals: Bucket,
}

/// The worker share under which workers past [`MAX_WORKERS_PER_JOB`] are counted.
pub const OTHER_WORKERS: WorkerId = WorkerId(u64::MAX);

impl JobHistory {
    fn new(submitted_at: Millis) -> Self {
        Self {
            timeline: Timeline::new(submitted_at),
            workers: BTreeMap::new(),
            durations: DurationHistogram::default(),
            slowest: Vec::new(),
            recent_failures: VecDeque::new(),
            totals: Bucket::default(),
        }
    }

    fn share(&mut self, worker: WorkerId, label: impl FnOnce() -> WorkerLabel) -> &mut WorkerShare {
        let worker =
            if self.workers.contains_key(&worker) || self.workers.len() < MAX_WORKERS_PER_JOB {
                worker
            } else {
                OTHER_WORKERS
            };
        self.workers.entry(worker).or_insert_with(|| {
            let label = if worker == OTHER_WORKERS {
                WorkerLabel {
                    name: "other workers".to_string(),
                    build: None,
                }
            } else {
                label()
            };
            WorkerShare {
                name: label.name,
                build: label.build,
                ..WorkerShare::default()
            }
        })
    }

    fn record_slow(
        &mut self,
        task_index: u32,
        duration_ms: Millis,
        worker: impl FnOnce() -> String,
    ) {
        let slowest_enough = self.slowest.len() < SLOWEST_KEPT
            || self
                .slowest
                .last()
                .is_some_and(|fastest| fastest.duration_ms < duration_ms);
        if !slowest_enough {
            return;
        }
        // A recomputed task appears once, with its slowest duration.
        if let Some(existing) = self.slowest.iter_mut().find(|s| s.task_index == task_index) {
            if existing.duration_ms >= duration_ms {
                return;
            }
            existing.duration_ms = duration_ms;
            existing.worker = worker();
        } else {
            self.slowest.push(SlowTask {
                task_index,
                duration_ms,
                worker: worker(),
            });
        }
        self.slowest.sort_by(|a, b| {
            b.duration_ms
                .cmp(&a.duration_ms)
                .then(a.task_index.cmp(&b.task_index))
        });
        self.slowest.truncate(SLOWEST_KEPT);
    }
}

/// The history of the cluster and of every job the scheduler still knows.
#[derive(Debug, Clone)]
pub struct History {
    cluster: ClusterWindow,
    jobs: HashMap<JobId, JobHistory>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// Returns an empty history.
    pub fn new() -> Self {
        Self {
            cluster: ClusterWindow::new(),
            jobs: HashMap::new(),
        }
    }

    /// Folds one durable event into the history. `worker_label` names a worker id (the
    /// id is shown when it has none).
    pub fn record(
        &mut self,
        event: &JournalEvent,
        worker_label: &dyn Fn(WorkerId) -> Option<WorkerLabel>,
    ) {
        // Labels are looked up (and allocated) only where one is kept: a new worker
        // share, a slow task, a failure. The hot path, a commit by a known worker, needs
        // none.
        let label_of = |worker: WorkerId| {
            worker_label(worker).unwrap_or_else(|| WorkerLabel {
                name: worker.to_string(),
                build: None,
            })
        };
        match event {
            JournalEvent::JobSubmitted { job, spec, at } => {
                let history = self
                    .jobs
                    .entry(*job)
                    .or_insert_with(|| JobHistory::new(*at));
                let submitted = spec.tasks.len() as u64;
                history.timeline.bucket_at(*at).submitted += submitted;
                history.totals.submitted += submitted;
                if let Some(bucket) = self.cluster.bucket_at(*at) {
                    bucket.submitted += submitted;
                }
            }
            JournalEvent::TaskSucceeded { result, at } => {
                self.record_commit(result, *at, || label_of(result.worker));
            }
            JournalEvent::AttemptFailed { task, error } => {
                self.record_failure(*task, error, label_of(error.worker), false);
            }
            JournalEvent::TaskOutputLost { task, error } => {
                self.record_failure(*task, error, label_of(error.worker), true);
            }
            JournalEvent::TaskDeadLettered { task, at } => {
                if let Some(bucket) = self.cluster.bucket_at(*at) {
                    bucket.dead_lettered += 1;
                }
                if let Some(history) = self.jobs.get_mut(&task.job) {
                    history.timeline.bucket_at(*at).dead_lettered += 1;
                    history.totals.dead_lettered += 1;
                }
            }
            JournalEvent::JobCancelled { .. }
            | JournalEvent::DeadLettersRequeued { .. }
            | JournalEvent::DeadLettersPurged { .. }
            | JournalEvent::TasksCommitted { .. }
            | JournalEvent::TaskProgress { .. }
            | JournalEvent::OutputLocations { .. }
            | JournalEvent::ResultsOnWorkers { .. }
            | JournalEvent::TaskCountersSummed { .. }
            | JournalEvent::JobIdsReserved { .. }
            | JournalEvent::JobSupersedeKey { .. }
            | JournalEvent::JobProcessingVersion { .. }
            | JournalEvent::JobSlowStart { .. }
            | JournalEvent::JobOwner { .. }
            | JournalEvent::JobPlacement { .. }
            | JournalEvent::JobAntiAffinity { .. } => {}
        }
    }

    fn record_commit(
        &mut self,
        result: &CommittedResult,
        at: Millis,
        worker_label: impl Fn() -> WorkerLabel,
    ) {
        let duration = result.duration_ms;
        if let Some(bucket) = self.cluster.bucket_at(at) {
            bucket.committed += 1;
            bucket.busy_ms += duration;
        }
        let Some(history) = self.jobs.get_mut(&result.task.job) else {
            return;
        };
        let bucket = history.timeline.bucket_at(at);
        bucket.committed += 1;
        bucket.busy_ms += duration;
        history.totals.committed += 1;
        history.totals.busy_ms += duration;
        history.durations.record(duration);
        let share = history.share(result.worker, &worker_label);
        share.committed += 1;
        share.busy_ms += duration;
        history.record_slow(result.task.index, duration, || worker_label().name);
    }

    fn record_failure(
        &mut self,
        task: TaskId,
        error: &AttemptError,
        worker: WorkerLabel,
        output_lost: bool,
    ) {
        if let Some(bucket) = self.cluster.bucket_at(error.at) {
            if output_lost {
                bucket.outputs_lost += 1;
            } else {
                bucket.failed += 1;
            }
        }
        let Some(history) = self.jobs.get_mut(&task.job) else {
            return;
        };
        let bucket = history.timeline.bucket_at(error.at);
        if output_lost {
            bucket.outputs_lost += 1;
            history.totals.outputs_lost += 1;
        } else {
            bucket.failed += 1;
            history.totals.failed += 1;
            history.share(error.worker, || worker.clone()).failed += 1;
        }
        if history.recent_failures.len() == RECENT_FAILURES_KEPT {
            history.recent_failures.pop_front();
        }
        history.recent_failures.push_back(RecentFailure {
            task_index: task.index,
            error: error.clone(),
            worker: worker.name,
        });
    }

    /// Forgets the history of jobs the scheduler forgot.
    pub fn forget(&mut self, jobs: &[JobId]) {
        for job in jobs {
            self.jobs.remove(job);
        }
    }

    /// Keeps only the jobs `keep` says the scheduler still has.
    pub fn retain(&mut self, keep: impl Fn(JobId) -> bool) {
        self.jobs.retain(|job, _| keep(*job));
    }

    /// Returns one job's history.
    pub fn job(&self, job: JobId) -> Option<&JobHistory> {
        self.jobs.get(&job)
    }

    /// Returns the cluster's last seconds, oldest first, as `(second, bucket)`.
    pub fn cluster_series(&mut self, now: Millis) -> Vec<(u64, Bucket)> {
        self.cluster.series(now)
    }

    /// Sums the cluster's last `seconds` complete seconds.
    pub fn cluster_last(&mut self, now: Millis, seconds: usize) -> Bucket {
        self.cluster.sum_last(now, seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::{AttemptId, JobSpec, TaskFailure, TaskOutput, TaskSpec};

    fn spec(tasks: usize) -> JobSpec {
        JobSpec {
            name: "t".into(),
            tasks: (0..tasks)
                .map(|_| TaskSpec {
                    kind: "noop".into(),
                    payload: Vec::new(),
                    stage: 0,
                    locality: Vec::new(),
                })
                .collect(),
            priority: 0,
            max_concurrency: None,
            max_attempts: 3,
            deadline: None,
            task_timeout_ms: None,
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            speculation_multiplier: None,
        }
    }

    fn commit(job: u64, index: u32, worker: u64, duration_ms: Millis, at: Millis) -> JournalEvent {
        JournalEvent::TaskSucceeded {
            result: CommittedResult {
                task: TaskId::new(JobId(job), index),
                attempt: AttemptId(u64::from(index) + 100),
                worker: WorkerId(worker),
                duration_ms,
                output: TaskOutput::default(),
            },
            at,
        }
    }

    fn names(worker: WorkerId) -> Option<WorkerLabel> {
        (worker.0 < 10).then(|| WorkerLabel {
            name: format!("w{}", worker.0),
            build: Some("0.1.0 (test)".into()),
        })
    }

    #[test]
    fn timeline_widens_instead_of_growing_past_its_bound() {
        let mut history = History::new();
        history.record(
            &JournalEvent::JobSubmitted {
                job: JobId(1),
                spec: spec(10_000),
                at: 0,
            },
            &names,
        );
        // One commit a second for 10,000 seconds.
        for index in 0..10_000u32 {
            history.record(&commit(1, index, 1, 5, u64::from(index) * 1000), &names);
        }
        let job = history.job(JobId(1)).expect("job recorded");
        assert!(job.timeline.buckets.len() <= MAX_JOB_BUCKETS);
        assert!(job.timeline.bucket_ms >= 10_000_000 / MAX_JOB_BUCKETS as u64);
        let committed: u64 = job.timeline.buckets.iter().map(|b| b.committed).sum();
        assert_eq!(committed, 10_000, "merging keeps every count");
        assert_eq!(job.totals.committed, 10_000);
        assert_eq!(job.timeline.buckets[0].submitted, 10_000);
        assert_eq!(job.workers[&WorkerId(1)].busy_ms, 50_000);
    }

    #[test]
    fn worker_shares_slowest_and_failures_are_bounded_and_right() {
        let mut history = History::new();
        history.record(
            &JournalEvent::JobSubmitted {
                job: JobId(2),
                spec: spec(100),
                at: 1_000,
            },
            &names,
        );
        for index in 0..100u32 {
            let worker = u64::from(index % 4);
            history.record(&commit(2, index, worker, u64::from(index), 2_000), &names);
        }
        for index in 0..30u32 {
            history.record(
                &JournalEvent::AttemptFailed {
                    task: TaskId::new(JobId(2), index),
                    error: AttemptError {
                        attempt: AttemptId(9),
                        worker: WorkerId(20),
                        at: 3_000,
                        failure: TaskFailure::retryable(format!("boom {index}")),
                    },
                },
                &names,
            );
        }
        let job = history.job(JobId(2)).expect("job recorded");
        assert_eq!(job.workers.len(), 5);
        assert_eq!(job.workers[&WorkerId(0)].committed, 25);
        assert_eq!(job.workers[&WorkerId(0)].name, "w0");
        assert_eq!(job.workers[&WorkerId(20)].failed, 30);
        assert_eq!(job.workers[&WorkerId(20)].name, WorkerId(20).to_string());
        let slowest: Vec<u32> = job.slowest.iter().map(|s| s.task_index).collect();
        assert_eq!(slowest, (90..100).rev().collect::<Vec<_>>());
        assert_eq!(job.recent_failures.len(), RECENT_FAILURES_KEPT);
        assert_eq!(
            job.recent_failures
                .back()
                .map(|f| f.error.failure.message.as_str()),
            Some("boom 29")
        );
        assert_eq!(job.durations.count, 100);
        assert_eq!(job.durations.min_ms, 0);
        assert_eq!(job.durations.max_ms, 99);
        assert_eq!(job.durations.mean_ms(), Some(49.5));
        // 50 of 100 durations are <= 49, so the median lies in the bucket up to 64.
        assert_eq!(job.durations.quantile_upper_bound_ms(0.5), Some(64));
        assert_eq!(job.durations.quantile_upper_bound_ms(1.0), Some(99));
    }

    #[test]
    fn cluster_window_slides_and_sums_complete_seconds() {
        let mut history = History::new();
        history.record(&commit(7, 0, 1, 10, 5_000), &names);
        history.record(&commit(7, 1, 1, 10, 5_500), &names);
        history.record(&commit(7, 2, 1, 10, 6_100), &names);
        let last = history.cluster_last(7_000, 60);
        assert_eq!(last.committed, 3);
        let series = history.cluster_series(7_000);
        assert_eq!(series.first().map(|(s, b)| (*s, b.committed)), Some((5, 2)));
        // Far later, the window holds only its last seconds.
        let later = 5_000 + (CLUSTER_WINDOW_SECONDS as u64 + 10) * 1000;
        assert_eq!(history.cluster_last(later, 60).committed, 0);
        assert_eq!(history.cluster_series(later).len(), CLUSTER_WINDOW_SECONDS);
        // An event older than the window is dropped from the cluster view.
        history.record(&commit(7, 3, 1, 10, 1_000), &names);
        let total: u64 = history
            .cluster_series(later)
            .iter()
            .map(|(_, b)| b.committed)
            .sum();
        assert_eq!(total, 0);
    }

    #[test]
    fn forgotten_jobs_leave_the_history() {
        let mut history = History::new();
        for job in 1..=3 {
            history.record(
                &JournalEvent::JobSubmitted {
                    job: JobId(job),
                    spec: spec(1),
                    at: 0,
                },
                &names,
            );
        }
        history.forget(&[JobId(1)]);
        history.retain(|job| job != JobId(2));
        assert!(history.job(JobId(1)).is_none());
        assert!(history.job(JobId(2)).is_none());
        assert!(history.job(JobId(3)).is_some());
    }
}
