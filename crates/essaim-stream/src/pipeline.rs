//! The in-process runner of a whole pipeline: the reference that a distributed runtime
//! must agree with, and the driver of deterministic tests.
//!
//! It owns one instance of every operator of a validated [`PipelineSpec`] and moves
//! records along the DAG in a fixed order, so the same input always gives the same
//! outputs. It also keeps event time:
//! - each source's watermark is the max event time it has seen minus its
//!   `out_of_orderness_ms` (a bounded-disorder watermark);
//! - an operator's watermark is the minimum of its inputs' watermarks;
//! - after each record, operators whose watermark advanced are told so in topological
//!   order, and what they emit travels downstream *before* the downstream operators'
//!   watermarks advance (so a window's results are never late for the next window);
//! - [`Pipeline::finish`] moves every watermark to the end of time, which fires and
//!   flushes everything still open.
//!
//! Records leaving by a port no operator or sink reads are counted in
//! [`PipelineStats::unrouted`], never silently lost. The whole state — sources' clocks,
//! every stateful operator and the counters — is one serde value
//! ([`PipelineState`]): restoring it into a fresh pipeline and feeding the rest of the
//! input gives the outputs of an uninterrupted run.
//!
//! The checkpoint and its restoring are in `checkpoint`; how records and watermarks
//! move along the DAG is in `flow`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ops::enrich::{DimensionTable, Enrich, TableError};
use crate::ops::join::Join;
use crate::ops::merger::Merger;
use crate::ops::predict::{Predict, PredictModel};
use crate::ops::sharder::Sharder;
use crate::ops::stateless::{Copier, Filter, FlatMap, Map, Splitter};
use crate::record::{EventTime, Record};
use crate::schema::RecordError;
use crate::spec::{OperatorKind, PipelineSpec, StreamRef};
use crate::window::Window;

/// A pipeline that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// An enrich operator's table was not supplied.
    #[error("table `{0}` was not loaded")]
    MissingTable(String),
    /// A table's bytes do not parse.
    #[error("table `{table}` does not load")]
    BadTable {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: TableError,
    },
    /// A record was pushed to a source the spec does not have.
    #[error("unknown source `{0}`")]
    UnknownSource(String),
    /// A line of a source does not parse (the runtime dead-letters it).
    #[error("source `{source_name}`: bad line")]
    BadLine {
        /// The source.
        source_name: String,
        /// Why.
        #[source]
        source: RecordError,
    },
}

/// Which part of a pipeline a [`Pipeline`] runs.
///
/// A distributed runtime cuts a pipeline at its sharders: tasks of the first stage run
/// everything up to the sharders ([`Role::BeforeShuffle`]) and hand each sharded record
/// to the task owning its partition, which runs everything after
/// ([`Role::AfterShuffle`]). So keyed state lives on exactly one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The whole spec in this process: sharders only set keys.
    #[default]
    Whole,
    /// Sources to sharders: what leaves a sharder's `out` goes to
    /// [`Pipeline::drain_shuffled`] instead of downstream.
    BeforeShuffle,
    /// Sharders to sinks: records enter by [`Pipeline::push_shuffled`], and event time
    /// advances by [`Pipeline::advance_shuffle_watermark`].
    AfterShuffle,
}

/// A record leaving a sharder for the task that owns its partition.
#[derive(Debug, Clone, PartialEq)]
pub struct ShuffledRecord {
    /// The sharder.
    pub sharder: String,
    /// `partition_of(key, partitions)`.
    pub partition: u32,
    /// The record, its key set.
    pub record: Record,
}

/// A record that reached a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// The sink's name.
    pub sink: String,
    /// The record.
    pub record: Record,
}

/// Counters of a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStats {
    /// Records read per source.
    pub source_records: BTreeMap<String, u64>,
    /// Records emitted per operator and port name (`"operator.port"`).
    pub emitted: BTreeMap<String, u64>,
    /// Of those, records on ports nothing reads, per `"operator.port"`.
    pub unrouted: BTreeMap<String, u64>,
}

/// One running operator.
#[derive(Debug)]
enum Instance {
    Filter(Filter),
    Map(Map),
    FlatMap(FlatMap),
    Copier(Copier),
    Splitter(Splitter),
    Sharder(Sharder),
    Merger(Merger),
    Join(Join),
    Enrich(Enrich),
    Window(Window),
    Predict(Predict),
}

/// Where records of one stream go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Operator(usize),
    Sink(usize),
}

/// A validated pipeline running in this process.
#[derive(Debug)]
pub struct Pipeline {
    spec: PipelineSpec,
    instances: Vec<Instance>,
    /// Consumers of the records entering by a node's port 0 (a source's records, or a
    /// sharder's after the shuffle), by node name: looked up without building a key.
    entry_targets: BTreeMap<String, Vec<Target>>,
    /// The same for operators, by operator index and port: what the per-record path
    /// reads, without building a key.
    port_targets: Vec<Vec<Vec<Target>>>,
    /// `"operator.port"`, the key of [`PipelineStats::emitted`], by operator and port.
    port_keys: Vec<Vec<String>>,
    source_max_seen: BTreeMap<String, EventTime>,
    operator_watermarks: Vec<EventTime>,
    stats: PipelineStats,
    role: Role,
    /// The watermark of the shuffled input (after the shuffle).
    shuffle_watermark: EventTime,
    /// Records leaving sharders (before the shuffle), until taken.
    shuffled: Vec<ShuffledRecord>,
    /// The fields a shuffled record keeps (`None`: all), see
    /// [`Pipeline::with_shuffle_fields`].
    shuffle_fields: Option<BTreeSet<String>>,
}

impl Pipeline {
    /// Loads the dimension tables a spec declares from their CSV bytes, by table name.
    pub fn load_tables(
        spec: &PipelineSpec,
        bytes: &BTreeMap<String, Vec<u8>>,
    ) -> Result<BTreeMap<String, Arc<DimensionTable>>, PipelineError> {
        let mut tables = BTreeMap::new();
        for table in &spec.tables {
            let data = bytes
                .get(&table.name)
                .ok_or_else(|| PipelineError::MissingTable(table.name.clone()))?;
            let loaded =
                DimensionTable::from_csv(table.columns.clone(), &table.key, table.header, data)
                    .map_err(|source| PipelineError::BadTable {
                        table: table.name.clone(),
                        source,
                    })?;
            tables.insert(table.name.clone(), Arc::new(loaded));
        }
        Ok(tables)
    }

    /// Builds a pipeline with empty state.
    pub fn new(
        spec: PipelineSpec,
        tables: &BTreeMap<String, Arc<DimensionTable>>,
    ) -> Result<Pipeline, PipelineError> {
        let mut instances = Vec::new();
        for operator in &spec.operators {
            instances.push(instantiate(&operator.kind, tables)?);
        }
        let mut routes: BTreeMap<StreamRef, Vec<Target>> = BTreeMap::new();
        for (index, operator) in spec.operators.iter().enumerate() {
            for input in &operator.inputs {
                routes
                    .entry(input.clone())
                    .or_default()
                    .push(Target::Operator(index));
            }
        }
        for (index, sink) in spec.sinks.iter().enumerate() {
            routes
                .entry(sink.input.clone())
                .or_default()
                .push(Target::Sink(index));
        }
        let port_keys: Vec<Vec<String>> = spec
            .operators
            .iter()
            .map(|operator| {
                let ports = operator.kind.port_names();
                ports
                    .iter()
                    .map(|port| format!("{}.{port}", operator.name))
                    .collect()
            })
            .collect();
        let port_targets = spec
            .operators
            .iter()
            .zip(&port_keys)
            .map(|(operator, ports)| {
                (0..ports.len())
                    .map(|port| {
                        let stream = StreamRef {
                            node: operator.name.clone(),
                            port,
                        };
                        routes.get(&stream).cloned().unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        let entry_targets = routes
            .into_iter()
            .filter(|(stream, _)| stream.port == 0)
            .map(|(stream, targets)| (stream.node, targets))
            .collect();
        let source_max_seen = spec
            .sources
            .iter()
            .map(|source| (source.name.clone(), EventTime::MIN))
            .collect();
        let operator_watermarks = vec![EventTime::MIN; spec.operators.len()];
        Ok(Pipeline {
            spec,
            instances,
            entry_targets,
            port_targets,
            port_keys,
            source_max_seen,
            operator_watermarks,
            stats: PipelineStats::default(),
            role: Role::Whole,
            shuffle_watermark: EventTime::MIN,
            shuffled: Vec::new(),
            shuffle_fields: None,
        })
    }

    /// Runs only part of the pipeline (see [`Role`]).
    pub fn with_role(mut self, role: Role) -> Pipeline {
        self.role = role;
        self.operator_watermarks = self.computed_watermarks();
        self
    }

    /// Before the shuffle, records leaving a sharder keep only these fields (what the
    /// stage after the shuffle reads, by [`crate::projection::shuffle_fields`]); `None`
    /// keeps them all. Smaller shuffle messages, same results.
    pub fn with_shuffle_fields(mut self, fields: Option<BTreeSet<String>>) -> Pipeline {
        self.shuffle_fields = fields;
        self
    }

    /// Returns the part of the pipeline this runs.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Takes the records that left sharders since the last call (before the shuffle),
    /// keeping the buffer for the next ones.
    pub fn drain_shuffled(&mut self) -> std::vec::Drain<'_, ShuffledRecord> {
        self.shuffled.drain(..)
    }

    /// Returns the watermark of an operator (for a sharder before the shuffle: the
    /// event time to forward with its records), `None` for an unknown name.
    pub fn operator_watermark(&self, name: &str) -> Option<EventTime> {
        let index = self.spec.operators.iter().position(|op| op.name == name)?;
        Some(self.operator_watermarks[index])
    }

    /// Pushes a record that left `sharder` on another task (after the shuffle). The
    /// sharder already counted it and set its key.
    pub fn push_shuffled(
        &mut self,
        sharder: &str,
        record: Record,
        out: &mut Vec<SinkRecord>,
    ) -> Result<(), PipelineError> {
        if !self
            .spec
            .operators
            .iter()
            .any(|op| op.name == sharder && matches!(op.kind, OperatorKind::Sharder { .. }))
        {
            return Err(PipelineError::UnknownSource(sharder.to_owned()));
        }
        self.route(sharder, record, out);
        Ok(())
    }

    /// Moves the event time of the shuffled input forward (after the shuffle): the
    /// minimum over every upstream partition of its watermark. Never moves back.
    pub fn advance_shuffle_watermark(&mut self, watermark: EventTime, out: &mut Vec<SinkRecord>) {
        if watermark > self.shuffle_watermark {
            self.shuffle_watermark = watermark;
            self.advance_watermarks(out);
        }
    }

    /// Returns the watermark of the shuffled input (after the shuffle).
    pub fn shuffle_watermark(&self) -> EventTime {
        self.shuffle_watermark
    }

    /// Returns the counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Makes `model` predict the next records of every `predict` operator whose
    /// [`crate::ops::predict::PredictConfig::model_key`] is `key` (for a model loaded in process, its
    /// reference); returns how many operators it was set on. The runtime calls it
    /// between batches, so that one batch is predicted by one version.
    pub fn set_model(&mut self, key: &str, model: &Arc<dyn PredictModel>) -> usize {
        let mut set = 0;
        for instance in &mut self.instances {
            if let Instance::Predict(predict) = instance
                && predict.config().model_key() == key
            {
                predict.set_model(Arc::clone(model));
                set += 1;
            }
        }
        set
    }

    /// Adds to `texts`, under each model key, the text that every `predict` operator
    /// asking a runner and reading `entry` directly (a source, or a sharder after the
    /// shuffle) will send for `record`. The runtime asks the runner for a whole batch's
    /// texts in one request before running the batch; an operator further down (whose
    /// records may have changed on their way) asks for each record when it arrives.
    pub fn runner_texts(
        &self,
        entry: &str,
        record: &Record,
        texts: &mut BTreeMap<String, Vec<String>>,
    ) {
        for (operator, instance) in self.spec.operators.iter().zip(&self.instances) {
            if let Instance::Predict(predict) = instance
                && predict.config().runner.is_some()
                && operator.inputs.iter().any(|input| input.node == entry)
            {
                let key = predict.config().model_key();
                texts.entry(key).or_default().push(predict.text_of(record));
            }
        }
    }

    /// Parses one line of a source as [`Pipeline::push_line`] would, without pushing
    /// it: `None` for a header line, an unknown source or a bad line.
    pub fn parse_line(&self, source: &str, bytes: &[u8], line: u64) -> Option<Record> {
        let spec = self.spec.sources.iter().find(|spec| spec.name == source)?;
        if spec.header && line == 0 {
            return None;
        }
        spec.schema.parse_line(bytes, line).ok()
    }

    /// Returns the spec the pipeline runs.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// Parses one line of a source and pushes it. Line 0 of a source with a header is
    /// skipped. A bad line is an error for the caller to dead-letter; the pipeline is
    /// unchanged by it.
    pub fn push_line(
        &mut self,
        source: &str,
        bytes: &[u8],
        line: u64,
        out: &mut Vec<SinkRecord>,
    ) -> Result<(), PipelineError> {
        let Some(spec) = self.spec.sources.iter().find(|spec| spec.name == source) else {
            return Err(PipelineError::UnknownSource(source.to_owned()));
        };
        if spec.header && line == 0 {
            return Ok(());
        }
        let record =
            spec.schema
                .parse_line(bytes, line)
                .map_err(|error| PipelineError::BadLine {
                    source_name: source.to_owned(),
                    source: error,
                })?;
        self.push(source, record, out)
    }

    /// Pushes one record from a source through the pipeline, then advances event time.
    pub fn push(
        &mut self,
        source: &str,
        record: Record,
        out: &mut Vec<SinkRecord>,
    ) -> Result<(), PipelineError> {
        let Some(max_seen) = self.source_max_seen.get_mut(source) else {
            return Err(PipelineError::UnknownSource(source.to_owned()));
        };
        // Watermarks follow only the sources' maxima (and the shuffle's): a record that
        // moves none leaves every watermark where it is, so most records skip that walk.
        let moved = record.time > *max_seen;
        *max_seen = (*max_seen).max(record.time);
        match self.stats.source_records.get_mut(source) {
            Some(count) => *count += 1,
            None => {
                self.stats.source_records.insert(source.to_owned(), 1);
            }
        }
        self.route(source, record, out);
        if moved {
            self.advance_watermarks(out);
        }
        Ok(())
    }

    /// Ends the input: every watermark moves to the end of time, so every window fires
    /// and every open join block times out.
    pub fn finish(&mut self, out: &mut Vec<SinkRecord>) {
        for max_seen in self.source_max_seen.values_mut() {
            *max_seen = EventTime::MAX;
        }
        self.shuffle_watermark = EventTime::MAX;
        self.advance_watermarks(out);
    }

    /// Ends one source: its watermark moves to the end of time (the others keep
    /// theirs), so what waited only for it fires.
    pub fn end_source(
        &mut self,
        source: &str,
        out: &mut Vec<SinkRecord>,
    ) -> Result<(), PipelineError> {
        let Some(max_seen) = self.source_max_seen.get_mut(source) else {
            return Err(PipelineError::UnknownSource(source.to_owned()));
        };
        *max_seen = EventTime::MAX;
        self.advance_watermarks(out);
        Ok(())
    }

    /// The watermark of a source: max seen minus its out-of-orderness.
    pub fn source_watermark(&self, source: &str) -> EventTime {
        let max_seen = self
            .source_max_seen
            .get(source)
            .copied()
            .unwrap_or(EventTime::MIN);
        if max_seen == EventTime::MAX {
            return EventTime::MAX;
        }
        let out_of_orderness = self
            .spec
            .sources
            .iter()
            .find(|spec| spec.name == source)
            .map_or(0, |spec| spec.out_of_orderness_ms);
        max_seen.saturating_sub(out_of_orderness)
    }
}

mod checkpoint;
mod flow;

use flow::instantiate;

pub use checkpoint::{OperatorState, PipelineState};

#[cfg(test)]
mod tests;
