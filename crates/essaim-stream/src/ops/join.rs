//! The join: assembles a block once all of its parts have arrived (seed 000's *join*,
//! e.g. the frames of one second of video).
//!
//! Each record names its block (an expression, e.g. `video + ':' + second`) and its part
//! index (an integer expression in `0..parts`). The join holds the parts of each open
//! block; when the last one arrives it emits the block on `out`. A block also has a
//! deadline in event time, `first part's time + timeout_ms`: when the watermark reaches
//! it, the block is emitted as it is on `incomplete` (and counted). A part whose index was
//! already received is sent to `duplicate`; a record without a block or with a part index
//! out of range goes to `error`.
//!
//! The assembled record has id `fnv1a_64(block)`, the latest part's time, the block as
//! its key, and fields `block`, `parts` (how many arrived) and every field `f` of part `i`
//! as `p{i}_{f}` (a name expressions can read).
//!
//! Memory: the open blocks and their parts. A block lives at most `timeout_ms` of event
//! time past its first part, so the state is bounded by the parts arriving within
//! `timeout_ms + out-of-orderness`. A part that arrives after its block was emitted opens
//! a new block, which will time out as incomplete: it is not lost.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::expr::Expr;
use crate::hash::{fnv1a_64, partition_of};
use crate::ops::{Emitted, KeyedState, Port, with_error};
use crate::record::{EventTime, Record, RecordId, Value};

/// How blocks are recognized and when they are given up on.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// The block a record belongs to.
    pub block: Expr,
    /// The record's part index, an integer in `0..parts`.
    pub part: Expr,
    /// How many parts make a block (at least 1).
    pub parts: u32,
    /// Event time after a block's first part at which the block is emitted incomplete.
    pub timeout_ms: i64,
}

/// An open block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBlock {
    /// The earliest event time among its parts; the deadline counts from it.
    pub first_time: EventTime,
    /// The parts received, by index.
    pub parts: BTreeMap<i64, Record>,
}

/// Everything the join holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinState {
    /// The open blocks, by block id.
    pub blocks: BTreeMap<String, OpenBlock>,
}

/// Groups parts into blocks.
///
/// Ports: `out`, `incomplete`, `duplicate`, `error`.
#[derive(Debug, Clone)]
pub struct Join {
    config: JoinConfig,
    state: JoinState,
    /// `(deadline, block)` of every open block, earliest first; rebuilt on restore.
    deadlines: BTreeSet<(EventTime, String)>,
}

impl Join {
    /// The port of blocks that timed out.
    pub const INCOMPLETE: Port = Port(1);
    /// The port of parts received twice.
    pub const DUPLICATE: Port = Port(2);
    /// The port of records without a valid block or part.
    pub const ERROR: Port = Port(3);

    /// Returns an empty join.
    pub fn new(config: JoinConfig) -> Join {
        Join {
            config,
            state: JoinState::default(),
            deadlines: BTreeSet::new(),
        }
    }

    /// Returns a join that resumes from a checkpointed state.
    pub fn with_state(config: JoinConfig, state: JoinState) -> Join {
        let mut join = Join::new(config);
        join.state = state;
        join.rebuild_deadlines();
        join
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        ["out", "incomplete", "duplicate", "error"]
            .map(String::from)
            .to_vec()
    }

    /// Returns the state to checkpoint.
    pub fn state(&self) -> &JoinState {
        &self.state
    }

    fn deadline(&self, block: &OpenBlock) -> EventTime {
        block.first_time.saturating_add(self.config.timeout_ms)
    }

    fn rebuild_deadlines(&mut self) {
        self.deadlines = self
            .state
            .blocks
            .iter()
            .map(|(id, block)| (self.deadline(block), id.clone()))
            .collect();
    }

    /// Processes one part.
    pub fn on_record(&mut self, record: Record, out: &mut Vec<Emitted>) {
        let (block_id, part) = match self.identify(&record) {
            Ok(found) => found,
            Err(error) => {
                return out.push(Emitted {
                    port: Self::ERROR,
                    record: with_error(record, error),
                });
            }
        };
        let time = record.time;
        let block = self
            .state
            .blocks
            .entry(block_id.clone())
            .or_insert_with(|| OpenBlock {
                first_time: time,
                parts: BTreeMap::new(),
            });
        if block.parts.contains_key(&part) {
            return out.push(Emitted {
                port: Self::DUPLICATE,
                record,
            });
        }
        let old_first_time = block.first_time;
        block.first_time = block.first_time.min(time);
        block.parts.insert(part, record);
        let complete = block.parts.len() as u64 >= u64::from(self.config.parts);
        let new_first_time = block.first_time;
        // The deadline follows the earliest part, which an out-of-order part can move.
        self.deadlines.remove(&(
            old_first_time.saturating_add(self.config.timeout_ms),
            block_id.clone(),
        ));
        if complete {
            if let Some(block) = self.state.blocks.remove(&block_id) {
                out.push(Emitted::out(assemble(&block_id, block)));
            }
        } else {
            self.deadlines.insert((
                new_first_time.saturating_add(self.config.timeout_ms),
                block_id,
            ));
        }
    }

    /// Emits, as incomplete, every block whose deadline the watermark has reached.
    pub fn on_watermark(&mut self, watermark: EventTime, out: &mut Vec<Emitted>) {
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > watermark {
                break;
            }
            let Some((_, block_id)) = self.deadlines.pop_first() else {
                break;
            };
            if let Some(block) = self.state.blocks.remove(&block_id) {
                out.push(Emitted {
                    port: Self::INCOMPLETE,
                    record: assemble(&block_id, block),
                });
            }
        }
    }

    fn identify(&self, record: &Record) -> Result<(String, i64), String> {
        let block = match self
            .config
            .block
            .eval(record)
            .map_err(|error| error.to_string())?
        {
            Value::Null => return Err("the block id is null".into()),
            value => value.to_key_string(),
        };
        let part = match self
            .config
            .part
            .eval(record)
            .map_err(|error| error.to_string())?
        {
            Value::Int(part) if (0..i64::from(self.config.parts)).contains(&part) => part,
            other => {
                return Err(format!(
                    "part index {other} is not an integer in 0..{}",
                    self.config.parts
                ));
            }
        };
        Ok((block, part))
    }
}

fn assemble(block_id: &str, block: OpenBlock) -> Record {
    let time = block
        .parts
        .values()
        .map(|part| part.time)
        .max()
        .unwrap_or(block.first_time);
    let mut record = Record {
        id: RecordId(fnv1a_64(block_id.as_bytes())),
        time,
        key: Some(block_id.to_owned()),
        fields: Default::default(),
    };
    record
        .fields
        .insert("block".into(), Value::Str(block_id.to_owned()));
    record
        .fields
        .insert("parts".into(), Value::Int(block.parts.len() as i64));
    for (index, part) in block.parts {
        for (name, value) in part.fields {
            record.fields.insert(format!("p{index}_{name}"), value);
        }
    }
    record
}

impl KeyedState for JoinState {
    fn split_off(&mut self, partitions: u32, moved: &BTreeSet<u32>) -> JoinState {
        let (leaving, staying) = std::mem::take(&mut self.blocks)
            .into_iter()
            .partition(|(block, _)| moved.contains(&partition_of(block, partitions)));
        self.blocks = staying;
        JoinState { blocks: leaving }
    }

    fn absorb(&mut self, other: JoinState) {
        self.blocks.extend(other.blocks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(parts: u32, timeout_ms: i64) -> Join {
        Join::new(JoinConfig {
            block: Expr::parse("video + ':' + second").unwrap(),
            part: Expr::parse("frame").unwrap(),
            parts,
            timeout_ms,
        })
    }

    fn frame(id: u64, time: i64, second: i64, frame: i64) -> Record {
        Record::new(id, time)
            .with("video", "v")
            .with("second", second.to_string())
            .with("frame", frame)
    }

    #[test]
    fn a_block_is_emitted_when_its_last_part_arrives() {
        let mut join = join(3, 1_000);
        let mut out = Vec::new();
        join.on_record(frame(1, 10, 0, 2), &mut out);
        join.on_record(frame(2, 11, 0, 0), &mut out);
        assert!(out.is_empty());
        join.on_record(frame(3, 12, 0, 1), &mut out);
        let [block] = out.as_slice() else {
            panic!("one block expected: {out:?}")
        };
        assert_eq!(block.port, Port::OUT);
        assert_eq!(block.record.get("block"), &Value::from("v:0"));
        assert_eq!(block.record.get("parts"), &Value::Int(3));
        assert_eq!(block.record.get("p2_frame"), &Value::Int(2));
        assert_eq!(block.record.time, EventTime(12));
        assert!(join.state().blocks.is_empty());
    }

    #[test]
    fn a_block_times_out_as_incomplete_when_the_watermark_passes_its_deadline() {
        let mut join = join(3, 1_000);
        let mut out = Vec::new();
        join.on_record(frame(1, 500, 7, 0), &mut out);
        // An earlier part moves the deadline back to 100 + 1000.
        join.on_record(frame(2, 100, 7, 1), &mut out);
        join.on_watermark(EventTime(1_099), &mut out);
        assert!(out.is_empty());
        join.on_watermark(EventTime(1_100), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].port, Join::INCOMPLETE);
        assert_eq!(out[0].record.get("parts"), &Value::Int(2));
        assert!(join.state().blocks.is_empty());
    }

    #[test]
    fn duplicates_and_bad_parts_are_diverted() {
        let mut join = join(2, 1_000);
        let mut out = Vec::new();
        join.on_record(frame(1, 0, 0, 0), &mut out);
        join.on_record(frame(2, 0, 0, 0), &mut out);
        join.on_record(frame(3, 0, 0, 5), &mut out);
        join.on_record(Record::new(4, 0).with("frame", 1), &mut out);
        let ports: Vec<Port> = out.iter().map(|emitted| emitted.port).collect();
        assert_eq!(ports, vec![Join::DUPLICATE, Join::ERROR, Join::ERROR]);
    }

    #[test]
    fn restored_and_rescaled_joins_finish_the_blocks_they_were_given() {
        let mut join = join(2, 1_000);
        let mut out = Vec::new();
        for second in 0..20 {
            join.on_record(frame(second as u64, 0, second, 0), &mut out);
        }
        let json = serde_json::to_string(join.state()).unwrap();
        let restored_state: JoinState = serde_json::from_str(&json).unwrap();
        assert_eq!(&restored_state, join.state());
        let mut staying = restored_state;
        let moved: BTreeSet<u32> = [1, 3].into();
        let leaving = staying.split_off(4, &moved);
        assert!(!leaving.blocks.is_empty() && !staying.blocks.is_empty());
        for block in leaving.blocks.keys() {
            assert!(moved.contains(&partition_of(block, 4)));
        }
        let mut other_task = join.clone();
        other_task.state = JoinState::default();
        let mut other_task = Join::with_state(other_task.config.clone(), leaving.clone());
        let mut this_task = Join::with_state(join.config.clone(), staying.clone());
        for second in 0..20 {
            let part = frame(100 + second as u64, 1, second, 1);
            let owner = partition_of(&format!("v:{second}"), 4);
            if moved.contains(&owner) {
                other_task.on_record(part, &mut out);
            } else {
                this_task.on_record(part, &mut out);
            }
        }
        assert_eq!(out.len(), 20);
        assert!(out.iter().all(|emitted| emitted.port == Port::OUT));
        staying.absorb(leaving);
        assert_eq!(&staying, join.state());
    }
}
