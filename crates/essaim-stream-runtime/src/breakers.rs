//! The worker's circuit breakers: one per pipeline, connector and kind of endpoint,
//! shared by the units of that pipeline on this worker and kept across their restarts.
//!
//! A unit that fails restarts from its last commit with fresh connections (see
//! [`crate::unit::run`]); if its breakers were fresh too, a server that is down would
//! cost every unit a timeout after every restart. So the breakers live here, above the
//! units: once one unit has found NATS down, the others fail at once and wait for the
//! breaker's probe. Sharing is by (pipeline, connector, endpoint kind): the sources of a
//! pipeline on one connector reach one server (one NATS URL, one Kafka bootstrap, one
//! shared directory tree), and a pipeline's breaker is exported under the same labels.
//! Each breaker's state is exported (`essaim_connector_breaker_state`, see
//! [`crate::metrics`]); the series go away when the last task of the pipeline here ends.
//! The breakers' thresholds are [`BreakerConfig`]'s defaults, defined once in
//! `essaim-connect`.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use essaim_connect::{BreakerConfig, BreakerObserver, BreakerState, SharedBreaker};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{BreakerLabels, StreamMetrics};

/// What a breaker's endpoint is to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndpointKind {
    /// Where the pipeline reads.
    Source,
    /// Where results go (PostgreSQL also holds positions and checkpoints).
    Sink,
    /// The JetStream stream between a pipeline's two stages.
    Shuffle,
}

impl EndpointKind {
    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Source => "source",
            EndpointKind::Sink => "sink",
            EndpointKind::Shuffle => "shuffle",
        }
    }
}

/// The breakers of the pipelines with a task on this worker.
#[derive(Debug, Clone)]
pub struct BreakerBoard {
    metrics: StreamMetrics,
    config: BreakerConfig,
    pipelines: Arc<Mutex<BTreeMap<String, PipelineEntry>>>,
}

#[derive(Debug, Default)]
struct PipelineEntry {
    /// Tasks of the pipeline running here.
    tasks: usize,
    breakers: BTreeMap<(&'static str, EndpointKind), SharedBreaker>,
}

impl BreakerBoard {
    /// Returns an empty board whose breakers report to `metrics`.
    pub fn new(metrics: StreamMetrics, config: BreakerConfig) -> BreakerBoard {
        BreakerBoard {
            metrics,
            config,
            pipelines: Arc::default(),
        }
    }

    /// Notes that a task of `pipeline` starts here; its breakers stay until the
    /// returned handle (and every other task's) is dropped.
    pub fn enter(&self, pipeline: &str) -> PipelineBreakers {
        self.lock().entry(pipeline.to_owned()).or_default().tasks += 1;
        PipelineBreakers {
            board: self.clone(),
            pipeline: pipeline.to_owned(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PipelineEntry>> {
        // Only map operations happen under the lock: a poisoned map is still whole.
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn labels(pipeline: &str, connector: &str, kind: EndpointKind) -> BreakerLabels {
        BreakerLabels {
            pipeline: pipeline.to_owned(),
            connector: connector.to_owned(),
            endpoint_kind: kind.as_str().to_owned(),
        }
    }
}

/// The breakers of one pipeline, held by each of its tasks.
#[derive(Debug)]
pub struct PipelineBreakers {
    board: BreakerBoard,
    pipeline: String,
}

impl PipelineBreakers {
    /// Returns the breaker of `connector`'s endpoints of `kind`, created closed on
    /// first use.
    pub fn get(&self, connector: &'static str, kind: EndpointKind) -> SharedBreaker {
        let mut pipelines = self.board.lock();
        let entry = pipelines.entry(self.pipeline.clone()).or_default();
        entry
            .breakers
            .entry((connector, kind))
            .or_insert_with(|| {
                let labels = BreakerBoard::labels(&self.pipeline, connector, kind);
                let (state, opened) = self.board.metrics.breaker_series(&labels);
                let observer = Arc::new(SeriesObserver { state, opened });
                SharedBreaker::observed(connector, self.board.config, observer)
            })
            .clone()
    }
}

impl Drop for PipelineBreakers {
    fn drop(&mut self) {
        let mut pipelines = self.board.lock();
        let Some(entry) = pipelines.get_mut(&self.pipeline) else {
            return;
        };
        entry.tasks = entry.tasks.saturating_sub(1);
        if entry.tasks > 0 {
            return;
        }
        let Some(entry) = pipelines.remove(&self.pipeline) else {
            return;
        };
        for (connector, kind) in entry.breakers.keys() {
            let labels = BreakerBoard::labels(&self.pipeline, connector, *kind);
            self.board.metrics.forget_breaker(&labels);
        }
    }
}

/// Writes a breaker's changes to its two series.
#[derive(Debug)]
struct SeriesObserver {
    state: Gauge,
    opened: Counter,
}

impl BreakerObserver for SeriesObserver {
    fn observe(&self, state: BreakerState, opened: bool) {
        self.state.set(state.level());
        if opened {
            self.opened.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn exported(metrics: &StreamMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text
    }

    #[test]
    fn tasks_of_a_pipeline_share_its_breakers_and_the_last_one_out_removes_the_series() {
        let metrics = StreamMetrics::new();
        let config = BreakerConfig {
            failure_threshold: 1,
            cool_down: std::time::Duration::from_secs(60),
        };
        let board = BreakerBoard::new(metrics.clone(), config);
        let first = board.enter("flights");
        let second = board.enter("flights");
        first.get("nats", EndpointKind::Source).on_failure();
        assert_eq!(
            second.get("nats", EndpointKind::Source).state().level(),
            2,
            "one breaker per pipeline, connector and kind"
        );
        assert_eq!(second.get("nats", EndpointKind::Shuffle).state().level(), 0);
        let text = exported(&metrics);
        assert!(text.contains(
            "essaim_connector_breaker_state{pipeline=\"flights\",connector=\"nats\",endpoint_kind=\"source\"} 2"
        ), "{text}");
        assert!(text.contains(
            "essaim_connector_breaker_opened_total{pipeline=\"flights\",connector=\"nats\",endpoint_kind=\"source\"} 1"
        ), "{text}");
        drop(first);
        assert!(exported(&metrics).contains("endpoint_kind=\"source\"} 2"));
        drop(second);
        let text = exported(&metrics);
        assert!(!text.contains("pipeline=\"flights\""), "{text}");
        // A task starting later finds a closed breaker.
        let again = board.enter("flights");
        assert_eq!(again.get("nats", EndpointKind::Source).state().level(), 0);
    }
}
