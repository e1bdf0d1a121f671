//! `essaim demo salad`: the fruit salad of the distributed-systems tutorial, for real.
//!
//! A master (the coordinator) hands fruits to cooks (worker processes, one slot each).
//! Preparing a fruit takes time, and a cook may crash mid-fruit: the worker process really
//! exits. Its lease expires, the fruit goes back to "to do", another cook takes it, the
//! crashed cook is restarted — and the salad is still served: every fruit prepared and
//! committed exactly once, which the demo checks against a side file in which every
//! preparation (including the interrupted ones) is recorded.

use crate::local_cluster::{LocalCluster, LocalOptions};
use crate::output::OutputFormat;
use essaim_core::rng::SeededRng;
use essaim_proto::v1;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const FRUITS: &[&str] = &[
    "apple",
    "pear",
    "banana",
    "kiwi",
    "orange",
    "mango",
    "pineapple",
    "strawberry",
    "grape",
    "cherry",
    "peach",
    "plum",
    "apricot",
    "melon",
    "watermelon",
    "raspberry",
    "blueberry",
    "lychee",
    "papaya",
    "fig",
    "clementine",
    "passion fruit",
    "pomegranate",
    "blackberry",
];

/// Options of `essaim demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    demo: Demo,
}

#[derive(clap::Subcommand, Debug)]
enum Demo {
    /// Prepare a fruit salad with cooks that crash.
    Salad(SaladArgs),
    /// Count the words of a generated corpus with MapReduce while a worker is killed.
    Wordcount(super::demo_wordcount::WordcountArgs),
    /// Replay real flights through NATS, a pipeline and PostgreSQL while a worker is
    /// killed, and check the tables.
    Stream(super::demo_stream::StreamDemoArgs),
}

#[derive(clap::Args, Debug)]
struct SaladArgs {
    /// Number of fruits to prepare.
    #[arg(long, default_value_t = 24)]
    fruits: usize,
    /// Number of cooks (worker processes, one slot each).
    #[arg(long, default_value_t = 3)]
    cooks: usize,
    /// Chance, in percent, that a cook crashes while preparing a fruit.
    #[arg(long, default_value_t = 10)]
    crash_percent: u32,
    /// Shortest and longest preparation, in milliseconds.
    #[arg(long, default_value_t = 300)]
    min_prep_ms: u64,
    /// Longest preparation, in milliseconds.
    #[arg(long, default_value_t = 1200)]
    max_prep_ms: u64,
    /// Seed of the preparation times.
    #[arg(long, default_value_t = 3)]
    seed: u64,
}

/// Runs the chosen demo.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.demo {
        Demo::Salad(salad) => run_salad(salad).await,
        Demo::Wordcount(wordcount) => super::demo_wordcount::run(wordcount).await,
        Demo::Stream(stream) => super::demo_stream::run(stream).await,
    }
}

async fn run_salad(args: SaladArgs) -> anyhow::Result<ExitCode> {
    if args.fruits == 0
        || args.cooks == 0
        || args.crash_percent > 90
        || args.min_prep_ms > args.max_prep_ms
    {
        return Err(crate::client::usage(
            "need at least one fruit and one cook, --crash-percent at most 90, and --min-prep-ms <= --max-prep-ms",
        ));
    }
    let workdir = tempfile::Builder::new().prefix("essaim-salad-").tempdir()?;
    let record = workdir.path().join("preparations.tsv");
    let fruits = menu(&args);
    let sequential_ms: u64 = fruits.iter().map(|(_, ms)| ms).sum();

    crate::outln!(
        "Fruit salad: {} fruits, {} cooks (worker processes, one fruit at a time each).",
        args.fruits,
        args.cooks
    );
    crate::outln!(
        "Each cook crashes with a {}% chance per fruit: the process really exits and is restarted.",
        args.crash_percent
    );
    crate::outln!("Starting the kitchen (coordinator + cooks on loopback)…");
    let options = LocalOptions::for_demo(args.cooks, workdir.path().join("cluster"));
    let cluster = LocalCluster::start(options).await?;
    let mut client = essaim_proto::connect(&cluster.url, None, Duration::from_secs(5)).await?;

    let tasks = fruits
        .iter()
        .map(|(fruit, prep_ms)| v1::TaskSpec {
            kind: "salad".into(),
            payload: serde_json::json!({"fruit": fruit, "prep_ms": prep_ms, "crash_percent": args.crash_percent, "record": record}).to_string().into_bytes(),
            ..Default::default()
        })
        .collect();
    let spec = v1::JobSpec {
        name: "fruit salad".into(),
        tasks,
        max_attempts: 20,
        speculation_multiplier: -1.0,
        ..Default::default()
    };
    let started = Instant::now();
    let job_id = client
        .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
        .await?
        .into_inner()
        .job_id;
    let coordinator = crate::client::CoordinatorCalls::local(&cluster.url)?;
    let outcome = super::jobs::wait_with_progress(
        &coordinator,
        job_id,
        Some(Duration::from_secs(300)),
        OutputFormat::Text,
    )
    .await;
    let wall = started.elapsed();
    let results = client
        .get_results(v1::GetResultsRequest {
            job_id,
            from_task: 0,
            limit: 10_000,
        })
        .await?
        .into_inner()
        .results;
    let crashes = cluster.crashes();
    cluster.stop(Duration::from_secs(10)).await?;
    let outcome = outcome?;

    // Every preparation, interrupted or not, was recorded by the cook before starting.
    let recorded = std::fs::read_to_string(&record).unwrap_or_default();
    let preparations = preparations(&recorded);
    print_preparations(&fruits, &results, &preparations);
    let committed: std::collections::BTreeSet<u32> = results.iter().map(|r| r.task_index).collect();
    let executions: u32 = preparations.values().sum();
    let every_fruit_once = committed.len() == args.fruits && results.len() == args.fruits;
    let every_fruit_started = fruits
        .iter()
        .all(|(f, _)| preparations.get(f.as_str()).copied().unwrap_or(0) >= 1);
    crate::outln!();
    if outcome == ExitCode::SUCCESS && every_fruit_once && every_fruit_started {
        crate::outln!(
            "Served! {}/{} fruits prepared and committed exactly once.",
            committed.len(),
            args.fruits
        );
    } else {
        crate::outln!(
            "The salad was NOT served: {} of {} fruits committed.",
            committed.len(),
            args.fruits
        );
    }
    crate::outln!(
        "  preparations started: {executions} ({} interrupted by a crash), cook crashes: {crashes}",
        executions as usize - committed.len().min(executions as usize)
    );
    let wall_s = wall.as_secs_f64();
    crate::outln!(
        "  sequential time {:.1} s, wall time {:.1} s: speed-up {:.2}x with {} cooks",
        sequential_ms as f64 / 1000.0,
        wall_s,
        sequential_ms as f64 / 1000.0 / wall_s,
        args.cooks
    );
    Ok(if every_fruit_once && every_fruit_started {
        outcome
    } else {
        ExitCode::from(1)
    })
}

/// Returns the fruits, each with its preparation time, drawn from `args.seed`.
fn menu(args: &SaladArgs) -> Vec<(String, u64)> {
    let mut rng = SeededRng::new(args.seed);
    (0..args.fruits)
        .map(|i| {
            let name = if i < FRUITS.len() {
                FRUITS[i].to_string()
            } else {
                format!("{} #{}", FRUITS[i % FRUITS.len()], i / FRUITS.len() + 1)
            };
            (
                name,
                args.min_prep_ms + rng.up_to(args.max_prep_ms - args.min_prep_ms),
            )
        })
        .collect()
}

/// Counts the preparations the cooks recorded, by fruit (one line each, fruit first).
fn preparations(recorded: &str) -> BTreeMap<&str, u32> {
    let mut preparations: BTreeMap<&str, u32> = BTreeMap::new();
    for line in recorded.lines() {
        if let Some(fruit) = line.split('\t').next() {
            *preparations.entry(fruit).or_default() += 1;
        }
    }
    preparations
}

/// Prints a line per committed fruit: its time, its preparations and its cook.
fn print_preparations(
    fruits: &[(String, u64)],
    results: &[v1::TaskResult],
    preparations: &BTreeMap<&str, u32>,
) {
    crate::outln!();
    crate::outln!(
        "{:<16} {:>7} {:>13}  prepared by",
        "fruit",
        "prep",
        "preparations"
    );
    for result in results {
        let (fruit, prep_ms) = &fruits[result.task_index as usize];
        let by =
            String::from_utf8_lossy(&result.output.clone().unwrap_or_default().inline).into_owned();
        let by = by.split(" prepared by ").nth(1).unwrap_or("?").to_string();
        crate::outln!(
            "{fruit:<16} {:>5}ms {:>13}  {by}",
            prep_ms,
            preparations.get(fruit.as_str()).copied().unwrap_or(0)
        );
    }
}
