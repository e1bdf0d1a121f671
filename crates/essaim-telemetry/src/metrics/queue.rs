//! The queue statistics the coordinator publishes for the whole cluster and for each
//! running job: one struct of values and one registration for both scopes.

use prometheus_client::registry::{Registry, Unit};

/// The queue statistics of the cluster or of one job, as published; see the
/// coordinator's `queue` module for what each means. Unknown values are NaN.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueGaugeValues {
    /// Tasks submitted per second.
    pub arrival_rate: f64,
    /// Tasks committed per second.
    pub completion_rate: f64,
    /// Mean service time in seconds.
    pub service_time_seconds: f64,
    /// Pending, retrying and running tasks.
    pub backlog: f64,
    /// Busy share of the slots, 0..=1.
    pub utilisation: f64,
    /// Backlog growth in tasks per second (positive: saturating).
    pub backlog_growth_rate: f64,
    /// Predicted seconds to drain the backlog (NaN: unknown, or never at current rates;
    /// infinities are not published, see [`CoordinatorMetrics::set_cluster_queue`](crate::CoordinatorMetrics::set_cluster_queue)).
    pub drain_seconds: f64,
    /// Workers needed to absorb arrivals and drain the backlog within the target.
    pub recommended_workers: f64,
}

/// One set of queue gauges (cluster-wide, or a family by job).
#[derive(Clone, Debug, Default)]
pub(super) struct QueueGauges<G> {
    arrival_rate: G,
    completion_rate: G,
    service_time_seconds: G,
    backlog: G,
    utilisation: G,
    backlog_growth_rate: G,
    drain_seconds: G,
    recommended_workers: G,
}

/// Name suffix, help and unit of each queue gauge, in [`QueueGauges`] field order.
pub(super) const QUEUE_GAUGES: [(&str, &str, Option<Unit>); 8] = [
    (
        "arrival_rate",
        "Tasks submitted per second (1 min moving average)",
        None,
    ),
    (
        "completion_rate",
        "Tasks committed per second (1 min moving average)",
        None,
    ),
    (
        "service_time",
        "Mean duration of committed attempts",
        Some(Unit::Seconds),
    ),
    ("backlog_tasks", "Pending, retrying and running tasks", None),
    (
        "utilisation_ratio",
        "Share of the slots running an attempt",
        None,
    ),
    (
        "backlog_growth_rate",
        "Backlog growth in tasks per second at current rates; positive means saturating",
        None,
    ),
    (
        "drain_time",
        "Predicted time to drain the backlog (+Inf: never at current rates)",
        Some(Unit::Seconds),
    ),
    (
        "recommended_workers",
        "Workers needed to absorb arrivals and drain the backlog within the target time",
        None,
    ),
];

impl<G: Clone> QueueGauges<G> {
    pub(super) fn fields(&self) -> [&G; 8] {
        [
            &self.arrival_rate,
            &self.completion_rate,
            &self.service_time_seconds,
            &self.backlog,
            &self.utilisation,
            &self.backlog_growth_rate,
            &self.drain_seconds,
            &self.recommended_workers,
        ]
    }
}

pub(super) fn queue_values(values: &QueueGaugeValues) -> [f64; 8] {
    [
        values.arrival_rate,
        values.completion_rate,
        values.service_time_seconds,
        values.backlog,
        values.utilisation,
        values.backlog_growth_rate,
        values.drain_seconds,
        values.recommended_workers,
    ]
    .map(|value| if value.is_infinite() { f64::NAN } else { value })
}

pub(super) fn register_queue_gauges<M>(
    registry: &mut Registry,
    prefix: &str,
    scope: &str,
    gauges: &QueueGauges<M>,
) where
    M: prometheus_client::registry::Metric + Clone,
{
    for ((suffix, help, unit), gauge) in QUEUE_GAUGES.iter().zip(gauges.fields()) {
        let name = format!("{prefix}_{suffix}");
        let help = format!("{help}, {scope}");
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit.clone(), gauge.clone()),
            None => registry.register(name, help, gauge.clone()),
        }
    }
}
