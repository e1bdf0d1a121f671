//! A reduce task of a job's last step in skipping mode: run as usual; when the reducer
//! fails on its input and the attempt may isolate, find the key groups it fails on by
//! bisection over the groups' indexes in key order ([`super::bisect`]), then reduce
//! every other group once more, as Hadoop's reduce-side skipping skips key groups
//! (`mapreduce.reduce.skip.maxgroups`).
//!
//! The fetched segments are merged once (`MergedInput`); each probe reads that
//! merged input again with a fresh reducer that sees only a range of groups (the others
//! are passed over unread), its output thrown away, so a probe costs a read of the
//! partition from the local disk. The last run is a normal run with one reducer over
//! every group but the culprits, so a reducer that aggregates across groups gives what
//! it gives without them.
//!
//! A skipped group is stored like a skipped record (see [`super::record`]): `file` is
//! `reduce partition N`, `line` the group's number from 1 in key order (`offset` the
//! same from 0), `task` the partition, and the record's bytes are the group's key.
//! It counts as one record of the job's budget.
//!
//! Not isolated: a chained step (its reducer feeds the next step's mapper inside the
//! task): it fails as before.

use std::collections::BTreeSet;
use std::ops::Range;

use essaim_core::AttemptId;
use tokio_util::sync::CancellationToken;

use super::bisect::{Culprit, Limits, Probe, isolate};
use super::config::MAX_PROBES_PER_TASK;
use super::record::{SkippedAt, SkippedRecord};
use super::store::name_records;
use super::{IsolationTerms, catch_panics, not_isolated};
use crate::api::{Emit, JobError, Reducer, Values};
use crate::cancel::CancelCheck;
use crate::counters;
use crate::error::{TaskError, TaskResult};
use crate::merge::reduce_groups;
use crate::payload::ReduceTaskPayload;
use crate::reduce_task::{FetchedSegment, GroupSelection, MergedInput, ReduceOutcome, ReduceRun};

/// What a reduce task in skipping mode produced.
#[derive(Debug)]
pub struct SkippingReduceOutcome {
    /// The task's outcome, over every group not skipped.
    pub outcome: ReduceOutcome,
    /// The groups skipped, in key order; empty when the task ran without failure.
    pub skipped: Vec<SkippedRecord>,
}

/// Where a reduce task in skipping mode reads and writes.
pub struct ReduceAttempt<'a> {
    /// The job.
    pub job: &'a dyn crate::api::JobDefinition,
    /// The task.
    pub payload: &'a ReduceTaskPayload,
    /// The attempt's scratch directory (intermediate merges, the temporary part).
    pub scratch_dir: &'a std::path::Path,
    /// The attempt, which names the temporary part.
    pub attempt_id: AttemptId,
    /// Its number, from 1: isolation starts after the job's failed attempts.
    pub attempt_number: u32,
}

/// The reduce task of `attempt` over `segments` in skipping mode: see the module doc.
pub fn run_reduce_skipping(
    attempt: &ReduceAttempt<'_>,
    segments: Vec<FetchedSegment>,
    cancel: CancellationToken,
) -> TaskResult<SkippingReduceOutcome> {
    let mut cancel_check = CancelCheck::new(cancel.clone());
    let merged = MergedInput::merge(
        segments,
        attempt.payload,
        attempt.scratch_dir,
        &mut cancel_check,
    )?;
    let run = ReduceRun {
        job: attempt.job,
        payload: attempt.payload,
        scratch_dir: attempt.scratch_dir,
        attempt_id: attempt.attempt_id,
        cancel: &cancel,
    };
    let outcome = reduce_skipping(&run, &merged, attempt.attempt_number);
    merged.remove_intermediate_runs();
    outcome
}

fn reduce_skipping(
    run: &ReduceRun<'_>,
    merged: &MergedInput,
    attempt_number: u32,
) -> TaskResult<SkippingReduceOutcome> {
    let payload = run.payload;
    let skip = payload.config.skip;
    let failure = match catch_panics(|| run.reduce(merged, GroupSelection::All)) {
        Ok(outcome) => {
            return Ok(SkippingReduceOutcome {
                outcome,
                skipped: Vec::new(),
            });
        }
        Err(failure) => failure,
    };
    let is_last_step = payload.step + 1 >= payload.config.steps;
    if !is_last_step
        || !failure.is_record_failure()
        || !skip.isolates(attempt_number, failure.is_retryable())
    {
        return Err(failure);
    }
    tracing::warn!(
        partition = payload.partition,
        attempt_number,
        error = %failure,
        "the reduce task fails on its key groups; isolating them"
    );
    let groups = count_groups(run, merged)?;
    let limits = Limits {
        max_culprits: skip.max_records,
        max_probes: MAX_PROBES_PER_TASK,
    };
    let isolated = match isolate(0..groups, limits, |range| probe(run, merged, range)) {
        Ok(isolated) => isolated,
        Err(error) => {
            let terms = IsolationTerms {
                max_records: skip.max_records,
                what: "key groups",
                runs_of: "the reducer",
            };
            let name = |culprits: &[Culprit<String>]| match describe(run, merged, culprits) {
                Ok(described) => name_records(described.iter().map(SkippedRecord::location)),
                Err(_) => name_records(culprits.iter().map(|c| format!("group {}", c.index + 1))),
            };
            return Err(not_isolated(error, failure, terms, name));
        }
    };
    let culprits: BTreeSet<u64> = isolated.culprits.iter().map(|c| c.index).collect();
    let last_run = catch_panics(|| run.reduce(merged, GroupSelection::AllBut(&culprits)));
    let mut outcome = last_run.map_err(|error| {
        if !error.is_record_failure() {
            return error;
        }
        TaskError::NotIsolated {
            reason: format!(
                "the task still fails with its {} failing key groups skipped",
                culprits.len()
            ),
            source: Box::new(error),
        }
    })?;
    let skipped = describe(run, merged, &isolated.culprits)?;
    let counted = &mut outcome.counters;
    counted.add(counters::REDUCE_SKIPPED_GROUPS, skipped.len() as u64);
    counted.add(
        counters::REDUCE_ISOLATION_PROBES,
        u64::from(isolated.probes),
    );
    tracing::warn!(
        partition = payload.partition,
        skipped = skipped.len(),
        probes = isolated.probes,
        groups = %name_records(skipped.iter().map(SkippedRecord::location)),
        "key groups skipped"
    );
    Ok(SkippingReduceOutcome { outcome, skipped })
}

/// Counts the key groups of the merged input.
fn count_groups(run: &ReduceRun<'_>, merged: &MergedInput) -> TaskResult<u64> {
    let mut merge = merged.open()?;
    let mut cancel = CancelCheck::new(run.cancel.clone());
    let mut reads_nothing = KeysOf {
        wanted: &BTreeSet::new(),
        next_group: 0,
        keys: Vec::new(),
    };
    let stats = reduce_groups(&mut merge, &mut reads_nothing, &mut Discard, &mut cancel)?;
    Ok(stats.groups)
}

/// Runs a fresh reducer over the groups of `range`, its output thrown away. A failure
/// of the job's code is the probe's answer; any other (the disk, a cancellation) ends
/// the search.
fn probe(
    run: &ReduceRun<'_>,
    merged: &MergedInput,
    range: Range<u64>,
) -> TaskResult<Probe<String>> {
    let payload = run.payload;
    // Not the groups' fault if the reducer cannot even be built.
    let inner = run
        .job
        .reducer(&payload.config.params, payload.step as usize)?;
    let mut reducer = GroupSelection::Range(range).wrap(inner);
    let mut merge = merged.open()?;
    let mut cancel = CancelCheck::new(run.cancel.clone());
    let ran = catch_panics(|| {
        reduce_groups(&mut merge, reducer.as_mut(), &mut Discard, &mut cancel)?;
        reducer.finish(&mut Discard).map_err(TaskError::Job)
    });
    match ran {
        Ok(()) => Ok(Probe::Passed),
        Err(error) if error.is_record_failure() => {
            Ok(Probe::Failed(essaim_core::error_chain::error_chain(&error)))
        }
        Err(error) => Err(error),
    }
}

/// Describes `culprits` for people and the store: their keys, read once more.
fn describe(
    run: &ReduceRun<'_>,
    merged: &MergedInput,
    culprits: &[Culprit<String>],
) -> TaskResult<Vec<SkippedRecord>> {
    let wanted: BTreeSet<u64> = culprits.iter().map(|culprit| culprit.index).collect();
    let mut keys = KeysOf {
        wanted: &wanted,
        next_group: 0,
        keys: Vec::new(),
    };
    let mut merge = merged.open()?;
    let mut cancel = CancelCheck::new(run.cancel.clone());
    reduce_groups(&mut merge, &mut keys, &mut Discard, &mut cancel)?;
    let partition = run.payload.partition;
    let described = culprits
        .iter()
        .zip(keys.keys)
        .map(|(culprit, key)| {
            let at = SkippedAt {
                file: format!("reduce partition {partition}"),
                offset: culprit.index,
                line: culprit.index + 1,
                task: partition,
                error: culprit.failure.clone(),
            };
            SkippedRecord::new(at, &key)
        })
        .collect();
    Ok(described)
}

/// A reducer that reads no value and keeps the keys of the wanted groups, in order.
struct KeysOf<'a> {
    wanted: &'a BTreeSet<u64>,
    next_group: u64,
    keys: Vec<Vec<u8>>,
}

impl Reducer for KeysOf<'_> {
    fn reduce(&mut self, key: &[u8], _: &mut dyn Values, _: &mut dyn Emit) -> Result<(), JobError> {
        if self.wanted.contains(&self.next_group) {
            self.keys.push(key.to_vec());
        }
        self.next_group += 1;
        Ok(())
    }
}

/// Where a probe's reducer emits: nothing is kept.
struct Discard;

impl Emit for Discard {
    fn emit(&mut self, _: &[u8], _: &[u8]) -> Result<(), JobError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
