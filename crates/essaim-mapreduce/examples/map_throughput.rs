//! Map-task and reduce-task throughput on one core, without a cluster: how fast the
//! split reader, a mapper, the sort buffer, spills and merges go on generated data.
//! A benchmark, not a test: it asserts nothing about speed and prints MB/s lines.
//!
//! Run it in release mode (`bench/map_task.sh` does):
//!
//! ```text
//! ESSAIM_BENCH_MB=200 cargo run --release -p essaim-mapreduce --example map_throughput
//! ```
//!
//! `ESSAIM_BENCH_MB` is the input size (default 200). Three measurements follow:
//! - the word count mapper alone (in-memory lines, pairs collected), next to line
//!   splitting alone and a hand-written count with the same hash table;
//! - word count: the split reader alone, reader and mapper without output, then the
//!   whole map task (4 partitions);
//! - sort (TeraSort records): map tasks over 128 MiB splits, then the reduce tasks over
//!   segments cut from their outputs as the shuffle would, then GNU `sort` on one thread
//!   over the same input, for scale.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use essaim_core::AttemptId;
use essaim_core::rng::SeededRng;
use essaim_mapreduce::api::{Emit, JobDefinition, JobError, JobParams, Record};
use essaim_mapreduce::config::{DEFAULT_MERGE_FACTOR, JobConfig};
use essaim_mapreduce::counters;
use essaim_mapreduce::format::{decode_footer, footer_len};
use essaim_mapreduce::map_task::run_map;
use essaim_mapreduce::payload::{InputSplit, MapTaskPayload, PAYLOAD_VERSION, ReduceTaskPayload};
use essaim_mapreduce::reduce_task::{FetchedSegment, reduce_segments};
use essaim_mapreduce::split::LineSplitReader;
use essaim_mapreduce::testing::CollectEmit;
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

/// The sort buffer of the measured map tasks: large enough that word count never spills.
const SORT_BUFFER_BYTES: u64 = 256 << 20;

/// Any failure ends the benchmark with its message.
type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult {
    let dir = tempfile::tempdir()?;
    wordcount_mapper_throughput()?;
    wordcount_map_throughput(dir.path())?;
    sort_map_and_reduce_throughput(dir.path())
}

fn bench_bytes() -> u64 {
    let megabytes: u64 = std::env::var("ESSAIM_BENCH_MB")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(200);
    megabytes << 20
}

fn config(
    job: &str,
    params: JobParams,
    reducers: u32,
    output_dir: PathBuf,
) -> BenchResult<JobConfig> {
    let config = JobConfig {
        version: PAYLOAD_VERSION,
        job: job.into(),
        params,
        steps: 1,
        reducers,
        output_dir: output_dir.into(),
        sort_buffer_bytes: SORT_BUFFER_BYTES,
        merge_factor: DEFAULT_MERGE_FACTOR,
        output_codec: None,
        storage: Default::default(),
        files: Default::default(),
        skip: Default::default(),
    }
    .validated()?;
    Ok(config)
}

fn rate(bytes: u64, started: Instant) -> String {
    let seconds = started.elapsed().as_secs_f64();
    format!("{:.2} s, {:.0} MB/s", seconds, bytes as f64 / seconds / 1e6)
}

/// Copies each partition's segment of the map outputs into its own file, as the shuffle
/// would.
fn cut_segments(
    outputs: &[PathBuf],
    partitions: u32,
    dir: &Path,
) -> BenchResult<Vec<Vec<FetchedSegment>>> {
    let mut by_partition = vec![Vec::new(); partitions as usize];
    for (task_index, path) in outputs.iter().enumerate() {
        let bytes = std::fs::read(path)?;
        let footer_start = bytes.len() - footer_len(partitions) as usize;
        let entries = decode_footer(&bytes[footer_start..], partitions, bytes.len() as u64, "b")?;
        for (partition, entry) in entries.iter().enumerate() {
            let segment_path = dir.join(format!("seg-{task_index}-{partition}"));
            let range = entry.offset as usize..(entry.offset + entry.length) as usize;
            std::fs::write(&segment_path, &bytes[range])?;
            by_partition[partition].push(FetchedSegment {
                task_index: task_index as u32,
                path: segment_path,
                offset: 0,
                length: entry.length,
                records: entry.records,
            });
        }
    }
    Ok(by_partition)
}

/// Drops every pair: measures a mapper without the sort behind it.
struct Discard;

impl Emit for Discard {
    fn emit(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), JobError> {
        Ok(())
    }
}

/// Text of words drawn from a skewed vocabulary, like natural language.
fn skewed_text(bytes: usize) -> Vec<u8> {
    let vocabulary: Vec<String> = (0..50_000).map(|index| format!("w{index:x}ord")).collect();
    let mut rng = SeededRng::new(88_172_645_463_325_252);
    let mut text = Vec::with_capacity(bytes + 100);
    let mut words_on_line = 0;
    while text.len() < bytes {
        // Skew: the square of a uniform number favours small indices.
        let uniform = rng.below(1000) as usize;
        let index = uniform * uniform * vocabulary.len() / 1_000_000;
        text.extend_from_slice(vocabulary[index].as_bytes());
        words_on_line += 1;
        if words_on_line == 12 {
            text.push(b'\n');
            words_on_line = 0;
        } else {
            text.push(b' ');
        }
    }
    text
}

fn wordcount_mapper_throughput() -> BenchResult {
    let text = skewed_text(bench_bytes() as usize);
    let path = Path::new("bench");
    let started = Instant::now();
    let job = essaim_mapreduce::jobs::wordcount::WordCount;
    let mut mapper = job.mapper(&JobParams::default(), 0)?;
    let mut out = CollectEmit::default();
    let mut offset = 0u64;
    for (index, line) in text.split(|byte| *byte == b'\n').enumerate() {
        let record = Record {
            path,
            offset,
            line_in_split: index as u64 + 1,
            split_start: 0,
            data: line,
        };
        mapper.map(&record, &mut out)?;
        offset += line.len() as u64 + 1;
    }
    mapper.finish(&mut out)?;
    let elapsed = started.elapsed();

    // The baseline: a hand-written count with the same hash table (the text holds only
    // spaces and newlines between words, so `is_ascii_whitespace` splits it as the job).
    let started_baseline = Instant::now();
    let mut counts: FxHashMap<&[u8], u64> = FxHashMap::default();
    for word in text
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty())
    {
        *counts.entry(word).or_insert(0) += 1;
    }
    let baseline = started_baseline.elapsed();
    let started_lines = Instant::now();
    let mut total = 0usize;
    for line in text.split(|byte| *byte == b'\n') {
        total = total.wrapping_add(std::hint::black_box(line).len());
    }
    println!(
        "line splitting alone: {:.0} MB/s ({total})",
        text.len() as f64 / 1e6 / started_lines.elapsed().as_secs_f64()
    );
    if counts.len() != out.pairs.len() {
        return Err(format!(
            "the mapper found {} words, the baseline {}",
            out.pairs.len(),
            counts.len()
        )
        .into());
    }
    let megabytes = text.len() as f64 / 1e6;
    println!(
        "wordcount mapper: {:.0} MB/s; hand-written count: {:.0} MB/s",
        megabytes / elapsed.as_secs_f64(),
        megabytes / baseline.as_secs_f64()
    );
    Ok(())
}

fn wordcount_map_throughput(dir: &Path) -> BenchResult {
    let input = dir.join("words.txt");
    // A Zipf-like vocabulary: a few very common words, a long tail.
    let mut rng = SeededRng::new(1);
    let vocabulary: Vec<Vec<u8>> = (0..50_000)
        .map(|_| {
            let len = 2 + rng.below(10) as usize;
            rng.bytes(len, b"abcdefghijklmnopqrstuvwxyz")
        })
        .collect();
    let mut content = Vec::with_capacity(bench_bytes() as usize + 200);
    while (content.len() as u64) < bench_bytes() {
        for _ in 0..1 + rng.below(14) {
            let rank = (rng.below(50_000) * rng.below(50_000) / 50_000) as usize;
            content.extend_from_slice(&vocabulary[rank]);
            content.push(b' ');
        }
        content.push(b'\n');
    }
    std::fs::write(&input, &content)?;
    let len = content.len() as u64;
    drop(content);

    let started = Instant::now();
    let mut reader = LineSplitReader::open(&input, 0, len)?;
    let mut lines = 0u64;
    while reader.next_line()?.is_some() {
        lines += 1;
    }
    println!("split reader alone: {lines} lines, {}", rate(len, started));

    let job: Arc<dyn JobDefinition> = Arc::new(essaim_mapreduce::jobs::wordcount::WordCount);
    let started = Instant::now();
    let mut reader = LineSplitReader::open(&input, 0, len)?;
    let mut mapper = job.mapper(&JobParams::default(), 0)?;
    while let Some((offset, line)) = reader.next_line()? {
        let record = Record {
            path: &input,
            offset,
            line_in_split: 1,
            split_start: 0,
            data: line,
        };
        mapper.map(&record, &mut Discard)?;
    }
    mapper.finish(&mut Discard)?;
    println!("split reader and mapper, no output: {}", rate(len, started));

    let config = config("wordcount", JobParams::default(), 4, dir.join("out"))?;
    let payload = MapTaskPayload {
        config,
        splits: vec![InputSplit {
            path: input,
            start: 0,
            length: len,
        }],
    };
    let scratch = dir.join("map");
    std::fs::create_dir_all(&scratch)?;
    let started = Instant::now();
    let output = run_map(job.as_ref(), &payload, &scratch, CancellationToken::new())?;
    println!(
        "wordcount map task: {}, {} pairs out",
        rate(len, started),
        output.counters.get(counters::MAP_OUTPUT_RECORDS)
    );
    Ok(())
}

fn sort_map_and_reduce_throughput(dir: &Path) -> BenchResult {
    let rows = bench_bytes() / 100;
    let input_dir = dir.join("in");
    let to = essaim_mapreduce::jobs::GeneratedFiles {
        out_dir: &input_dir,
        files: 1,
        codec: None,
    };
    essaim_mapreduce::jobs::generate_sort_input(to, rows, 7)?;
    let input = std::fs::read_dir(&input_dir)?
        .next()
        .ok_or("the generator wrote no file")??
        .path();
    let len = std::fs::metadata(&input)?.len();
    let reducers = 4;
    let job: Arc<dyn JobDefinition> = Arc::new(essaim_mapreduce::jobs::sort::Sort);
    let mut params = JobParams::default();
    job.prepare(
        &mut params,
        std::slice::from_ref(&input),
        &Default::default(),
        reducers,
    )?;
    let config = config("sort", params, reducers, dir.join("sort-out"))?;

    // Splits of 128 MiB, as a cluster would cut them.
    let split_bytes = 128u64 << 20;
    let started = Instant::now();
    let mut outputs = Vec::new();
    let mut start = 0;
    while start < len {
        let payload = MapTaskPayload {
            config: config.clone(),
            splits: vec![InputSplit {
                path: input.clone(),
                start,
                length: split_bytes.min(len - start),
            }],
        };
        let scratch = dir.join(format!("map-{start}"));
        std::fs::create_dir_all(&scratch)?;
        let output = run_map(job.as_ref(), &payload, &scratch, CancellationToken::new())?;
        outputs.push(output.path);
        start += split_bytes;
    }
    println!("sort, {} map tasks: {}", outputs.len(), rate(len, started));

    let segments_dir = dir.join("segments");
    std::fs::create_dir_all(&segments_dir)?;
    let by_partition = cut_segments(&outputs, reducers, &segments_dir)?;
    for output in &outputs {
        std::fs::remove_file(output)?;
    }
    let started = Instant::now();
    for (partition, segments) in by_partition.into_iter().enumerate() {
        let payload = ReduceTaskPayload {
            config: config.clone(),
            step: 0,
            partition: partition as u32,
        };
        let scratch = dir.join(format!("reduce-{partition}"));
        std::fs::create_dir_all(&scratch)?;
        reduce_segments(
            job.as_ref(),
            &payload,
            segments,
            &scratch,
            AttemptId(1),
            CancellationToken::new(),
        )?;
    }
    println!("sort, {reducers} reduce tasks: {}", rate(len, started));

    let started = Instant::now();
    let status = std::process::Command::new("sort")
        .env("LC_ALL", "C")
        .args(["--parallel=1", "-S", "1G", "-o"])
        .arg(dir.join("gnu-sorted"))
        .arg(&input)
        .status();
    match status {
        Ok(status) if status.success() => {
            println!("GNU sort, one thread: {}", rate(len, started));
        }
        Ok(status) => println!("GNU sort failed ({status}); no comparison"),
        Err(error) => println!("GNU sort did not start ({error}); no comparison"),
    }
    Ok(())
}
