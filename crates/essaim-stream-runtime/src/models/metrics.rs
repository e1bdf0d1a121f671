//! The metrics of a pipeline's models: which version each reference has loaded (so
//! which version predicted a batch), how often the registry failed to answer, and
//! whether it answers now. Labels are the pipeline and the model reference as the spec
//! writes it: bounded by configuration.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Which model of which pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ModelLabels {
    /// The pipeline.
    pub pipeline: String,
    /// The reference, as written (`spam-filter@production`).
    pub model: String,
}

/// Which pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PipelineLabels {
    /// The pipeline.
    pub pipeline: String,
}

/// The model metric families.
#[derive(Debug, Clone, Default)]
pub struct ModelMetrics {
    loaded_version: Family<ModelLabels, Gauge>,
    loads: Family<ModelLabels, Counter>,
    refresh_failures: Family<ModelLabels, Counter>,
    registry_reachable: Family<PipelineLabels, Gauge>,
}

impl ModelMetrics {
    /// Registers the families under `essaim_stream_model_*`.
    pub fn register(&self, registry: &mut Registry) {
        let prefix = registry.sub_registry_with_prefix("essaim_stream_model");
        prefix.register(
            "loaded_version",
            "The version of a predict operator's model that predicts the next batches",
            self.loaded_version.clone(),
        );
        prefix.register(
            "loads",
            "Versions of a model loaded by a pipeline (at start and when its alias moved)",
            self.loads.clone(),
        );
        prefix.register(
            "refresh_failures",
            "Polls of a model's reference that failed; the loaded version predicts on",
            self.refresh_failures.clone(),
        );
        prefix.register(
            "registry_reachable",
            "1 when the last poll of a pipeline's models reached the registry, 0 when degraded",
            self.registry_reachable.clone(),
        );
    }

    fn labels(pipeline: &str, model: &str) -> ModelLabels {
        ModelLabels {
            pipeline: pipeline.to_owned(),
            model: model.to_owned(),
        }
    }

    pub(super) fn loaded(&self, pipeline: &str, model: &str, version: u64) {
        let labels = Self::labels(pipeline, model);
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.loaded_version.get_or_create(&labels).set(version);
        self.loads.get_or_create(&labels).inc();
        self.reachable(pipeline, true);
    }

    pub(super) fn refresh_failed(&self, pipeline: &str, model: &str) {
        let labels = Self::labels(pipeline, model);
        self.refresh_failures.get_or_create(&labels).inc();
    }

    pub(super) fn reachable(&self, pipeline: &str, reachable: bool) {
        let labels = PipelineLabels {
            pipeline: pipeline.to_owned(),
        };
        self.registry_reachable
            .get_or_create(&labels)
            .set(i64::from(reachable));
    }
}
