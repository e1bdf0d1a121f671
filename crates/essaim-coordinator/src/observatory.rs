//! The observatory: the actor's record of what happened ([`History`]) and of how the
//! queues are doing ([`crate::queue`]), refreshed once a second and published as gauges.
//!
//! It lives beside the scheduler inside the actor, so it sees every durable event in
//! order without a lock, and reads (the REST API, the dashboard) get it through the same
//! [`crate::actor::Command::Query`] as the scheduler's state.

use crate::history::{History, WorkerLabel};
use crate::queue::{self, Capacity, JobLoad, QueueStats, QueueTargets, RateAverage};
use essaim_core::{Job, JobId, JobState, JournalEvent, Millis, Scheduler, TaskState, WorkerId};
use essaim_telemetry::{CoordinatorMetrics, QueueGaugeValues};
use std::collections::{BTreeMap, HashMap};

/// How often queue statistics and state gauges are refreshed.
pub const REFRESH_EVERY_MS: Millis = 1000;
/// Names of departed workers remembered, so that the history names a worker that died
/// (its lease expiries come after it left) rather than showing its id.
pub const WORKER_NAMES_KEPT: usize = 4096;

/// Rates of one running job.
#[derive(Debug, Clone, Default)]
struct JobRates {
    arrivals: RateAverage,
    completions: RateAverage,
    /// The job's one task kind, or `None` when it mixes kinds.
    single_kind: Option<Option<String>>,
}

/// History, rates and the last queue statistics.
#[derive(Debug)]
pub struct Observatory {
    history: History,
    rates: HashMap<JobId, JobRates>,
    targets: QueueTargets,
    cluster: Option<QueueStats>,
    jobs: BTreeMap<JobId, QueueStats>,
    last_refresh: Option<Millis>,
    /// Names of workers seen, live or gone, the oldest ids dropped first past
    /// [`WORKER_NAMES_KEPT`] (ids grow with registration order).
    worker_names: BTreeMap<WorkerId, String>,
}

impl Observatory {
    /// Returns an observatory with no history, aiming at `targets`.
    pub fn new(targets: QueueTargets) -> Self {
        Self {
            history: History::new(),
            rates: HashMap::new(),
            targets,
            cluster: None,
            jobs: BTreeMap::new(),
            last_refresh: None,
            worker_names: BTreeMap::new(),
        }
    }

    /// Remembers a registered worker's name.
    pub fn worker_registered(&mut self, worker: WorkerId, name: &str) {
        self.worker_names.insert(worker, name.to_string());
        while self.worker_names.len() > WORKER_NAMES_KEPT {
            self.worker_names.pop_first();
        }
    }

    /// Returns a worker's name, live or gone, if it was seen.
    pub fn worker_name(&self, scheduler: &Scheduler, worker: WorkerId) -> Option<String> {
        scheduler
            .worker(worker)
            .map(|w| w.info.name.clone())
            .or_else(|| self.worker_names.get(&worker).cloned())
    }

    /// Folds a durable event into the history.
    pub fn record(&mut self, event: &JournalEvent, scheduler: &Scheduler) {
        let names = &self.worker_names;
        self.history
            .record(event, &|worker| match scheduler.worker(worker) {
                Some(live) => Some(WorkerLabel {
                    name: live.info.name.clone(),
                    build: (!live.info.build.is_empty()).then(|| live.info.build.clone()),
                }),
                None => names.get(&worker).map(|name| WorkerLabel {
                    name: name.clone(),
                    build: None,
                }),
            });
    }

    /// Returns the history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Returns the history, for reads that move its cluster window forward.
    pub fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    /// Returns the cluster's queue statistics of the last refresh.
    pub fn cluster_queue(&self) -> Option<&QueueStats> {
        self.cluster.as_ref()
    }

    /// Returns a running job's queue statistics of the last refresh.
    pub fn job_queue(&self, job: JobId) -> Option<&QueueStats> {
        self.jobs.get(&job)
    }

    /// Returns the targets of the recommendation.
    pub fn targets(&self) -> QueueTargets {
        self.targets
    }

    /// Refreshes queue statistics and gauges if a second has passed since the last time.
    pub fn refresh_if_due(
        &mut self,
        now: Millis,
        scheduler: &Scheduler,
        metrics: &CoordinatorMetrics,
    ) {
        if self
            .last_refresh
            .is_some_and(|last| now < last + REFRESH_EVERY_MS)
        {
            return;
        }
        self.last_refresh = Some(now);
        self.refresh(now, scheduler, metrics);
    }

    fn refresh(&mut self, now: Millis, scheduler: &Scheduler, metrics: &CoordinatorMetrics) {
        self.history.retain(|job| scheduler.job(job).is_some());
        let mut capacity = Capacity {
            slots: 0,
            busy_slots: 0,
            workers: 0,
        };
        let mut heartbeat_age_max: Millis = 0;
        for (_, worker) in scheduler.workers() {
            capacity.workers += 1;
            capacity.slots += u64::from(worker.info.slots);
            capacity.busy_slots += u64::from(worker.busy_slots);
            heartbeat_age_max = heartbeat_age_max.max(now.saturating_sub(worker.last_seen));
        }

        let mut jobs_by_state: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut tasks: BTreeMap<(&'static str, String), i64> = BTreeMap::new();
        let mut loads = Vec::new();
        for job in scheduler.jobs() {
            *jobs_by_state.entry(job.state.name()).or_default() += 1;
            if job.state != JobState::Running {
                continue;
            }
            let rates = self.rates.entry(job.id).or_insert_with(|| JobRates {
                // The job's tasks arrived at submission: count them from before it.
                arrivals: RateAverage::starting_at(0, job.submitted_at.min(now)),
                completions: RateAverage::starting_at(0, job.submitted_at.min(now)),
                single_kind: None,
            });
            let single_kind = rates
                .single_kind
                .get_or_insert_with(|| single_kind(job))
                .clone();
            count_tasks(job, single_kind, &mut tasks);
            let counts = job.counts();
            let history = self.history.job(job.id);
            let committed = history.map_or(u64::from(counts.succeeded), |h| h.totals.committed);
            let load = JobLoad {
                arrival_rate: rates.arrivals.update(job.tasks().len() as u64, now),
                completion_rate: rates.completions.update(committed, now),
                mean_service_s: history
                    .and_then(|h| h.durations.mean_ms())
                    .map(|ms| ms / 1000.0),
                backlog: u64::from(counts.pending + counts.retrying + counts.running),
                running: u64::from(job.live_attempts()),
                max_concurrency: job.spec.max_concurrency,
            };
            loads.push((job.id, load));
        }
        self.rates.retain(|job, _| {
            scheduler
                .job(*job)
                .is_some_and(|j| j.state == JobState::Running)
        });

        // Jobs without a service time of their own borrow the cluster's (weighted by
        // committed tasks).
        let (sum, count) = loads
            .iter()
            .filter_map(|(_, load)| load.mean_service_s)
            .fold((0.0, 0u32), |(sum, count), s| (sum + s, count + 1));
        let fallback = (count > 0).then(|| sum / f64::from(count));
        self.jobs = loads
            .into_iter()
            .map(|(job, load)| {
                (
                    job,
                    queue::job_stats(&load, &capacity, &self.targets, fallback),
                )
            })
            .collect();
        let cluster = queue::cluster_stats(&self.jobs, &capacity, &self.targets);
        self.cluster = Some(cluster);

        metrics.set_jobs_by_state(&jobs_by_state.into_iter().collect::<Vec<_>>());
        metrics.set_tasks_by_state_and_kind(&tasks);
        metrics
            .heartbeat_age_max_seconds
            .set(heartbeat_age_max as f64 / 1000.0);
        metrics.set_cluster_queue(&gauge_values(&cluster));
        let per_job: Vec<(u64, QueueGaugeValues)> = self
            .jobs
            .iter()
            .map(|(job, stats)| (job.0, gauge_values(stats)))
            .collect();
        metrics.set_job_queues(&per_job);
    }
}

/// Returns the job's one task kind, or `None` when its tasks have several.
fn single_kind(job: &Job) -> Option<String> {
    let first = job.spec.tasks.first()?.kind.clone();
    job.spec
        .tasks
        .iter()
        .all(|task| task.kind == first)
        .then_some(first)
}

/// The `state` label of a task state.
pub fn task_state_name(state: &TaskState) -> &'static str {
    match state {
        TaskState::Pending => "pending",
        TaskState::Running { .. } => "running",
        TaskState::Retrying { .. } => "retrying",
        TaskState::Succeeded => "succeeded",
        TaskState::DeadLettered => "dead_lettered",
        TaskState::Purged => "purged",
        TaskState::Skipped => "skipped",
    }
}

/// Adds a running job's tasks to the counts by state and kind: from its counters when it
/// has one kind, by walking its tasks otherwise.
fn count_tasks(
    job: &Job,
    single_kind: Option<String>,
    tasks: &mut BTreeMap<(&'static str, String), i64>,
) {
    if let Some(kind) = single_kind {
        let counts = job.counts();
        for (state, count) in [
            ("pending", counts.pending),
            ("running", counts.running),
            ("retrying", counts.retrying),
            ("succeeded", counts.succeeded),
            ("dead_lettered", counts.dead_lettered),
            ("purged", counts.purged),
            ("skipped", counts.skipped),
        ] {
            *tasks.entry((state, kind.clone())).or_default() += i64::from(count);
        }
        return;
    }
    for (task, spec) in job.tasks().iter().zip(&job.spec.tasks) {
        *tasks
            .entry((task_state_name(task.state()), spec.kind.clone()))
            .or_default() += 1;
    }
}

fn gauge_values(stats: &QueueStats) -> QueueGaugeValues {
    QueueGaugeValues {
        arrival_rate: stats.arrival_rate,
        completion_rate: stats.completion_rate,
        service_time_seconds: stats.mean_service_s.unwrap_or(f64::NAN),
        backlog: stats.backlog as f64,
        utilisation: stats.utilisation,
        backlog_growth_rate: stats.backlog_growth.unwrap_or(f64::NAN),
        // "Never" is NaN too: the exposition would write +∞ as `inf`, which OpenMetrics
        // parsers need not accept; a positive backlog growth rate says "saturated".
        drain_seconds: stats
            .drain_seconds
            .filter(|seconds| seconds.is_finite())
            .unwrap_or(f64::NAN),
        recommended_workers: stats.recommended_workers as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::{
        AttemptError, AttemptId, JobSpec, SchedulerConfig, TaskFailure, TaskId, TaskSpec,
    };

    #[test]
    fn a_gone_worker_keeps_its_name_and_old_names_are_forgotten_first() {
        let scheduler = Scheduler::new(SchedulerConfig::default(), &["noop"]);
        let mut observatory = Observatory::new(QueueTargets::default());
        observatory.worker_registered(WorkerId(5), "worker-five");
        let spec = JobSpec {
            name: "j".into(),
            tasks: vec![TaskSpec {
                kind: "noop".into(),
                payload: Vec::new(),
                stage: 0,
                locality: Vec::new(),
            }],
            priority: 0,
            max_concurrency: None,
            max_attempts: 3,
            deadline: None,
            task_timeout_ms: None,
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            speculation_multiplier: None,
        };
        observatory.record(
            &JournalEvent::JobSubmitted {
                job: JobId(1),
                spec,
                at: 0,
            },
            &scheduler,
        );
        // The lease of a dead worker expires after it left the scheduler.
        observatory.record(
            &JournalEvent::AttemptFailed {
                task: TaskId::new(JobId(1), 0),
                error: AttemptError {
                    attempt: AttemptId(1),
                    worker: WorkerId(5),
                    at: 10,
                    failure: TaskFailure::retryable("lease expired"),
                },
            },
            &scheduler,
        );
        let history = observatory.history().job(JobId(1)).expect("recorded");
        assert_eq!(history.workers[&WorkerId(5)].name, "worker-five");
        for id in 100..100 + WORKER_NAMES_KEPT as u64 {
            observatory.worker_registered(WorkerId(id), "later");
        }
        assert_eq!(observatory.worker_name(&scheduler, WorkerId(5)), None);
        assert_eq!(
            observatory
                .worker_name(&scheduler, WorkerId(100))
                .as_deref(),
            Some("later")
        );
    }
}
