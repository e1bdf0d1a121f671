//! Every metric of the model runner, in one file (the telemetry crate's rule for a
//! capability's metrics), named `essaim_runner_<name>_<unit>[_total]`.
//!
//! Labels are bounded by configuration: `model` is a served name (from the command
//! line or the model file), `version` a version the runner loaded during its life,
//! `outcome`, `arm`, `decision` and `slot` are a few fixed words; never a request key
//! or a text. Requests inside a version's batcher are counted in and out with two
//! counters (`queue_admitted` − `queue_left`), as the house rule for fast queues asks.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// A served model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ModelLabels {
    /// The served name.
    pub model: String,
}

/// One loaded version of a served model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct VersionLabels {
    /// The served name.
    pub model: String,
    /// The registry's version number.
    pub version: String,
}

/// A request's end.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The served name (`unknown` for an unknown model).
    pub model: String,
    /// `answered`, or the refusal's word (`bad_request`, `queue_full`…).
    pub outcome: String,
}

/// A version's server-side error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The served name.
    pub model: String,
    /// The version.
    pub version: String,
    /// `queue_full` or `failed`.
    pub reason: String,
}

/// Which arm answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ArmLabels {
    /// The served name.
    pub model: String,
    /// `primary` or `candidate`.
    pub arm: String,
}

/// A slot's loaded version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SlotLabels {
    /// The served name.
    pub model: String,
    /// `primary` or `candidate`.
    pub slot: String,
}

/// A canary's decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The served name.
    pub model: String,
    /// `promote` or `roll_back`.
    pub decision: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 13 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

fn batch_histogram() -> Histogram {
    // 1 to 1024 rows.
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

/// The runner's metrics; clones update the same series.
#[derive(Debug, Clone)]
pub struct RunnerMetrics {
    /// Requests ended, by model and outcome.
    pub requests: Family<OutcomeLabels, Counter>,
    /// Time to answer a request, per version that answered.
    pub request_duration: Family<VersionLabels, Histogram, fn() -> Histogram>,
    /// Server-side errors per version (queue full, scoring failed).
    pub errors: Family<ErrorLabels, Counter>,
    /// Rows per scored batch, per version.
    pub batch_rows: Family<VersionLabels, Histogram, fn() -> Histogram>,
    /// Requests admitted into a version's batcher.
    pub queue_admitted: Family<VersionLabels, Counter>,
    /// Requests that left a version's batcher.
    pub queue_left: Family<VersionLabels, Counter>,
    /// Requests answered per arm.
    pub routed: Family<ArmLabels, Counter>,
    /// The version loaded in each slot (0: none).
    pub loaded_version: Family<SlotLabels, Gauge>,
    /// Versions loaded after start (alias moves followed).
    pub reloads: Family<ModelLabels, Counter>,
    /// Failed attempts to resolve or load a version.
    pub reload_failures: Family<ModelLabels, Counter>,
    /// 1 while the last registry poll succeeded.
    pub registry_reachable: Gauge,
    /// 1 while serving loaded versions without the registry (degraded).
    pub degraded: Gauge,
    /// Candidate answers compared with the primary's (shadow and canary), in rows.
    pub compared_rows: Family<ModelLabels, Counter>,
    /// Compared rows whose labels differ.
    pub disagreeing_rows: Family<ModelLabels, Counter>,
    /// Disagreeing rows / compared rows since the versions last changed.
    pub disagreement_ratio: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    /// Shadow copies not scored (the candidate's queue was full).
    pub shadow_skipped: Family<ModelLabels, Counter>,
    /// Canary decisions carried out in the registry.
    pub canary_decisions: Family<DecisionLabels, Counter>,
}

impl Default for RunnerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RunnerMetrics {
    /// Returns unregistered metrics at zero.
    pub fn new() -> Self {
        Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            batch_rows: Family::new_with_constructor(batch_histogram),
            queue_admitted: Family::default(),
            queue_left: Family::default(),
            routed: Family::default(),
            loaded_version: Family::default(),
            reloads: Family::default(),
            reload_failures: Family::default(),
            registry_reachable: Gauge::default(),
            degraded: Gauge::default(),
            compared_rows: Family::default(),
            disagreeing_rows: Family::default(),
            disagreement_ratio: Family::default(),
            shadow_skipped: Family::default(),
            canary_decisions: Family::default(),
        }
    }

    /// Registers every runner metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let runner = registry.sub_registry_with_prefix("essaim_runner");
        runner.register(
            "requests",
            "Inference requests ended, by outcome",
            self.requests.clone(),
        );
        runner.register_with_unit(
            "request_duration",
            "Time to answer an inference request, per version that answered",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        runner.register(
            "errors",
            "Server-side errors per version (queue full, scoring failed)",
            self.errors.clone(),
        );
        runner.register(
            "batch_rows",
            "Rows per scored batch",
            self.batch_rows.clone(),
        );
        runner.register(
            "queue_admitted",
            "Requests admitted into a version's batcher",
            self.queue_admitted.clone(),
        );
        runner.register(
            "queue_left",
            "Requests that left a version's batcher",
            self.queue_left.clone(),
        );
        runner.register(
            "routed",
            "Requests answered per arm (primary, candidate)",
            self.routed.clone(),
        );
        runner.register(
            "loaded_version",
            "The version loaded in each slot (0: none)",
            self.loaded_version.clone(),
        );
        runner.register(
            "reloads",
            "Versions loaded after an alias moved",
            self.reloads.clone(),
        );
        runner.register(
            "reload_failures",
            "Failed attempts to resolve or load a version",
            self.reload_failures.clone(),
        );
        runner.register(
            "registry_reachable",
            "1 while the last registry poll succeeded",
            self.registry_reachable.clone(),
        );
        runner.register(
            "degraded",
            "1 while serving loaded versions without the registry",
            self.degraded.clone(),
        );
        runner.register(
            "compared_rows",
            "Candidate rows compared with the primary's",
            self.compared_rows.clone(),
        );
        runner.register(
            "disagreeing_rows",
            "Compared rows whose labels differ",
            self.disagreeing_rows.clone(),
        );
        runner.register(
            "disagreement_ratio",
            "Disagreeing rows over compared rows since the versions last changed",
            self.disagreement_ratio.clone(),
        );
        runner.register(
            "shadow_skipped",
            "Shadow copies not scored (candidate queue full)",
            self.shadow_skipped.clone(),
        );
        runner.register(
            "canary_decisions",
            "Canary promotions and rollbacks carried out",
            self.canary_decisions.clone(),
        );
    }

    /// Counts a request's end.
    pub fn count_request(&self, model: &str, outcome: &str) {
        self.requests
            .get_or_create(&OutcomeLabels {
                model: model.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }
}
