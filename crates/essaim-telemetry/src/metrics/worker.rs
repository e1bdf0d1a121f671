//! Every metric a worker exposes, `essaim_worker_*`.

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{FloatGauge, task_duration_buckets};

/// Every metric a worker exposes, named `essaim_worker_*`.
///
/// Cloning is cheap and clones update the same series, as for [`CoordinatorMetrics`](crate::CoordinatorMetrics).
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
    /// Grants refused because they came from an older coordinator epoch than one
    /// already seen (a deposed coordinator still answering).
    pub stale_epoch_grants_total: Counter,
    /// Time to run one task attempt.
    pub task_duration_seconds: Histogram,
    /// Attempt results delivered to the coordinator.
    pub results_reported_total: Counter,
    /// Attempt results dropped because this worker's registration ended before they
    /// were delivered (the coordinator restarted, failed over, or declared the worker
    /// lost): their tasks run again elsewhere or later.
    pub results_fenced_total: Counter,
    /// Bytes of upstream outputs fetched by this worker's attempts (MapReduce shuffle).
    pub shuffle_fetched_bytes_total: Counter,
    /// Bytes of map output written by this worker's attempts, after spills and merges.
    pub map_output_bytes_total: Counter,
    /// Sort-buffer spills to disk by this worker's attempts.
    pub spills_total: Counter,
    /// Time since the last heartbeat the coordinator answered.
    pub heartbeat_age_seconds: FloatGauge,
    /// Free bytes of the scratch directory's file system at the last check.
    pub scratch_free_bytes: Gauge,
    /// 1 while the scratch disk is below its reserve and the worker takes no new task.
    pub scratch_below_reserve: Gauge,
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
            stale_epoch_grants_total: Counter::default(),
            task_duration_seconds: Histogram::new(task_duration_buckets()),
            results_reported_total: Counter::default(),
            results_fenced_total: Counter::default(),
            shuffle_fetched_bytes_total: Counter::default(),
            map_output_bytes_total: Counter::default(),
            spills_total: Counter::default(),
            heartbeat_age_seconds: FloatGauge::default(),
            scratch_free_bytes: Gauge::default(),
            scratch_below_reserve: Gauge::default(),
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
        registry.register(
            "essaim_worker_stale_epoch_grants",
            "Grants refused because they came from an older coordinator epoch than one already seen",
            metrics.stale_epoch_grants_total.clone(),
        );
        registry.register(
            "essaim_worker_results_fenced",
            "Attempt results dropped because the worker's registration ended first (a coordinator restart, failover, or the worker declared lost); their tasks run again",
            metrics.results_fenced_total.clone(),
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
        registry.register_with_unit(
            "essaim_worker_shuffle_fetched",
            "Upstream output fetched by this worker's attempts (MapReduce shuffle)",
            Unit::Bytes,
            metrics.shuffle_fetched_bytes_total.clone(),
        );
        registry.register_with_unit(
            "essaim_worker_map_output",
            "Map output written by this worker's attempts, after spills and merges",
            Unit::Bytes,
            metrics.map_output_bytes_total.clone(),
        );
        registry.register(
            "essaim_worker_spills",
            "Sort-buffer spills to disk by this worker's attempts",
            metrics.spills_total.clone(),
        );
        registry.register_with_unit(
            "essaim_worker_heartbeat_age",
            "Time since the coordinator last answered a heartbeat",
            Unit::Seconds,
            metrics.heartbeat_age_seconds.clone(),
        );
        registry.register_with_unit(
            "essaim_worker_scratch_free",
            "Free space of the scratch directory's file system at the last check",
            Unit::Bytes,
            metrics.scratch_free_bytes.clone(),
        );
        registry.register(
            "essaim_worker_scratch_below_reserve",
            "1 while the scratch disk is below its reserve (--scratch-reserve-bytes) and the worker takes no new task",
            metrics.scratch_below_reserve.clone(),
        );
        metrics
    }

    /// Adds the data-movement counters an attempt reported (shuffle bytes fetched, map
    /// output bytes, spills) to this worker's totals.
    pub fn record_attempt_counters(&self, counters: &BTreeMap<String, u64>) {
        for (name, counter) in [
            ("shuffle.bytes", &self.shuffle_fetched_bytes_total),
            (
                "map.output.materialized.bytes",
                &self.map_output_bytes_total,
            ),
            ("map.spills", &self.spills_total),
        ] {
            if let Some(value) = counters.get(name) {
                counter.inc_by(*value);
            }
        }
    }
}
