//! The reduce side after the shuffle: merge the fetched segments of one partition, group
//! them by key, run the reducer, and either commit an output part (last step) or feed
//! the next step's mapper, whose output becomes this task's map output (a chain).
//!
//! Output parts are committed the way Hadoop's `FileOutputCommitter` does: written
//! under `_temporary/` with the attempt in the name, flushed to disk, then renamed over
//! `part-NNNNN`. A rename is atomic, so a reader sees a whole part or none, and a
//! speculative twin that renames the same part writes identical bytes (the order of
//! values is deterministic).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use essaim_core::AttemptId;
use tokio_util::sync::CancellationToken;

use crate::api::{Emit, JobDefinition, JobError, Mapper, Record, Reducer, Values};
use crate::cancel::CancelCheck;
use crate::counters::{self, Counters};
use crate::error::{TaskError, TaskResult};
use crate::format::SegmentEntry;
use crate::merge::{
    KWayMerge, RunFile, WRITE_BUFFER_BYTES, merge_until_at_most, open_segment, reduce_groups,
};
use crate::payload::ReduceTaskPayload;
use crate::sort::{MapOutputCollector, MapOutputFile};
use essaim_storage::output::{OutputDir, PendingPart};

/// One partition of one upstream output, fetched into a local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSegment {
    /// The upstream task it comes from.
    pub task_index: u32,
    /// The local file holding the segment (a batched fetch writes several segments
    /// into one file).
    pub path: PathBuf,
    /// Where the segment starts in the file.
    pub offset: u64,
    /// Its length.
    pub length: u64,
    /// Its records.
    pub records: u64,
}

/// What a reduce task produced.
#[derive(Debug, Clone)]
pub struct ReduceOutcome {
    /// The committed part (last step), or `None` for a chained step.
    pub part: Option<PathBuf>,
    /// The map output for the next step (chained step only).
    pub map_output: Option<MapOutputFile>,
    /// `reduce.*`, `merge.passes`, and for a chained step the `map.*` of its mapper.
    pub counters: Counters,
}

/// Merges `segments` (any order; they are sorted by upstream task index here), reduces
/// them with step `payload.step` of `job`, and commits the result. `scratch_dir` holds
/// intermediate merges; `attempt_id` names the temporary part.
pub fn reduce_segments(
    job: &dyn JobDefinition,
    payload: &ReduceTaskPayload,
    segments: Vec<FetchedSegment>,
    scratch_dir: &Path,
    attempt_id: AttemptId,
    cancel: CancellationToken,
) -> TaskResult<ReduceOutcome> {
    let mut cancel_check = CancelCheck::new(cancel.clone());
    let merged = MergedInput::merge(segments, payload, scratch_dir, &mut cancel_check)?;
    let task = ReduceRun {
        job,
        payload,
        scratch_dir,
        attempt_id,
        cancel: &cancel,
    };
    let outcome = task.reduce(&merged, GroupSelection::All);
    merged.remove_intermediate_runs();
    outcome
}

/// The fetched segments of one partition merged down to at most the merge factor's
/// runs: read once by a normal run, several times by a task isolating its bad groups.
pub(crate) struct MergedInput {
    runs: Vec<RunFile>,
    passes: u64,
    fetched: Vec<PathBuf>,
}

impl MergedInput {
    /// Merges `segments` until at most `merge_factor` runs are left.
    pub(crate) fn merge(
        mut segments: Vec<FetchedSegment>,
        payload: &ReduceTaskPayload,
        scratch_dir: &Path,
        cancel_check: &mut CancelCheck,
    ) -> TaskResult<Self> {
        // Upstream order is the tie-breaker of equal keys: values by map task index.
        segments.sort_by_key(|segment| segment.task_index);
        let runs: Vec<RunFile> = segments
            .iter()
            .filter(|segment| segment.records > 0)
            .map(|segment| RunFile {
                path: segment.path.clone(),
                entries: vec![SegmentEntry {
                    offset: segment.offset,
                    length: segment.length,
                    records: segment.records,
                }],
            })
            .collect();
        let mut passes = 0;
        let mut named = 0u32;
        let mut name_run = || {
            named += 1;
            scratch_dir.join(format!("reduce-merge-{named:05}.out"))
        };
        let runs = merge_until_at_most(
            runs,
            payload.config.merge_factor as usize,
            1,
            &mut name_run,
            &mut passes,
            cancel_check,
        )?;
        let fetched = segments.into_iter().map(|segment| segment.path).collect();
        Ok(Self {
            runs,
            passes,
            fetched,
        })
    }

    /// Opens the runs for one pass over every record, in key order.
    pub(crate) fn open(&self) -> TaskResult<KWayMerge<std::io::BufReader<std::io::Take<File>>>> {
        let mut cursors = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            cursors.push(open_segment(run, 0)?);
        }
        Ok(KWayMerge::new(cursors))
    }

    /// Removes the runs the merge wrote (not the fetched segments).
    pub(crate) fn remove_intermediate_runs(&self) {
        for run in &self.runs {
            if !self.fetched.contains(&run.path) {
                crate::merge::remove_quietly(&run.path);
            }
        }
    }
}

/// Which key groups a run of the reducer sees, by their index in key order.
#[derive(Debug, Clone)]
pub(crate) enum GroupSelection<'a> {
    /// Every group: a normal run.
    All,
    /// Every group but these (the bad groups a task skips).
    AllBut(&'a BTreeSet<u64>),
    /// The groups of this range only (a probe of a task isolating its bad groups).
    Range(std::ops::Range<u64>),
}

/// One reduce task's run of its reducer over merged input.
pub(crate) struct ReduceRun<'a> {
    pub job: &'a dyn JobDefinition,
    pub payload: &'a ReduceTaskPayload,
    pub scratch_dir: &'a Path,
    pub attempt_id: AttemptId,
    pub cancel: &'a CancellationToken,
}

impl ReduceRun<'_> {
    /// Reduces the groups of `merged` that `selection` keeps, and commits the result.
    pub(crate) fn reduce(
        &self,
        merged: &MergedInput,
        selection: GroupSelection<'_>,
    ) -> TaskResult<ReduceOutcome> {
        let ReduceRun {
            job,
            payload,
            scratch_dir,
            attempt_id,
            ..
        } = *self;
        let cancel = self.cancel.clone();
        let config = &payload.config;
        let params = &config.params;
        let step = payload.step as usize;
        let is_last_step = payload.step + 1 >= config.steps;
        let mut cancel_check = CancelCheck::new(cancel.clone());
        let mut counters = Counters::default();
        let mut merge = merged.open()?;
        counters.add(counters::MERGE_PASSES, merged.passes + 1);
        let mut reducer = selection.wrap(job.reducer(params, step)?);
        let outcome = if is_last_step {
            let part = config.part_name(payload.partition);
            let output = config.output();
            let mut sink = PartWriter::create(
                job,
                &output,
                &part,
                config.output_codec,
                attempt_id,
                scratch_dir,
            )?;
            let result = reduce_groups(&mut merge, reducer.as_mut(), &mut sink, &mut cancel_check);
            let stats = prefer_sink_error(result, sink.error.take())?;
            let finished = reducer.finish(&mut sink);
            prefer_sink_error(finished.map_err(TaskError::Job), sink.error.take())?;
            counters.add(counters::REDUCE_INPUT_GROUPS, stats.groups);
            counters.add(counters::REDUCE_INPUT_RECORDS, stats.records);
            counters.add(counters::REDUCE_OUTPUT_RECORDS, sink.records);
            counters.add(counters::REDUCE_OUTPUT_BYTES, sink.bytes);
            let part = sink.commit()?;
            ReduceOutcome {
                part: Some(part),
                map_output: None,
                counters,
            }
        } else {
            let next_step = step + 1;
            let collector = MapOutputCollector::new(job, config, next_step, scratch_dir, cancel)?;
            let mut sink = ChainSink {
                mapper: job.mapper(params, next_step)?,
                collector,
                line: Vec::new(),
                records: 0,
                bytes: 0,
            };
            let result = reduce_groups(&mut merge, reducer.as_mut(), &mut sink, &mut cancel_check);
            let stats = prefer_sink_error(result, sink.collector.take_error())?;
            let finished = reducer.finish(&mut sink);
            prefer_sink_error(
                finished.map_err(TaskError::Job),
                sink.collector.take_error(),
            )?;
            let mapper_finished = sink.mapper.finish(&mut sink.collector);
            prefer_sink_error(
                mapper_finished.map_err(TaskError::Job),
                sink.collector.take_error(),
            )?;
            counters.add(counters::REDUCE_INPUT_GROUPS, stats.groups);
            counters.add(counters::REDUCE_INPUT_RECORDS, stats.records);
            counters.add(counters::REDUCE_OUTPUT_RECORDS, sink.records);
            counters.add(counters::REDUCE_OUTPUT_BYTES, sink.bytes);
            counters.add(counters::MAP_INPUT_RECORDS, sink.records);
            let map_output = sink.collector.finish()?;
            counters.merge(&map_output.counters);
            sink.mapper.counters(&mut counters);
            ReduceOutcome {
                part: None,
                map_output: Some(map_output),
                counters,
            }
        };
        Ok(outcome)
    }
}

impl<'a> GroupSelection<'a> {
    /// Returns `reducer` seeing only the selected groups (itself for every group).
    pub(crate) fn wrap(self, reducer: Box<dyn Reducer>) -> Box<dyn Reducer + 'a> {
        match self {
            GroupSelection::All => reducer,
            selection => Box::new(SelectedGroups {
                inner: reducer,
                selection,
                next_group: 0,
            }),
        }
    }

    fn keeps(&self, group: u64) -> bool {
        match self {
            GroupSelection::All => true,
            GroupSelection::AllBut(skipped) => !skipped.contains(&group),
            GroupSelection::Range(range) => range.contains(&group),
        }
    }
}

/// A reducer that hands its inner reducer the selected groups only (the others' values
/// are left unread, and so passed over by the group loop).
struct SelectedGroups<'a> {
    inner: Box<dyn Reducer>,
    selection: GroupSelection<'a>,
    next_group: u64,
}

impl Reducer for SelectedGroups<'_> {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let group = self.next_group;
        self.next_group += 1;
        if !self.selection.keeps(group) {
            return Ok(());
        }
        self.inner.reduce(key, values, out)
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        self.inner.finish(out)
    }
}

/// Returns the sink's error when it has one: it is the cause of the `JobError` the
/// reducer passed on.
fn prefer_sink_error<T>(result: TaskResult<T>, sink_error: Option<TaskError>) -> TaskResult<T> {
    match sink_error {
        Some(error) => Err(error),
        None => result,
    }
}

/// The bytes of a part on their way to its temporary file: plain, or through an
/// encoder whose trailer [`PartOutput::finish`] writes.
enum PartOutput {
    Plain(BufWriter<File>),
    Compressed(essaim_storage::codec::Encoder<'static, BufWriter<File>>),
}

impl PartOutput {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(output) => output.write_all(bytes),
            Self::Compressed(output) => output.write_all(bytes),
        }
    }

    /// Ends the stream (the encoder's trailer) and flushes the buffer; returns the file.
    fn finish(self) -> std::io::Result<File> {
        let buffered = match self {
            Self::Plain(output) => output,
            Self::Compressed(output) => output.finish()?,
        };
        buffered.into_inner().map_err(|error| error.into_error())
    }
}

/// Writes the last step's output lines into a temporary part, then commits it.
struct PartWriter<'a> {
    job: &'a dyn JobDefinition,
    output: PartOutput,
    /// Where the part goes once written (`output` writes to a clone of its file).
    pending: PendingPart,
    /// The file written, for errors.
    temporary_path: PathBuf,
    line: Vec<u8>,
    records: u64,
    bytes: u64,
    error: Option<TaskError>,
}

impl<'a> PartWriter<'a> {
    fn create(
        job: &'a dyn JobDefinition,
        output_dir: &OutputDir,
        part: &str,
        codec: Option<essaim_storage::Codec>,
        attempt_id: AttemptId,
        scratch_dir: &Path,
    ) -> TaskResult<Self> {
        let pending = output_dir.create_part(part, &attempt_id.to_string(), scratch_dir)?;
        let temporary_path = pending.local_path().to_path_buf();
        let file = pending
            .file
            .try_clone()
            .map_err(|source| TaskError::io("open", &temporary_path, source))?;
        let buffered = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        let output = match codec {
            None => PartOutput::Plain(buffered),
            Some(codec) => PartOutput::Compressed(
                codec
                    .encoder(buffered)
                    .map_err(|source| TaskError::io("create", &temporary_path, source))?,
            ),
        };
        Ok(Self {
            job,
            output,
            pending,
            temporary_path,
            line: Vec::new(),
            records: 0,
            bytes: 0,
            error: None,
        })
    }

    /// Ends the part's stream, then commits it: on a file system flushed and renamed
    /// over `part-NNNNN`; in an object store uploaded beside it, for the job's commit to
    /// publish (see [`essaim_storage::output`]). Returns where it went.
    fn commit(self) -> TaskResult<PathBuf> {
        let temporary_path = self.temporary_path;
        self.output
            .finish()
            .map_err(|source| TaskError::io("write", &temporary_path, source))?;
        Ok(self.pending.commit()?.to_path())
    }
}

impl Emit for PartWriter<'_> {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError> {
        if self.error.is_some() {
            return Err(JobError::retryable("writing the output part failed before"));
        }
        self.line.clear();
        self.job.format_output(key, value, &mut self.line);
        self.line.push(b'\n');
        if let Err(source) = self.output.write_all(&self.line) {
            let error = TaskError::io("write", &self.temporary_path, source);
            let job_error = JobError::retryable(error.to_string());
            self.error = Some(error);
            return Err(job_error);
        }
        self.records += 1;
        self.bytes += self.line.len() as u64;
        Ok(())
    }
}

/// Feeds a chained step's mapper with what the reducer emits, as `key<TAB>value` lines
/// numbered from 0.
struct ChainSink<'a> {
    mapper: Box<dyn Mapper>,
    collector: MapOutputCollector<'a>,
    line: Vec<u8>,
    records: u64,
    bytes: u64,
}

impl Emit for ChainSink<'_> {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError> {
        self.line.clear();
        self.line.extend_from_slice(key);
        self.line.push(b'\t');
        self.line.extend_from_slice(value);
        let record = Record {
            // A chained record comes from no file.
            path: Path::new(""),
            offset: self.records,
            line_in_split: self.records + 1,
            split_start: 0,
            data: &self.line,
        };
        self.records += 1;
        self.bytes += (key.len() + value.len()) as u64;
        self.mapper.map(&record, &mut self.collector)
    }
}
