//! The decisions of a unit, without I/O: a fetched batch goes in, what to publish,
//! commit and acknowledge comes out.
//!
//! Everything that makes the results effectively-once is decided here, between no
//! `.await`s, so it can be tested without brokers: the shuffle's deduplication (per
//! upstream, the last record number taken), the event time of the second stage (the
//! minimum over its upstreams), the watermarks and end markers the first stage
//! forwards, when the unit is finished, and the checkpoint that lets another owner
//! continue exactly where this one committed (a restart, a rescale). The I/O side
//! ([`super::io`]) only fetches, sends what a [`Turn`] holds and commits it.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use essaim_connect::{OutMessage, SourceMessage};
use essaim_connect_postgres::{DeadLetter, ResultRow, SinkBatch, SourcePosition};
use essaim_stream::ops::enrich::DimensionTable;
use essaim_stream::pipeline::{Pipeline, PipelineState, PipelineStats, Role, SinkRecord};
use essaim_stream::record::EventTime;
use serde::{Deserialize, Serialize};

mod runner_texts;

use super::routes::Routes;
use crate::error::UnitError;
use crate::shuffle::ShuffleMessage;
use crate::stored_format::{CHECKPOINT, StoredFormatError};
use crate::task::{PlannedPipeline, Stage, StreamTaskSpec};
use essaim_connect::error_chain;

/// The name positions of the shuffle are recorded under.
pub const SHUFFLE_SOURCE: &str = "_shuffle";

/// What a unit keeps in PostgreSQL besides positions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UnitCheckpoint {
    /// The operators' state.
    pipeline: Option<PipelineState>,
    /// Second stage: per upstream unit, where it is.
    upstreams: BTreeMap<u32, UpstreamCursor>,
    /// First stage: the sources whose partition has ended.
    ended_sources: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct UpstreamCursor {
    /// The number of the last record taken.
    last: Option<(u64, u32)>,
    /// Its watermark.
    watermark: Option<i64>,
    ended: bool,
}

/// One input of a unit: a partition of a source (first stage) or the unit's partition
/// of the shuffle (second stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The source's name, or [`SHUFFLE_SOURCE`].
    pub source: String,
    /// The partition: the unit.
    pub partition: u32,
}

impl Input {
    /// The inputs of `unit` in `stage`, in the order their readers are opened.
    pub fn of(planned: &PlannedPipeline, stage: Stage, unit: u32) -> Vec<Input> {
        match stage {
            Stage::Source => planned
                .bindings
                .sources
                .iter()
                .map(|(source, _)| Input {
                    source: source.clone(),
                    partition: unit,
                })
                .collect(),
            Stage::Shuffled => vec![Input {
                source: SHUFFLE_SOURCE.to_owned(),
                partition: unit,
            }],
        }
    }

    /// A message of this input that cannot be processed, as a dead letter.
    fn refused(&self, message: &SourceMessage, error: String) -> DeadLetter {
        DeadLetter {
            source: self.source.clone(),
            partition: unit_i32(self.partition),
            position: i64::try_from(message.position).unwrap_or(i64::MAX),
            error,
            raw: message.payload.to_vec(),
        }
    }
}

/// A message read from input `input` (an index into [`UnitState::inputs`]).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Which input.
    pub input: usize,
    /// The message.
    pub message: SourceMessage,
    /// The broker's publish time, when the connector knows it.
    pub published_ms: Option<i64>,
}

/// What one turn sends, commits and acknowledges, in that order.
#[derive(Debug, Default)]
pub struct Turn {
    /// Shuffle messages per partition, in order: published first.
    pub shuffle: BTreeMap<u32, Vec<ShuffleMessage>>,
    /// Messages for NATS subjects, in order: published next.
    pub subject_messages: Vec<(String, bytes::Bytes)>,
    /// Messages per writer ([`Routes::writers`]): written and flushed next.
    pub writer_messages: Vec<Vec<OutMessage>>,
    /// Rows per table ([`Routes::tables`]): committed.
    pub table_rows: Vec<Vec<ResultRow>>,
    /// Refused messages and results, stored before the commit.
    pub dead_letters: Vec<DeadLetter>,
    /// The last position read per input: committed with the rows.
    pub positions: Vec<SourcePosition>,
    /// The encoded checkpoint: committed with the rows.
    pub checkpoint: Vec<u8>,
    /// Per input, the last position read: acknowledged once the commit is durable.
    pub acknowledge: Vec<(usize, u64)>,
    /// Every result of the turn, routed or discarded.
    pub results: Vec<SinkRecord>,
    /// Records read (source lines, shuffle records taken).
    pub records_in: u64,
    /// Shuffle records skipped as already taken.
    pub duplicates_skipped: u64,
}

impl Turn {
    /// The PostgreSQL transaction of the turn: rows, positions and checkpoint (taken
    /// out of the turn).
    pub fn sink_batch(&mut self) -> SinkBatch {
        let mut tables = std::mem::take(&mut self.table_rows).into_iter();
        SinkBatch {
            rows: tables.next().unwrap_or_default(),
            positions: std::mem::take(&mut self.positions),
            checkpoint: Some(std::mem::take(&mut self.checkpoint)),
            other_tables: tables.collect(),
        }
    }
}

/// A unit's state between turns: its operators, its inputs' progress, what it told
/// the shuffle.
pub struct UnitState {
    pipeline_name: String,
    unit: u32,
    stage: Stage,
    has_shuffle: bool,
    /// Units of the first stage: the upstreams of the second.
    upstream_count: u32,
    shuffle_partitions: u32,
    sharders: Vec<String>,
    inputs: Vec<Input>,
    routes: Routes,
    pipeline: Pipeline,
    upstreams: BTreeMap<u32, UpstreamCursor>,
    ended_sources: BTreeSet<String>,
    /// First stage: the last watermark forwarded to every shuffle partition by this
    /// owner.
    published_watermark: Option<i64>,
    /// First stage: the least time between two watermarks sent to every partition
    /// (0: every turn); see [`UnitState::set_watermark_interval`].
    watermark_interval_ms: i64,
    /// First stage: when (ms, the caller's clock) the last one was.
    broadcast_at: Option<i64>,
    /// First stage: whether this owner forwarded the end of its input.
    end_published: bool,
}

/// Decodes a stored checkpoint without restoring a unit from it: what a reader of
/// checkpoints written by any build must survive (the fuzz target calls it).
pub fn decode_checkpoint(bytes: &[u8]) -> Result<(), StoredFormatError> {
    CHECKPOINT.decode::<UnitCheckpoint>(bytes).map(drop)
}

impl UnitState {
    /// The state of `unit` of `task`, as its last `checkpoint` (none: from the start)
    /// left it.
    pub fn restore(
        task: &StreamTaskSpec,
        planned: &PlannedPipeline,
        tables: &BTreeMap<String, Arc<DimensionTable>>,
        unit: u32,
        routes: Routes,
        checkpoint: Option<&[u8]>,
    ) -> Result<UnitState, UnitError> {
        let mut saved: UnitCheckpoint = match checkpoint {
            Some(bytes) => CHECKPOINT.decode(bytes).map_err(UnitError::Checkpoint)?,
            None => UnitCheckpoint::default(),
        };
        let has_shuffle = planned.stages.has_shuffle();
        let role = match (task.stage, has_shuffle) {
            (Stage::Source, false) => Role::Whole,
            (Stage::Source, true) => Role::BeforeShuffle,
            (Stage::Shuffled, _) => Role::AfterShuffle,
        };
        let pipeline = match saved.pipeline.take() {
            Some(state) => Pipeline::restore(planned.spec.clone(), tables, state),
            None => Pipeline::new(planned.spec.clone(), tables),
        }?
        .with_role(role)
        .with_shuffle_fields(planned.shuffle_fields.clone());
        Ok(UnitState {
            pipeline_name: task.pipeline.clone(),
            unit,
            stage: task.stage,
            has_shuffle,
            upstream_count: task.source_partitions,
            shuffle_partitions: planned.stages.shuffle_partitions,
            sharders: planned.stages.sharders.clone(),
            inputs: Input::of(planned, task.stage, unit),
            routes,
            pipeline,
            upstreams: saved.upstreams,
            ended_sources: saved.ended_sources,
            published_watermark: None,
            watermark_interval_ms: 0,
            broadcast_at: None,
            end_published: false,
        })
    }

    /// The unit's inputs: [`Fetched::input`] indexes them.
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    /// True once every input has ended and, before a shuffle, the end was forwarded:
    /// a unit asked to exit at the end may stop.
    pub fn is_finished(&self) -> bool {
        match self.stage {
            Stage::Source => self.all_sources_ended() && (self.end_published || !self.has_shuffle),
            Stage::Shuffled => (0..self.upstream_count).all(|upstream| {
                self.upstreams
                    .get(&upstream)
                    .is_some_and(|cursor| cursor.ended)
            }),
        }
    }

    /// First stage: sends a watermark to the shuffle partitions the turn sends no
    /// record to at most every `interval_ms` (by the clock given to
    /// [`UnitState::process_at`]); the partitions that get records get it with them.
    /// With batches that follow the rate, a turn may hold a single record: without
    /// this, each would cost a message to every partition, each synced to disk by the
    /// broker. Watermarks are not numbered (the second stage keeps the highest per
    /// upstream), so fewer of them only hold the second stage's event time back for
    /// up to the interval; the end of the input is always sent at once.
    pub fn set_watermark_interval(&mut self, interval_ms: i64) {
        self.watermark_interval_ms = interval_ms.max(0);
    }

    /// Runs a batch through the operators. Returns `None` when there is nothing to
    /// send or commit (an empty batch and no progress to forward).
    pub fn process(&mut self, batch: &[Fetched]) -> Result<Option<Turn>, UnitError> {
        self.process_at(batch, 0)
    }

    /// [`UnitState::process`], `now_ms` being the time by the caller's clock (see
    /// [`UnitState::set_watermark_interval`]).
    pub fn process_at(
        &mut self,
        batch: &[Fetched],
        now_ms: i64,
    ) -> Result<Option<Turn>, UnitError> {
        let mut turn = Turn::default();
        let mut last: Vec<Option<u64>> = vec![None; self.inputs.len()];
        for fetched in batch {
            last[fetched.input] = Some(fetched.message.position);
            match self.stage {
                Stage::Source => self.take_line(fetched, &mut turn)?,
                Stage::Shuffled => self.take_shuffled(fetched, &mut turn)?,
            }
        }
        if self.stage == Stage::Source && self.has_shuffle {
            self.forward_progress(&mut turn.shuffle, now_ms);
        }
        if batch.is_empty() && turn.shuffle.is_empty() && turn.results.is_empty() {
            return Ok(None);
        }
        self.routes.route(&self.pipeline_name, self.unit, &mut turn);
        for (input, last) in last.into_iter().enumerate() {
            if let Some(last) = last {
                turn.positions.push(SourcePosition {
                    source: self.inputs[input].source.clone(),
                    partition: unit_i32(self.inputs[input].partition),
                    position: i64::try_from(last).unwrap_or(i64::MAX),
                });
                turn.acknowledge.push((input, last));
            }
        }
        turn.checkpoint = self.checkpoint()?;
        Ok(Some(turn))
    }

    /// The checkpoint of the unit as it is now.
    pub fn checkpoint(&self) -> Result<Vec<u8>, UnitError> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            pipeline: Option<PipelineState>,
            upstreams: &'a BTreeMap<u32, UpstreamCursor>,
            ended_sources: &'a BTreeSet<String>,
        }
        // Field for field the shape of `UnitCheckpoint`, without copying the cursors.
        CHECKPOINT
            .encode(&Borrowed {
                pipeline: Some(self.pipeline.snapshot()),
                upstreams: &self.upstreams,
                ended_sources: &self.ended_sources,
            })
            .map_err(UnitError::CheckpointEncoding)
    }

    /// Makes the versions `models` have loaded now predict the next batch.
    pub fn use_models(&mut self, models: &crate::models::PipelineModels) {
        for (reference, model) in models.current() {
            self.pipeline.set_model(reference, &model);
        }
    }

    /// The operators' counters.
    pub fn stats(&self) -> &PipelineStats {
        self.pipeline.stats()
    }

    /// The unit's event time, when it is neither the start nor the end of time.
    pub fn watermark(&self) -> Option<i64> {
        let watermark = match self.stage {
            Stage::Source => self
                .pipeline
                .spec()
                .sources
                .iter()
                .map(|source| self.pipeline.source_watermark(&source.name).0)
                .min(),
            Stage::Shuffled => Some(self.pipeline.shuffle_watermark().0),
        };
        watermark.filter(|w| *w > i64::MIN && *w < i64::MAX)
    }

    fn all_sources_ended(&self) -> bool {
        self.inputs
            .iter()
            .all(|input| self.ended_sources.contains(&input.source))
    }

    /// First stage: one source message through the operators, its sharded records
    /// numbered for the shuffle.
    fn take_line(&mut self, fetched: &Fetched, turn: &mut Turn) -> Result<(), UnitError> {
        let input = &self.inputs[fetched.input];
        let message = &fetched.message;
        if message.end_of_stream {
            if self.ended_sources.insert(input.source.clone()) {
                self.pipeline.end_source(&input.source, &mut turn.results)?;
            }
        } else {
            turn.records_in += 1;
            let line = line_number(input, message);
            let pushed =
                self.pipeline
                    .push_line(&input.source, &message.payload, line, &mut turn.results);
            if let Err(error) = pushed {
                turn.dead_letters
                    .push(input.refused(message, error_chain(&error)));
            }
        }
        if self.has_shuffle {
            let mut ranks: BTreeMap<u32, u32> = BTreeMap::new();
            for shuffled in self.pipeline.drain_shuffled() {
                let rank = ranks.entry(shuffled.partition).or_insert(0);
                turn.shuffle
                    .entry(shuffled.partition)
                    .or_default()
                    .push(ShuffleMessage::Record {
                        upstream: self.unit,
                        number: (message.position, *rank),
                        sharder: shuffled.sharder,
                        record: shuffled.record,
                    });
                *rank += 1;
            }
        }
        Ok(())
    }

    /// Second stage: one shuffle message, its records deduplicated per upstream, its
    /// watermarks and end markers folded into the unit's event time.
    fn take_shuffled(&mut self, fetched: &Fetched, turn: &mut Turn) -> Result<(), UnitError> {
        let decoded = match crate::shuffle::decode(&fetched.message.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                let input = &self.inputs[fetched.input];
                turn.dead_letters.push(input.refused(
                    &fetched.message,
                    format!("undecodable shuffle message: {}", error_chain(&error)),
                ));
                return Ok(());
            }
        };
        for decoded in decoded {
            match decoded {
                ShuffleMessage::Record {
                    upstream,
                    number,
                    sharder,
                    record,
                } => {
                    let cursor = self.upstreams.entry(upstream).or_default();
                    if cursor.last.is_some_and(|last| number <= last) {
                        turn.duplicates_skipped += 1;
                        continue;
                    }
                    cursor.last = Some(number);
                    turn.records_in += 1;
                    self.pipeline
                        .push_shuffled(&sharder, record, &mut turn.results)?;
                }
                ShuffleMessage::Watermark {
                    upstream,
                    watermark,
                } => {
                    let cursor = self.upstreams.entry(upstream).or_default();
                    cursor.watermark =
                        Some(cursor.watermark.map_or(watermark, |old| old.max(watermark)));
                    self.advance(&mut turn.results);
                }
                ShuffleMessage::End { upstream } => {
                    let cursor = self.upstreams.entry(upstream).or_default();
                    cursor.ended = true;
                    cursor.watermark = Some(i64::MAX);
                    self.advance(&mut turn.results);
                }
            }
        }
        Ok(())
    }

    /// Moves the second stage's event time to the minimum of its upstreams'.
    fn advance(&mut self, out: &mut Vec<SinkRecord>) {
        let watermark = (0..self.upstream_count)
            .map(|upstream| {
                self.upstreams
                    .get(&upstream)
                    .and_then(|cursor| cursor.watermark)
                    .unwrap_or(i64::MIN)
            })
            .min()
            .unwrap_or(i64::MIN);
        self.pipeline
            .advance_shuffle_watermark(EventTime(watermark), out);
    }

    /// First stage: tells the shuffle partitions how far its event time is (every one
    /// of them at most every `watermark_interval_ms`), or that its input ended.
    fn forward_progress(&mut self, shuffle: &mut BTreeMap<u32, Vec<ShuffleMessage>>, now_ms: i64) {
        let upstream = self.unit;
        if self.all_sources_ended() {
            if !self.end_published {
                for partition in 0..self.shuffle_partitions {
                    let end = ShuffleMessage::End { upstream };
                    shuffle.entry(partition).or_default().push(end);
                }
                self.end_published = true;
            }
            return;
        }
        let watermark = self
            .sharders
            .iter()
            .filter_map(|sharder| self.pipeline.operator_watermark(sharder))
            .min()
            .unwrap_or(EventTime::MIN)
            .0;
        if watermark == EventTime::MIN.0
            || self.published_watermark.is_some_and(|old| watermark <= old)
        {
            return;
        }
        let message = ShuffleMessage::Watermark {
            upstream,
            watermark,
        };
        let due = self
            .broadcast_at
            .is_none_or(|at| now_ms.saturating_sub(at) >= self.watermark_interval_ms);
        if due {
            for partition in 0..self.shuffle_partitions {
                shuffle.entry(partition).or_default().push(message.clone());
            }
            self.published_watermark = Some(watermark);
            self.broadcast_at = Some(now_ms);
        } else {
            // Free riders: the partitions this turn sends records to.
            for messages in shuffle.values_mut() {
                messages.push(message.clone());
            }
        }
    }
}

/// A partition or unit number as PostgreSQL stores it.
pub fn unit_i32(unit: u32) -> i32 {
    i32::try_from(unit).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;

/// The number a source message's line gets: record ids must be unique across
/// partitions, whose positions (Kafka offsets, byte offsets) are not; never 0, which a
/// source with a header would skip.
fn line_number(input: &Input, message: &SourceMessage) -> u64 {
    essaim_stream::hash::derive_id(
        u64::from(input.partition),
        input.source.as_bytes(),
        message.position,
    )
    .max(1)
}
