//! The map task: read one split (or several small files packed into one, see
//! [`crate::packing`]), run the job's mapper on each record, and leave one sorted,
//! partitioned output file in the attempt directory for reducers to fetch.
//!
//! A packed split is read piece by piece, each with its own line reader, so every
//! record names its own file, offset and line number within its piece, exactly as if
//! the piece were a task of its own. One mapper sees every piece (so in-mapper
//! combining works across small files); jobs that keep state per file notice the
//! change of `Record::path` (`index`, `grep`).
//!
//! Records are numbered across the task's pieces, from 0, in the order they are read:
//! skipping mode ([`crate::skip`]) runs the mapper over a [`Selection`] of them.
//!
//! The attempt directory is not cleaned here: the worker keeps it because the task's
//! result is a file in it, and its file server serves that file to reducers.

use std::collections::BTreeSet;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::api::{InputAccess, InputFormat, JobDefinition, Record};
use crate::cancel::CancelCheck;
use crate::counters;
use crate::error::{TaskError, TaskResult};
use crate::payload::{InputSplit, MapTaskPayload};
use crate::sort::{MapOutputCollector, MapOutputFile};
use crate::split::LineSplitReader;

/// Which of a task's records the mapper is given, by their index in the task.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Every record: a normal run.
    All,
    /// Every record but these.
    AllBut(&'a BTreeSet<u64>),
}

impl Selection<'_> {
    /// Returns true when record `index` goes to the mapper.
    fn wants(&self, index: u64) -> bool {
        match self {
            Self::All => true,
            Self::AllBut(excluded) => !excluded.contains(&index),
        }
    }
}

/// What the record loop does after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read the next record.
    Continue,
    /// Read no further.
    Stop,
}

/// Records and bytes read from a task's pieces.
#[derive(Debug, Default)]
pub(crate) struct InputRead {
    /// Records read (whether or not the mapper was given them).
    pub records: u64,
    /// Bytes read from the inputs, line terminators included.
    pub bytes: u64,
}

/// Runs the map task `payload` of `job`, writing into `scratch_dir` (which must exist);
/// returns the map output file, with the task's counters.
pub fn run_map(
    job: &dyn JobDefinition,
    payload: &MapTaskPayload,
    scratch_dir: &Path,
    cancel: CancellationToken,
) -> TaskResult<MapOutputFile> {
    run_map_selected(job, payload, scratch_dir, Selection::All, cancel)
}

/// Runs the map task `payload` of `job` over the records `selection` names, writing
/// into `scratch_dir` (which must exist); returns the map output file, with the task's
/// counters (`map.input.records` counts the records the mapper was given).
pub fn run_map_selected(
    job: &dyn JobDefinition,
    payload: &MapTaskPayload,
    scratch_dir: &Path,
    selection: Selection<'_>,
    cancel: CancellationToken,
) -> TaskResult<MapOutputFile> {
    let config = &payload.config;
    let mut mapper = job.mapper(&config.params, 0)?;
    mapper.use_input_access(&InputAccess::new(config.storage.clone()));
    let mut collector = MapOutputCollector::new(job, config, 0, scratch_dir, cancel.clone())?;
    let mut read = InputRead::default();
    let mut mapped = 0;
    let visited = for_each_record(job, payload, &cancel, &mut read, |index, record| {
        if selection.wants(index) {
            mapped += 1;
            mapper.map(record, &mut collector).map_err(TaskError::Job)?;
        }
        Ok(Flow::Continue)
    });
    visited.map_err(|error| collector.take_error().unwrap_or(error))?;
    if let Err(job_error) = mapper.finish(&mut collector) {
        return Err(collector.take_error().unwrap_or(TaskError::Job(job_error)));
    }
    let mut output = collector.finish()?;
    mapper.counters(&mut output.counters);
    output.counters.add(counters::MAP_INPUT_RECORDS, mapped);
    output.counters.add(counters::MAP_INPUT_BYTES, read.bytes);
    Ok(output)
}

/// Reads the records of the task in order, handing each with its index to `visit`,
/// until the last or until `visit` says [`Flow::Stop`]. `read` counts the records
/// read and the bytes behind them.
pub(crate) fn for_each_record(
    job: &dyn JobDefinition,
    payload: &MapTaskPayload,
    cancel: &CancellationToken,
    read: &mut InputRead,
    mut visit: impl FnMut(u64, &Record<'_>) -> TaskResult<Flow>,
) -> TaskResult<()> {
    let config = &payload.config;
    let format = job.input_format(&config.params);
    let mut cancel_check = CancelCheck::new(cancel.clone());
    let mut buffer = Vec::new();
    for split in &payload.splits {
        let flow = match format {
            InputFormat::Lines => {
                let reader = LineSplitReader::open_reusing(
                    &split.path,
                    split.start,
                    split.length,
                    std::mem::take(&mut buffer),
                    &config.storage,
                )?;
                let (flow, reused) =
                    visit_lines(reader, split, &mut cancel_check, read, &mut visit)?;
                buffer = reused;
                flow
            }
            InputFormat::WholeFiles => visit_whole_file(split, read, &mut visit)?,
        };
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// Visits the lines of one piece; returns whether to go on, and the reader's buffer
/// for the next piece.
fn visit_lines(
    mut reader: LineSplitReader,
    split: &InputSplit,
    cancel_check: &mut CancelCheck,
    read: &mut InputRead,
    visit: &mut impl FnMut(u64, &Record<'_>) -> TaskResult<Flow>,
) -> TaskResult<(Flow, Vec<u8>)> {
    let mut line_in_split = 0;
    let mut flow = Flow::Continue;
    while let Some((offset, line)) = reader.next_line()? {
        line_in_split += 1;
        let record = Record {
            path: &split.path,
            offset,
            line_in_split,
            split_start: split.start,
            data: line,
        };
        let index = read.records;
        read.records += 1;
        flow = visit(index, &record)?;
        cancel_check.tick()?;
        if flow == Flow::Stop {
            break;
        }
    }
    read.bytes += reader.bytes_read();
    Ok((flow, reader.into_buffer()))
}

/// Visits one whole file (one record, which the mapper reads itself).
fn visit_whole_file(
    split: &InputSplit,
    read: &mut InputRead,
    visit: &mut impl FnMut(u64, &Record<'_>) -> TaskResult<Flow>,
) -> TaskResult<Flow> {
    // A local file must still be there; an object's size is the listing's.
    let size = match essaim_storage::Location::from_path(&split.path) {
        essaim_storage::Location::Local(path) => std::fs::metadata(&path)
            .map_err(|source| TaskError::io("read", &path, source))?
            .len(),
        essaim_storage::Location::S3 { .. } => split.length,
    };
    // A whole-file split is the file; a split that does not start the file owns
    // nothing (the file is one record, which starts at 0).
    if split.start != 0 {
        return Ok(Flow::Continue);
    }
    let record = Record {
        path: &split.path,
        offset: 0,
        line_in_split: 1,
        split_start: 0,
        data: &[],
    };
    let index = read.records;
    read.records += 1;
    read.bytes += size;
    visit(index, &record)
}
