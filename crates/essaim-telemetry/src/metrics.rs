//! Every metric of essaim, defined in one place.
//!
//! Why one file: names, labels and buckets are an operator-facing contract (dashboards
//! and alerts depend on them), so they are reviewed together and changed together.
//!
//! Naming: `essaim_<subsystem>_<name>_<unit>[_total]`. We register names *without* the
//! `_total` suffix and *without* the unit: `prometheus_client` appends the unit (for
//! metrics registered with one) and then `_total` for counters. Registering
//! `foo_total` would be exposed as `foo_total_total`.
//!
//! Labels are bounded by construction: a job outcome is an enum and an RPC method is a
//! `&'static str`, so no ID or other unbounded value can become a label.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The final state of a job, used as the `state` label of finished-job counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    /// Every task of the job committed.
    Succeeded,
    /// The job ended without every task committing (e.g. a task was dead-lettered).
    Failed,
    /// A client cancelled the job.
    Cancelled,
}

impl JobOutcome {
    /// Returns the label value exposed for this outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

// Written by hand because the derive would expose the variant names verbatim
// ("Succeeded"), and label values are lowercase.
impl EncodeLabelValue for JobOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

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

/// 1 ms doubling 18 times: up to ~131 s per task attempt.
fn task_duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1e-3, 2.0, 18)
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
    /// Failed or lost attempts scheduled for retry.
    pub retries_scheduled_total: Counter,
    /// Tasks moved to the dead-letter queue.
    pub dead_lettered_total: Counter,
    /// Speculative duplicate attempts started for slow tasks.
    pub speculative_attempts_total: Counter,
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
    /// Time from lease to committed result.
    pub task_duration_seconds: Histogram,
}

impl CoordinatorMetrics {
    /// Creates every coordinator metric and registers it in `registry`.
    ///
    /// Call it once per registry: registering twice would expose each name twice.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            jobs_submitted_total: Counter::default(),
            jobs_finished_total: Family::default(),
            tasks_committed_total: Counter::default(),
            attempts_started_total: Counter::default(),
            attempts_failed_total: Counter::default(),
            results_rejected_total: Counter::default(),
            lease_expiries_total: Counter::default(),
            retries_scheduled_total: Counter::default(),
            dead_lettered_total: Counter::default(),
            speculative_attempts_total: Counter::default(),
            workers_registered_total: Counter::default(),
            workers_lost_total: Counter::default(),
            outputs_lost_total: Counter::default(),
            local_grants_total: Counter::default(),
            remote_grants_total: Counter::default(),
            task_counters_total: Family::default(),
            task_counter_names: Default::default(),
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
        }
        registry.register(
            "essaim_coordinator_jobs_submitted",
            "Jobs accepted by the coordinator",
            metrics.jobs_submitted_total.clone(),
        );
        registry.register(
            "essaim_coordinator_jobs_finished",
            "Jobs that reached a final state, by state",
            metrics.jobs_finished_total.clone(),
        );
        registry.register(
            "essaim_coordinator_tasks_committed",
            "Task results committed to the journal",
            metrics.tasks_committed_total.clone(),
        );
        registry.register(
            "essaim_coordinator_attempts_started",
            "Task attempts leased to a worker",
            metrics.attempts_started_total.clone(),
        );
        registry.register(
            "essaim_coordinator_attempts_failed",
            "Task attempts that reported a failure",
            metrics.attempts_failed_total.clone(),
        );
        registry.register(
            "essaim_coordinator_results_rejected",
            "Results rejected as late or from a zombie attempt",
            metrics.results_rejected_total.clone(),
        );
        registry.register(
            "essaim_coordinator_lease_expiries",
            "Leases that expired before a result arrived",
            metrics.lease_expiries_total.clone(),
        );
        registry.register(
            "essaim_coordinator_retries_scheduled",
            "Failed or lost attempts scheduled for retry",
            metrics.retries_scheduled_total.clone(),
        );
        registry.register(
            "essaim_coordinator_dead_lettered",
            "Tasks moved to the dead-letter queue",
            metrics.dead_lettered_total.clone(),
        );
        registry.register(
            "essaim_coordinator_speculative_attempts",
            "Speculative duplicate attempts started for slow tasks",
            metrics.speculative_attempts_total.clone(),
        );
        registry.register(
            "essaim_coordinator_workers_registered",
            "Worker registrations",
            metrics.workers_registered_total.clone(),
        );
        registry.register(
            "essaim_coordinator_workers_lost",
            "Workers declared lost after missing heartbeats",
            metrics.workers_lost_total.clone(),
        );
        registry.register(
            "essaim_coordinator_outputs_lost",
            "Committed stage outputs found lost or corrupt and recomputed",
            metrics.outputs_lost_total.clone(),
        );
        registry.register(
            "essaim_coordinator_local_grants",
            "Tasks with input paths granted to a worker holding one of them",
            metrics.local_grants_total.clone(),
        );
        registry.register(
            "essaim_coordinator_remote_grants",
            "Tasks with input paths granted to a worker holding none of them",
            metrics.remote_grants_total.clone(),
        );
        registry.register(
            "essaim_coordinator_task_counts",
            "Sums of the counters committed tasks reported, by name",
            metrics.task_counters_total.clone(),
        );
        registry.register(
            "essaim_coordinator_workers",
            "Workers currently registered",
            metrics.workers.clone(),
        );
        registry.register(
            "essaim_coordinator_slots",
            "Task slots offered by registered workers",
            metrics.slots.clone(),
        );
        registry.register(
            "essaim_coordinator_busy_slots",
            "Task slots currently running an attempt",
            metrics.busy_slots.clone(),
        );
        registry.register(
            "essaim_coordinator_dlq_size",
            "Tasks currently in the dead-letter queue",
            metrics.dlq_size.clone(),
        );
        registry.register(
            "essaim_coordinator_tasks_pending",
            "Tasks waiting for a slot",
            metrics.tasks_pending.clone(),
        );
        registry.register(
            "essaim_coordinator_tasks_running",
            "Tasks with at least one attempt running",
            metrics.tasks_running.clone(),
        );
        registry.register_with_unit(
            "essaim_coordinator_journal_commit",
            "Time to make a journal batch durable",
            Unit::Seconds,
            metrics.journal_commit_seconds.clone(),
        );
        registry.register(
            "essaim_coordinator_journal_batch_events",
            "Events per journal batch",
            metrics.journal_batch_events.clone(),
        );
        registry.register_with_unit(
            "essaim_coordinator_rpc_duration",
            "Time to serve a gRPC call, by method",
            Unit::Seconds,
            metrics.rpc_duration_seconds.clone(),
        );
        registry.register_with_unit(
            "essaim_coordinator_task_duration",
            "Time from lease to committed result",
            Unit::Seconds,
            metrics.task_duration_seconds.clone(),
        );
        metrics
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

    /// Counts one job reaching its final state.
    pub fn record_job_finished(&self, outcome: JobOutcome) {
        let labels = JobStateLabels { state: outcome };
        self.jobs_finished_total.get_or_create(&labels).inc();
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

/// Every metric a worker exposes, named `essaim_worker_*`.
///
/// Cloning is cheap and clones update the same series, as for [`CoordinatorMetrics`].
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    /// Task attempts started on this worker.
    pub attempts_started_total: Counter,
    /// Task attempts that succeeded.
    pub attempts_succeeded_total: Counter,
    /// Task attempts that failed.
    pub attempts_failed_total: Counter,
    /// Task attempts cancelled by the coordinator or on shutdown.
    pub attempts_cancelled_total: Counter,
    /// Slots currently running an attempt.
    pub busy_slots: Gauge,
    /// Slots this worker offers.
    pub slots: Gauge,
    /// Heartbeats that failed to reach the coordinator.
    pub heartbeat_failures_total: Counter,
    /// Time to run one task attempt.
    pub task_duration_seconds: Histogram,
    /// Attempt results delivered to the coordinator.
    pub results_reported_total: Counter,
}

impl WorkerMetrics {
    /// Creates every worker metric and registers it in `registry`.
    ///
    /// Call it once per registry: registering twice would expose each name twice.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            attempts_started_total: Counter::default(),
            attempts_succeeded_total: Counter::default(),
            attempts_failed_total: Counter::default(),
            attempts_cancelled_total: Counter::default(),
            busy_slots: Gauge::default(),
            slots: Gauge::default(),
            heartbeat_failures_total: Counter::default(),
            task_duration_seconds: Histogram::new(task_duration_buckets()),
            results_reported_total: Counter::default(),
        };
        registry.register(
            "essaim_worker_attempts_started",
            "Task attempts started on this worker",
            metrics.attempts_started_total.clone(),
        );
        registry.register(
            "essaim_worker_attempts_succeeded",
            "Task attempts that succeeded",
            metrics.attempts_succeeded_total.clone(),
        );
        registry.register(
            "essaim_worker_attempts_failed",
            "Task attempts that failed",
            metrics.attempts_failed_total.clone(),
        );
        registry.register(
            "essaim_worker_attempts_cancelled",
            "Task attempts cancelled by the coordinator or on shutdown",
            metrics.attempts_cancelled_total.clone(),
        );
        registry.register(
            "essaim_worker_busy_slots",
            "Slots currently running an attempt",
            metrics.busy_slots.clone(),
        );
        registry.register(
            "essaim_worker_slots",
            "Slots this worker offers",
            metrics.slots.clone(),
        );
        registry.register(
            "essaim_worker_heartbeat_failures",
            "Heartbeats that failed to reach the coordinator",
            metrics.heartbeat_failures_total.clone(),
        );
        registry.register_with_unit(
            "essaim_worker_task_duration",
            "Time to run one task attempt",
            Unit::Seconds,
            metrics.task_duration_seconds.clone(),
        );
        registry.register(
            "essaim_worker_results_reported",
            "Attempt results delivered to the coordinator",
            metrics.results_reported_total.clone(),
        );
        metrics
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).expect("encoding to a String cannot fail");
        text
    }

    #[test]
    fn coordinator_exposition_has_suffixed_names_and_eof() {
        let mut registry = Registry::default();
        let metrics = CoordinatorMetrics::register(&mut registry);
        metrics.jobs_submitted_total.inc();
        metrics.record_job_finished(JobOutcome::Cancelled);
        metrics.record_rpc("Heartbeat", Duration::from_millis(2));
        metrics.journal_commit_seconds.observe(0.001);
        let text = exposition(&registry);
        for expected in [
            "essaim_coordinator_jobs_submitted_total 1\n",
            "essaim_coordinator_jobs_finished_total{state=\"cancelled\"} 1\n",
            "essaim_coordinator_jobs_finished_total{state=\"succeeded\"} 0\n",
            "essaim_coordinator_results_rejected_total 0\n",
            "essaim_coordinator_workers_lost_total 0\n",
            "essaim_coordinator_tasks_pending 0\n",
            "# UNIT essaim_coordinator_journal_commit_seconds seconds\n",
            "essaim_coordinator_journal_commit_seconds_count 1\n",
            "essaim_coordinator_journal_batch_events_bucket{le=\"4096.0\"} 0\n",
            "essaim_coordinator_rpc_duration_seconds_count{method=\"Heartbeat\"} 1\n",
            "essaim_coordinator_task_duration_seconds_sum 0.0\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!text.contains("_total_total"), "double suffix in:\n{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn worker_exposition_has_suffixed_names_and_eof() {
        let mut registry = Registry::default();
        let metrics = WorkerMetrics::register(&mut registry);
        metrics.attempts_succeeded_total.inc();
        metrics.slots.set(4);
        let text = exposition(&registry);
        for expected in [
            "essaim_worker_attempts_succeeded_total 1\n",
            "essaim_worker_attempts_cancelled_total 0\n",
            "essaim_worker_heartbeat_failures_total 0\n",
            "essaim_worker_results_reported_total 0\n",
            "essaim_worker_slots 4\n",
            "essaim_worker_task_duration_seconds_count 0\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn clones_update_the_same_series() {
        let mut registry = Registry::default();
        let metrics = WorkerMetrics::register(&mut registry);
        metrics.clone().busy_slots.inc();
        assert_eq!(metrics.busy_slots.get(), 1);
    }
}
