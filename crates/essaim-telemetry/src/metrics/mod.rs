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
//!
//! | file | metrics |
//! |---|---|
//! | `coordinator.rs` | [`CoordinatorMetrics`], `essaim_coordinator_*` |
//! | `leadership.rs` | [`LeadershipMetrics`], the highly available coordinator's `essaim_coordinator_*` |
//! | `admission.rs` | [`AdmissionMetrics`], the coordinator's journal disk and refused submissions |
//! | `auth.rs` | [`AuthMetrics`], `essaim_auth_refusals_total`: requests refused for their credentials, on the coordinator and the workers' file servers; [`PrincipalsMetrics`]: the principals in force and reloads of their file |
//! | `queue.rs` | the queue statistics published for the cluster and per job |
//! | `streams.rs` | [`StreamBoardMetrics`]: each running pipeline's lag and recommended workers, on the coordinator |
//! | `worker.rs` | [`WorkerMetrics`], `essaim_worker_*` |
//! | `ingest.rs` | [`IngestMetrics`], `essaim_ingest_*` (the HTTP ingest endpoint) |
//! | `process.rs` | [`ProcessMetrics`]: the standard `process_*` metrics and `essaim_build_info`, on every process that serves `/metrics` |
//!
//! A capability that plugs into the worker as a task kind (the streaming runtime) defines
//! its own metrics in one `metrics` module of its crate, with the same naming rules, and
//! registers them through the worker's `Executor::register_metrics` hook: the kind owns
//! what it measures, and this crate owns the registry, the endpoints and the rules.

mod admission;
mod auth;
mod coordinator;
mod ingest;
mod leadership;
mod process;
mod queue;
mod streams;
mod worker;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;

pub use admission::AdmissionMetrics;
pub use auth::{AuthMetrics, AuthRefusal, AuthSurface, PrincipalsMetrics, ReloadOutcome};
pub use coordinator::{CoordinatorMetrics, MAX_JOBS_WITH_QUEUE_SERIES, MAX_TASK_KINDS};
pub use ingest::{IngestMetrics, IngestRefusal};
pub use leadership::LeadershipMetrics;
pub use process::{BuildInfo, ProcessMetrics};
pub use queue::QueueGaugeValues;
pub use streams::{MAX_PIPELINES_WITH_SERIES, StreamBoardMetrics};
pub use worker::WorkerMetrics;

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

/// A float gauge.
pub(crate) type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The bucket bounds of `essaim_coordinator_job_duration_seconds`, from a second to a
/// day. Round numbers an operator would write in an objective ("95 % of jobs within 10
/// minutes"): a latency objective's threshold must be one of them (see `slo/`).
pub const JOB_DURATION_BUCKETS_SECONDS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// 1 ms doubling 18 times: up to ~131 s per task attempt.
pub(crate) fn task_duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1e-3, 2.0, 18)
}

#[cfg(test)]
mod tests;
