//! Slow start on a real cluster: reducers start while a slow map task still runs, fetch
//! the map outputs in rounds, and the output equals coreutils' word counts; the same
//! when a worker holding committed map outputs is SIGKILLed while the reducers wait (the
//! outputs are computed again and the reducers fetch the new ones); and a cluster of one
//! slot finishes (early reducers never hold the slot a map needs).

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{Cluster, Deadline, EVENTUALLY, http_get, metric_sample};
use crate::mapreduce::{
    coreutils_word_counts, find_files, read_word_counts, streaming_args, write_corpus,
};
use std::path::{Path, PathBuf};

/// A word-count mapper that sleeps `SECONDS` on a line starting with `SLOWDOWN`: the map
/// task of that file runs long after the others ended.
fn slow_mapper(seconds: u32) -> String {
    format!(
        r#"awk -F '[ \t\r\v\f]+' '{{ if ($1 == "SLOWDOWN") system("sleep {seconds}"); for (i = 1; i <= NF; i++) if ($i != "") print $i "\t1" }}'"#
    )
}

/// Like [`slow_mapper`], the slow line waiting for `gate` to exist instead (a minute
/// at most), so that a test acts while the map stage is surely not complete, however
/// loaded the machine.
fn gated_mapper(gate: &Path) -> String {
    let gate = gate.display();
    format!(
        r#"awk -F '[ \t\r\v\f]+' '{{ if ($1 == "SLOWDOWN") system("i=0; while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"); for (i = 1; i <= NF; i++) if ($i != "") print $i "\t1" }}'"#
    )
}

/// Sums the counts of each word.
const SUMMING_REDUCER: &str = r#"awk -F '\t' '$1 != k { if (NR > 1) print k "\t" n; k = $1; n = 0 } { n += $2 } END { if (NR > 0) print k "\t" n }'"#;

/// Writes `files` small corpus files and one slow file; returns them all.
fn corpus_with_a_slow_file(dir: &Path, files: usize, seed: u64) -> Vec<PathBuf> {
    let mut inputs = write_corpus(dir, files, 20_000, seed);
    let slow = dir.join("slow.txt");
    std::fs::write(&slow, "SLOWDOWN here\nw1 w2\n").unwrap();
    inputs.push(slow);
    inputs
}

/// Returns the coordinator's count of attempts started early.
fn early_attempts(cluster: &Cluster) -> f64 {
    let metrics = http_get(&cluster.url(), "/metrics");
    metric_sample(&metrics, "essaim_coordinator_early_attempts_total").unwrap_or(0.0)
}

/// Submits `args` (detached) and returns the job id.
async fn submit_detached(cluster: &Cluster, args: &[String]) -> u64 {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = cluster.cli(&[&args[..], &["--detach"]].concat()).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    run.stdout.trim().parse().unwrap()
}

/// Waits until the job's reducers run while its map stage is not complete.
async fn wait_for_early_reducers(cluster: &Cluster, job_id: u64) {
    let deadline = Deadline::after(EVENTUALLY, "reducers to start before the maps end");
    loop {
        deadline.tick().await;
        let job = cluster.job(job_id).await;
        assert_eq!(job.state, "running", "the job ended first: {job:?}");
        let (map, reduce) = (&job.stages[0], &job.stages[1]);
        if map.succeeded < map.total && reduce.running > 0 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reducers_start_before_the_maps_end_and_the_output_equals_coreutils() {
    let cluster = Cluster::start(2, 2).await;
    let corpus = cluster.path("corpus");
    let inputs = corpus_with_a_slow_file(&corpus, 6, 31);
    let oracle = coreutils_word_counts(&inputs);
    let mapper = slow_mapper(4);
    let early_before = early_attempts(&cluster);

    let output = cluster.path("early");
    let extra = ["--no-packing", "--slowstart", "0.05"];
    let args = streaming_args(&corpus, &output, &mapper, SUMMING_REDUCER, &extra);
    let job_id = submit_detached(&cluster, &args).await;
    wait_for_early_reducers(&cluster, job_id).await;
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(read_word_counts(&output, 2), oracle);
    // Each early reducer fetched the slow map's output in a round of its own.
    let rounds = job.counters.get("shuffle.rounds").copied().unwrap_or(0);
    assert!(rounds > 2, "{rounds} rounds: {:?}", job.counters);
    assert!(early_attempts(&cluster) >= early_before + 2.0);

    // Without slow start the reducers wait, fetch once, and the output is the same.
    let late_output = cluster.path("late");
    let extra = ["--no-packing", "--slowstart", "1.0"];
    let args = streaming_args(&corpus, &late_output, &mapper, SUMMING_REDUCER, &extra);
    let early_before = early_attempts(&cluster);
    let job_id = submit_detached(&cluster, &args).await;
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(read_word_counts(&late_output, 2), oracle);
    assert_eq!(
        job.counters.get("shuffle.rounds"),
        None,
        "{:?}",
        job.counters
    );
    assert_eq!(early_attempts(&cluster), early_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_early_reducers_wait_changes_no_output() {
    let mut cluster = Cluster::start(3, 1).await;
    let corpus = cluster.path("corpus");
    let inputs = corpus_with_a_slow_file(&corpus, 6, 37);
    let oracle = coreutils_word_counts(&inputs);
    let output = cluster.path("out");
    let gate = cluster.path("gate");
    let mapper = gated_mapper(&gate);
    let extra = ["--no-packing", "--slowstart", "0.05"];
    let args = streaming_args(&corpus, &output, &mapper, SUMMING_REDUCER, &extra);
    let job_id = submit_detached(&cluster, &args).await;
    wait_for_early_reducers(&cluster, job_id).await;

    // Kill a worker that serves committed map outputs (the reducers have fetched some
    // of them already), and bring another up.
    let victim = cluster
        .worker_names()
        .into_iter()
        .find(|name| {
            let scratch = cluster.path(&format!("{name}-scratch"));
            !find_files(&scratch, "map.out").is_empty()
        })
        .expect("a worker holds map outputs");
    eprintln!("SIGKILL {victim} while the reducers wait for the slow map");
    cluster.kill_worker(&victim);
    cluster.start_worker(1);
    std::fs::write(&gate, "").expect("open the gate");

    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    // Whether an output is lost depends on whether the early reducers had fetched the
    // victim's outputs before it died (they fetch each one as it commits); a lost one
    // is fetched again from its re-run. The simulation checks that path on every seed.
    eprintln!("outputs lost: {}", job.outputs_lost);
    assert_eq!(read_word_counts(&output, 2), oracle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_slot_cluster_finishes_with_reducers_allowed_at_once() {
    let cluster = Cluster::start(1, 1).await;
    let corpus = cluster.path("corpus");
    let inputs = corpus_with_a_slow_file(&corpus, 4, 41);
    let oracle = coreutils_word_counts(&inputs);
    let output = cluster.path("out");
    let mapper = slow_mapper(1);
    let extra = ["--no-packing", "--slowstart", "0"];
    let args = streaming_args(&corpus, &output, &mapper, SUMMING_REDUCER, &extra);
    let job_id = submit_detached(&cluster, &args).await;
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(read_word_counts(&output, 2), oracle);
}
