//! The map side's output path: partition each emitted pair, buffer it, sort and spill
//! when the buffer is full (through the combiner), and merge the spills into the one
//! file reducers fetch from.
//!
//! The common case costs one write of the data: a task whose output fits its sort
//! buffer writes the sorted buffer straight to the output file, and a task that spilled
//! once renames its spill. Only tasks that spilled several times merge, at most
//! `merge_factor` files at once.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::{BufferPartition, SortBuffer};
use crate::api::{Emit, JobDefinition, JobError, JobParams, Partitioner, Reducer};
use crate::cancel::CancelCheck;
use crate::counters::{self, Counters};
use crate::error::{TaskError, TaskResult};
use crate::format::{MAX_RECORD_BYTES, MapOutputWriter};
use crate::merge::{
    Combining, RunFile, WRITE_BUFFER_BYTES, combine_partition, merge_runs_to_file,
    merge_until_at_most, remove_quietly,
};
use crate::payload::JobConfig;

/// Name of a map task's output file in its attempt directory.
pub const MAP_OUTPUT_FILE: &str = "map.out";

/// Spills at which the final merge runs the combiner again (as Hadoop does): with
/// fewer, the keys of the spills rarely overlap enough to pay for it.
const MIN_SPILLS_FOR_COMBINE: usize = 3;

/// The finished output of a map side.
#[derive(Debug, Clone)]
pub struct MapOutputFile {
    /// The file.
    pub path: PathBuf,
    /// Its length.
    pub size_bytes: u64,
    /// `map.output.*`, `map.spills`, `combine.*`, `merge.passes`.
    pub counters: Counters,
}

/// Receives a mapper's pairs (it is the mapper's [`Emit`]) and turns them into a map
/// output file.
pub struct MapOutputCollector<'a> {
    job: &'a dyn JobDefinition,
    params: &'a JobParams,
    step: usize,
    partitioner: Box<dyn Partitioner>,
    partitions: u32,
    has_combiner: bool,
    buffer: SortBuffer,
    scratch_dir: PathBuf,
    spills: Vec<RunFile>,
    spill_count: u64,
    merge_factor: usize,
    files_named: u32,
    output_records: u64,
    output_bytes: u64,
    combine_input_records: u64,
    combine_output_records: u64,
    merge_passes: u64,
    cancel: CancelCheck,
    /// The real error behind the `JobError` an emit returned; once set, every emit
    /// fails, so a mapper that ignores an error cannot lose records silently.
    error: Option<TaskError>,
}

impl<'a> MapOutputCollector<'a> {
    /// Returns a collector for the pairs of step `step`'s mapper of the job `config`
    /// describes, writing into `scratch_dir`.
    pub fn new(
        job: &'a dyn JobDefinition,
        config: &'a JobConfig,
        step: usize,
        scratch_dir: &Path,
        cancel: CancellationToken,
    ) -> TaskResult<Self> {
        let partitions = config.reducers;
        if partitions == 0 {
            return Err(TaskError::Payload("the job has no reducers".into()));
        }
        let params = &config.params;
        let partitioner = job.partitioner(params, step)?;
        let has_combiner = job.combiner(params, step)?.is_some();
        let buffer_bytes = usize::try_from(config.sort_buffer_bytes).unwrap_or(usize::MAX);
        Ok(Self {
            job,
            params,
            step,
            partitioner,
            partitions,
            has_combiner,
            buffer: SortBuffer::new(buffer_bytes),
            scratch_dir: scratch_dir.to_path_buf(),
            spills: Vec::new(),
            spill_count: 0,
            merge_factor: config.merge_factor.max(2) as usize,
            files_named: 0,
            output_records: 0,
            output_bytes: 0,
            combine_input_records: 0,
            combine_output_records: 0,
            merge_passes: 0,
            cancel: CancelCheck::new(cancel),
            error: None,
        })
    }

    /// Returns the error behind a failed emit, if any (to report instead of the
    /// `JobError` the mapper passed on).
    pub fn take_error(&mut self) -> Option<TaskError> {
        self.error.take()
    }

    #[inline]
    fn collect(&mut self, key: &[u8], value: &[u8]) -> TaskResult<()> {
        let partition = self.partitioner.partition(key, self.partitions);
        if partition >= self.partitions {
            return Err(TaskError::BadPartition {
                partition,
                partitions: self.partitions,
            });
        }
        let record_bytes = key.len() + value.len();
        if record_bytes > MAX_RECORD_BYTES {
            return Err(TaskError::RecordTooLarge {
                bytes: record_bytes,
                limit: MAX_RECORD_BYTES,
            });
        }
        if !self.buffer.fits(record_bytes) && !self.buffer.is_empty() {
            self.spill()?;
        }
        self.buffer.push(partition, key, value);
        self.output_records += 1;
        self.output_bytes += record_bytes as u64;
        self.cancel.tick()?;
        // A record larger than the whole buffer is accepted alone and spilled at once.
        if !self.buffer.fits(0) {
            self.spill()?;
        }
        Ok(())
    }

    fn next_path(&mut self, prefix: &str) -> PathBuf {
        self.files_named += 1;
        self.scratch_dir
            .join(format!("{prefix}-{:05}.out", self.files_named))
    }

    fn make_combiner(&self) -> impl Fn() -> Result<Box<dyn Reducer>, JobError> + '_ {
        move || {
            self.job.combiner(self.params, self.step)?.ok_or_else(|| {
                JobError::permanent("the job's combiner disappeared between two calls")
            })
        }
    }

    /// Sorts the buffer and writes it to a new spill file.
    fn spill(&mut self) -> TaskResult<()> {
        let path = self.next_path("spill");
        let run = self.write_buffer(&path)?;
        self.spills.push(run);
        self.spill_count += 1;
        self.buffer.clear();
        Ok(())
    }

    /// Sorts the buffer and writes it to `path` (through the combiner, if any).
    fn write_buffer(&mut self, path: &Path) -> TaskResult<RunFile> {
        self.cancel.now()?;
        self.buffer.sort();
        let mut cancel = self.cancel.clone();
        let (run, combined) = {
            let make_combiner = self.make_combiner();
            let mut combining = Combining::new(&make_combiner, self.partitioner.as_ref());
            let run = write_sorted_buffer(
                &self.buffer,
                path,
                self.partitions,
                self.has_combiner.then_some(&mut combining),
                &mut cancel,
            );
            (run, (combining.input_records, combining.output_records))
        };
        self.combine_input_records += combined.0;
        self.combine_output_records += combined.1;
        run
    }

    /// Spills or writes what is left, merges the spills, and returns the output file.
    pub fn finish(mut self) -> TaskResult<MapOutputFile> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let output_path = self.scratch_dir.join(MAP_OUTPUT_FILE);
        if self.spills.is_empty() {
            self.write_buffer(&output_path)?;
        } else {
            if !self.buffer.is_empty() {
                self.spill()?;
            }
            self.merge_spills(&output_path)?;
        }
        let size_bytes = std::fs::metadata(&output_path)
            .map_err(|source| TaskError::io("stat", &output_path, source))?
            .len();
        let mut counters = Counters::default();
        counters.add(counters::MAP_OUTPUT_RECORDS, self.output_records);
        counters.add(counters::MAP_OUTPUT_BYTES, self.output_bytes);
        counters.add(counters::MAP_OUTPUT_MATERIALIZED_BYTES, size_bytes);
        counters.add(counters::MAP_SPILLS, self.spill_count.max(1));
        counters.add(counters::MERGE_PASSES, self.merge_passes);
        if self.has_combiner {
            counters.add(counters::COMBINE_INPUT_RECORDS, self.combine_input_records);
            counters.add(
                counters::COMBINE_OUTPUT_RECORDS,
                self.combine_output_records,
            );
        }
        Ok(MapOutputFile {
            path: output_path,
            size_bytes,
            counters,
        })
    }

    fn merge_spills(&mut self, output_path: &Path) -> TaskResult<()> {
        let spills = std::mem::take(&mut self.spills);
        let spill_count = spills.len();
        if spill_count == 1 {
            let only = &spills[0].path;
            return std::fs::rename(only, output_path)
                .map_err(|source| TaskError::io("rename spill file", only, source));
        }
        let scratch_dir = self.scratch_dir.clone();
        let mut files_named = self.files_named;
        let mut name_run = || {
            files_named += 1;
            scratch_dir.join(format!("merge-{files_named:05}.out"))
        };
        let mut cancel = self.cancel.clone();
        let runs = merge_until_at_most(
            spills,
            self.merge_factor,
            self.partitions,
            &mut name_run,
            &mut self.merge_passes,
            &mut cancel,
        )?;
        self.files_named = files_named;
        let combined = {
            let make_combiner = self.make_combiner();
            let mut combining = Combining::new(&make_combiner, self.partitioner.as_ref());
            let combine_now = self.has_combiner && spill_count >= MIN_SPILLS_FOR_COMBINE;
            merge_runs_to_file(
                &runs,
                self.partitions,
                output_path,
                combine_now.then_some(&mut combining),
                &mut cancel,
            )?;
            (combining.input_records, combining.output_records)
        };
        self.combine_input_records += combined.0;
        self.combine_output_records += combined.1;
        self.merge_passes += 1;
        for run in &runs {
            remove_quietly(&run.path);
        }
        Ok(())
    }
}

impl Emit for MapOutputCollector<'_> {
    #[inline]
    fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError> {
        if self.error.is_some() {
            return Err(JobError::retryable(
                "an earlier record could not be collected",
            ));
        }
        self.collect(key, value).map_err(|error| {
            let job_error = JobError {
                message: error.to_string(),
                retryable: error.is_retryable(),
            };
            self.error = Some(error);
            job_error
        })
    }
}

/// Writes a sorted buffer to a new file at `path`, through the combiner if one is
/// given.
fn write_sorted_buffer(
    buffer: &SortBuffer,
    path: &Path,
    partitions: u32,
    combining: Option<&mut Combining<'_>>,
    cancel: &mut CancelCheck,
) -> TaskResult<RunFile> {
    let file = File::create(path).map_err(|source| TaskError::io("create", path, source))?;
    let mut writer = MapOutputWriter::new(
        BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
        partitions,
    );
    let write_error = |source| TaskError::io("write", path, source);
    match combining {
        Some(combining) => {
            let mut start = 0;
            while start < buffer.len() {
                let partition = buffer.partition_of(start);
                let mut end = start + 1;
                while end < buffer.len() && buffer.partition_of(end) == partition {
                    end += 1;
                }
                let mut source = BufferPartition::new(buffer, start, end);
                combine_partition(
                    &mut source,
                    combining,
                    &mut writer,
                    path,
                    partition,
                    partitions,
                    cancel,
                )?;
                start = end;
            }
        }
        None => {
            for (partition, key, value) in buffer.records() {
                cancel.tick()?;
                writer
                    .write_record(partition, key, value)
                    .map_err(write_error)?;
            }
        }
    }
    let (_, entries, _) = writer.finish().map_err(write_error)?;
    Ok(RunFile {
        path: path.to_path_buf(),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::HashPartitioner;
    use crate::test_support::{ToyWordCount, read_map_output};
    use essaim_core::rng::SeededRng;

    /// Records of a map output: (partition, key, value).
    type Records = Vec<(u32, Vec<u8>, Vec<u8>)>;

    fn config(
        combiner: bool,
        partitions: u32,
        sort_buffer_bytes: u64,
        merge_factor: u32,
    ) -> JobConfig {
        let mut params = JobParams::default();
        if !combiner {
            params.set("combiner", "off");
        }
        JobConfig {
            version: crate::payload::PAYLOAD_VERSION,
            job: "toy-wordcount".into(),
            params,
            steps: 1,
            reducers: partitions,
            output_dir: PathBuf::from("/unused").into(),
            sort_buffer_bytes,
            merge_factor,
            output_codec: None,
            storage: Default::default(),
            files: Default::default(),
            skip: Default::default(),
        }
    }

    /// Emits `pairs` through a collector and returns its output and counters.
    fn collect_all(
        pairs: &[(Vec<u8>, Vec<u8>)],
        combiner: bool,
        partitions: u32,
        sort_buffer_bytes: u64,
        merge_factor: u32,
    ) -> (Records, Counters, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let config = config(combiner, partitions, sort_buffer_bytes, merge_factor);
        let mut collector = MapOutputCollector::new(
            &ToyWordCount,
            &config,
            0,
            dir.path(),
            CancellationToken::new(),
        )
        .unwrap();
        for (key, value) in pairs {
            collector.emit(key, value).unwrap();
        }
        let output = collector.finish().unwrap();
        assert_eq!(output.path, dir.path().join(MAP_OUTPUT_FILE));
        let records = read_map_output(&output.path, partitions);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        (records, output.counters, left)
    }

    fn random_pairs(rng: &mut SeededRng, count: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..count)
            .map(|index| {
                let key_len = 1 + rng.below(12) as usize;
                (
                    rng.bytes(key_len, b"abc"),
                    // The index makes every value distinct, so order is checked.
                    format!("{index}").into_bytes(),
                )
            })
            .collect()
    }

    #[test]
    fn spills_and_multi_pass_merges_match_an_in_memory_stable_sort() {
        for seed in 0..40 {
            let mut rng = SeededRng::new(seed);
            let count = rng.below(3000) as usize;
            let pairs = random_pairs(&mut rng, count);
            let partitions = 1 + rng.below(4) as u32;
            // Tiny buffers: dozens of spills; factors of 2 and 3 force several passes.
            let buffer = 200 + rng.below(4000);
            let factor = 2 + rng.below(4) as u32;
            let (records, counters, left) = collect_all(&pairs, false, partitions, buffer, factor);
            let mut oracle: Records = pairs
                .iter()
                .map(|(key, value)| {
                    let partition = HashPartitioner.partition(key, partitions);
                    (partition, key.clone(), value.clone())
                })
                .collect();
            oracle.sort_by(|left, right| (left.0, &left.1).cmp(&(right.0, &right.1)));
            assert_eq!(
                records, oracle,
                "seed {seed}, buffer {buffer}, factor {factor}"
            );
            assert_eq!(
                counters.get(counters::MAP_OUTPUT_RECORDS),
                pairs.len() as u64
            );
            assert_eq!(left, vec![MAP_OUTPUT_FILE.to_string()], "seed {seed}");
        }
    }

    #[test]
    fn the_combiner_runs_on_every_spill_and_keeps_the_sums() {
        for seed in 0..20 {
            let mut rng = SeededRng::new(100 + seed);
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..rng.below(4000))
                .map(|_| {
                    let key_len = 1 + rng.below(3) as usize;
                    (
                        rng.bytes(key_len, b"abcd"),
                        rng.below(9).to_string().into_bytes(),
                    )
                })
                .collect();
            let partitions = 1 + rng.below(3) as u32;
            let (records, counters, _) = collect_all(&pairs, true, partitions, 1000, 3);
            let mut oracle: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            for (key, value) in &pairs {
                let count: u64 = std::str::from_utf8(value).unwrap().parse().unwrap();
                *oracle.entry(key.clone()).or_default() += count;
            }
            let mut sums: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            for (partition, key, value) in &records {
                assert_eq!(*partition, HashPartitioner.partition(key, partitions));
                let count: u64 = std::str::from_utf8(value).unwrap().parse().unwrap();
                *sums.entry(key.clone()).or_default() += count;
            }
            assert_eq!(sums, oracle, "seed {seed}");
            assert!(counters.get(counters::COMBINE_INPUT_RECORDS) >= pairs.len() as u64);
            assert!(records.len() as u64 <= pairs.len() as u64);
        }
    }

    #[test]
    fn a_record_larger_than_the_buffer_is_spilled_alone() {
        let big = vec![b'v'; 10_000];
        let pairs = vec![
            (b"b".to_vec(), b"1".to_vec()),
            (b"a".to_vec(), big.clone()),
            (b"c".to_vec(), b"2".to_vec()),
        ];
        let (records, counters, _) = collect_all(&pairs, false, 1, 500, 10);
        let expected = vec![
            (0, b"a".to_vec(), big),
            (0, b"b".to_vec(), b"1".to_vec()),
            (0, b"c".to_vec(), b"2".to_vec()),
        ];
        assert_eq!(records, expected);
        assert_eq!(counters.get(counters::MAP_SPILLS), 3);
    }

    #[test]
    fn no_output_still_makes_a_file_with_every_partition() {
        let (records, counters, left) = collect_all(&[], true, 4, 1000, 10);
        assert!(records.is_empty());
        assert_eq!(counters.get(counters::MAP_SPILLS), 1);
        assert_eq!(left, vec![MAP_OUTPUT_FILE.to_string()]);
    }

    #[test]
    fn a_full_disk_while_spilling_is_a_retryable_disk_full_error() {
        // Linux's /dev/full fails every write with ENOSPC.
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let mut buffer = SortBuffer::new(1 << 20);
        for index in 0..20_000u32 {
            buffer.push(0, &index.to_be_bytes(), b"some value bytes");
        }
        buffer.sort();
        let mut cancel = CancelCheck::new(CancellationToken::new());
        let error = write_sorted_buffer(&buffer, full, 1, None, &mut cancel).unwrap_err();
        assert!(matches!(error, TaskError::DiskFull { .. }), "{error}");
        let failure = error.into_failure();
        assert!(failure.retryable);
        assert!(
            failure.message.contains("no space left"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn a_cancelled_collector_stops() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(false, 1, 1 << 20, 10);
        let cancel = CancellationToken::new();
        let mut collector =
            MapOutputCollector::new(&ToyWordCount, &config, 0, dir.path(), cancel.clone()).unwrap();
        cancel.cancel();
        let mut stopped = false;
        for _ in 0..10_000 {
            if collector.emit(b"k", b"v").is_err() {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        assert!(matches!(collector.take_error(), Some(TaskError::Cancelled)));
    }
}
