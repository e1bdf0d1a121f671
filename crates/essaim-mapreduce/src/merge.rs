//! Merging sorted runs: the k-way merge shared by the map side (spills into one map
//! output) and the reduce side (fetched segments into the reducer), the grouping of a
//! sorted stream by key for reducers and combiners, and the multi-pass plan that keeps
//! at most `merge_factor` files open and in memory at once.
//!
//! Determinism: runs are always given in a meaningful order (spills in the order they
//! were written, fetched segments by upstream task index), and records with equal keys
//! come out by run, then by position within the run. Multi-pass merges only ever merge
//! *adjacent* runs, so that order survives any number of passes: the values of a key
//! reach the reducer by map task index, then in emission order.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Take};
use std::path::{Path, PathBuf};

use crate::api::{Emit, JobError, Partitioner, Reducer, Values};
use crate::cancel::CancelCheck;
use crate::error::{TaskError, TaskResult};
use crate::format::{MapOutputWriter, SegmentEntry, SegmentReader};

/// Bytes of the read buffer of each merged segment.
pub(crate) const MERGE_READ_BUFFER_BYTES: usize = 128 * 1024;
/// Bytes of the write buffer of merged and spilled files.
pub(crate) const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// A stream of records sorted by key.
pub(crate) trait SortedRecords {
    /// Moves to the next record; false at the end.
    fn advance(&mut self) -> TaskResult<bool>;
    /// The current record's key.
    fn key(&self) -> &[u8];
    /// The current record's value.
    fn value(&self) -> &[u8];
}

/// A file of segments, one per partition (a spill, an intermediate merge, or a fetched
/// segment seen as a file of one partition).
#[derive(Debug, Clone)]
pub(crate) struct RunFile {
    pub path: PathBuf,
    pub entries: Vec<SegmentEntry>,
}

/// The reader of one segment of a file.
pub(crate) type FileSegmentReader = SegmentReader<BufReader<Take<File>>>;

/// Opens the segment of `partition` in `run`.
pub(crate) fn open_segment(run: &RunFile, partition: usize) -> TaskResult<FileSegmentReader> {
    use std::io::{Seek, SeekFrom};
    let entry = run.entries[partition];
    let mut file =
        File::open(&run.path).map_err(|source| TaskError::io("open", &run.path, source))?;
    file.seek(SeekFrom::Start(entry.offset))
        .map_err(|source| TaskError::io("seek in", &run.path, source))?;
    let input = BufReader::with_capacity(MERGE_READ_BUFFER_BYTES, file.take(entry.length));
    let name = format!("`{}` partition {partition}", run.path.display());
    Ok(SegmentReader::new(input, name)?)
}

/// The k-way merge of sorted segments, ties broken by segment order.
///
/// A binary min-heap of segment indexes; the heap order compares the segments' current
/// keys (memcmp), then their indexes, which is what makes equal keys come out by run.
pub(crate) struct KWayMerge<R: Read> {
    cursors: Vec<SegmentReader<R>>,
    /// Indexes of the cursors that still have a current record, as a heap.
    heap: Vec<usize>,
    started: bool,
}

impl<R: Read> KWayMerge<R> {
    /// Returns a merge of `cursors`, given in tie-breaking order.
    pub(crate) fn new(cursors: Vec<SegmentReader<R>>) -> Self {
        Self {
            heap: Vec::with_capacity(cursors.len()),
            cursors,
            started: false,
        }
    }

    #[inline]
    fn less(&self, left: usize, right: usize) -> bool {
        let left_key = self.cursors[left].key();
        let right_key = self.cursors[right].key();
        match left_key.cmp(right_key) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => left < right,
        }
    }

    fn sift_down(&mut self, mut slot: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * slot + 1;
            if left >= len {
                return;
            }
            let right = left + 1;
            let smaller = if right < len && self.less(self.heap[right], self.heap[left]) {
                right
            } else {
                left
            };
            if !self.less(self.heap[smaller], self.heap[slot]) {
                return;
            }
            self.heap.swap(slot, smaller);
            slot = smaller;
        }
    }
}

impl<R: Read> SortedRecords for KWayMerge<R> {
    #[inline]
    fn advance(&mut self) -> TaskResult<bool> {
        if !self.started {
            self.started = true;
            for index in 0..self.cursors.len() {
                if self.cursors[index].advance()? {
                    self.heap.push(index);
                }
            }
            for slot in (0..self.heap.len() / 2).rev() {
                self.sift_down(slot);
            }
            return Ok(!self.heap.is_empty());
        }
        let Some(&top) = self.heap.first() else {
            return Ok(false);
        };
        if self.cursors[top].advance()? {
            self.sift_down(0);
        } else {
            self.heap.swap_remove(0);
            self.sift_down(0);
        }
        Ok(!self.heap.is_empty())
    }

    #[inline]
    fn key(&self) -> &[u8] {
        self.cursors[self.heap[0]].key()
    }

    #[inline]
    fn value(&self) -> &[u8] {
        self.cursors[self.heap[0]].value()
    }
}

/// What [`reduce_groups`] counted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupStats {
    pub groups: u64,
    pub records: u64,
}

/// Where a group's values stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupState {
    /// The source is on the group's first record, not yet handed out.
    First,
    /// The source is on a record already handed out.
    Handed,
    /// The group is over; `source_has_more` tells whether the source is on the next
    /// group's first record.
    Ended { source_has_more: bool },
}

/// The values of one key, read straight from the sorted source.
struct GroupValues<'a> {
    source: &'a mut dyn SortedRecords,
    key: &'a [u8],
    state: GroupState,
    records: u64,
    cancel: &'a mut CancelCheck,
    /// The real error behind a `JobError` handed to the reducer.
    error: Option<TaskError>,
}

impl GroupValues<'_> {
    fn step(&mut self) -> TaskResult<bool> {
        self.cancel.tick()?;
        match self.state {
            GroupState::First => {
                self.state = GroupState::Handed;
                self.records += 1;
                Ok(true)
            }
            GroupState::Handed => {
                let source_has_more = self.source.advance()?;
                if source_has_more && self.source.key() == self.key {
                    self.records += 1;
                    return Ok(true);
                }
                self.state = GroupState::Ended { source_has_more };
                Ok(false)
            }
            GroupState::Ended { .. } => Ok(false),
        }
    }
}

impl Values for GroupValues<'_> {
    fn next_value(&mut self) -> Result<Option<&[u8]>, JobError> {
        if self.error.is_some() {
            return Err(JobError::retryable("reading the values failed before"));
        }
        match self.step() {
            Ok(true) => Ok(Some(self.source.value())),
            Ok(false) => Ok(None),
            Err(error) => {
                let job_error = JobError {
                    message: error.to_string(),
                    retryable: error.is_retryable(),
                };
                self.error = Some(error);
                Err(job_error)
            }
        }
    }
}

/// Calls `reducer` once per key of `source`, with that key's values, in order. The
/// reducer may stop reading a key's values early: the rest are skipped. Does not call
/// [`Reducer::finish`].
///
/// When `out` keeps the real error behind a failed emit, the caller must prefer it to
/// the [`TaskError::Job`] returned here.
pub(crate) fn reduce_groups(
    source: &mut dyn SortedRecords,
    reducer: &mut dyn Reducer,
    out: &mut dyn Emit,
    cancel: &mut CancelCheck,
) -> TaskResult<GroupStats> {
    let mut stats = GroupStats::default();
    let mut key = Vec::new();
    let mut has_record = source.advance()?;
    while has_record {
        key.clear();
        key.extend_from_slice(source.key());
        let mut values = GroupValues {
            source: &mut *source,
            key: &key,
            state: GroupState::First,
            records: 0,
            cancel: &mut *cancel,
            error: None,
        };
        let reduced = reducer.reduce(&key, &mut values, out);
        if let Some(error) = values.error.take() {
            return Err(error);
        }
        reduced?;
        // Skip what the reducer left unread.
        while values.step()? {}
        let GroupState::Ended { source_has_more } = values.state else {
            unreachable!("step returns false only once the group ended");
        };
        stats.groups += 1;
        stats.records += values.records;
        has_record = source_has_more;
    }
    Ok(stats)
}

/// Writes a combiner's output into one partition of a file, checking that it keeps the
/// order and the partition of the keys it was given.
pub(crate) struct CombineSink<'a, W: std::io::Write> {
    pub writer: &'a mut MapOutputWriter<W>,
    pub path: &'a Path,
    pub partition: u32,
    pub partitions: u32,
    pub partitioner: &'a dyn Partitioner,
    pub last_key: Vec<u8>,
    pub wrote_any: bool,
    pub records: u64,
    pub error: Option<TaskError>,
}

impl<W: std::io::Write> CombineSink<'_, W> {
    fn write(&mut self, key: &[u8], value: &[u8]) -> TaskResult<()> {
        let out_of_order = self.wrote_any && key < self.last_key.as_slice();
        let partition = self.partitioner.partition(key, self.partitions);
        if out_of_order || partition != self.partition {
            return Err(TaskError::CombinerOutOfOrder);
        }
        self.writer
            .write_record(self.partition, key, value)
            .map_err(|source| TaskError::io("write", self.path, source))?;
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.wrote_any = true;
        self.records += 1;
        Ok(())
    }
}

impl<W: std::io::Write> Emit for CombineSink<'_, W> {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError> {
        if self.error.is_some() {
            return Err(JobError::retryable(
                "writing combined records failed before",
            ));
        }
        self.write(key, value).map_err(|error| {
            let job_error = JobError {
                message: error.to_string(),
                retryable: error.is_retryable(),
            };
            self.error = Some(error);
            job_error
        })
    }
}

/// Where the combiner comes from, when a merge runs one.
pub(crate) struct Combining<'a> {
    /// Returns a fresh combiner (one per partition of each file written).
    pub make_combiner: &'a dyn Fn() -> Result<Box<dyn Reducer>, JobError>,
    pub partitioner: &'a dyn Partitioner,
    pub input_records: u64,
    pub output_records: u64,
}

impl<'a> Combining<'a> {
    /// Starts combining with no record counted yet.
    pub(crate) fn new(
        make_combiner: &'a dyn Fn() -> Result<Box<dyn Reducer>, JobError>,
        partitioner: &'a dyn Partitioner,
    ) -> Self {
        Self {
            make_combiner,
            partitioner,
            input_records: 0,
            output_records: 0,
        }
    }
}

/// Runs `combiner` over one partition's sorted `source` into `writer`.
pub(crate) fn combine_partition<W: std::io::Write>(
    source: &mut dyn SortedRecords,
    combining: &mut Combining<'_>,
    writer: &mut MapOutputWriter<W>,
    path: &Path,
    partition: u32,
    partitions: u32,
    cancel: &mut CancelCheck,
) -> TaskResult<()> {
    let mut combiner = (combining.make_combiner)()?;
    let mut sink = CombineSink {
        writer,
        path,
        partition,
        partitions,
        partitioner: combining.partitioner,
        last_key: Vec::new(),
        wrote_any: false,
        records: 0,
        error: None,
    };
    let result = reduce_groups(source, combiner.as_mut(), &mut sink, cancel);
    let stats = match (result, sink.error.take()) {
        (_, Some(error)) => return Err(error),
        (result, None) => result?,
    };
    if let Err(job_error) = combiner.finish(&mut sink) {
        return Err(sink.error.take().unwrap_or(TaskError::Job(job_error)));
    }
    if let Some(error) = sink.error.take() {
        return Err(error);
    }
    combining.input_records += stats.records;
    combining.output_records += sink.records;
    Ok(())
}

/// Merges `runs` (each with `partitions` segments) into one new file at `out_path`,
/// partition by partition, through the combiner when one is given.
pub(crate) fn merge_runs_to_file(
    runs: &[RunFile],
    partitions: u32,
    out_path: &Path,
    mut combining: Option<&mut Combining<'_>>,
    cancel: &mut CancelCheck,
) -> TaskResult<RunFile> {
    let file =
        File::create(out_path).map_err(|source| TaskError::io("create", out_path, source))?;
    let mut writer = MapOutputWriter::new(
        BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
        partitions,
    );
    for partition in 0..partitions {
        cancel.now()?;
        let mut cursors = Vec::with_capacity(runs.len());
        for run in runs {
            if run.entries[partition as usize].records > 0 {
                cursors.push(open_segment(run, partition as usize)?);
            }
        }
        let mut merge = KWayMerge::new(cursors);
        match combining.as_deref_mut() {
            Some(combining) => combine_partition(
                &mut merge,
                combining,
                &mut writer,
                out_path,
                partition,
                partitions,
                cancel,
            )?,
            None => {
                while merge.advance()? {
                    cancel.tick()?;
                    writer
                        .write_record(partition, merge.key(), merge.value())
                        .map_err(|source| TaskError::io("write", out_path, source))?;
                }
            }
        }
    }
    let (_, entries, _) = writer
        .finish()
        .map_err(|source| TaskError::io("write", out_path, source))?;
    Ok(RunFile {
        path: out_path.to_path_buf(),
        entries,
    })
}

/// Merges adjacent runs until at most `merge_factor` are left, rewriting as few bytes
/// as it can: each pass merges groups of up to `merge_factor` adjacent runs from the
/// front, and stops merging as soon as the count is low enough (so 12 runs with a
/// factor of 10 merge only the first 3). Merged inputs are deleted, except files that
/// hold several of the runs (a batched fetch writes many segments into one file): the
/// caller removes those. `name_run` names the n-th intermediate file.
pub(crate) fn merge_until_at_most(
    mut runs: Vec<RunFile>,
    merge_factor: usize,
    partitions: u32,
    name_run: &mut dyn FnMut() -> PathBuf,
    passes: &mut u64,
    cancel: &mut CancelCheck,
) -> TaskResult<Vec<RunFile>> {
    let merge_factor = merge_factor.max(2);
    let mut seen = std::collections::HashSet::new();
    let shared: std::collections::HashSet<PathBuf> = runs
        .iter()
        .filter(|run| !seen.insert(&run.path))
        .map(|run| run.path.clone())
        .collect();
    while runs.len() > merge_factor {
        let mut excess = runs.len() - merge_factor;
        let mut merged = Vec::with_capacity(merge_factor);
        let mut pending = runs.into_iter().peekable();
        while pending.peek().is_some() {
            let group_len = merge_factor.min(excess + 1);
            if excess == 0 || group_len < 2 {
                merged.extend(pending.by_ref());
                break;
            }
            let group: Vec<RunFile> = pending.by_ref().take(group_len).collect();
            if group.len() < 2 {
                merged.extend(group);
                continue;
            }
            excess -= group.len() - 1;
            let out_path = name_run();
            merged.push(merge_runs_to_file(
                &group, partitions, &out_path, None, cancel,
            )?);
            for input in group.iter().filter(|input| !shared.contains(&input.path)) {
                remove_quietly(&input.path);
            }
        }
        *passes += 1;
        runs = merged;
    }
    Ok(runs)
}

/// Deletes a file nobody will read again; a failure only wastes disk until the attempt
/// directory goes.
pub(crate) fn remove_quietly(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::debug!(%error, path = %path.display(), "failed to remove a merged file");
    }
}

#[cfg(test)]
mod tests;
