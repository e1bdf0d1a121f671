//! Operators: what happens to records between sources and sinks.
//!
//! Every operator is a plain struct driven by two calls, with its outputs pushed to a
//! vector the caller owns (the sans-I/O shape of `essaim-core`'s scheduler):
//! - `on_record(record, out)`: one input record;
//! - `on_watermark(watermark, out)` (time-driven operators only): event time has
//!   advanced to `watermark`; timers due at or before it fire.
//!
//! An output is an [`Emitted`]: a port index and a record. Port 0 is always the main
//! output (`out`); side outputs (`error`, `late`, `incomplete`, `miss`, …) and the branches
//! of copiers and splitters have their own indices, named by the operator's
//! `port_names()`. Nothing is dropped without a trace: a record an operator cannot
//! process goes to a side output, where the pipeline counts it and the runtime may
//! route it to a dead-letter subject.
//!
//! Stateful operators keep all their state in one `serde` struct (`state()` /
//! `with_state()`), which the runtime checkpoints. State keyed by the sharder's key also
//! implements [`KeyedState`] so that the runtime can move partitions between tasks.

use std::collections::BTreeSet;

use crate::record::{Record, Value};

pub mod enrich;
pub mod join;
pub mod merger;
pub mod predict;
pub mod sharder;
pub mod stateless;

/// The index of an operator's output port. Port 0 is the main output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(pub usize);

impl Port {
    /// The main output of every operator.
    pub const OUT: Port = Port(0);
}

/// A record leaving an operator through one of its ports.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The port the record leaves by.
    pub port: Port,
    /// The record.
    pub record: Record,
}

impl Emitted {
    /// Returns an output on the main port.
    pub fn out(record: Record) -> Emitted {
        Emitted {
            port: Port::OUT,
            record,
        }
    }
}

/// The field a record sent to an `error` port carries its error message in.
pub const ERROR_FIELD: &str = "_error";

/// Returns `record` marked with the reason it could not be processed.
pub(crate) fn with_error(mut record: Record, error: impl std::fmt::Display) -> Record {
    record
        .fields
        .insert(ERROR_FIELD.to_owned(), Value::Str(error.to_string()));
    record
}

/// State partitioned by the sharder's key, which can be split and merged when the
/// runtime changes how many tasks run an operator (rescaling).
///
/// A key belongs to partition `hash::partition_of(key, partitions)`; the runtime gives
/// each task a set of partitions, so moving partitions moves exactly the state of the
/// keys the task will no longer see.
pub trait KeyedState: Sized {
    /// Removes and returns the state of every key whose partition (among `partitions`)
    /// is in `moved`.
    fn split_off(&mut self, partitions: u32, moved: &BTreeSet<u32>) -> Self;

    /// Takes in the state of keys handed over by another task. The two states must hold
    /// disjoint keys (they come from disjoint partitions).
    fn absorb(&mut self, other: Self);
}
