//! Every metric the coordinator exposes, `essaim_coordinator_*`, with its bounded
//! label sets and bucket layouts.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::queue::{QueueGaugeValues, QueueGauges, queue_values, register_queue_gauges};
use super::{FloatGauge, JOB_DURATION_BUCKETS_SECONDS, JobOutcome, task_duration_buckets};

/// The name of a task counter (`map.input.records`, …).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CounterNameLabels {
    name: String,
}

/// Most distinct task counter names exported; jobs may name their own counters, and a
/// label set must stay bounded. Counters past the limit are summed under `other`.
const MAX_TASK_COUNTER_NAMES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobStateLabels {
    state: JobOutcome,
}

/// A job state (`running`, `succeeded`, …), from a fixed set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// A task state from a fixed set, and a task kind (bounded by [`MAX_TASK_KINDS`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateKindLabels {
    state: &'static str,
    kind: String,
}

/// A running job's id: bounded because only running jobs are exported, at most
/// [`MAX_JOBS_WITH_QUEUE_SERIES`] of them, and a job's series go when it ends. Named
/// `job_id`, not `job`: Prometheus's own `job` label (the scrape job) would shadow it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobLabels {
    job_id: String,
}

/// Most task kinds with series of their own; tasks of further kinds count as `other`.
pub const MAX_TASK_KINDS: usize = 64;
/// Most running jobs with per-job queue series (the most recently submitted win).
pub const MAX_JOBS_WITH_QUEUE_SERIES: usize = 64;

/// `&'static str` rather than `String`: method names are compile-time constants, and
/// the type stops a request path or an ID from sneaking in as a label value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcMethodLabels {
    method: &'static str,
}

/// 50 µs doubling 17 times: up to ~3.3 s, enough to see a stalled fsync.
fn journal_commit_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(50e-6, 2.0, 17)
}

/// 1, 2, 4, … 4096 events per journal batch.
fn journal_batch_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1.0, 2.0, 13)
}

/// 100 µs doubling 16 times: up to ~3.3 s per RPC.
fn new_rpc_histogram() -> Histogram {
    Histogram::new(exponential_buckets(100e-6, 2.0, 16))
}

/// Every metric the coordinator exposes, named `essaim_coordinator_*`.
///
/// Cloning is cheap: each handle is an `Arc` around the shared value, so clones update
/// the same series.
#[derive(Clone, Debug)]
pub struct CoordinatorMetrics {
    /// Jobs accepted by the coordinator.
    pub jobs_submitted_total: Counter,
    /// Jobs that reached a final state, by state. Private: updated only through
    /// [`Self::record_job_finished`], which keeps the label set bounded.
    jobs_finished_total: Family<JobStateLabels, Counter>,
    /// Time from submission to final state, by state: the latency of jobs' service-level
    /// objectives. Updated through [`Self::record_job_finished`].
    job_duration_seconds: Family<JobStateLabels, Histogram, fn() -> Histogram>,
    /// Task results committed to the journal.
    pub tasks_committed_total: Counter,
    /// Task attempts leased to a worker.
    pub attempts_started_total: Counter,
    /// Task attempts that reported a failure.
    pub attempts_failed_total: Counter,
    /// Results rejected as late or from a zombie attempt.
    pub results_rejected_total: Counter,
    /// Leases that expired before a result arrived.
    pub lease_expiries_total: Counter,
    /// Attempts a worker still held from an older epoch (granted before a restart or a
    /// failover, which does not carry leases over): their tasks run again.
    pub attempts_from_older_epoch_total: Counter,
    /// Failed or lost attempts scheduled for retry.
    pub retries_scheduled_total: Counter,
    /// Tasks moved to the dead-letter queue.
    pub dead_lettered_total: Counter,
    /// Speculative duplicate attempts started for slow tasks.
    pub speculative_attempts_total: Counter,
    /// Attempts started early (slow start), before the stage they read was complete.
    pub early_attempts_total: Counter,
    /// Early attempts handed back so that the tasks they waited for got a slot.
    pub early_attempts_handed_back_total: Counter,
    /// Worker registrations.
    pub workers_registered_total: Counter,
    /// Workers declared lost after missing heartbeats.
    pub workers_lost_total: Counter,
    /// Committed stage outputs found lost or corrupt and recomputed.
    pub outputs_lost_total: Counter,
    /// Tasks with input paths granted to a worker holding one of them.
    pub local_grants_total: Counter,
    /// Tasks with input paths granted to a worker holding none of them.
    pub remote_grants_total: Counter,
    /// Sums of the counters committed tasks reported (records and bytes in and out,
    /// spills, shuffle bytes…), by counter name. Private: see
    /// [`Self::record_task_counter`], which bounds the names.
    task_counters_total: Family<CounterNameLabels, Counter>,
    /// Distinct names in `task_counters_total` (approximately: past the limit it only
    /// grows).
    task_counter_names: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The task series published last, to remove those that disappear.
    published_task_series: std::sync::Arc<std::sync::Mutex<Vec<(&'static str, String)>>>,
    /// The jobs with queue series published last.
    published_job_queues: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    /// Workers currently registered.
    pub workers: Gauge,
    /// Task slots offered by registered workers.
    pub slots: Gauge,
    /// Task slots currently running an attempt.
    pub busy_slots: Gauge,
    /// Tasks currently in the dead-letter queue.
    pub dlq_size: Gauge,
    /// Tasks waiting for a slot.
    pub tasks_pending: Gauge,
    /// Tasks with at least one attempt running.
    pub tasks_running: Gauge,
    /// Time to make a journal batch durable.
    pub journal_commit_seconds: Histogram,
    /// Events per journal batch.
    pub journal_batch_events: Histogram,
    /// Time to serve a gRPC call, by method. Private: updated only through
    /// [`Self::record_rpc`], which keeps the label set bounded.
    rpc_duration_seconds: Family<RpcMethodLabels, Histogram>,
    /// Run time of committed attempts, as their workers measured it.
    pub task_duration_seconds: Histogram,
    /// Jobs the coordinator holds, by state. See [`Self::set_jobs_by_state`].
    jobs: Family<StateLabels, Gauge>,
    /// Tasks of running jobs by state and kind. See [`Self::set_tasks_by_state_and_kind`].
    tasks: Family<StateKindLabels, Gauge>,
    /// Longest silence of a live worker.
    pub heartbeat_age_max_seconds: FloatGauge,
    /// Cluster-wide queue statistics.
    queue: QueueGauges<FloatGauge>,
    /// Queue statistics of running jobs, by job.
    job_queue: QueueGauges<Family<JobLabels, FloatGauge>>,
}

impl CoordinatorMetrics {
    /// Creates every coordinator metric and registers it in `registry`.
    ///
    /// Call it once per registry: registering twice would expose each name twice.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        metrics.register_counters(registry);
        metrics.register_gauges(registry);
        metrics.register_histograms(registry);
        metrics
    }

    /// Creates every metric, registered nowhere yet.
    fn unregistered() -> Self {
        let metrics = Self {
            jobs_submitted_total: Counter::default(),
            jobs_finished_total: Family::default(),
            job_duration_seconds: Family::new_with_constructor(job_duration_histogram),
            tasks_committed_total: Counter::default(),
            attempts_started_total: Counter::default(),
            attempts_failed_total: Counter::default(),
            results_rejected_total: Counter::default(),
            lease_expiries_total: Counter::default(),
            attempts_from_older_epoch_total: Counter::default(),
            retries_scheduled_total: Counter::default(),
            dead_lettered_total: Counter::default(),
            speculative_attempts_total: Counter::default(),
            early_attempts_total: Counter::default(),
            early_attempts_handed_back_total: Counter::default(),
            workers_registered_total: Counter::default(),
            workers_lost_total: Counter::default(),
            outputs_lost_total: Counter::default(),
            local_grants_total: Counter::default(),
            remote_grants_total: Counter::default(),
            task_counters_total: Family::default(),
            task_counter_names: Default::default(),
            published_task_series: Default::default(),
            published_job_queues: Default::default(),
            workers: Gauge::default(),
            slots: Gauge::default(),
            busy_slots: Gauge::default(),
            dlq_size: Gauge::default(),
            tasks_pending: Gauge::default(),
            tasks_running: Gauge::default(),
            journal_commit_seconds: Histogram::new(journal_commit_buckets()),
            journal_batch_events: Histogram::new(journal_batch_buckets()),
            rpc_duration_seconds: Family::new_with_constructor(new_rpc_histogram),
            task_duration_seconds: Histogram::new(task_duration_buckets()),
            jobs: Family::default(),
            tasks: Family::default(),
            heartbeat_age_max_seconds: FloatGauge::default(),
            queue: QueueGauges::default(),
            job_queue: QueueGauges::default(),
        };
        // An empty family exposes nothing, not even its HELP line; creating the three
        // outcome series up front makes them scrape as 0 so `rate()` works from the start.
        for state in [
            JobOutcome::Succeeded,
            JobOutcome::Failed,
            JobOutcome::Cancelled,
        ] {
            metrics
                .jobs_finished_total
                .get_or_create_owned(&JobStateLabels { state });
            metrics
                .job_duration_seconds
                .get_or_create_owned(&JobStateLabels { state });
        }
        metrics
    }

    /// Registers the counters (`_total` is appended by the encoder).
    fn register_counters(&self, registry: &mut Registry) {
        registry.register(
            "essaim_coordinator_jobs_submitted",
            "Jobs accepted by the coordinator",
            self.jobs_submitted_total.clone(),
        );
        registry.register(
            "essaim_coordinator_jobs_finished",
            "Jobs that reached a final state, by state",
            self.jobs_finished_total.clone(),
        );
        registry.register(
            "essaim_coordinator_tasks_committed",
            "Task results committed to the journal",
            self.tasks_committed_total.clone(),
        );
        registry.register(
            "essaim_coordinator_attempts_started",
            "Task attempts leased to a worker",
            self.attempts_started_total.clone(),
        );
        registry.register(
            "essaim_coordinator_attempts_failed",
            "Task attempts that reported a failure",
            self.attempts_failed_total.clone(),
        );
        registry.register(
            "essaim_coordinator_results_rejected",
            "Results rejected as late or from a zombie attempt",
            self.results_rejected_total.clone(),
        );
        registry.register(
            "essaim_coordinator_attempts_from_older_epoch",
            "Attempts workers still held from before a restart or failover; their tasks run again",
            self.attempts_from_older_epoch_total.clone(),
        );
        registry.register(
            "essaim_coordinator_lease_expiries",
            "Leases that expired before a result arrived",
            self.lease_expiries_total.clone(),
        );
        registry.register(
            "essaim_coordinator_retries_scheduled",
            "Failed or lost attempts scheduled for retry",
            self.retries_scheduled_total.clone(),
        );
        registry.register(
            "essaim_coordinator_dead_lettered",
            "Tasks moved to the dead-letter queue",
            self.dead_lettered_total.clone(),
        );
        registry.register(
            "essaim_coordinator_speculative_attempts",
            "Speculative duplicate attempts started for slow tasks",
            self.speculative_attempts_total.clone(),
        );
        registry.register(
            "essaim_coordinator_early_attempts",
            "Attempts started early (slow start), before the stage they read was complete",
            self.early_attempts_total.clone(),
        );
        registry.register(
            "essaim_coordinator_early_attempts_handed_back",
            "Early attempts handed back so that the tasks they waited for got a slot",
            self.early_attempts_handed_back_total.clone(),
        );
        registry.register(
            "essaim_coordinator_workers_registered",
            "Worker registrations",
            self.workers_registered_total.clone(),
        );
        registry.register(
            "essaim_coordinator_workers_lost",
            "Workers declared lost after missing heartbeats",
            self.workers_lost_total.clone(),
        );
        registry.register(
            "essaim_coordinator_outputs_lost",
            "Committed stage outputs found lost or corrupt and recomputed",
            self.outputs_lost_total.clone(),
        );
        registry.register(
            "essaim_coordinator_local_grants",
            "Tasks with input paths granted to a worker holding one of them",
            self.local_grants_total.clone(),
        );
        registry.register(
            "essaim_coordinator_remote_grants",
            "Tasks with input paths granted to a worker holding none of them",
            self.remote_grants_total.clone(),
        );
        registry.register(
            "essaim_coordinator_task_counts",
            "Sums of the counters committed tasks reported, by name",
            self.task_counters_total.clone(),
        );
    }

    /// Registers the gauges, the queue statistics among them.
    fn register_gauges(&self, registry: &mut Registry) {
        registry.register(
            "essaim_coordinator_workers",
            "Workers currently registered",
            self.workers.clone(),
        );
        registry.register(
            "essaim_coordinator_slots",
            "Task slots offered by registered workers",
            self.slots.clone(),
        );
        registry.register(
            "essaim_coordinator_busy_slots",
            "Task slots currently running an attempt",
            self.busy_slots.clone(),
        );
        registry.register(
            "essaim_coordinator_dlq_size",
            "Tasks currently in the dead-letter queue",
            self.dlq_size.clone(),
        );
        registry.register(
            "essaim_coordinator_tasks_pending",
            "Tasks waiting for a slot",
            self.tasks_pending.clone(),
        );
        registry.register(
            "essaim_coordinator_tasks_running",
            "Tasks with at least one attempt running",
            self.tasks_running.clone(),
        );
        registry.register(
            "essaim_coordinator_jobs",
            "Jobs the coordinator holds (running, or finished within the retention), by state",
            self.jobs.clone(),
        );
        registry.register(
            "essaim_coordinator_tasks",
            "Tasks of running jobs, by state and kind",
            self.tasks.clone(),
        );
        registry.register_with_unit(
            "essaim_coordinator_heartbeat_age_max",
            "Longest time since a live worker's last heartbeat",
            Unit::Seconds,
            self.heartbeat_age_max_seconds.clone(),
        );
        register_queue_gauges(
            registry,
            "essaim_coordinator_queue",
            "all jobs",
            &self.queue,
        );
        register_queue_gauges(
            registry,
            "essaim_coordinator_job_queue",
            "by running job",
            &self.job_queue,
        );
    }

    /// Registers the histograms.
    fn register_histograms(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "essaim_coordinator_journal_commit",
            "Time to make a journal batch durable",
            Unit::Seconds,
            self.journal_commit_seconds.clone(),
        );
        registry.register(
            "essaim_coordinator_journal_batch_events",
            "Events per journal batch",
            self.journal_batch_events.clone(),
        );
        registry.register_with_unit(
            "essaim_coordinator_rpc_duration",
            "Time to serve a gRPC call, by method",
            Unit::Seconds,
            self.rpc_duration_seconds.clone(),
        );
        registry.register_with_unit(
            "essaim_coordinator_task_duration",
            "Run time of committed attempts, as their workers measured it",
            Unit::Seconds,
            self.task_duration_seconds.clone(),
        );
        registry.register_with_unit(
            "essaim_coordinator_job_duration",
            "Time from a job's submission to its final state, by state",
            Unit::Seconds,
            self.job_duration_seconds.clone(),
        );
    }

    /// Publishes how many jobs are in each state; states missing from `counts` read 0.
    pub fn set_jobs_by_state(&self, counts: &[(&'static str, i64)]) {
        for state in ["running", "succeeded", "failed", "cancelled"] {
            let count = counts
                .iter()
                .filter(|(name, _)| *name == state)
                .map(|(_, count)| count)
                .sum();
            self.jobs.get_or_create(&StateLabels { state }).set(count);
        }
    }

    /// Publishes task counts by state and kind. Series absent from `counts` are removed;
    /// kinds past [`MAX_TASK_KINDS`] are summed under `other`.
    pub fn set_tasks_by_state_and_kind(&self, counts: &BTreeMap<(&'static str, String), i64>) {
        let kinds: std::collections::BTreeSet<&String> =
            counts.keys().map(|(_, kind)| kind).collect();
        let allowed: std::collections::BTreeSet<&String> =
            kinds.into_iter().take(MAX_TASK_KINDS).collect();
        let mut bounded: BTreeMap<(&'static str, String), i64> = BTreeMap::new();
        for ((state, kind), count) in counts {
            let kind = if allowed.contains(kind) {
                kind.clone()
            } else {
                "other".to_string()
            };
            *bounded.entry((state, kind)).or_default() += count;
        }
        let mut stale = self
            .published_task_series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (state, kind) in stale.iter() {
            if !bounded.contains_key(&(*state, kind.clone())) {
                self.tasks.remove(&StateKindLabels {
                    state,
                    kind: kind.clone(),
                });
            }
        }
        for ((state, kind), count) in &bounded {
            self.tasks
                .get_or_create(&StateKindLabels {
                    state,
                    kind: kind.clone(),
                })
                .set(*count);
        }
        *stale = bounded.into_keys().collect();
    }

    /// Publishes the cluster-wide queue statistics. Infinite values are published as NaN:
    /// the client library writes them as `inf`, which OpenMetrics parsers need not accept.
    pub fn set_cluster_queue(&self, values: &QueueGaugeValues) {
        for (gauge, value) in self.queue.fields().into_iter().zip(queue_values(values)) {
            gauge.set(value);
        }
    }

    /// Publishes the queue statistics of running jobs; jobs absent from `jobs` (finished
    /// since) lose their series. At most [`MAX_JOBS_WITH_QUEUE_SERIES`] are published, the
    /// highest ids (most recent) first.
    pub fn set_job_queues(&self, jobs: &[(u64, QueueGaugeValues)]) {
        let mut jobs: Vec<&(u64, QueueGaugeValues)> = jobs.iter().collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.0));
        jobs.truncate(MAX_JOBS_WITH_QUEUE_SERIES);
        let mut published = self
            .published_job_queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for job in published.iter() {
            if !jobs.iter().any(|(id, _)| id == job) {
                let labels = JobLabels {
                    job_id: job.to_string(),
                };
                for family in self.job_queue.fields() {
                    family.remove(&labels);
                }
            }
        }
        for (job, values) in &jobs {
            let labels = JobLabels {
                job_id: job.to_string(),
            };
            for (family, value) in self
                .job_queue
                .fields()
                .into_iter()
                .zip(queue_values(values))
            {
                family.get_or_create(&labels).set(value);
            }
        }
        *published = jobs.iter().map(|(id, _)| *id).collect();
    }

    /// Adds a committed task's counter to its cluster-wide sum.
    pub fn record_task_counter(&self, name: &str, value: u64) {
        let labels = CounterNameLabels {
            name: name.to_string(),
        };
        let known = self.task_counters_total.get(&labels).is_some();
        let room = known || {
            let before = self
                .task_counter_names
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            before < MAX_TASK_COUNTER_NAMES
        };
        let labels = if room {
            labels
        } else {
            CounterNameLabels {
                name: "other".to_string(),
            }
        };
        self.task_counters_total
            .get_or_create(&labels)
            .inc_by(value);
    }

    /// Counts one job reaching its final state `duration` after its submission.
    pub fn record_job_finished(&self, outcome: JobOutcome, duration: std::time::Duration) {
        let labels = JobStateLabels { state: outcome };
        self.jobs_finished_total.get_or_create(&labels).inc();
        self.job_duration_seconds
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    /// Records the time spent serving one call of the gRPC method `method`.
    ///
    /// `method` must be a method name from the service definition (e.g. `"Heartbeat"`).
    pub fn record_rpc(&self, method: &'static str, elapsed: Duration) {
        let labels = RpcMethodLabels { method };
        self.rpc_duration_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

fn job_duration_histogram() -> Histogram {
    Histogram::new(JOB_DURATION_BUCKETS_SECONDS)
}
