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
//! The attempt directory is not cleaned here: the worker keeps it because the task's
//! result is a file in it, and its file server serves that file to reducers.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::api::{Emit, InputFormat, JobDefinition, Mapper, Record};
use crate::cancel::CancelCheck;
use crate::counters;
use crate::error::{TaskError, TaskResult};
use crate::payload::{InputSplit, MapTaskPayload};
use crate::sort::{MapOutputCollector, MapOutputFile};
use crate::split::LineSplitReader;

/// Records and bytes read from a task's pieces.
#[derive(Debug, Default)]
struct InputRead {
    records: u64,
    bytes: u64,
}

/// Runs the map task `payload` of `job`, writing into `scratch_dir` (which must exist);
/// returns the map output file, with the task's counters.
pub fn run_map(
    job: &dyn JobDefinition,
    payload: &MapTaskPayload,
    scratch_dir: &Path,
    cancel: CancellationToken,
) -> TaskResult<MapOutputFile> {
    let config = &payload.config;
    let params = &config.params;
    let mut mapper = job.mapper(params, 0)?;
    let mut collector = MapOutputCollector::new(job, config, 0, scratch_dir, cancel.clone())?;
    let mut cancel_check = CancelCheck::new(cancel);
    let mut read = InputRead::default();
    let format = job.input_format(params);
    let mut buffer = Vec::new();
    for split in &payload.splits {
        let mapped = match format {
            InputFormat::Lines => map_lines(
                split,
                &config.storage,
                std::mem::take(&mut buffer),
                mapper.as_mut(),
                &mut collector,
                &mut cancel_check,
                &mut read,
            )
            .map(|reused| buffer = reused),
            InputFormat::WholeFiles => {
                map_whole_file(split, mapper.as_mut(), &mut collector, &mut read)
            }
        };
        mapped.map_err(|error| collector.take_error().unwrap_or(error))?;
    }
    if let Err(job_error) = mapper.finish(&mut collector) {
        return Err(collector.take_error().unwrap_or(TaskError::Job(job_error)));
    }
    let mut output = collector.finish()?;
    mapper.counters(&mut output.counters);
    output
        .counters
        .add(counters::MAP_INPUT_RECORDS, read.records);
    output.counters.add(counters::MAP_INPUT_BYTES, read.bytes);
    Ok(output)
}

/// Maps the lines of one piece; returns the reader's buffer for the next piece.
fn map_lines(
    split: &InputSplit,
    storage: &essaim_storage::S3Options,
    buffer: Vec<u8>,
    mapper: &mut dyn Mapper,
    out: &mut dyn Emit,
    cancel_check: &mut CancelCheck,
    read: &mut InputRead,
) -> TaskResult<Vec<u8>> {
    let mut reader =
        LineSplitReader::open_reusing(&split.path, split.start, split.length, buffer, storage)?;
    let mut line_in_split = 0;
    while let Some((offset, line)) = reader.next_line()? {
        line_in_split += 1;
        let record = Record {
            path: &split.path,
            offset,
            line_in_split,
            split_start: split.start,
            data: line,
        };
        mapper.map(&record, out).map_err(TaskError::Job)?;
        cancel_check.tick()?;
    }
    read.records += line_in_split;
    read.bytes += reader.bytes_read();
    Ok(reader.into_buffer())
}

/// Maps one whole file (one record, which the mapper reads itself).
fn map_whole_file(
    split: &InputSplit,
    mapper: &mut dyn Mapper,
    out: &mut dyn Emit,
    read: &mut InputRead,
) -> TaskResult<()> {
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
        return Ok(());
    }
    let record = Record {
        path: &split.path,
        offset: 0,
        line_in_split: 1,
        split_start: 0,
        data: &[],
    };
    mapper.map(&record, out).map_err(TaskError::Job)?;
    read.records += 1;
    read.bytes += size;
    Ok(())
}
