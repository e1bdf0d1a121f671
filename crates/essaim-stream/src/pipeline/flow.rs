//! How records and event time move through a pipeline: operator instances, routing
//! along the DAG in a fixed order, counting per port, and watermarks.
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::{Instance, Pipeline, PipelineError, Role, ShuffledRecord, SinkRecord, Target};
use crate::ops::enrich::{DimensionTable, Enrich};
use crate::ops::join::Join;
use crate::ops::merger::Merger;
use crate::ops::predict::Predict;
use crate::ops::sharder::Sharder;
use crate::ops::stateless::{Copier, Filter, FlatMap, Map, Splitter};
use crate::ops::{Emitted, Port};
use crate::record::{EventTime, Record};
use crate::spec::OperatorKind;
use crate::window::Window;

impl Pipeline {
    /// Every operator's watermark, from the sources' clocks (inputs come first).
    pub(super) fn computed_watermarks(&self) -> Vec<EventTime> {
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

    pub(super) fn advance_watermarks(&mut self, out: &mut Vec<SinkRecord>) {
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

    /// Delivers `record`, entering by port 0 of `node` (a source, or a sharder after the
    /// shuffle), and everything it causes, breadth first.
    pub(super) fn route(&mut self, node: &str, record: Record, out: &mut Vec<SinkRecord>) {
        let mut queue: VecDeque<(Target, Record)> = VecDeque::new();
        if let Some(targets) = self.entry_targets.get(node) {
            enqueue(targets, record, &mut queue);
        }
        self.run_queue(queue, out);
    }

    /// Runs queued deliveries until none is left. Per record it builds no key and
    /// allocates nothing but what the operators do.
    fn run_queue(&mut self, mut queue: VecDeque<(Target, Record)>, out: &mut Vec<SinkRecord>) {
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
                        self.count(index, port);
                        if shuffles
                            && port.0 == 0
                            && let OperatorKind::Sharder { partitions, .. } =
                                &self.spec.operators[index].kind
                        {
                            let partition = crate::hash::partition_of(
                                record.key.as_deref().unwrap_or_default(),
                                *partitions,
                            );
                            let mut record = record;
                            if let Some(keep) = &self.shuffle_fields {
                                record.fields.retain(|name, _| keep.contains(name));
                            }
                            self.shuffled.push(ShuffledRecord {
                                sharder: self.spec.operators[index].name.clone(),
                                partition,
                                record,
                            });
                            continue;
                        }
                        let targets = self.port_targets[index]
                            .get(port.0)
                            .map_or(&[][..], Vec::as_slice);
                        enqueue(targets, record, &mut queue);
                    }
                }
            }
        }
    }

    fn route_emitted(&mut self, index: usize, emitted: Emitted, out: &mut Vec<SinkRecord>) {
        self.count(index, emitted.port);
        let mut queue = VecDeque::new();
        let targets = self.port_targets[index]
            .get(emitted.port.0)
            .map_or(&[][..], Vec::as_slice);
        enqueue(targets, emitted.record, &mut queue);
        self.run_queue(queue, out);
    }

    /// Counts an emission on its port, and as unrouted when nothing reads that port.
    fn count(&mut self, index: usize, port: Port) {
        let Some(key) = self.port_keys[index].get(port.0) else {
            // Not a port of the operator's kind: counted under `?`, as a mistake to see.
            let key = format!("{}.?", self.spec.operators[index].name);
            *self.stats.emitted.entry(key.clone()).or_insert(0) += 1;
            *self.stats.unrouted.entry(key).or_insert(0) += 1;
            return;
        };
        add_one(&mut self.stats.emitted, key);
        if self.port_targets[index][port.0].is_empty() {
            add_one(&mut self.stats.unrouted, key);
        }
    }
}

/// Adds one to the counter `key`, allocating the key only the first time.
fn add_one(counters: &mut BTreeMap<String, u64>, key: &str) {
    match counters.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            counters.insert(key.to_owned(), 1);
        }
    }
}

/// Queues `record` for each of `targets`, moving it to the last one.
fn enqueue(targets: &[Target], record: Record, queue: &mut VecDeque<(Target, Record)>) {
    let Some((last, rest)) = targets.split_last() else {
        return;
    };
    for target in rest {
        queue.push_back((*target, record.clone()));
    }
    queue.push_back((*last, record));
}

pub(super) fn instantiate(
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
        OperatorKind::Predict(config) => Instance::Predict(Predict::new(config.clone())),
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
        Instance::Predict(predict) => predict.on_record(record, out),
    }
}
