//! The metrics of stream tasks, on the worker's `/metrics`.
//!
//! # Where metrics live
//!
//! `essaim-telemetry` owns the registry, the `/metrics` endpoint and the naming
//! conventions; a capability's metrics are defined by the crate that measures them and
//! registered through the worker's `Executor::register_metrics` hook. So the stream
//! metrics are defined here, in this one module, next to the loop that measures them,
//! and the telemetry crate does not need to know what a stream unit is.
//!
//! They follow the telemetry crate's conventions: names are
//! `essaim_stream_<name>_<unit>[_total]`, registered without the `_total` suffix and
//! without the unit, which `prometheus_client` appends (`register_with_unit`), and
//! labels are bounded by construction: the pipeline, the stage and the unit, all set by
//! configuration (a pipeline has at most a few thousand units), never by data.
//! Per-operator counts come from the operators' own counters, which are checkpointed,
//! so they survive restarts and moves of a unit.
//!
//! The connectors' circuit breakers are exported here too, as
//! `essaim_connector_breaker_state` and `essaim_connector_breaker_opened_total`, labelled
//! by pipeline, connector and endpoint kind (all bounded by configuration).
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use essaim_proto::v1::StreamUnitProgress;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::unit::{Fetched, Turn};

/// Which unit a series is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UnitLabels {
    /// The pipeline.
    pub pipeline: String,
    /// `source` or `shuffled`.
    pub stage: String,
    /// The unit.
    pub unit: String,
}

/// An operator's port of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OperatorLabels {
    /// The pipeline.
    pub pipeline: String,
    /// The unit.
    pub unit: String,
    /// `operator.port`, or `source:name` for records read.
    pub stream: String,
}

/// Which circuit breaker a series is about: one per pipeline, connector and kind of
/// endpoint on a worker (see [`crate::breakers`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BreakerLabels {
    /// The pipeline.
    pub pipeline: String,
    /// `nats`, `kafka`, `files` or `postgres`.
    pub connector: String,
    /// `source`, `sink` or `shuffle`.
    pub endpoint_kind: String,
}

/// Returns the bucket bounds of the latency histograms (1 ms doubling up to ~131 s): a
/// pipeline latency objective's threshold must be one of them (`essaim slo`).
pub fn latency_bucket_bounds() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 18).collect()
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_bucket_bounds())
}

/// The units running on this worker, by pipeline, stage and number.
type LiveUnits = BTreeMap<(String, String, u32), Arc<UnitMetrics>>;

/// Every stream metric family.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    records_in: Family<UnitLabels, Counter>,
    records_out: Family<UnitLabels, Counter>,
    dead_letters: Family<UnitLabels, Counter>,
    duplicates_skipped: Family<UnitLabels, Counter>,
    batches: Family<UnitLabels, Counter>,
    restarts: Family<UnitLabels, Counter>,
    lag: Family<UnitLabels, Gauge>,
    last_commit_seconds: Family<UnitLabels, Gauge<f64, AtomicU64>>,
    watermark_delay_seconds: Family<UnitLabels, Gauge>,
    checkpoint_bytes: Family<UnitLabels, Gauge>,
    latency_seconds: Family<UnitLabels, Histogram, fn() -> Histogram>,
    commit_seconds: Family<UnitLabels, Histogram, fn() -> Histogram>,
    turn_seconds: Family<UnitLabels, Histogram, fn() -> Histogram>,
    operator_records: Family<OperatorLabels, Gauge>,
    breaker_state: Family<BreakerLabels, Gauge>,
    breaker_opened: Family<BreakerLabels, Counter>,
    /// The models of `predict` operators.
    pub models: crate::models::metrics::ModelMetrics,
    /// The units running here, whose progress heartbeats carry.
    live: Arc<Mutex<LiveUnits>>,
}

impl Default for StreamMetrics {
    fn default() -> Self {
        StreamMetrics::new()
    }
}

impl StreamMetrics {
    /// Returns the families, unregistered.
    pub fn new() -> StreamMetrics {
        StreamMetrics {
            latency_seconds: Family::new_with_constructor(latency_histogram),
            commit_seconds: Family::new_with_constructor(latency_histogram),
            turn_seconds: Family::new_with_constructor(latency_histogram),
            records_in: Family::default(),
            records_out: Family::default(),
            dead_letters: Family::default(),
            duplicates_skipped: Family::default(),
            batches: Family::default(),
            restarts: Family::default(),
            lag: Family::default(),
            last_commit_seconds: Family::default(),
            watermark_delay_seconds: Family::default(),
            checkpoint_bytes: Family::default(),
            operator_records: Family::default(),
            breaker_state: Family::default(),
            breaker_opened: Family::default(),
            models: Default::default(),
            live: Arc::default(),
        }
    }

    /// Returns the progress of every unit running here, for the heartbeat.
    pub fn progress(&self) -> Vec<StreamUnitProgress> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.iter()
            .map(|((pipeline, stage, unit), metrics)| StreamUnitProgress {
                pipeline: pipeline.clone(),
                stage: stage.clone(),
                unit: *unit,
                lag: metrics.lag.get(),
                records_in: metrics.records_in.get(),
                records_out: metrics.records_out.get(),
                dead_letters: metrics.dead_letters.get(),
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                last_commit_unix_ms: (metrics.last_commit_seconds.get() * 1000.0) as u64,
            })
            .collect()
    }

    /// Registers every family.
    pub fn register(&self, registry: &mut Registry) {
        self.models.register(registry);
        let prefix = registry.sub_registry_with_prefix("essaim_stream");
        prefix.register(
            "records_in",
            "Records read by stream units",
            self.records_in.clone(),
        );
        prefix.register(
            "records_out",
            "Records that reached a sink",
            self.records_out.clone(),
        );
        prefix.register(
            "dead_letters",
            "Records refused (bad line, row that does not fit its table) and stored as dead letters",
            self.dead_letters.clone(),
        );
        prefix.register(
            "duplicates_skipped",
            "Shuffle records seen again after an upstream replay, skipped",
            self.duplicates_skipped.clone(),
        );
        prefix.register(
            "commits",
            "Transactions committed by stream units",
            self.batches.clone(),
        );
        prefix.register(
            "restarts",
            "Restarts of a unit from its last commit after a transient failure",
            self.restarts.clone(),
        );
        prefix.register(
            "consumer_lag",
            "Messages of the unit's partition not yet committed",
            self.lag.clone(),
        );
        prefix.register_with_unit(
            "last_commit_timestamp",
            "When the unit last committed, in seconds since the epoch (its commit age is time() minus this)",
            Unit::Seconds,
            self.last_commit_seconds.clone(),
        );
        prefix.register_with_unit(
            "watermark_delay",
            "Wall-clock time minus the unit's event-time watermark",
            Unit::Seconds,
            self.watermark_delay_seconds.clone(),
        );
        prefix.register_with_unit(
            "checkpoint",
            "Size of the unit's last checkpoint",
            Unit::Bytes,
            self.checkpoint_bytes.clone(),
        );
        prefix.register_with_unit(
            "end_to_end_latency",
            "From the broker's publish time to the commit that covers the message",
            Unit::Seconds,
            self.latency_seconds.clone(),
        );
        prefix.register_with_unit(
            "checkpoint_duration",
            "Duration of the transaction committing results, positions and checkpoint",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        prefix.register_with_unit(
            "turn_duration",
            "Duration of one read-process-commit turn",
            Unit::Seconds,
            self.turn_seconds.clone(),
        );
        prefix.register(
            "operator_records",
            "Records emitted per operator port (and read per source), as checkpointed",
            self.operator_records.clone(),
        );
        // The connectors' breakers are not a stream unit's: their own subsystem.
        let connector = registry.sub_registry_with_prefix("essaim_connector");
        connector.register(
            "breaker_state",
            "State of a connector's circuit breaker: 0 closed, 1 half-open (a probe is out), 2 open (calls fail at once)",
            self.breaker_state.clone(),
        );
        connector.register(
            "breaker_opened",
            "Times a connector's circuit breaker opened after consecutive failures",
            self.breaker_opened.clone(),
        );
    }

    /// Returns the state gauge and the openings counter of one breaker.
    pub fn breaker_series(&self, labels: &BreakerLabels) -> (Gauge, Counter) {
        (
            self.breaker_state.get_or_create(labels).clone(),
            self.breaker_opened.get_or_create(labels).clone(),
        )
    }

    /// Removes a breaker's series once no task of its pipeline runs here, so that a
    /// pipeline which moved away does not leave an open breaker behind (its alert
    /// would fire for a breaker nobody uses).
    pub fn forget_breaker(&self, labels: &BreakerLabels) {
        self.breaker_state.remove(labels);
        self.breaker_opened.remove(labels);
    }

    /// Removes the series of units that ended here, so that a unit which moved to
    /// another worker does not leave its last lag and commit time behind (alerts would
    /// read them as a live unit's).
    pub fn forget_units(&self, pipeline: &str, stage: &str, units: &[u32]) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        for unit in units {
            live.remove(&(pipeline.to_owned(), stage.to_owned(), *unit));
            let labels = UnitLabels {
                pipeline: pipeline.to_owned(),
                stage: stage.to_owned(),
                unit: unit.to_string(),
            };
            self.records_in.remove(&labels);
            self.records_out.remove(&labels);
            self.dead_letters.remove(&labels);
            self.duplicates_skipped.remove(&labels);
            self.batches.remove(&labels);
            self.restarts.remove(&labels);
            self.lag.remove(&labels);
            self.last_commit_seconds.remove(&labels);
            self.watermark_delay_seconds.remove(&labels);
            self.checkpoint_bytes.remove(&labels);
            self.latency_seconds.remove(&labels);
            self.commit_seconds.remove(&labels);
            self.turn_seconds.remove(&labels);
        }
    }

    /// Returns the handles of one unit.
    pub fn unit(&self, pipeline: &str, stage: &str, unit: u32) -> Arc<UnitMetrics> {
        let labels = UnitLabels {
            pipeline: pipeline.to_owned(),
            stage: stage.to_owned(),
            unit: unit.to_string(),
        };
        let metrics = Arc::new(UnitMetrics {
            records_in: self.records_in.get_or_create(&labels).clone(),
            records_out: self.records_out.get_or_create(&labels).clone(),
            dead_letters: self.dead_letters.get_or_create(&labels).clone(),
            duplicates_skipped: self.duplicates_skipped.get_or_create(&labels).clone(),
            batches: self.batches.get_or_create(&labels).clone(),
            restarts: self.restarts.get_or_create(&labels).clone(),
            lag: self.lag.get_or_create(&labels).clone(),
            last_commit_seconds: self.last_commit_seconds.get_or_create(&labels).clone(),
            watermark_delay_seconds: self.watermark_delay_seconds.get_or_create(&labels).clone(),
            checkpoint_bytes: self.checkpoint_bytes.get_or_create(&labels).clone(),
            latency_seconds: self.latency_seconds.get_or_create(&labels).clone(),
            commit_seconds: self.commit_seconds.get_or_create(&labels).clone(),
            turn_seconds: self.turn_seconds.get_or_create(&labels).clone(),
            operators: self.operator_records.clone(),
            pipeline: pipeline.to_owned(),
            unit: unit.to_string(),
        });
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (pipeline.to_owned(), stage.to_owned(), unit),
                Arc::clone(&metrics),
            );
        metrics
    }
}

/// The series of one unit.
#[derive(Debug)]
pub struct UnitMetrics {
    /// Records read.
    pub records_in: Counter,
    /// Records that reached a sink.
    pub records_out: Counter,
    /// Dead letters.
    pub dead_letters: Counter,
    /// Shuffle duplicates skipped.
    pub duplicates_skipped: Counter,
    /// Commits.
    pub batches: Counter,
    /// Restarts.
    pub restarts: Counter,
    /// Consumer lag.
    pub lag: Gauge,
    /// When the last commit was, in seconds since the epoch.
    pub last_commit_seconds: Gauge<f64, AtomicU64>,
    /// Watermark delay.
    pub watermark_delay_seconds: Gauge,
    /// Checkpoint size.
    pub checkpoint_bytes: Gauge,
    /// End-to-end latency.
    pub latency_seconds: Histogram,
    /// Commit duration.
    pub commit_seconds: Histogram,
    /// Turn duration.
    pub turn_seconds: Histogram,
    operators: Family<OperatorLabels, Gauge>,
    pipeline: String,
    unit: String,
}

impl UnitMetrics {
    /// Counts what a turn read, skipped, refused and produced, and its checkpoint.
    pub fn count_turn(&self, turn: &Turn) {
        self.records_in.inc_by(turn.records_in);
        self.duplicates_skipped.inc_by(turn.duplicates_skipped);
        self.dead_letters.inc_by(turn.dead_letters.len() as u64);
        self.records_out.inc_by(turn.results.len() as u64);
        self.checkpoint_bytes
            .set(i64::try_from(turn.checkpoint.len()).unwrap_or(i64::MAX));
    }

    /// Observes, for every message of `batch` whose publish time is known, the time
    /// from its publication to the commit that covers it, made at `committed_ms`.
    pub fn observe_latency(&self, batch: &[Fetched], committed_ms: i64) {
        for published in batch.iter().filter_map(|fetched| fetched.published_ms) {
            #[allow(clippy::cast_precision_loss)]
            self.latency_seconds
                .observe((committed_ms - published).max(0) as f64 / 1000.0);
        }
    }

    /// Publishes the operators' counters.
    pub fn set_operator_counts(&self, stats: &essaim_stream::pipeline::PipelineStats) {
        let series = stats
            .emitted
            .iter()
            .map(|(stream, count)| (stream.clone(), count))
            .chain(
                stats
                    .source_records
                    .iter()
                    .map(|(source, count)| (format!("source:{source}"), count)),
            );
        for (stream, count) in series {
            let labels = OperatorLabels {
                pipeline: self.pipeline.clone(),
                unit: self.unit.clone(),
                stream,
            };
            self.operators
                .get_or_create(&labels)
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }
}
