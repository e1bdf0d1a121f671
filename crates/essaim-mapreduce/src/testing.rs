//! An in-memory reference runner: the semantics of the job API in a few hundred lines,
//! with no spills, no shuffle and no concurrency.
//!
//! It exists to be the oracle. The real framework (splits, sort buffers, spills,
//! merges, the shuffle, retries) must produce byte for byte what this runner produces
//! for the same job, parameters, inputs and number of reducers; the framework's tests,
//! the built-in jobs' tests and the end-to-end tests compare against it. It is
//! therefore written to be obviously correct rather than fast: whole files are read
//! into memory, every pair is a pair of `Vec<u8>`, and sorting is `sort_by` on keys.
//!
//! What it does, step by step (see [`run_in_memory`]):
//!
//! 0. **Prepare.** [`JobDefinition::validate`], then [`JobDefinition::prepare`] on a
//!    copy of the parameters, as the client does before it submits.
//! 1. **Splits.** Each input file is one split (or several, with
//!    [`InMemoryOptions::lines_per_split`]). For [`InputFormat::Lines`] the file is
//!    cut on `\n`; a final line without `\n` counts, an empty file has no line, and
//!    `\r` is kept. For [`InputFormat::WholeFiles`] each file is one record with empty
//!    data. One split is one map task; map tasks are numbered in input order.
//! 2. **Map.** A fresh mapper per map task sees its records in file order, then
//!    `finish`.
//! 3. **Combine.** When the job has a combiner, a fresh one runs once per map task over
//!    that task's output, sorted by key (stable, so values keep their emission order).
//! 4. **Partition.** The step's partitioner sends every pair to a reduce partition.
//! 5. **Sort and group.** Each partition's pairs are appended in (map task, emission)
//!    order, then stably sorted by key bytes: the values of a key reach the reducer in
//!    (map task index, emission order), as the API promises.
//! 6. **Reduce.** A fresh reducer per partition sees its keys in sorted order, then
//!    `finish`.
//! 7. **Chain.** For a job with several steps, step `s` > 0 has one map task per
//!    partition of step `s - 1`, in partition order; its records are that partition's
//!    reduced pairs formatted as `key<TAB>value` (or `key` when the value is empty),
//!    with the path `part-0000p`, offsets counted as if they were a text file, and
//!    `split_start` 0.
//! 8. **Output.** The last step's pairs go through [`JobDefinition::format_output`];
//!    the lines of `part-00000`, `part-00001`, … are returned concatenated in part
//!    order.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use crate::api::{
    Emit, InputAccess, InputFormat, JobDefinition, JobError, JobParams, Record, Values,
};
use crate::counters::Counters;
use crate::payload::part_file_name;

/// A key/value pair as the reference runner holds it.
pub type Pair = (Vec<u8>, Vec<u8>);

/// An [`Emit`] that keeps every pair, in emission order. Handy to call a mapper or a
/// reducer directly in tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CollectEmit {
    /// The pairs emitted so far.
    pub pairs: Vec<Pair>,
}

impl Emit for CollectEmit {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError> {
        self.pairs.push((key.to_vec(), value.to_vec()));
        Ok(())
    }
}

/// [`Values`] over a slice of pairs that all have the same key.
struct SliceValues<'a> {
    pairs: &'a [Pair],
    next: usize,
}

impl Values for SliceValues<'_> {
    fn next_value(&mut self) -> Result<Option<&[u8]>, JobError> {
        let Some((_, value)) = self.pairs.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        Ok(Some(value))
    }
}

/// Knobs of the reference runner. The defaults are the documented semantics: one split
/// per file, the combiner applied once per map task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InMemoryOptions {
    /// Runs the job's combiner (if any) once per map task; false never runs it. A
    /// correct job gives the same output either way.
    pub combine: bool,
    /// Cuts each [`InputFormat::Lines`] file into splits of this many lines (the last
    /// split may be shorter), each its own map task, with `split_start` the offset of
    /// its first line and `line_in_split` restarting at 1. `None`: one split per file.
    pub lines_per_split: Option<NonZeroUsize>,
}

impl Default for InMemoryOptions {
    fn default() -> Self {
        Self {
            combine: true,
            lines_per_split: None,
        }
    }
}

/// Runs `job` over `inputs` with `reducers` partitions per step, entirely in memory,
/// and returns the output lines (without `\n`) of `part-00000`..`part-(R-1)`
/// concatenated in part order. See the module doc for the exact semantics.
pub fn run_in_memory(
    job: &dyn JobDefinition,
    params: &JobParams,
    inputs: &[PathBuf],
    reducers: u32,
) -> Result<Vec<Vec<u8>>, JobError> {
    run_in_memory_with(job, params, inputs, reducers, &InMemoryOptions::default())
}

/// [`run_in_memory`] with explicit [`InMemoryOptions`].
pub fn run_in_memory_with(
    job: &dyn JobDefinition,
    params: &JobParams,
    inputs: &[PathBuf],
    reducers: u32,
    options: &InMemoryOptions,
) -> Result<Vec<Vec<u8>>, JobError> {
    run_counted(job, params, inputs, reducers, options).map(|(lines, _)| lines)
}

/// [`run_in_memory`] that also returns the job's own counters its mappers reported
/// ([`Mapper::counters`]), summed as the coordinator sums them.
///
/// [`Mapper::counters`]: crate::api::Mapper::counters
pub fn run_in_memory_counted(
    job: &dyn JobDefinition,
    params: &JobParams,
    inputs: &[PathBuf],
    reducers: u32,
) -> Result<(Vec<Vec<u8>>, Counters), JobError> {
    run_counted(job, params, inputs, reducers, &InMemoryOptions::default())
}

fn run_counted(
    job: &dyn JobDefinition,
    params: &JobParams,
    inputs: &[PathBuf],
    reducers: u32,
    options: &InMemoryOptions,
) -> Result<(Vec<Vec<u8>>, Counters), JobError> {
    job.validate(params)?;
    if reducers == 0 {
        return Err(JobError::permanent("a job needs at least one reducer"));
    }
    let mut prepared = params.clone();
    job.prepare(&mut prepared, inputs, &InputAccess::default(), reducers)?;
    let params = &prepared;
    let steps = job.steps(params);
    if steps == 0 {
        return Err(JobError::permanent("a job needs at least one step"));
    }

    // Each map task is a list of records (owned), tagged with where they come from.
    let mut map_tasks = read_input_splits(job.input_format(params), inputs, options)?;
    let mut partitions: Vec<Vec<Pair>> = Vec::new();
    let mut counters = Counters::default();
    for step in 0..steps {
        partitions = run_step(
            job,
            params,
            step,
            &map_tasks,
            reducers,
            options,
            &mut counters,
        )?;
        let is_last_step = step + 1 == steps;
        if !is_last_step {
            map_tasks = partitions
                .iter()
                .enumerate()
                .map(|(partition, pairs)| chained_split(partition, pairs))
                .collect();
        }
    }

    let mut lines = Vec::new();
    for (key, value) in partitions.iter().flatten() {
        let mut line = Vec::new();
        job.format_output(key, value, &mut line);
        lines.push(line);
    }
    Ok((lines, counters))
}

/// One record of a split, owned.
struct OwnedRecord {
    offset: u64,
    data: Vec<u8>,
}

/// One map task's input: a split of one file.
struct Split {
    path: PathBuf,
    start: u64,
    records: Vec<OwnedRecord>,
}

/// Reads every input file whole and cuts it into splits of records.
fn read_input_splits(
    format: InputFormat,
    inputs: &[PathBuf],
    options: &InMemoryOptions,
) -> Result<Vec<Split>, JobError> {
    let mut splits = Vec::new();
    for path in inputs {
        if format == InputFormat::WholeFiles {
            splits.push(Split {
                path: path.clone(),
                start: 0,
                records: vec![OwnedRecord {
                    offset: 0,
                    data: Vec::new(),
                }],
            });
            continue;
        }
        let bytes = std::fs::read(path).map_err(|error| {
            JobError::retryable(format!("failed to read `{}`: {error}", path.display()))
        })?;
        let records = split_lines(&bytes);
        let lines_per_split = options
            .lines_per_split
            .map_or(records.len().max(1), NonZeroUsize::get);
        let mut records = records.into_iter().peekable();
        // An empty file is still one (empty) map task, whose mapper runs `finish`.
        let mut first = true;
        while first || records.peek().is_some() {
            first = false;
            let chunk: Vec<OwnedRecord> = records.by_ref().take(lines_per_split).collect();
            let start = chunk.first().map_or(0, |record| record.offset);
            splits.push(Split {
                path: path.clone(),
                start,
                records: chunk,
            });
        }
    }
    Ok(splits)
}

/// Cuts bytes into lines on `\n`: the terminator is dropped, `\r` is kept, and a final
/// line without `\n` counts.
fn split_lines(bytes: &[u8]) -> Vec<OwnedRecord> {
    let mut records = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|byte| *byte == b'\n')
            .map_or(bytes.len(), |position| start + position);
        records.push(OwnedRecord {
            offset: start as u64,
            data: bytes[start..end].to_vec(),
        });
        start = end + 1;
    }
    records
}

/// The input of step `s` > 0's map task `partition`: step `s - 1`'s reduced pairs of
/// that partition, as text lines.
fn chained_split(partition: usize, pairs: &[Pair]) -> Split {
    let mut records = Vec::with_capacity(pairs.len());
    let mut offset = 0u64;
    for (key, value) in pairs {
        let mut data = key.clone();
        if !value.is_empty() {
            data.push(b'\t');
            data.extend_from_slice(value);
        }
        let next_offset = offset + data.len() as u64 + 1;
        records.push(OwnedRecord { offset, data });
        offset = next_offset;
    }
    let partition = u32::try_from(partition).expect("partitions are numbered by a u32");
    Split {
        path: PathBuf::from(part_file_name(partition)),
        start: 0,
        records,
    }
}

/// Runs one step: map (and combine) every split, partition, sort, reduce. Returns the
/// reduced pairs of each partition, in partition order; adds the mappers' own counters
/// to `counters`.
fn run_step(
    job: &dyn JobDefinition,
    params: &JobParams,
    step: usize,
    map_tasks: &[Split],
    reducers: u32,
    options: &InMemoryOptions,
    counters: &mut Counters,
) -> Result<Vec<Vec<Pair>>, JobError> {
    let partitioner = job.partitioner(params, step)?;
    let mut partitions: Vec<Vec<Pair>> = vec![Vec::new(); reducers as usize];
    for split in map_tasks {
        let mut map_output = map_split(job, params, step, split, counters)?;
        if options.combine
            && let Some(mut combiner) = job.combiner(params, step)?
        {
            sort_by_key_stable(&mut map_output);
            let mut combined = CollectEmit::default();
            reduce_sorted(combiner.as_mut(), &map_output, &mut combined)?;
            map_output = combined.pairs;
        }
        // Appending map task by map task keeps (map index, emission order) for the
        // stable sort below.
        for (key, value) in map_output {
            let partition = partitioner.partition(&key, reducers);
            let Some(bucket) = partitions.get_mut(partition as usize) else {
                return Err(JobError::permanent(format!(
                    "the partitioner of step {step} returned partition {partition} of {reducers}"
                )));
            };
            bucket.push((key, value));
        }
    }

    let mut reduced = Vec::with_capacity(partitions.len());
    for mut pairs in partitions {
        sort_by_key_stable(&mut pairs);
        let mut reducer = job.reducer(params, step)?;
        let mut output = CollectEmit::default();
        reduce_sorted(reducer.as_mut(), &pairs, &mut output)?;
        reduced.push(output.pairs);
    }
    Ok(reduced)
}

/// Runs a fresh mapper of `step` over one split and returns what it emitted; adds the
/// mapper's own counters to `counters`.
fn map_split(
    job: &dyn JobDefinition,
    params: &JobParams,
    step: usize,
    split: &Split,
    counters: &mut Counters,
) -> Result<Vec<Pair>, JobError> {
    let mut mapper = job.mapper(params, step)?;
    mapper.use_input_access(&InputAccess::default());
    let mut output = CollectEmit::default();
    for (index, record) in split.records.iter().enumerate() {
        let record = Record {
            path: Path::new(&split.path),
            offset: record.offset,
            line_in_split: index as u64 + 1,
            split_start: split.start,
            data: &record.data,
        };
        mapper.map(&record, &mut output)?;
    }
    mapper.finish(&mut output)?;
    mapper.counters(counters);
    Ok(output.pairs)
}

/// Returns output lines as text (invalid UTF-8 replaced), for readable assertions.
pub fn lines_as_text(lines: &[Vec<u8>]) -> Vec<String> {
    lines
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

/// Sorts `pairs` by key as the framework does (stable: equal keys keep their order),
/// feeds them to `reducer` one key at a time, calls `finish`, and returns what it
/// emitted. Handy to test a reducer, or mappers and a reducer wired by hand.
pub fn reduce_pairs(
    reducer: &mut dyn crate::api::Reducer,
    mut pairs: Vec<Pair>,
) -> Result<Vec<Pair>, JobError> {
    sort_by_key_stable(&mut pairs);
    let mut output = CollectEmit::default();
    reduce_sorted(reducer, &pairs, &mut output)?;
    Ok(output.pairs)
}

/// Sorts pairs by key bytes, keeping the order of equal keys.
fn sort_by_key_stable(pairs: &mut [Pair]) {
    pairs.sort_by(|left, right| left.0.cmp(&right.0));
}

/// Feeds sorted pairs to `reducer` one key group at a time, then calls `finish`.
fn reduce_sorted(
    reducer: &mut dyn crate::api::Reducer,
    sorted: &[Pair],
    out: &mut dyn Emit,
) -> Result<(), JobError> {
    let mut start = 0;
    while start < sorted.len() {
        let key = &sorted[start].0;
        let group_length = sorted[start..]
            .iter()
            .take_while(|(other, _)| other == key)
            .count();
        let group = &sorted[start..start + group_length];
        let mut values = SliceValues {
            pairs: group,
            next: 0,
        };
        reducer.reduce(key, &mut values, out)?;
        start += group_length;
    }
    reducer.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Mapper, Partitioner, Reducer};
    use crate::test_support::JoinValues;

    /// Emits (line, "map index/line number") for every record, reduces by joining the
    /// values with `|`: shows the exact order the runner promises.
    struct OrderProbe;

    struct ProbeMapper;
    impl Mapper for ProbeMapper {
        fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
            let value = format!(
                "{}@{}#{}",
                record.path.file_name().unwrap().to_string_lossy(),
                record.split_start,
                record.line_in_split
            );
            out.emit(record.data, value.as_bytes())
        }
    }

    struct FirstByte;
    impl Partitioner for FirstByte {
        fn partition(&self, key: &[u8], partitions: u32) -> u32 {
            u32::from(key.first().copied().unwrap_or(0)) % partitions
        }
    }

    impl JobDefinition for OrderProbe {
        fn name(&self) -> &str {
            "order-probe"
        }
        fn description(&self) -> &str {
            "test job"
        }
        fn mapper(&self, _: &JobParams, _: usize) -> Result<Box<dyn Mapper>, JobError> {
            Ok(Box::new(ProbeMapper))
        }
        fn reducer(&self, _: &JobParams, _: usize) -> Result<Box<dyn Reducer>, JobError> {
            Ok(Box::new(JoinValues(b'|')))
        }
        fn partitioner(&self, _: &JobParams, _: usize) -> Result<Box<dyn Partitioner>, JobError> {
            Ok(Box::new(FirstByte))
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn lines_are_cut_on_newline_keeping_carriage_returns_and_a_final_partial_line() {
        let lines: Vec<Vec<u8>> = split_lines(b"a\r\n\nb")
            .into_iter()
            .map(|record| record.data)
            .collect();
        assert_eq!(lines, vec![b"a\r".to_vec(), b"".to_vec(), b"b".to_vec()]);
        assert!(split_lines(b"").is_empty());
        assert_eq!(split_lines(b"x\n").len(), 1);
    }

    #[test]
    fn values_arrive_by_map_index_then_emission_order_and_parts_concatenate_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), "f1", b"b\na\nb\n");
        let second = write(dir.path(), "f2", b"a\nb");
        let output =
            run_in_memory(&OrderProbe, &JobParams::default(), &[first, second], 2).unwrap();
        // 'a' = 97 goes to part 1, 'b' = 98 to part 0.
        assert_eq!(
            output,
            vec![
                b"b\tf1@0#1|f1@0#3|f2@0#2".to_vec(),
                b"a\tf1@0#2|f2@0#1".to_vec(),
            ]
        );
    }

    #[test]
    fn lines_per_split_restarts_line_numbers_at_each_split() {
        let dir = tempfile::tempdir().unwrap();
        let input = write(dir.path(), "f", b"x\nx\nx\n");
        let options = InMemoryOptions {
            combine: true,
            lines_per_split: NonZeroUsize::new(2),
        };
        let output =
            run_in_memory_with(&OrderProbe, &JobParams::default(), &[input], 1, &options).unwrap();
        assert_eq!(output, vec![b"x\tf@0#1|f@0#2|f@4#1".to_vec()]);
    }

    /// Step 0 is [`OrderProbe`]; step 1 maps step 0's output lines, tagging each
    /// with the record's path and offset; both steps reduce with [`JoinValues`].
    struct TwoSteps;

    struct LineProbeMapper;
    impl Mapper for LineProbeMapper {
        fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
            let value = format!("{}@{}", record.path.display(), record.offset);
            out.emit(record.data, value.as_bytes())
        }
    }

    impl JobDefinition for TwoSteps {
        fn name(&self) -> &str {
            "two-steps"
        }
        fn description(&self) -> &str {
            "test job"
        }
        fn steps(&self, _: &JobParams) -> usize {
            2
        }
        fn mapper(&self, _: &JobParams, step: usize) -> Result<Box<dyn Mapper>, JobError> {
            Ok(match step {
                0 => Box::new(ProbeMapper),
                _ => Box::new(LineProbeMapper),
            })
        }
        fn reducer(&self, _: &JobParams, _: usize) -> Result<Box<dyn Reducer>, JobError> {
            Ok(Box::new(JoinValues(b'|')))
        }
        fn partitioner(&self, _: &JobParams, _: usize) -> Result<Box<dyn Partitioner>, JobError> {
            Ok(Box::new(FirstByte))
        }
    }

    #[test]
    fn a_later_step_maps_the_previous_steps_pairs_as_text_lines_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        let input = write(dir.path(), "f", b"b\na\nbb\n");
        let output = run_in_memory(&TwoSteps, &JobParams::default(), &[input], 2).unwrap();
        // Step 0, part 0: "b\tf@0#1", "bb\tf@0#3" (offsets 0 and 8); part 1: "a\tf@0#2".
        // Step 1 maps them as lines of `part-00000` and `part-00001`, and its
        // partitioner sends all three lines (first bytes 'a', 'b') back the same way.
        assert_eq!(
            output,
            vec![
                b"b\tf@0#1\tpart-00000@0".to_vec(),
                b"bb\tf@0#3\tpart-00000@8".to_vec(),
                b"a\tf@0#2\tpart-00001@0".to_vec(),
            ]
        );
    }

    #[test]
    fn a_partition_out_of_range_is_an_error_not_a_panic() {
        struct Bad;
        impl Partitioner for Bad {
            fn partition(&self, _: &[u8], partitions: u32) -> u32 {
                partitions
            }
        }
        struct BadJob;
        impl JobDefinition for BadJob {
            fn name(&self) -> &str {
                "bad"
            }
            fn description(&self) -> &str {
                "test job"
            }
            fn mapper(&self, _: &JobParams, _: usize) -> Result<Box<dyn Mapper>, JobError> {
                Ok(Box::new(ProbeMapper))
            }
            fn reducer(&self, _: &JobParams, _: usize) -> Result<Box<dyn Reducer>, JobError> {
                Ok(Box::new(JoinValues(b'|')))
            }
            fn partitioner(
                &self,
                _: &JobParams,
                _: usize,
            ) -> Result<Box<dyn Partitioner>, JobError> {
                Ok(Box::new(Bad))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let input = write(dir.path(), "f", b"x\n");
        assert!(run_in_memory(&BadJob, &JobParams::default(), &[input], 3).is_err());
    }
}
