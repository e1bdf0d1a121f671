//! `essaim eval --quick` answers every question of the evaluation with sane numbers: sleep
//! tasks scale with workers, per-worker shares add up to the job, recovery follows the
//! worker timeout, late results of a frozen worker are fenced off and the output stays
//! right, scaling out and draining lose nothing, cost is positive, and every plot is
//! well-formed SVG. Its stream scenarios, on the NATS and PostgreSQL the test kit
//! starts, measure events/s and cost, and find the tables equal to the oracle after a
//! worker's SIGKILL and the coordinator's, with the lag back to normal.

use crate::harness::one_at_a_time;
use essaim_testkit::server;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Longest the quick evaluation may take on a loaded machine (it takes about 30 s, and
/// a minute more with the failover scenario).
const EVAL_TIMEOUT: Duration = Duration::from_secs(360);
/// The batch scenarios: the stream ones have a test of their own.
const BATCH_SCENARIOS: &str = "sleep,wordcount,balance,recovery,elasticity,failover";
/// Longest the quick stream scenarios may take on a loaded machine (about 50 s).
const STREAM_EVAL_TIMEOUT: Duration = Duration::from_secs(180);

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is a number: {value}"))
}

fn array<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what} is an array: {value}"))
}

/// Returns the curve's point for `workers`.
fn point(curve: &Value, workers: u64) -> &Value {
    array(&curve["points"], "points")
        .iter()
        .find(|point| point["workers"].as_u64() == Some(workers))
        .unwrap_or_else(|| panic!("no point for {workers} workers: {curve}"))
}

fn assert_well_formed_svg(path: &Path) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{} is readable: {error}", path.display()));
    let document = roxmltree::Document::parse(&text)
        .unwrap_or_else(|error| panic!("{} is not well-formed XML: {error}", path.display()));
    assert_eq!(document.root_element().tag_name().name(), "svg");
}

/// Runs `essaim eval --quick --only SCENARIOS` into `out` with `env`; returns its
/// results, checked equal to `results.json`.
async fn quick_eval(out: &Path, scenarios: &str, env: &[(&str, &str)], timeout: Duration) -> Value {
    let started = Instant::now();
    let output = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_essaim"))
            .args([
                "eval", "--quick", "--output", "json", "--only", scenarios, "--out",
            ])
            .arg(out)
            .env_remove("ESSAIM_TOKEN")
            .env_remove("ESSAIM_COORDINATOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the quick evaluation finishes in time")
    .expect("the essaim binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("quick evaluation took {:?}:\n{stderr}", started.elapsed());
    assert!(output.status.success(), "eval failed: {stderr}");
    let results: Value = serde_json::from_slice(&output.stdout).expect("stdout is results.json");
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json was written"),
    )
    .expect("results.json is JSON");
    assert_eq!(results, on_disk, "stdout and results.json agree");
    assert_eq!(results["mode"], "quick");
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_evaluation_gives_sane_numbers_and_well_formed_plots() {
    let _one_at_a_time = one_at_a_time().await;
    let dir = tempfile::Builder::new()
        .prefix("essaim-e2e-eval-")
        .tempdir()
        .expect("a temporary directory");
    let out = dir.path().join("results");
    let results = quick_eval(&out, BATCH_SCENARIOS, &[], EVAL_TIMEOUT).await;

    // 1. Throughput: sleeping slots hold no core, so two workers nearly double it.
    let sleep = &results["throughput_sleep"]["curve"];
    assert!(number(&point(sleep, 1)["median"], "tasks/s") > 0.0);
    let speedup = number(&point(sleep, 2)["speedup"], "speed-up");
    assert!(
        speedup > 1.3,
        "2 workers of sleep tasks: speed-up {speedup}"
    );
    let wordcount = &results["throughput_wordcount"];
    assert_eq!(wordcount["output_matches_oracle"], true, "{wordcount}");
    assert!(number(&point(&wordcount["curve"], 1)["median"], "MB/s") > 0.0);

    // 5. Cost.
    for cost in array(&wordcount["cost"], "cost") {
        assert!(
            number(&cost["core_seconds_per_gb"], "core-s/GB") > 0.0,
            "{cost}"
        );
    }

    // 2. Load distribution: every committed task is counted once, on one worker.
    for case in ["homogeneous", "heterogeneous"] {
        for run in array(&results["balance"][case]["runs"], "runs") {
            let tasks = run["tasks"].as_u64().expect("tasks");
            let per_worker: u64 = array(&run["workers"], "workers")
                .iter()
                .map(|worker| worker["committed"].as_u64().expect("committed"))
                .sum();
            assert_eq!(per_worker, tasks, "{case}: {run}");
            assert_eq!(run["committed_sum"].as_u64(), Some(tasks), "{case}: {run}");
        }
    }
    // Pulling as many tasks as free slots: the 4-slot worker does more than the 1-slot one.
    let heterogeneous = &results["balance"]["heterogeneous"];
    for run in array(&heterogeneous["runs"], "runs") {
        let committed_by_slots = |slots: u64| {
            array(&run["workers"], "workers")
                .iter()
                .find(|worker| worker["slots"].as_u64() == Some(slots))
                .and_then(|worker| worker["committed"].as_u64())
                .unwrap_or_else(|| panic!("a worker with {slots} slots: {run}"))
        };
        assert!(committed_by_slots(4) > committed_by_slots(1), "{run}");
    }

    // 3a. Recovery: the worker timeout, give or take. The last heartbeat came up to one
    // heartbeat period before the kill, so detection may come that much sooner.
    for case in array(&results["recovery"]["crash"], "crash") {
        let timeout = number(&case["worker_timeout_ms"], "timeout") / 1000.0;
        let heartbeat = number(&case["heartbeat_ms"], "heartbeat") / 1000.0;
        for run in array(&case["runs"], "runs") {
            let recovered = number(&run["running_elsewhere_s"], "recovery");
            assert!(
                (timeout - heartbeat..=timeout + 2.0).contains(&recovered),
                "recovered after {recovered} s with a {timeout} s timeout: {run}"
            );
        }
    }
    // 3b. Partition: the late results are fenced off and the output is right.
    for run in array(&results["recovery"]["partition"], "partition") {
        assert_eq!(run["output_complete_and_correct"], true, "{run}");
        let fenced = run["results_rejected"].as_u64().expect("rejected")
            + run["dropped_by_worker"].as_u64().expect("dropped");
        assert!(fenced >= 1, "no late result was fenced off: {run}");
    }

    // 4. Elasticity: nothing lost while scaling, and the cluster did reach 4 workers.
    let elasticity = &results["elasticity"];
    assert_eq!(elasticity["all_committed"], true, "{elasticity}");
    assert_eq!(array(&elasticity["events"], "events").len(), 2);
    let most_workers = array(&elasticity["samples"], "samples")
        .iter()
        .filter_map(|sample| sample["workers"].as_u64())
        .max();
    assert_eq!(most_workers, Some(4), "{elasticity}");

    // 6. Failover: a standby leads and commits within a few leases, the resumed leader
    // stands by, and every task is committed once. Skipped only without etcd.
    let failover = &results["failover"];
    if failover["skipped"].is_null() {
        for fault in ["kill", "stop"] {
            for run in array(&failover[fault]["runs"], "runs") {
                assert_eq!(run["every_task_committed_once"], true, "{run}");
                let first_commit = number(&run["to_first_commit_s"], "failover");
                assert!(first_commit < 15.0, "{fault}: {run}");
            }
        }
        for run in array(&failover["stop"]["runs"], "runs") {
            assert_eq!(run["stood_by"], true, "{run}");
        }
    } else {
        assert!(
            std::env::var_os("ESSAIM_SKIP_ETCD").is_some(),
            "the failover scenario was skipped: {failover}"
        );
    }

    // Plots and summary.
    let plots = array(&results["plots"], "plots");
    assert_eq!(plots.len(), 6, "{plots:?}");
    for plot in plots {
        assert_well_formed_svg(&out.join(plot.as_str().expect("a file name")));
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("## 3a. Recovery after SIGKILL"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_stream_scenarios_measure_the_pipeline_and_match_the_oracle() {
    if server::skipped(server::NATS) || server::skipped(server::POSTGRES) {
        return;
    }
    let _one_at_a_time = one_at_a_time().await;
    let (Some(nats), Some(postgres)) = (server::nats(), server::postgres()) else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("essaim-e2e-stream-eval-")
        .tempdir()
        .expect("a temporary directory");
    let out = dir.path().join("results");
    let env = [
        ("ESSAIM_NATS_URL", nats.url()),
        ("ESSAIM_POSTGRES_URL", postgres.url()),
    ];
    let results = quick_eval(
        &out,
        "stream-scaling,stream-recovery",
        &env,
        STREAM_EVAL_TIMEOUT,
    )
    .await;
    assert!(results["streams_skipped"].is_null(), "{results}");

    // 1 and 5: every event counted once, at a positive rate, for some CPU.
    let scaling = &results["stream_scaling"];
    assert_eq!(scaling["oracle_matched"], true, "{scaling}");
    assert_eq!(scaling["events"].as_u64(), Some(10_000), "{scaling}");
    for workers in [1, 2] {
        let rate = number(&point(&scaling["curve"], workers)["median"], "events/s");
        // The backlog of 10,000 events takes seconds, not minutes, and not nothing.
        assert!(
            (1_000.0..1_000_000.0).contains(&rate),
            "{workers} workers: {rate}"
        );
    }
    for cost in array(&scaling["cost"], "cost") {
        let core_seconds = number(&cost["core_seconds_per_million"], "core-s/M");
        assert!(core_seconds > 0.0 && core_seconds < 10_000.0, "{cost}");
    }

    // 3: the killed worker's units came back and the lag went back to normal; so did
    // they after the coordinator was killed and started again on its journal.
    let recovery = &results["stream_recovery"];
    assert_eq!(recovery["oracle_matched"], true, "{recovery}");
    let timeout = number(&recovery["worker_timeout_ms"], "timeout") / 1000.0;
    let worker_runs = array(&recovery["runs"], "runs");
    let coordinator_runs = array(&recovery["coordinator_runs"], "coordinator runs");
    assert_eq!(
        (worker_runs.len(), coordinator_runs.len()),
        (1, 1),
        "{recovery}"
    );
    for run in worker_runs.iter().chain(coordinator_runs) {
        assert!(run["units_killed"].as_u64().expect("units") >= 1, "{run}");
        let units_back = number(&run["units_back_s"], "units back");
        let lag_normal = number(&run["lag_normal_s"], "lag normal");
        // Units move once the worker timeout has passed; the lag follows.
        assert!(units_back < timeout + 15.0, "{run}");
        assert!(lag_normal >= units_back && lag_normal < 30.0, "{run}");
        assert!(
            run["peak_lag"].as_i64() >= run["normal_lag"].as_i64(),
            "{run}"
        );
    }

    let plots = array(&results["plots"], "plots");
    let names: Vec<&str> = plots.iter().filter_map(Value::as_str).collect();
    assert_eq!(
        names,
        [
            "stream_throughput.svg",
            "stream_cost.svg",
            "stream_recovery.svg",
            "stream_recovery_coordinator.svg"
        ]
    );
    for plot in names {
        assert_well_formed_svg(&out.join(plot));
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("## S3. A pipeline after SIGKILL"),
        "{summary}"
    );
}
