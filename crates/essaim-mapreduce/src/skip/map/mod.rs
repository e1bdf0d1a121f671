//! A map task in skipping mode: run as usual; when the job's code fails on the records
//! and the attempt may isolate them ([`crate::skip::SkipConfig::isolates`]), find them
//! by bisection ([`super::bisect`]), then run the task once more over every other
//! record.
//!
//! ```text
//!  run every record ──ok──▶ done, nothing skipped
//!        │ fails on records, attempt may isolate
//!        ▼
//!  count the records ─▶ bisect: probes of a fresh mapper over ranges, output thrown away
//!        ▼
//!  run every record but the culprits ─▶ the task's map output, as a normal run writes it
//!        ▼
//!  read the culprits once more ─▶ their bytes, file, offset and line, with their error
//! ```
//!
//! Probes send what the mapper emits to a sink that checks each pair as the collector
//! would (its partition, its size) and keeps nothing, so a probe costs the mapper's
//! time and a read of the input up to the end of its range. The final run is a normal
//! run with one mapper over all the other records, so a mapper that aggregates (in-mapper
//! combining, a command's end-of-input output) gives what it gives without the bad
//! records, not one result per probe.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::bisect::{Culprit, IsolationError, Limits, Probe, isolate};
use super::config::MAX_PROBES_PER_TASK;
use super::describe::describe_culprits;
use super::record::SkippedRecord;
use super::store::name_records;
use super::{IsolationTerms, catch_panics, not_isolated};
use crate::api::{Emit, InputAccess, JobDefinition, JobError, Partitioner};
use crate::counters;
use crate::error::{TaskError, TaskResult};
use crate::format::MAX_RECORD_BYTES;
use crate::map_task::{Flow, InputRead, Selection, for_each_record, run_map, run_map_selected};
use crate::payload::MapTaskPayload;
use crate::sort::MapOutputFile;

/// What a map task in skipping mode produced.
#[derive(Debug)]
pub struct SkippingMapOutcome {
    /// The map output, of every record not skipped.
    pub output: MapOutputFile,
    /// The records skipped, in record order; empty when the task ran without failure.
    pub skipped: Vec<SkippedRecord>,
}

/// The map task `payload` (task `task_index`, attempt number `attempt_number`) in
/// skipping mode: see the module doc. `scratch_dir` must exist.
pub fn run_map_skipping(
    job: &dyn JobDefinition,
    payload: &MapTaskPayload,
    scratch_dir: &Path,
    task_index: u32,
    attempt_number: u32,
    cancel: CancellationToken,
) -> TaskResult<SkippingMapOutcome> {
    let skip = payload.config.skip;
    let failure = match catch_panics(|| run_map(job, payload, scratch_dir, cancel.clone())) {
        Ok(output) => {
            return Ok(SkippingMapOutcome {
                output,
                skipped: Vec::new(),
            });
        }
        Err(failure) => failure,
    };
    if !failure.is_record_failure() || !skip.isolates(attempt_number, failure.is_retryable()) {
        return Err(failure);
    }
    tracing::warn!(
        task = task_index,
        attempt_number,
        error = %failure,
        "the map task fails on its records; isolating them"
    );
    remove_map_run_files(scratch_dir);
    let task = Task {
        job,
        payload,
        index: task_index,
        cancel: &cancel,
    };
    let mut read = InputRead::default();
    for_each_record(job, payload, &cancel, &mut read, |_, _| Ok(Flow::Continue))?;
    let limits = Limits {
        max_culprits: skip.max_records,
        max_probes: MAX_PROBES_PER_TASK,
    };
    let probe_range = |range: Range<u64>| probe(&task, &range);
    let isolated = match isolate(0..read.records, limits, probe_range) {
        Ok(isolated) => isolated,
        Err(error) => return Err(isolation_failure(&task, error, failure)),
    };
    let culprit_indexes: BTreeSet<u64> = isolated.culprits.iter().map(|c| c.index).collect();
    let selection = Selection::AllBut(&culprit_indexes);
    let last_run =
        catch_panics(|| run_map_selected(job, payload, scratch_dir, selection, cancel.clone()));
    let mut output = last_run.map_err(|error| {
        if !error.is_record_failure() {
            return error;
        }
        TaskError::NotIsolated {
            reason: format!(
                "the task still fails with its {} failing records skipped",
                culprit_indexes.len()
            ),
            source: Box::new(error),
        }
    })?;
    let skipped = task.describe(&isolated.culprits)?;
    output
        .counters
        .add(counters::MAP_SKIPPED_RECORDS, skipped.len() as u64);
    output
        .counters
        .add(counters::MAP_ISOLATION_PROBES, u64::from(isolated.probes));
    tracing::warn!(
        task = task_index,
        skipped = skipped.len(),
        probes = isolated.probes,
        records = %name_records(skipped.iter().map(SkippedRecord::location)),
        "records skipped"
    );
    Ok(SkippingMapOutcome { output, skipped })
}

/// The map task whose records are being isolated: what its probes and reads need.
struct Task<'a> {
    job: &'a dyn JobDefinition,
    payload: &'a MapTaskPayload,
    index: u32,
    cancel: &'a CancellationToken,
}

impl Task<'_> {
    /// Describes `culprits` for people and the store (see [`describe_culprits`]).
    fn describe(&self, culprits: &[Culprit<String>]) -> TaskResult<Vec<SkippedRecord>> {
        describe_culprits(self.job, self.payload, self.index, culprits, self.cancel)
    }
}

/// Runs a fresh mapper over the records of `range`, its output checked and thrown
/// away. A failure of the job's code is the probe's answer; any other (the input, a
/// cancellation) ends the search.
fn probe(task: &Task<'_>, range: &Range<u64>) -> TaskResult<Probe<String>> {
    let Task {
        job,
        payload,
        cancel,
        ..
    } = *task;
    let params = &payload.config.params;
    // Not the records' fault if the mapper cannot even be built.
    let mut mapper = job.mapper(params, 0)?;
    mapper.use_input_access(&InputAccess::new(payload.config.storage.clone()));
    let mut sink = CheckingSink {
        partitioner: job.partitioner(params, 0)?,
        partitions: payload.config.reducers,
    };
    let mut read = InputRead::default();
    let ran = catch_panics(|| {
        for_each_record(job, payload, cancel, &mut read, |index, record| {
            if index >= range.end {
                return Ok(Flow::Stop);
            }
            if index >= range.start {
                mapper.map(record, &mut sink).map_err(TaskError::Job)?;
            }
            Ok(Flow::Continue)
        })?;
        mapper.finish(&mut sink).map_err(TaskError::Job)
    });
    match ran {
        Ok(()) => Ok(Probe::Passed),
        Err(error) if error.is_record_failure() => {
            Ok(Probe::Failed(essaim_core::error_chain::error_chain(&error)))
        }
        Err(error) => Err(error),
    }
}

/// Turns a search that did not isolate `failure` (the task's) into the task's error.
fn isolation_failure(
    task: &Task<'_>,
    error: IsolationError<String, TaskError>,
    failure: TaskError,
) -> TaskError {
    let name = |culprits: &[Culprit<String>]| match task.describe(culprits) {
        Ok(described) => name_records(described.iter().map(SkippedRecord::location)),
        Err(_) => name_records(culprits.iter().map(|c| format!("record {}", c.index))),
    };
    let limits = IsolationTerms {
        max_records: task.payload.config.skip.max_records,
        what: "records",
        runs_of: "the mapper",
    };
    not_isolated(error, failure, limits, name)
}

/// Removes what a failed run of the collector left in the attempt directory (spills,
/// merges, a map output), before the last run writes its own.
fn remove_map_run_files(scratch_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_run_file = path.extension().is_some_and(|extension| extension == "out");
        if is_run_file && path.is_file() {
            crate::merge::remove_quietly(&path);
        }
    }
}

/// Where a probe's mapper emits: each pair is checked as the map output collector
/// checks it, then dropped.
struct CheckingSink {
    partitioner: Box<dyn Partitioner>,
    partitions: u32,
}

impl Emit for CheckingSink {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError> {
        let partition = self.partitioner.partition(key, self.partitions);
        let refused = if partition >= self.partitions {
            Some(TaskError::BadPartition {
                partition,
                partitions: self.partitions,
            })
        } else if key.len() + value.len() > MAX_RECORD_BYTES {
            Some(TaskError::RecordTooLarge {
                bytes: key.len() + value.len(),
                limit: MAX_RECORD_BYTES,
            })
        } else {
            None
        };
        match refused {
            Some(error) => Err(JobError::permanent(error.to_string())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
