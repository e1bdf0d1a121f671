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
    output
        .counters
        .add(counters::MAP_INPUT_RECORDS, input_records);
    output.counters.add(counters::MAP_INPUT_BYTES, input_bytes);
    Ok(output)
}

/// Throughput of the data path on generated inputs, in release mode:
/// `cargo test --release -p essaim-mapreduce throughput -- --ignored --nocapture`
/// (`ESSAIM_BENCH_MB` sets the input size, 200 by default).
#[cfg(test)]
mod throughput {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::api::JobParams;
    use crate::format::{decode_footer, footer_len};
    use crate::payload::{InputSplit, JobConfig, PAYLOAD_VERSION, ReduceTaskPayload};
    use crate::reduce_task::{FetchedSegment, reduce_segments};
    use essaim_core::rng::SeededRng;

    fn bench_bytes() -> u64 {
        let megabytes: u64 = std::env::var("ESSAIM_BENCH_MB")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(200);
        megabytes << 20
    }

    fn config(job: &str, params: JobParams, reducers: u32, output_dir: PathBuf) -> JobConfig {
        JobConfig {
            version: PAYLOAD_VERSION,
            job: job.into(),
            params,
            steps: 1,
            reducers,
            output_dir,
            sort_buffer_bytes: 256 << 20,
            merge_factor: 16,
        }
    }

    fn rate(bytes: u64, started: Instant) -> String {
        let seconds = started.elapsed().as_secs_f64();
        format!("{:.2} s, {:.0} MB/s", seconds, bytes as f64 / seconds / 1e6)
    }

    /// Copies each partition's segment of the map outputs into its own file, as the
    /// shuffle would.
    fn cut_segments(outputs: &[PathBuf], partitions: u32, dir: &Path) -> Vec<Vec<FetchedSegment>> {
        let mut by_partition = vec![Vec::new(); partitions as usize];
        for (task_index, path) in outputs.iter().enumerate() {
            let bytes = std::fs::read(path).unwrap();
            let footer_start = bytes.len() - footer_len(partitions) as usize;
            let entries =
                decode_footer(&bytes[footer_start..], partitions, bytes.len() as u64, "b").unwrap();
            for (partition, entry) in entries.iter().enumerate() {
                let segment_path = dir.join(format!("seg-{task_index}-{partition}"));
                let range = entry.offset as usize..(entry.offset + entry.length) as usize;
                std::fs::write(&segment_path, &bytes[range]).unwrap();
                by_partition[partition].push(FetchedSegment {
                    task_index: task_index as u32,
                    path: segment_path,
                    length: entry.length,
                    records: entry.records,
                });
            }
        }
        by_partition
    }

    #[test]
    #[ignore = "a benchmark: run in release mode with --ignored --nocapture"]
    fn wordcount_map_throughput() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("words.txt");
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
        std::fs::write(&input, &content).unwrap();
        let len = content.len() as u64;
        drop(content);

        let started = Instant::now();
        let mut reader = LineSplitReader::open(&input, 0, len).unwrap();
        let mut lines = 0u64;
        while reader.next_line().unwrap().is_some() {
            lines += 1;
        }
        eprintln!("split reader alone: {lines} lines, {}", rate(len, started));

        let job: Arc<dyn JobDefinition> = Arc::new(crate::jobs::wordcount::WordCount);
        struct Discard;
        impl crate::api::Emit for Discard {
            fn emit(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), crate::api::JobError> {
                Ok(())
            }
        }
        let started = Instant::now();
        let mut reader = LineSplitReader::open(&input, 0, len).unwrap();
        let mut mapper = job.mapper(&JobParams::default(), 0).unwrap();
        while let Some((offset, line)) = reader.next_line().unwrap() {
            let record = Record {
                path: &input,
                offset,
                line_in_split: 1,
                split_start: 0,
                data: line,
            };
            mapper.map(&record, &mut Discard).unwrap();
        }
        mapper.finish(&mut Discard).unwrap();
        eprintln!("split reader and mapper, no output: {}", rate(len, started));

        let config = config("wordcount", JobParams::default(), 4, dir.path().join("out"));
        let payload = MapTaskPayload {
            config,
            split: InputSplit {
                path: input,
                start: 0,
                length: len,
            },
        };
        let scratch = dir.path().join("map");
        std::fs::create_dir_all(&scratch).unwrap();
        let started = Instant::now();
        let output = run_map(job.as_ref(), &payload, &scratch, CancellationToken::new()).unwrap();
        eprintln!(
            "wordcount map task: {}, {} pairs out",
            rate(len, started),
            output.counters.get(counters::MAP_OUTPUT_RECORDS)
        );
    }

    #[test]
    #[ignore = "a benchmark: run in release mode with --ignored --nocapture"]
    fn sort_map_and_reduce_throughput() {
        let dir = tempfile::tempdir().unwrap();
        let rows = bench_bytes() / 100;
        let input_dir = dir.path().join("in");
        crate::jobs::generate_sort_input(&input_dir, rows, 1, 7).unwrap();
        let input = std::fs::read_dir(&input_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let len = std::fs::metadata(&input).unwrap().len();
        let reducers = 4;
        let job: Arc<dyn JobDefinition> = Arc::new(crate::jobs::sort::Sort);
        let mut params = JobParams::default();
        job.prepare(&mut params, std::slice::from_ref(&input), reducers)
            .unwrap();
        let config = config("sort", params, reducers, dir.path().join("out"));

        // Splits of 128 MiB, as a cluster would cut them.
        let split_bytes = 128u64 << 20;
        let started = Instant::now();
        let mut outputs = Vec::new();
        let mut start = 0;
        while start < len {
            let payload = MapTaskPayload {
                config: config.clone(),
                split: InputSplit {
                    path: input.clone(),
                    start,
                    length: split_bytes.min(len - start),
                },
            };
            let scratch = dir.path().join(format!("map-{start}"));
            std::fs::create_dir_all(&scratch).unwrap();
            let output =
                run_map(job.as_ref(), &payload, &scratch, CancellationToken::new()).unwrap();
            outputs.push(output.path);
            start += split_bytes;
        }
        eprintln!("sort, {} map tasks: {}", outputs.len(), rate(len, started));

        let segments_dir = dir.path().join("segments");
        std::fs::create_dir_all(&segments_dir).unwrap();
        let by_partition = cut_segments(&outputs, reducers, &segments_dir);
        for output in &outputs {
            std::fs::remove_file(output).unwrap();
        }
        let started = Instant::now();
        for (partition, segments) in by_partition.into_iter().enumerate() {
            let payload = ReduceTaskPayload {
                config: config.clone(),
                step: 0,
                partition: partition as u32,
            };
            let scratch = dir.path().join(format!("reduce-{partition}"));
            std::fs::create_dir_all(&scratch).unwrap();
            reduce_segments(
                job.as_ref(),
                &payload,
                segments,
                &scratch,
                1,
                CancellationToken::new(),
            )
            .unwrap();
        }
        eprintln!("sort, {reducers} reduce tasks: {}", rate(len, started));

        let started = Instant::now();
        let status = std::process::Command::new("sort")
            .env("LC_ALL", "C")
            .args(["--parallel=1", "-S", "1G", "-o"])
            .arg(dir.path().join("gnu-sorted"))
            .arg(&input)
            .status()
            .unwrap();
        assert!(status.success());
        eprintln!("GNU sort, one thread: {}", rate(len, started));
    }
}
