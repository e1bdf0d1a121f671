//! The map task: read one split, run the job's mapper on each record, and leave one
//! sorted, partitioned output file in the attempt directory for reducers to fetch.
//!
//! The attempt directory is not cleaned here: the worker keeps it because the task's
//! result is a file in it, and its file server serves that file to reducers.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::api::{InputFormat, JobDefinition, Record};
use crate::cancel::CancelCheck;
use crate::counters;
use crate::error::{TaskError, TaskResult};
use crate::payload::MapTaskPayload;
use crate::sort::{MapOutputCollector, MapOutputFile};
use crate::split::LineSplitReader;

/// Runs the map task `payload` of `job`, writing into `scratch_dir` (which must exist);
/// returns the map output file, with the task's counters.
pub fn run_map(
    job: &dyn JobDefinition,
    payload: &MapTaskPayload,
    scratch_dir: &Path,
    cancel: CancellationToken,
) -> TaskResult<MapOutputFile> {
    let config = &payload.config;
    let split = &payload.split;
    let params = &config.params;
    let mut mapper = job.mapper(params, 0)?;
    let mut collector = MapOutputCollector::new(job, config, 0, scratch_dir, cancel.clone())?;
    let mut cancel_check = CancelCheck::new(cancel);
    let mut input_records = 0u64;
    let input_bytes;
    match job.input_format(params) {
        InputFormat::Lines => {
            let mut reader = LineSplitReader::open(&split.path, split.start, split.length)?;
            while let Some((offset, line)) = reader.next_line()? {
                input_records += 1;
                let record = Record {
                    path: &split.path,
                    offset,
                    line_in_split: input_records,
                    split_start: split.start,
                    data: line,
                };
                if let Err(job_error) = mapper.map(&record, &mut collector) {
                    return Err(collector.take_error().unwrap_or(TaskError::Job(job_error)));
                }
                cancel_check.tick()?;
            }
            input_bytes = reader.bytes_read();
        }
        InputFormat::WholeFiles => {
            let metadata = std::fs::metadata(&split.path)
                .map_err(|source| TaskError::io("read", &split.path, source))?;
            // A whole-file split is the file; a split that does not start the file owns
            // nothing (the file is one record, which starts at 0).
            if split.start == 0 {
                input_records = 1;
                let record = Record {
                    path: &split.path,
                    offset: 0,
                    line_in_split: 1,
                    split_start: 0,
                    data: &[],
                };
                if let Err(job_error) = mapper.map(&record, &mut collector) {
                    return Err(collector.take_error().unwrap_or(TaskError::Job(job_error)));
                }
                input_bytes = metadata.len();
            } else {
                input_bytes = 0;
            }
        }
    }
    if let Err(job_error) = mapper.finish(&mut collector) {
        return Err(collector.take_error().unwrap_or(TaskError::Job(job_error)));
    }
    let mut output = collector.finish()?;
    mapper.counters(&mut output.counters);
    output
        .counters
        .add(counters::MAP_INPUT_RECORDS, input_records);
    output.counters.add(counters::MAP_INPUT_BYTES, input_bytes);
    Ok(output)
}
