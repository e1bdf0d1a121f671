//! What the cluster runs while a schedule's faults land, and the oracle each workload's
//! output is checked against once the job succeeded.

use crate::harness::{job_spec, output_text, shell_task};
use crate::mapreduce::{coreutils_word_counts, read_word_counts, streaming_args, write_corpus};
use crate::stream::{
    check_against_oracles, connect_postgres, nats_and_postgres, replayed_flights, submitted_job_id,
};
use essaim_proto::v1;
use essaim_testkit::cli::CliOutput;
use essaim_testkit::ha::HaCluster;
use essaim_testkit::server::ScriptServer;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The task farm's tasks.
const TASKS: u32 = 300;
/// The word count's reducers.
const REDUCERS: u32 = 2;
/// A mapper whose every task lasts at least 0.4 s, so that faults land inside the map
/// stage as well as in the reduce stage.
const SLOW_MAPPER: &str = r#"awk -F '[ \t\r\v\f]+' 'NR == 1 { system("sleep 0.4") } { for (i = 1; i <= NF; i++) if ($i != "") print $i "\t1" }'"#;
const SUMMING_REDUCER: &str = r#"awk -F '\t' '$1 != k { if (NR > 1) print k "\t" n; k = $1; n = 0 } { n += $2 } END { if (NR > 0) print k "\t" n }'"#;
/// Flights the streaming pipeline reads, in small commits so that it lasts.
const FLIGHTS: usize = 6_000;
const STREAM_BATCH_MAX: &str = "6";

/// What the cluster runs while the faults land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    /// [`TASKS`] shell tasks, each printing a line known in advance.
    TaskFarm,
    /// A streaming word count of about 30 splits into [`REDUCERS`] parts.
    WordCount,
    /// The flights pipeline from NATS JetStream into PostgreSQL, to the end of its input.
    Stream,
}

impl Workload {
    pub(super) fn of(seed: u64) -> Workload {
        match seed % 3 {
            0 => Workload::TaskFarm,
            1 => Workload::WordCount,
            _ => Workload::Stream,
        }
    }
}

/// A submitted job and what its output is checked against once it succeeded.
pub(super) enum Submitted {
    TaskFarm {
        job_id: u64,
    },
    WordCount {
        job_id: u64,
        output: PathBuf,
        oracle: BTreeMap<Vec<u8>, u64>,
    },
    Stream(Box<StreamRun>),
}

/// A submitted pipeline, its input and its servers.
pub(super) struct StreamRun {
    job_id: u64,
    flights_csv: String,
    bad_lines: usize,
    /// The broker and the database, stopped when dropped.
    _nats: ScriptServer,
    postgres: ScriptServer,
}

impl Submitted {
    pub(super) fn job_id(&self) -> u64 {
        match self {
            Submitted::TaskFarm { job_id } | Submitted::WordCount { job_id, .. } => *job_id,
            Submitted::Stream(run) => run.job_id,
        }
    }

    /// Submits the workload of `seed`; `None` when its servers are skipped.
    pub(super) async fn submit(cluster: &HaCluster, seed: u64) -> Option<Submitted> {
        match Workload::of(seed) {
            Workload::TaskFarm => {
                let script = format!("sleep 0.05; echo seed-{seed} task-$ESSAIM_TASK_INDEX");
                let tasks = (0..TASKS).map(|_| shell_task(&script, &[])).collect();
                let job_id = cluster.submit(job_spec(tasks, 20)).await;
                Some(Submitted::TaskFarm { job_id })
            }
            Workload::WordCount => Some(submit_word_count(cluster, seed).await),
            Workload::Stream => submit_stream(cluster, seed).await,
        }
    }

    /// Checks the finished job's output against its oracle; `results` are the final
    /// stage's.
    pub(super) async fn check(&self, seed: u64, results: &[v1::TaskResult]) {
        match self {
            Submitted::TaskFarm { .. } => {
                assert_eq!(results.len(), TASKS as usize, "torture seed {seed}");
                for result in results {
                    let expected = format!("seed-{seed} task-{}\n", result.task_index);
                    assert_eq!(output_text(result), expected, "torture seed {seed}");
                }
            }
            Submitted::WordCount { output, oracle, .. } => {
                // The final stage publishes the parts (one commit task).
                assert!(!results.is_empty(), "torture seed {seed}: no final commit");
                let counts = read_word_counts(output, REDUCERS);
                assert!(
                    counts == *oracle,
                    "torture seed {seed}: the word counts differ from coreutils'"
                );
            }
            Submitted::Stream(run) => {
                let client = connect_postgres(run.postgres.url()).await;
                check_against_oracles(&client, &run.flights_csv, run.bad_lines).await;
            }
        }
    }
}

async fn submit_word_count(cluster: &HaCluster, seed: u64) -> Submitted {
    let corpus = cluster.path("corpus");
    let inputs = write_corpus(&corpus, 4, 240_000, seed);
    let oracle = coreutils_word_counts(&inputs);
    let output = cluster.path("out");
    let args = streaming_args(
        &corpus,
        &output,
        SLOW_MAPPER,
        SUMMING_REDUCER,
        &["--detach", "--split-size", "32KiB"],
    );
    let run = cli(cluster, &args).await;
    assert_eq!(run.code, Some(0), "torture seed {seed}: {run:?}");
    let job_id = run
        .stdout
        .trim()
        .parse()
        .expect("--detach prints the job id");
    Submitted::WordCount {
        job_id,
        output,
        oracle,
    }
}

async fn submit_stream(cluster: &HaCluster, seed: u64) -> Option<Submitted> {
    let (nats, postgres) = nats_and_postgres()?;
    let replayed = replayed_flights(&cluster.path(""), FLIGHTS, "flights.toml", nats.url()).await;
    let args: Vec<String> = [
        "stream",
        "submit",
        replayed.spec.to_str().expect("a UTF-8 path"),
        "--nats",
        nats.url(),
        "--postgres",
        postgres.url(),
        "--exit-at-end",
        "--parallelism",
        "2",
        "--batch-max",
        STREAM_BATCH_MAX,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let run = cli(cluster, &args).await;
    assert_eq!(run.code, Some(0), "torture seed {seed}: {run:?}");
    let job_id = submitted_job_id(&run.stderr)
        .unwrap_or_else(|| panic!("torture seed {seed}: no job id in {run:?}"));
    Some(Submitted::Stream(Box::new(StreamRun {
        job_id,
        flights_csv: replayed.csv,
        bad_lines: replayed.bad_lines,
        _nats: nats,
        postgres,
    })))
}

/// Runs the CLI against every coordinator of `cluster`.
async fn cli(cluster: &HaCluster, args: &[String]) -> CliOutput {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_essaim"));
    let urls = cluster.urls();
    essaim_testkit::cli::run(binary, &args, &[("ESSAIM_COORDINATOR", &urls)]).await
}
