//! The coordinator's figures of running pipelines, from the progress workers report
//! in their heartbeats: `essaim_stream_pipeline_lag{pipeline}` and
//! `essaim_stream_recommended_workers{pipeline}`, the number of stream workers that
//! would clear the lag within the drain target (what an autoscaler follows).
//!
//! Each pipeline has a series while its units report; at most
//! [`MAX_PIPELINES_WITH_SERIES`] pipelines do, so the series stay bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Most pipelines given series of their own (those sorting first by name).
pub const MAX_PIPELINES_WITH_SERIES: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
}

/// The per-pipeline gauges. Clones update the same series.
#[derive(Clone, Debug, Default)]
pub struct StreamBoardMetrics {
    lag: Family<PipelineLabels, Gauge>,
    recommended_workers: Family<PipelineLabels, Gauge>,
}

impl StreamBoardMetrics {
    /// Creates the families and registers them in `registry` (once per registry).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "essaim_stream_pipeline_lag",
            "Messages not yet read, summed over a pipeline's units",
            metrics.lag.clone(),
        );
        registry.register(
            "essaim_stream_recommended_workers",
            "Stream workers a pipeline needs to clear its lag within the drain target",
            metrics.recommended_workers.clone(),
        );
        metrics
    }

    /// Replaces every series with those of `pipelines`: (name, lag, recommended workers).
    pub fn set<'a>(&self, pipelines: impl Iterator<Item = (&'a str, i64, u32)>) {
        self.lag.clear();
        self.recommended_workers.clear();
        for (pipeline, lag, recommended) in pipelines.take(MAX_PIPELINES_WITH_SERIES) {
            let labels = PipelineLabels {
                pipeline: pipeline.to_string(),
            };
            self.lag.get_or_create(&labels).set(lag);
            self.recommended_workers
                .get_or_create(&labels)
                .set(i64::from(recommended));
        }
    }
}
