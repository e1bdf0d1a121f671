//! The merger: several input streams into one, de-duplicated by record id (seed 000's
//! *merger*).
//!
//! Delivery is at least once, so the same record may arrive twice (a redelivery after a
//! crash, or the same record reaching the merger along two branches). The merger
//! remembers the ids of the last `capacity` distinct records it let through and drops a
//! record whose id it remembers, sending it to the `duplicate` port so that it is
//! counted, not silently lost.
//!
//! Memory is bounded by configuration: at most `capacity` ids (about 40 bytes each with
//! the index), forgotten oldest first. A duplicate that arrives after `capacity` newer
//! distinct records passes through: de-duplication is exact within that window only.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ops::{Emitted, Port};
use crate::record::{Record, RecordId};

/// The ids the merger remembers, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergerState {
    /// The remembered ids in arrival order; the index is rebuilt from it on restore.
    pub recent: VecDeque<RecordId>,
}

/// Merges inputs and drops records whose id was seen among the last `capacity` ids.
///
/// Ports: `out`, `duplicate`.
#[derive(Debug, Clone)]
pub struct Merger {
    capacity: usize,
    state: MergerState,
    /// The same ids as `state.recent`, for membership tests.
    index: BTreeSet<RecordId>,
}

impl Merger {
    /// The port duplicates leave by.
    pub const DUPLICATE: Port = Port(1);

    /// Returns a merger remembering up to `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Merger {
        Merger {
            capacity: capacity.max(1),
            state: MergerState::default(),
            index: BTreeSet::new(),
        }
    }

    /// Returns a merger that resumes from a checkpointed state. If the capacity shrank,
    /// the oldest ids are forgotten.
    pub fn with_state(capacity: usize, state: MergerState) -> Merger {
        let mut merger = Merger::new(capacity);
        for id in state.recent {
            merger.remember(id);
        }
        merger
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        vec!["out".into(), "duplicate".into()]
    }

    /// Returns the state to checkpoint.
    pub fn state(&self) -> &MergerState {
        &self.state
    }

    /// Processes one record from any input.
    pub fn on_record(&mut self, record: Record, out: &mut Vec<Emitted>) {
        if self.index.contains(&record.id) {
            return out.push(Emitted {
                port: Self::DUPLICATE,
                record,
            });
        }
        self.remember(record.id);
        out.push(Emitted::out(record));
    }

    fn remember(&mut self, id: RecordId) {
        if !self.index.insert(id) {
            return;
        }
        self.state.recent.push_back(id);
        while self.state.recent.len() > self.capacity {
            if let Some(forgotten) = self.state.recent.pop_front() {
                self.index.remove(&forgotten);
            }
        }
        debug_assert_eq!(
            self.index.len(),
            self.state.recent.len(),
            "index mirrors the queue"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(merger: &mut Merger, ids: &[u64]) -> Vec<Port> {
        let mut out = Vec::new();
        for &id in ids {
            merger.on_record(Record::new(id, 0), &mut out);
        }
        out.iter().map(|emitted| emitted.port).collect()
    }

    #[test]
    fn duplicates_within_the_window_are_diverted_and_later_ones_pass() {
        let mut merger = Merger::new(3);
        let dup = Merger::DUPLICATE;
        assert_eq!(
            ports(&mut merger, &[1, 2, 1, 3, 2]),
            vec![Port::OUT, Port::OUT, dup, Port::OUT, dup]
        );
        // 4 pushes 1 out of the window of 3 ids: 1 passes again.
        assert_eq!(
            ports(&mut merger, &[4, 1, 3]),
            vec![Port::OUT, Port::OUT, dup]
        );
        assert!(merger.state().recent.len() <= 3);
    }

    #[test]
    fn a_restored_merger_remembers_what_the_first_one_did() {
        let mut merger = Merger::new(100);
        ports(&mut merger, &[1, 2, 3]);
        let json = serde_json::to_string(merger.state()).unwrap();
        let mut restored = Merger::with_state(100, serde_json::from_str(&json).unwrap());
        assert_eq!(
            ports(&mut restored, &[2, 4]),
            vec![Merger::DUPLICATE, Port::OUT]
        );
        // A smaller capacity keeps the newest ids.
        let mut shrunk = Merger::with_state(1, merger.state().clone());
        assert_eq!(
            ports(&mut shrunk, &[3, 1]),
            vec![Merger::DUPLICATE, Port::OUT]
        );
    }
}
