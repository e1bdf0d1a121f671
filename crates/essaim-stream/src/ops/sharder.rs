//! The sharder: sets each record's key and names its partition (seed 000's *sharder*,
//! partitioning by a *sharding function*).
//!
//! The sharding function is [`partition_of`]: FNV-1a 64 of the key's UTF-8 bytes, modulo
//! the partition count. It is fixed forever (changing it would move keyed state between
//! tasks on upgrade). The runtime sends every record leaving a sharder to the task that
//! owns its partition, so the state of one key (a window, a join block) lives on exactly
//! one task; operators after a sharder rely on that.
//!
//! Its state is a record count per partition, checkpointed with the rest, so that skew
//! (a hot partition) is visible.

use serde::{Deserialize, Serialize};

use crate::expr::Expr;
use crate::hash::partition_of;
use crate::ops::{Emitted, Port, with_error};
use crate::record::{Record, Value};

/// What the sharder counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharderState {
    /// Records sent to each partition, by partition index.
    pub records_per_partition: Vec<u64>,
}

/// Keys records by an expression and assigns them a partition.
///
/// Ports: `out`, `error` (the key expression failed or was null).
#[derive(Debug, Clone)]
pub struct Sharder {
    key: Expr,
    partitions: u32,
    state: SharderState,
}

impl Sharder {
    /// The error port.
    pub const ERROR: Port = Port(1);

    /// Returns a sharder over `partitions` partitions (at least 1: validation refuses 0).
    pub fn new(key: Expr, partitions: u32) -> Sharder {
        let state = SharderState {
            records_per_partition: vec![0; partitions as usize],
        };
        Sharder {
            key,
            partitions,
            state,
        }
    }

    /// Returns a sharder that resumes from a checkpointed state.
    pub fn with_state(key: Expr, partitions: u32, state: SharderState) -> Sharder {
        let mut sharder = Sharder::new(key, partitions);
        // A state from a run with another partition count keeps the counts it can.
        for (index, count) in state.records_per_partition.into_iter().enumerate() {
            if let Some(slot) = sharder.state.records_per_partition.get_mut(index) {
                *slot = count;
            }
        }
        sharder
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        vec!["out".into(), "error".into()]
    }

    /// Returns the state to checkpoint.
    pub fn state(&self) -> &SharderState {
        &self.state
    }

    /// Returns the partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Returns the partition of a keyed record (the runtime routes by it).
    pub fn partition(&self, key: &str) -> u32 {
        partition_of(key, self.partitions)
    }

    /// Processes one record: sets its key and counts it in its partition.
    pub fn on_record(&mut self, mut record: Record, out: &mut Vec<Emitted>) {
        let key = match self.key.eval(&record) {
            Ok(Value::Null) => {
                let error = "the sharding key is null";
                return out.push(Emitted {
                    port: Self::ERROR,
                    record: with_error(record, error),
                });
            }
            Ok(value) => value.to_key_string(),
            Err(error) => {
                return out.push(Emitted {
                    port: Self::ERROR,
                    record: with_error(record, error),
                });
            }
        };
        let partition = self.partition(&key) as usize;
        if let Some(count) = self.state.records_per_partition.get_mut(partition) {
            *count += 1;
        }
        record.key = Some(key);
        out.push(Emitted::out(record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharder_keys_records_and_counts_them_per_partition() {
        let mut sharder = Sharder::new(Expr::parse("origin").unwrap(), 4);
        let mut out = Vec::new();
        for (id, origin) in ["ATL", "ORD", "ATL", "LAX"].into_iter().enumerate() {
            sharder.on_record(Record::new(id as u64, 0).with("origin", origin), &mut out);
        }
        sharder.on_record(Record::new(9, 0), &mut out);
        assert_eq!(out[0].record.key.as_deref(), Some("ATL"));
        assert_eq!(out[4].port, Sharder::ERROR);
        let state = sharder.state().clone();
        assert_eq!(state.records_per_partition.iter().sum::<u64>(), 4);
        assert!(state.records_per_partition[sharder.partition("ATL") as usize] >= 2);
        let restored = Sharder::with_state(Expr::parse("origin").unwrap(), 4, state.clone());
        assert_eq!(restored.state(), &state);
    }
}
