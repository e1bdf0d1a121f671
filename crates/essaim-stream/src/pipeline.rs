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

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ops::enrich::{DimensionTable, Enrich, TableError};
use crate::ops::join::{Join, JoinState};
use crate::ops::merger::{Merger, MergerState};
use crate::ops::sharder::{Sharder, SharderState};
use crate::ops::stateless::{Copier, Filter, FlatMap, Map, Splitter};
use crate::ops::{Emitted, Port};
use crate::record::{EventTime, Record};
use crate::schema::RecordError;
use crate::spec::{OperatorKind, PipelineSpec, StreamRef};
use crate::window::{Window, WindowState};

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

/// The checkpoint of a whole pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineState {
    /// Max event time seen per source.
    pub source_max_seen: BTreeMap<String, EventTime>,
    /// The state of each stateful operator, by name.
    pub operators: BTreeMap<String, OperatorState>,
    /// The counters.
    pub stats: PipelineStats,
    /// The watermark of the shuffled input, for a pipeline after the shuffle.
    #[serde(default = "min_event_time")]
    pub shuffle_watermark: EventTime,
}

fn min_event_time() -> EventTime {
    EventTime::MIN
}

/// The state of one stateful operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorState {
    /// A sharder's counts.
    Sharder(SharderState),
    /// A merger's remembered ids.
    Merger(MergerState),
    /// A join's open blocks.
    Join(JoinState),
    /// A window's open windows.
    Window(WindowState),
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
    /// Consumers of each `(node, port)`.
    routes: BTreeMap<StreamRef, Vec<Target>>,
    port_names: Vec<Vec<String>>,
    source_max_seen: BTreeMap<String, EventTime>,
    operator_watermarks: Vec<EventTime>,
    stats: PipelineStats,
    role: Role,
    /// The watermark of the shuffled input (after the shuffle).
    shuffle_watermark: EventTime,
    /// Records leaving sharders (before the shuffle), until taken.
    shuffled: Vec<ShuffledRecord>,
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
        let port_names = spec
            .operators
            .iter()
            .map(|operator| operator.kind.port_names())
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
            routes,
            port_names,
            source_max_seen,
            operator_watermarks,
            stats: PipelineStats::default(),
            role: Role::Whole,
            shuffle_watermark: EventTime::MIN,
            shuffled: Vec::new(),
        })
    }

    /// Runs only part of the pipeline (see [`Role`]).
    pub fn with_role(mut self, role: Role) -> Pipeline {
        self.role = role;
        self.operator_watermarks = self.computed_watermarks();
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
        let stream = StreamRef {
            node: sharder.to_owned(),
            port: 0,
        };
        self.route(&stream, record, out);
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

    /// Builds a pipeline that resumes from a checkpoint. Operators absent from the
    /// checkpoint (added to the spec since) start empty.
    pub fn restore(
        spec: PipelineSpec,
        tables: &BTreeMap<String, Arc<DimensionTable>>,
        state: PipelineState,
    ) -> Result<Pipeline, PipelineError> {
        let mut pipeline = Pipeline::new(spec, tables)?;
        for (name, max_seen) in state.source_max_seen {
            if let Some(slot) = pipeline.source_max_seen.get_mut(&name) {
                *slot = max_seen;
            }
        }
        let mut operator_states = state.operators;
        for (operator, instance) in pipeline
            .spec
            .operators
            .iter()
            .zip(pipeline.instances.iter_mut())
        {
            let Some(saved) = operator_states.remove(&operator.name) else {
                continue;
            };
            match (instance, saved, &operator.kind) {
                (
                    Instance::Sharder(sharder),
                    OperatorState::Sharder(saved),
                    OperatorKind::Sharder { key, partitions },
                ) => {
                    *sharder = Sharder::with_state(key.clone(), *partitions, saved);
                }
                (
                    Instance::Merger(merger),
                    OperatorState::Merger(saved),
                    OperatorKind::Merger { capacity },
                ) => {
                    *merger = Merger::with_state(*capacity, saved);
                }
                (Instance::Join(join), OperatorState::Join(saved), OperatorKind::Join(config)) => {
                    *join = Join::with_state(config.clone(), saved);
                }
                (
                    Instance::Window(window),
                    OperatorState::Window(saved),
                    OperatorKind::Window(config),
                ) => {
                    *window = Window::with_state(config.clone(), saved);
                }
                // The operator changed kind since the checkpoint: it starts empty.
                _ => {}
            }
        }
        pipeline.stats = state.stats;
        pipeline.shuffle_watermark = state.shuffle_watermark;
        // Operator watermarks follow from the sources' clocks; the windows kept theirs.
        pipeline.operator_watermarks = pipeline.computed_watermarks();
        Ok(pipeline)
    }

    /// Returns the checkpoint of the whole pipeline.
    pub fn snapshot(&self) -> PipelineState {
        let mut operators = BTreeMap::new();
        for (operator, instance) in self.spec.operators.iter().zip(&self.instances) {
            let state = match instance {
                Instance::Sharder(sharder) => OperatorState::Sharder(sharder.state().clone()),
                Instance::Merger(merger) => OperatorState::Merger(merger.state().clone()),
                Instance::Join(join) => OperatorState::Join(join.state().clone()),
                Instance::Window(window) => OperatorState::Window(window.state().clone()),
                _ => continue,
            };
            operators.insert(operator.name.clone(), state);
        }
        PipelineState {
            source_max_seen: self.source_max_seen.clone(),
            operators,
            stats: self.stats.clone(),
            shuffle_watermark: self.shuffle_watermark,
        }
    }

    /// Returns the counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
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
        *max_seen = (*max_seen).max(record.time);
        *self
            .stats
            .source_records
            .entry(source.to_owned())
            .or_insert(0) += 1;
        let stream = StreamRef {
            node: source.to_owned(),
            port: 0,
        };
        self.route(&stream, record, out);
        self.advance_watermarks(out);
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

    /// Every operator's watermark, from the sources' clocks (inputs come first).
    fn computed_watermarks(&self) -> Vec<EventTime> {
        let mut watermarks: Vec<EventTime> = Vec::with_capacity(self.spec.operators.len());
        for operator in &self.spec.operators {
            if self.role == Role::AfterShuffle
                && matches!(operator.kind, OperatorKind::Sharder { .. })
            {
                watermarks.push(self.shuffle_watermark);
                continue;
            }
            let mut watermark = EventTime::MAX;
            for input in &operator.inputs {
                let input_watermark = match self
                    .spec
                    .operators
                    .iter()
                    .position(|other| other.name == input.node)
                {
                    Some(index) => watermarks[index],
                    None => self.source_watermark(&input.node),
                };
                watermark = watermark.min(input_watermark);
            }
            watermarks.push(watermark);
        }
        watermarks
    }

    fn advance_watermarks(&mut self, out: &mut Vec<SinkRecord>) {
        let computed = self.computed_watermarks();
        for (index, watermark) in computed.into_iter().enumerate() {
            if watermark <= self.operator_watermarks[index] {
                continue;
            }
            self.operator_watermarks[index] = watermark;
            let mut emitted = Vec::new();
            match &mut self.instances[index] {
                Instance::Join(join) => join.on_watermark(watermark, &mut emitted),
                Instance::Window(window) => window.on_watermark(watermark, &mut emitted),
                _ => continue,
            }
            // Results travel downstream before later operators see the new watermark.
            for emitted in emitted {
                self.route_emitted(index, emitted, out);
            }
        }
    }

    /// Delivers `record` on `stream` and everything it causes, breadth first.
    fn route(&mut self, stream: &StreamRef, record: Record, out: &mut Vec<SinkRecord>) {
        let mut queue: VecDeque<(Target, Record)> = VecDeque::new();
        self.enqueue(stream, record, &mut queue);
        let mut emitted = Vec::new();
        while let Some((target, record)) = queue.pop_front() {
            match target {
                Target::Sink(index) => out.push(SinkRecord {
                    sink: self.spec.sinks[index].name.clone(),
                    record,
                }),
                Target::Operator(index) => {
                    process(&mut self.instances[index], record, &mut emitted);
                    let shuffles = self.role == Role::BeforeShuffle;
                    for Emitted { port, record } in emitted.drain(..) {
                        let stream = self.count(index, port);
                        if shuffles
                            && port.0 == 0
                            && let OperatorKind::Sharder { partitions, .. } =
                                &self.spec.operators[index].kind
                        {
                            let partition = crate::hash::partition_of(
                                record.key.as_deref().unwrap_or_default(),
                                *partitions,
                            );
                            self.shuffled.push(ShuffledRecord {
                                sharder: stream.node,
                                partition,
                                record,
                            });
                            continue;
                        }
                        self.enqueue(&stream, record, &mut queue);
                    }
                }
            }
        }
    }

    fn route_emitted(&mut self, index: usize, emitted: Emitted, out: &mut Vec<SinkRecord>) {
        let stream = self.count(index, emitted.port);
        self.route(&stream, emitted.record, out);
    }

    /// Counts an emission and returns the stream it is on.
    fn count(&mut self, index: usize, port: Port) -> StreamRef {
        let operator = &self.spec.operators[index].name;
        let port_name = self.port_names[index]
            .get(port.0)
            .map_or("?", String::as_str);
        *self
            .stats
            .emitted
            .entry(format!("{operator}.{port_name}"))
            .or_insert(0) += 1;
        let stream = StreamRef {
            node: operator.clone(),
            port: port.0,
        };
        if !self.routes.contains_key(&stream) {
            *self
                .stats
                .unrouted
                .entry(format!("{operator}.{port_name}"))
                .or_insert(0) += 1;
        }
        stream
    }

    fn enqueue(&self, stream: &StreamRef, record: Record, queue: &mut VecDeque<(Target, Record)>) {
        let Some(targets) = self.routes.get(stream) else {
            return;
        };
        let Some((last, rest)) = targets.split_last() else {
            return;
        };
        for target in rest {
            queue.push_back((*target, record.clone()));
        }
        queue.push_back((*last, record));
    }
}

fn instantiate(
    kind: &OperatorKind,
    tables: &BTreeMap<String, Arc<DimensionTable>>,
) -> Result<Instance, PipelineError> {
    Ok(match kind {
        OperatorKind::Filter(predicate) => Instance::Filter(Filter::new(predicate.clone())),
        OperatorKind::Map(config) => Instance::Map(Map::new(config.clone())),
        OperatorKind::FlatMap { field, separator } => {
            Instance::FlatMap(FlatMap::new(field.clone(), separator.clone()))
        }
        OperatorKind::Copier { outputs } => Instance::Copier(Copier::new(outputs.len())),
        OperatorKind::Splitter { branches, .. } => Instance::Splitter(Splitter::new(
            branches
                .iter()
                .map(|(_, predicate)| predicate.clone())
                .collect(),
        )),
        OperatorKind::Sharder { key, partitions } => {
            Instance::Sharder(Sharder::new(key.clone(), *partitions))
        }
        OperatorKind::Merger { capacity } => Instance::Merger(Merger::new(*capacity)),
        OperatorKind::Join(config) => Instance::Join(Join::new(config.clone())),
        OperatorKind::Enrich { table, key, fields } => {
            let loaded = tables
                .get(table)
                .ok_or_else(|| PipelineError::MissingTable(table.clone()))?;
            // Validation checked the columns against the spec's table; a loaded table
            // with other columns is a caller mistake reported the same way.
            let enrich = Enrich::new(Arc::clone(loaded), key.clone(), fields)
                .map_err(|_| PipelineError::MissingTable(table.clone()))?;
            Instance::Enrich(enrich)
        }
        OperatorKind::Window(config) => Instance::Window(Window::new(config.clone())),
    })
}

fn process(instance: &mut Instance, record: Record, out: &mut Vec<Emitted>) {
    match instance {
        Instance::Filter(filter) => filter.on_record(record, out),
        Instance::Map(map) => map.on_record(record, out),
        Instance::FlatMap(flat_map) => flat_map.on_record(record, out),
        Instance::Copier(copier) => copier.on_record(record, out),
        Instance::Splitter(splitter) => splitter.on_record(record, out),
        Instance::Sharder(sharder) => sharder.on_record(record, out),
        Instance::Merger(merger) => merger.on_record(record, out),
        Instance::Join(join) => join.on_record(record, out),
        Instance::Enrich(enrich) => enrich.on_record(record, out),
        Instance::Window(window) => window.on_record(record, out),
    }
}

#[cfg(test)]
mod tests;
