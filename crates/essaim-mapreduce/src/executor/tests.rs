//! Map → shuffle → reduce → commit through real files and the worker's real file server
//! (range requests, batches of ranges, the job's file capability).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use essaim_core::{AttemptId, JobId, TaskId, UpstreamOutput};
use essaim_proto::capability::CapabilityKey;
use essaim_worker::file_access::{CapabilityKeyCell, FileAccess, FileCredentials};
use essaim_worker::job_files::JobFileCache;

use super::*;
use crate::api::{HashPartitioner, JobParams, Partitioner};
use crate::config::MIN_SORT_BUFFER_BYTES;
use crate::payload::{InputSplit, PAYLOAD_VERSION, SUCCESS_MARKER, part_file_name};
use crate::test_support::ToyWordCount;
use essaim_core::rng::SeededRng;

const TOKEN: &str = "s3cret";

/// What the workers of the test cluster present: job 1's capability under this key.
fn credentials() -> FileCredentials {
    let capability_key = CapabilityKeyCell::default();
    capability_key.set(Some(CapabilityKey::from_bytes([9; 32])));
    FileCredentials {
        token: Some(TOKEN.into()),
        capability_key,
    }
}

/// A scratch root served over HTTP on a port-0 listener.
struct Cluster {
    root: tempfile::TempDir,
    address: SocketAddr,
    jobs: Arc<JobRegistry>,
    next_attempt: u64,
}

impl Cluster {
    async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        // The server knows the key: the cluster token alone opens nothing.
        let access = FileAccess::new(
            Some(TOKEN),
            credentials().capability_key,
            essaim_telemetry::AuthMetrics::default(),
        );
        let router = essaim_worker::file_server_router_with(root.path().to_path_buf(), access);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let never = std::future::pending::<()>();
        tokio::spawn(essaim_telemetry::serve_http(listener, router, never));
        let mut jobs = JobRegistry::new();
        jobs.register(Arc::new(ToyWordCount));
        Self {
            root,
            address,
            jobs: Arc::new(jobs),
            next_attempt: 0x100,
        }
    }

    fn context(
        &mut self,
        task_index: u32,
        payload: Vec<u8>,
        inputs: Vec<UpstreamOutput>,
    ) -> AttemptContext {
        self.next_attempt += 1;
        let attempt_id = self.next_attempt;
        let relative = format!("1/{task_index}/{attempt_id:x}");
        AttemptContext {
            task: TaskId::new(JobId(1), task_index),
            attempt_id: AttemptId(attempt_id),
            attempt_number: 1,
            payload,
            timeout: None,
            correlation_id: format!("job-1/task-{task_index}/attempt-{attempt_id}"),
            scratch_dir: self.root.path().join(&relative),
            file_base_url: format!("http://{}/files/{relative}", self.address),
            worker_name: "test".into(),
            inputs,
            file_credential: credentials().for_job(1),
            inputs_watch: None,
            job_files: Arc::new(JobFileCache::new(
                self.root.path(),
                &[],
                None,
                &Default::default(),
            )),
            tls: Default::default(),
        }
    }

    async fn run(
        &self,
        kind: TaskKind,
        context: AttemptContext,
    ) -> Result<TaskOutput, TaskFailure> {
        let executor = MapReduceExecutor::new(kind, Arc::clone(&self.jobs)).with_shuffle_settings(
            ShuffleSettings {
                parallel_fetches: 3,
                attempts: 2,
                first_backoff: Duration::from_millis(1),
                idle_timeout: Duration::from_secs(5),
                ..ShuffleSettings::default()
            },
        );
        if executor.needs_scratch_dir(&context.payload) {
            std::fs::create_dir_all(&context.scratch_dir).unwrap();
        }
        executor.execute(context, CancellationToken::new()).await
    }

    /// Runs the map stage over `splits`; returns the map outputs in task order.
    async fn map_stage(
        &mut self,
        config: &JobConfig,
        splits: &[InputSplit],
    ) -> Vec<UpstreamOutput> {
        let payloads = splits.iter().map(|split| {
            let payload = MapTaskPayload {
                config: config.clone(),
                splits: vec![split.clone()],
            };
            serde_json::to_vec(&payload).unwrap()
        });
        self.map_payloads(payloads.collect()).await
    }

    /// Runs one map task per payload (task `i` for payload `i`); returns the map outputs
    /// in task order.
    async fn map_payloads(&mut self, payloads: Vec<Vec<u8>>) -> Vec<UpstreamOutput> {
        let mut outputs = Vec::new();
        for (index, payload) in payloads.into_iter().enumerate() {
            let context = self.context(index as u32, payload, Vec::new());
            let attempt = context.attempt_id;
            let output = self.run(TaskKind::Map, context).await.unwrap();
            outputs.push(UpstreamOutput {
                task_index: index as u32,
                attempt,
                file: output.file.unwrap(),
            });
        }
        outputs
    }

    /// Runs the reduce stage of `step`; returns each task's result.
    async fn reduce_stage(
        &mut self,
        config: &JobConfig,
        step: u32,
        first_task_index: u32,
        inputs: &[UpstreamOutput],
    ) -> Vec<Result<TaskOutput, TaskFailure>> {
        let mut results = Vec::new();
        for partition in 0..config.reducers {
            let payload = ReduceTaskPayload {
                config: config.clone(),
                step,
                partition,
            };
            let context = self.context(
                first_task_index + partition,
                serde_json::to_vec(&payload).unwrap(),
                inputs.to_vec(),
            );
            results.push(self.run(TaskKind::Reduce, context).await);
        }
        results
    }

    async fn commit(&mut self, config: &JobConfig) -> Result<TaskOutput, TaskFailure> {
        let payload = CommitTaskPayload {
            config: config.clone(),
        };
        let context = self.context(999, serde_json::to_vec(&payload).unwrap(), Vec::new());
        self.run(TaskKind::Commit, context).await
    }
}

fn config(output_dir: &Path, reducers: u32, steps: u32) -> JobConfig {
    let mut params = JobParams::default();
    params.set("steps", steps.to_string());
    JobConfig {
        version: PAYLOAD_VERSION,
        job: "toy-wordcount".into(),
        params,
        steps,
        reducers,
        output_dir: output_dir.to_path_buf().into(),
        sort_buffer_bytes: MIN_SORT_BUFFER_BYTES,
        merge_factor: 3,
        output_codec: None,
        storage: Default::default(),
        files: Default::default(),
        skip: Default::default(),
    }
}

/// Writes text files of random words; returns them and the true word counts.
fn write_inputs(
    dir: &Path,
    seed: u64,
    files: usize,
    lines: usize,
) -> (Vec<PathBuf>, BTreeMap<Vec<u8>, u64>) {
    let mut rng = SeededRng::new(seed);
    let mut counts = BTreeMap::new();
    let mut paths = Vec::new();
    for file_index in 0..files {
        let mut content = Vec::new();
        for _ in 0..lines {
            for _ in 0..rng.below(12) {
                let len = 1 + rng.below(6) as usize;
                let word = rng.bytes(len, b"abcdefg");
                *counts.entry(word.clone()).or_insert(0) += 1;
                content.extend_from_slice(&word);
                content.push(b' ');
            }
            content.push(b'\n');
        }
        let path = dir.join(format!("input-{file_index}.txt"));
        std::fs::write(&path, content).unwrap();
        paths.push(path);
    }
    (paths, counts)
}

fn splits_of(paths: &[PathBuf], split_bytes: u64) -> Vec<InputSplit> {
    let mut splits = Vec::new();
    for path in paths {
        let len = std::fs::metadata(path).unwrap().len();
        let mut start = 0;
        while start < len {
            splits.push(InputSplit {
                path: path.clone(),
                start,
                length: split_bytes.min(len - start),
            });
            start += split_bytes;
        }
    }
    splits
}

fn read_parts(output_dir: &Path, reducers: u32) -> Vec<Vec<u8>> {
    (0..reducers)
        .map(|partition| std::fs::read(output_dir.join(part_file_name(partition))).unwrap())
        .collect()
}

#[tokio::test]
async fn word_count_round_trips_through_map_shuffle_reduce_and_commit() {
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let (paths, oracle) = write_inputs(data.path(), 1, 3, 4000);
    let output_dir = data.path().join("out");
    let config = config(&output_dir, 3, 1);
    let maps = cluster.map_stage(&config, &splits_of(&paths, 20_000)).await;
    assert!(maps.len() >= 5, "{} map outputs", maps.len());
    let results = cluster.reduce_stage(&config, 0, 100, &maps).await;
    for result in &results {
        let output = result.as_ref().unwrap();
        assert!(output.file.is_none());
        assert!(output.counters[crate::counters::SHUFFLE_BYTES] > 0);
        // Every map output is on one server: its footers in one request, its segments
        // in another.
        assert_eq!(output.counters[crate::counters::SHUFFLE_REQUESTS], 2);
        assert_eq!(
            output.counters[crate::counters::SHUFFLE_SEGMENTS],
            maps.len() as u64
        );
    }
    cluster.commit(&config).await.unwrap();
    assert!(output_dir.join(SUCCESS_MARKER).is_file());

    let mut counted = BTreeMap::new();
    for (partition, part) in read_parts(&output_dir, 3).into_iter().enumerate() {
        let mut previous: Option<Vec<u8>> = None;
        for line in part
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            let tab = line.iter().position(|byte| *byte == b'\t').unwrap();
            let word = line[..tab].to_vec();
            let count: u64 = std::str::from_utf8(&line[tab + 1..])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(HashPartitioner.partition(&word, 3), partition as u32);
            assert!(
                previous.as_ref().is_none_or(|previous| *previous < word),
                "keys are sorted"
            );
            previous = Some(word.clone());
            counted.insert(word, count);
        }
    }
    assert_eq!(counted, oracle);
}

#[tokio::test]
async fn chained_steps_give_identical_output_whatever_the_input_order() {
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let (paths, _) = write_inputs(data.path(), 2, 2, 2000);
    let mut outputs = Vec::new();
    for reverse_inputs in [false, true] {
        let output_dir = data.path().join(format!("out-{reverse_inputs}"));
        let config = config(&output_dir, 2, 2);
        let maps = cluster.map_stage(&config, &splits_of(&paths, 7_000)).await;
        let step_one = cluster.reduce_stage(&config, 0, 100, &maps).await;
        let mut chained: Vec<UpstreamOutput> = step_one
            .into_iter()
            .enumerate()
            .map(|(partition, result)| UpstreamOutput {
                task_index: 100 + partition as u32,
                attempt: AttemptId(1),
                file: result
                    .unwrap()
                    .file
                    .expect("a chained step serves a map output"),
            })
            .collect();
        if reverse_inputs {
            chained.reverse();
        }
        let step_two = cluster.reduce_stage(&config, 1, 200, &chained).await;
        assert!(step_two.iter().all(Result::is_ok));
        cluster.commit(&config).await.unwrap();
        outputs.push(read_parts(&output_dir, 2));
    }
    assert_eq!(outputs[0], outputs[1]);
    let all: Vec<u8> = outputs[0].concat();
    assert!(all.starts_with(b"0000000") || all.contains(&b'\t'));
}

#[tokio::test]
async fn missing_corrupt_and_unreachable_upstreams_are_all_reported_lost() {
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let (paths, _) = write_inputs(data.path(), 3, 1, 3000);
    let output_dir = data.path().join("out");
    let config = config(&output_dir, 1, 1);
    let mut maps = cluster.map_stage(&config, &splits_of(&paths, 8_000)).await;
    assert!(maps.len() >= 4);
    let path_of = |upstream: &UpstreamOutput| {
        let relative = upstream
            .file
            .url
            .split("/files/")
            .nth(1)
            .unwrap()
            .to_string();
        cluster.root.path().join(relative)
    };
    // Task 1: its output is gone (404).
    std::fs::remove_file(path_of(&maps[1])).unwrap();
    // Task 2: one byte of its segment flipped (checksum).
    let corrupt = path_of(&maps[2]);
    let mut bytes = std::fs::read(&corrupt).unwrap();
    bytes[100] ^= 0x04;
    std::fs::write(&corrupt, bytes).unwrap();
    // Task 3: its worker is unreachable (connection refused).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    maps[3].file.url = format!("http://127.0.0.1:{closed_port}/files/1/3/1/map.out");

    let results = cluster.reduce_stage(&config, 0, 100, &maps).await;
    let failure = results.into_iter().next().unwrap().unwrap_err();
    assert!(failure.retryable);
    assert_eq!(failure.lost_inputs, vec![1, 2, 3], "{}", failure.message);
    assert!(failure.message.contains("checksum"), "{}", failure.message);
}

/// In a batch, a corrupt segment is left to the one-by-one path, which blames its
/// upstream alone; the segments after it in the same answer are still used.
#[tokio::test]
async fn a_corrupt_segment_in_a_batch_is_blamed_on_its_upstream_alone() {
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let (paths, _) = write_inputs(data.path(), 3, 1, 3000);
    let config = config(&data.path().join("out"), 1, 1);
    let maps = cluster.map_stage(&config, &splits_of(&paths, 8_000)).await;
    assert!(maps.len() >= 4);
    let relative = maps[1]
        .file
        .url
        .split("/files/")
        .nth(1)
        .unwrap()
        .to_string();
    let corrupt = cluster.root.path().join(relative);
    let mut bytes = std::fs::read(&corrupt).unwrap();
    bytes[100] ^= 0x04;
    std::fs::write(&corrupt, bytes).unwrap();
    let results = cluster.reduce_stage(&config, 0, 100, &maps).await;
    let failure = results.into_iter().next().unwrap().unwrap_err();
    assert_eq!(failure.lost_inputs, vec![1], "{}", failure.message);
    assert!(failure.message.contains("checksum"), "{}", failure.message);
}

#[tokio::test]
async fn a_refused_capability_is_not_blamed_on_the_upstream() {
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let (paths, _) = write_inputs(data.path(), 4, 1, 100);
    let config = config(&data.path().join("out"), 1, 1);
    let maps = cluster
        .map_stage(&config, &splits_of(&paths, 1 << 20))
        .await;
    let payload = ReduceTaskPayload {
        config: config.clone(),
        step: 0,
        partition: 0,
    };
    let base = cluster.context(100, serde_json::to_vec(&payload).unwrap(), maps);
    // The capability of another job, then the cluster token alone: both refused.
    for credential in [
        credentials().for_job(2),
        FileCredentials {
            token: Some(TOKEN.into()),
            capability_key: CapabilityKeyCell::default(),
        }
        .for_job(1),
    ] {
        let mut context = base.clone();
        context.file_credential = credential;
        let failure = cluster.run(TaskKind::Reduce, context).await.unwrap_err();
        assert!(failure.retryable);
        assert!(failure.lost_inputs.is_empty());
        assert!(
            failure.message.contains("credentials"),
            "{}",
            failure.message
        );
    }
}

#[tokio::test]
async fn unusable_payloads_fail_for_good() {
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&data.path().join("out"), 1, 1);
    let split = InputSplit {
        path: data.path().join("none"),
        start: 0,
        length: 1,
    };
    let context = cluster.context(0, b"{not json".to_vec(), Vec::new());
    let failure = cluster.run(TaskKind::Map, context).await.unwrap_err();
    assert!(!failure.retryable);
    assert!(failure.message.contains("malformed"), "{}", failure.message);

    config.job = "no-such-job".into();
    let payload = MapTaskPayload {
        config: config.clone(),
        splits: vec![split.clone()],
    };
    let context = cluster.context(0, serde_json::to_vec(&payload).unwrap(), Vec::new());
    let failure = cluster.run(TaskKind::Map, context).await.unwrap_err();
    assert!(!failure.retryable);
    assert!(
        failure.message.contains("toy-wordcount"),
        "{}",
        failure.message
    );

    config.job = "toy-wordcount".into();
    config.version = PAYLOAD_VERSION + 1;
    let payload = MapTaskPayload {
        config,
        splits: vec![split],
    };
    let context = cluster.context(0, serde_json::to_vec(&payload).unwrap(), Vec::new());
    let failure = cluster.run(TaskKind::Map, context).await.unwrap_err();
    assert!(!failure.retryable);
    assert!(failure.message.contains("version"), "{}", failure.message);
}

#[tokio::test]
async fn a_payload_out_of_range_is_refused_not_given_a_default() {
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let (paths, _) = write_inputs(data.path(), 2, 1, 100);
    let split = splits_of(&paths, 1 << 30).remove(0);
    // Values an older worker replaced by defaults (0) or silently raised (1 KiB).
    type BreakConfig = fn(&mut JobConfig);
    let cases: [(&str, BreakConfig); 4] = [
        ("sort buffer", |config| config.sort_buffer_bytes = 0),
        ("sort buffer", |config| config.sort_buffer_bytes = 1024),
        ("merge factor", |config| config.merge_factor = 0),
        ("reducers", |config| config.reducers = 0),
    ];
    for (field, break_it) in cases {
        let mut config = config(&data.path().join("out"), 1, 1);
        break_it(&mut config);
        let map = MapTaskPayload {
            config: config.clone(),
            splits: vec![split.clone()],
        };
        let reduce = ReduceTaskPayload {
            config: config.clone(),
            step: 0,
            partition: 0,
        };
        let commit = CommitTaskPayload { config };
        let payloads = [
            (TaskKind::Map, serde_json::to_vec(&map).unwrap()),
            (TaskKind::Reduce, serde_json::to_vec(&reduce).unwrap()),
            (TaskKind::Commit, serde_json::to_vec(&commit).unwrap()),
        ];
        for (kind, payload) in payloads {
            let context = cluster.context(0, payload, Vec::new());
            let failure = cluster.run(kind, context).await.unwrap_err();
            assert!(!failure.retryable, "{kind:?} {field}");
            assert!(
                failure.message.contains(&format!("invalid {field}")),
                "{kind:?}: {}",
                failure.message
            );
        }
    }
}

#[tokio::test]
async fn a_job_planned_with_the_default_options_runs_as_planned() {
    use crate::config::{
        DEFAULT_MERGE_FACTOR, DEFAULT_REDUCERS, DEFAULT_SORT_BUFFER_BYTES, DEFAULT_SPLIT_BYTES,
    };
    use crate::plan::{JobRequest, plan_job};
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let (paths, oracle) = write_inputs(data.path(), 3, 2, 500);
    let request = JobRequest {
        params: JobParams::default(),
        inputs: paths
            .iter()
            .map(|path| path.display().to_string())
            .collect(),
        output_dir: data.path().join("out"),
        reducers: DEFAULT_REDUCERS,
        split_bytes: DEFAULT_SPLIT_BYTES,
        open_cost_bytes: Some(crate::config::DEFAULT_OPEN_COST_BYTES),
        sort_buffer_bytes: DEFAULT_SORT_BUFFER_BYTES,
        merge_factor: DEFAULT_MERGE_FACTOR,
        output_codec: None,
        storage: Default::default(),
        files: Default::default(),
    };
    let planned = plan_job(&ToyWordCount, &request).unwrap();
    // What the planner wrote is what the worker runs with: nothing is re-defaulted.
    assert_eq!(planned.config.sort_buffer_bytes, DEFAULT_SORT_BUFFER_BYTES);
    assert_eq!(planned.config.merge_factor, DEFAULT_MERGE_FACTOR);
    assert_eq!(
        planned.config.clone().validated(),
        Ok(planned.config.clone())
    );
    // The planner lays out the map tasks first, so task `i` is payload `i`.
    let map_payloads: Vec<Vec<u8>> = planned
        .tasks
        .iter()
        .take_while(|task| task.kind == MAP_KIND)
        .map(|task| task.payload.clone())
        .collect();
    assert_eq!(paths.len(), 2);
    assert_eq!(
        map_payloads.len(),
        1,
        "two small files packed into one map task"
    );
    let maps = cluster.map_payloads(map_payloads).await;
    let output_dir = planned.config.output_dir.as_local().unwrap().to_path_buf();
    std::fs::create_dir_all(output_dir.join(crate::payload::TEMPORARY_DIR)).unwrap();
    for result in cluster.reduce_stage(&planned.config, 0, 100, &maps).await {
        result.unwrap();
    }
    cluster.commit(&planned.config).await.unwrap();
    let total: u64 = oracle.values().sum();
    let parts = read_parts(&output_dir, DEFAULT_REDUCERS);
    let counted: u64 = parts
        .iter()
        .flat_map(|part| part.split(|byte| *byte == b'\n'))
        .filter(|line| !line.is_empty())
        .map(|line| {
            let tab = line.iter().position(|byte| *byte == b'\t').unwrap();
            std::str::from_utf8(&line[tab + 1..])
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, total);
}

#[tokio::test]
async fn a_cancelled_map_task_stops() {
    let mut cluster = Cluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let (paths, _) = write_inputs(data.path(), 5, 1, 20_000);
    let config = config(&data.path().join("out"), 1, 1);
    let payload = MapTaskPayload {
        config,
        splits: vec![splits_of(&paths, 1 << 30).remove(0)],
    };
    let context = cluster.context(0, serde_json::to_vec(&payload).unwrap(), Vec::new());
    std::fs::create_dir_all(&context.scratch_dir).unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let executor = MapReduceExecutor::new(TaskKind::Map, Arc::clone(&cluster.jobs));
    let failure = executor.execute(context, cancel).await.unwrap_err();
    assert!(failure.message.contains("cancelled"), "{}", failure.message);
}

#[test]
fn every_kind_is_registered() {
    let mut registry = ExecutorRegistry::new();
    register_mapreduce_executors(&mut registry, Arc::new(JobRegistry::new()));
    assert_eq!(registry.kinds(), vec![COMMIT_KIND, MAP_KIND, REDUCE_KIND]);
}
