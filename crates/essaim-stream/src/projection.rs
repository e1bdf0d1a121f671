//! Which fields a record still needs when it crosses the shuffle.
//!
//! Every record leaving a sharder is encoded, sent through the broker and decoded by
//! the second stage, field names and values included. Most pipelines read few of
//! those fields after the shuffle (the flights pipeline's windows read `delay` of six),
//! so the first stage sends only the fields something after the shuffle reads: an
//! operator's expressions and aggregate fields, and everything for a sink that writes
//! records out. The record's id, event time and key are not fields and always travel.
//!
//! The analysis is conservative. It walks the operators after the shuffle from the
//! sinks back, and any consumer whose reads it cannot name (a `map`, which may
//! rename or drop, a `join`, a `predict`, a sink that writes whole records) makes the
//! whole record needed. A window's results are new records, so what reads them needs
//! nothing of its input; what reads its `late` and `error` ports gets input records
//! and needs what it reads of them.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{OperatorKind, PipelineSpec, SinkSpec, StreamRef};
use crate::stage::StagePlan;

/// What the consumers of a stream read of its records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Needed {
    /// These fields (possibly none).
    #[default]
    Nothing,
    /// These fields only.
    Fields(BTreeSet<String>),
    /// Every field.
    All,
}

impl Needed {
    fn add(&mut self, other: &Needed) {
        match (&mut *self, other) {
            (Needed::All, _) | (_, Needed::Nothing) => {}
            (_, Needed::All) => *self = Needed::All,
            (Needed::Nothing, Needed::Fields(fields)) => *self = Needed::Fields(fields.clone()),
            (Needed::Fields(mine), Needed::Fields(fields)) => mine.extend(fields.iter().cloned()),
        }
    }

    fn add_fields<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let fields = names.into_iter().map(str::to_owned).collect();
        self.add(&Needed::Fields(fields));
    }

    /// The fields to keep, or `None` to keep them all.
    pub fn keep(self) -> Option<BTreeSet<String>> {
        match self {
            Needed::Nothing => Some(BTreeSet::new()),
            Needed::Fields(fields) => Some(fields),
            Needed::All => None,
        }
    }
}

/// The fields records leaving the sharders of `spec` must keep for the stage after the
/// shuffle (`None`: all of them). `sink_writes_records` says whether a sink writes the
/// records it gets (a table, a topic, files) rather than discarding them: only the
/// runtime knows its connectors.
pub fn shuffle_fields(
    spec: &PipelineSpec,
    plan: &StagePlan,
    sink_writes_records: impl Fn(&SinkSpec) -> bool,
) -> Option<BTreeSet<String>> {
    if !plan.has_shuffle() {
        return None;
    }
    let mut needs: BTreeMap<StreamRef, Needed> = BTreeMap::new();
    for sink in &spec.sinks {
        if plan.sinks_after.contains(&sink.name) && sink_writes_records(sink) {
            needs.insert(sink.input.clone(), Needed::All);
        }
    }
    // Operators are in topological order: walking them backwards sees every consumer
    // of a stream before its producer.
    for operator in spec.operators.iter().rev() {
        if !plan.after_shuffle.contains(&operator.name) {
            continue;
        }
        let read = input_needs(&operator.name, &operator.kind, &needs);
        for input in &operator.inputs {
            needs.entry(input.clone()).or_default().add(&read);
        }
    }
    let mut shuffled = Needed::Nothing;
    for sharder in &plan.sharders {
        let out = StreamRef {
            node: sharder.clone(),
            port: 0,
        };
        if let Some(needed) = needs.get(&out) {
            shuffled.add(needed);
        }
    }
    shuffled.keep()
}

/// What an operator reads of its input records, given what reads its outputs.
fn input_needs(name: &str, kind: &OperatorKind, needs: &BTreeMap<StreamRef, Needed>) -> Needed {
    let port_count = kind.port_names().len();
    let downstream = |ports: std::ops::Range<usize>| {
        let mut needed = Needed::Nothing;
        for port in ports {
            let stream = StreamRef {
                node: name.to_owned(),
                port,
            };
            if let Some(reads) = needs.get(&stream) {
                needed.add(reads);
            }
        }
        needed
    };
    // Every port but a window's results carries (a copy of) the input record.
    let mut needed = match kind {
        OperatorKind::Window(_) => downstream(1..port_count),
        _ => downstream(0..port_count),
    };
    match kind {
        OperatorKind::Filter(predicate) => needed.add_fields(predicate.fields()),
        OperatorKind::Splitter { branches, .. } => {
            for (_, predicate) in branches {
                needed.add_fields(predicate.fields());
            }
        }
        OperatorKind::FlatMap { field, .. } => needed.add_fields([field.as_str()]),
        OperatorKind::Enrich { key, .. } => needed.add_fields(key.fields()),
        OperatorKind::Window(config) => {
            if let Some(key) = &config.key {
                needed.add_fields(key.fields());
            }
            let fields = config.aggregates.iter().filter_map(|a| a.field.as_deref());
            needed.add_fields(fields);
        }
        OperatorKind::Copier { .. } | OperatorKind::Merger { .. } => {}
        // A sharder cannot follow the shuffle (the stage plan refuses it); the others
        // read what their configuration does not list.
        OperatorKind::Sharder { .. }
        | OperatorKind::Map(_)
        | OperatorKind::Join(_)
        | OperatorKind::Predict(_) => needed = Needed::All,
    }
    needed
}

#[cfg(test)]
mod tests;
