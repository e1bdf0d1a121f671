//! Throughput against the number of workers (question 1), and the cost in core-seconds
//! per GB of the CPU-bound runs (question 5), which come from the same word counts.
//!
//! Two workloads, each on a fresh cluster per worker count:
//! - **I/O-bound**: `sleep` tasks. A sleeping slot holds no core, so throughput should
//!   grow with the slots even past the machine's cores. Each run gives every slot the
//!   same number of tasks, so a run lasts about as long at every worker count.
//! - **CPU-bound**: the `wordcount` MapReduce job over a generated corpus, with one slot
//!   per worker so that the number of workers is the number of map tasks running at
//!   once. On a 2-core machine it cannot go faster than two workers.
//!
//! Durations are the coordinator's: from the job's submission to its commit, read from
//! the REST API, so neither the client's start-up nor its polling is counted. CPU time is
//! read from `/proc` just before the submission and just after the commit, summed over
//! the coordinator and the workers.
//!
//! The machine is shared, so every run also measures what the rest of the machine used
//! meanwhile (its busy time minus the cluster's). A run during which other processes kept
//! more than [`DISTURBED_OTHERS_CORES`] of a core busy is repeated, at most
//! [`ATTEMPTS_PER_RUN`] times in all; the last attempt is kept, with what disturbed it.

use crate::cluster::{
    ClusterOptions, CpuSample, EvalCluster, job_seconds, job_spec, sleep_task, submit, wait_job,
};
use crate::corpus;
use crate::procstat;
use crate::stats::{efficiency, median, speedup};
use crate::{Host, Plan, say};
use essaim_mapreduce::plan::prepare_output_dir;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest one measured job may take before the scenario fails.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Cores other processes may keep busy during a run before it counts as disturbed.
const DISTURBED_OTHERS_CORES: f64 = 0.3;
/// Attempts at one run; after the last, a disturbed run is kept anyway.
const ATTEMPTS_PER_RUN: usize = 3;
/// Reduce tasks of the word count.
const REDUCERS: u32 = 4;
/// Map tasks of the word count: enough for 8 one-slot workers twice over, and few
/// enough that each split is large and a task's fixed costs (its pull, its spill
/// files, its commit) stay small next to its counting.
const MAP_TASKS: u64 = 16;

/// One worker count of a scaling curve.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingPoint {
    /// Worker processes.
    pub workers: usize,
    /// Slots of each.
    pub slots_per_worker: u32,
    /// Throughput of each repeat (tasks/s or MB/s, see the curve's unit).
    pub runs: Vec<f64>,
    /// Median over the repeats.
    pub median: f64,
    /// Median over the one-worker median.
    pub speedup: Option<f64>,
    /// Speed-up over the number of workers.
    pub efficiency: Option<f64>,
    /// Cores other processes kept busy during each kept run.
    pub others_cores: Vec<Option<f64>>,
    /// Runs repeated because other processes disturbed them.
    pub disturbed_runs_repeated: usize,
}

/// A throughput curve.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingCurve {
    /// `tasks/s` or `MB/s`.
    pub unit: &'static str,
    /// One point per worker count, in increasing order.
    pub points: Vec<ScalingPoint>,
}

/// The I/O-bound curve.
#[derive(Debug, Clone, Serialize)]
pub struct SleepScaling {
    /// Duration of each task, ms.
    pub task_ms: u64,
    /// Tasks per slot in each run.
    pub tasks_per_slot: u32,
    /// Throughput in tasks/s.
    pub curve: ScalingCurve,
}

/// One word count.
#[derive(Debug, Clone, Serialize)]
pub struct WordcountRun {
    /// Worker processes (one slot each).
    pub workers: usize,
    /// Submission to commit, s.
    pub seconds: f64,
    /// Input MB (10⁶ bytes) per second.
    pub mb_per_s: f64,
    /// CPU seconds of the coordinator during the job.
    pub cpu_coordinator_s: f64,
    /// CPU seconds of the workers during the job.
    pub cpu_workers_s: f64,
    /// (coordinator + workers) CPU seconds per GB (10⁹ bytes) of input.
    pub core_seconds_per_gb: f64,
    /// Busy time of the committed attempts, summed over the slots, s.
    pub busy_s: f64,
    /// Busy time over (wall time × slots): how much of the time the slots ran a task.
    pub slot_utilisation: f64,
    /// Cores the rest of the machine (other processes, the evaluation itself) kept
    /// busy during the job: what competed with the cluster for the cores.
    pub others_cores: Option<f64>,
}

/// The cost at one worker count.
#[derive(Debug, Clone, Serialize)]
pub struct CostPoint {
    /// Worker processes.
    pub workers: usize,
    /// Median core-seconds per GB.
    pub core_seconds_per_gb: f64,
    /// Median share of the coordinator in it.
    pub coordinator_share: f64,
    /// Median wall seconds per GB: what the cores cost in time.
    pub wall_seconds_per_gb: f64,
    /// Median cores the cluster kept busy: its CPU seconds over the wall seconds.
    pub cores_used: f64,
    /// Median cores the rest of the machine kept busy meanwhile.
    pub cores_used_by_others: Option<f64>,
}

/// The CPU-bound curve and its cost.
#[derive(Debug, Clone, Serialize)]
pub struct WordcountScaling {
    /// Input size, bytes.
    pub corpus_bytes: u64,
    /// Map tasks of each run.
    pub map_tasks: u32,
    /// Reduce tasks of each run.
    pub reducers: u32,
    /// Whether the first run's output was compared with the count made while writing
    /// the corpus, word by word, and matched.
    pub output_matches_oracle: bool,
    /// Throughput in MB/s.
    pub curve: ScalingCurve,
    /// Every run.
    pub runs: Vec<WordcountRun>,
    /// Cost per worker count.
    pub cost: Vec<CostPoint>,
}

/// Measures sleep-task throughput at each worker count of the plan.
pub async fn sleep_scaling(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
) -> anyhow::Result<SleepScaling> {
    let slots = plan.sleep_slots;
    let mut points = Vec::new();
    for &workers in &plan.scaling_workers {
        let dir = workdir.join(format!("scaling-sleep-{workers}"));
        let cluster = EvalCluster::start(
            host,
            &dir,
            &ClusterOptions::default(),
            &vec![slots; workers],
        )
        .await?;
        let mut client = cluster.client();
        // Warm-up: connections, the journal's first pages, the workers' task-duration
        // estimate (which sets their prefetch).
        let warm_up = (0..workers as u32 * slots).map(|_| sleep_task(plan.sleep_ms));
        let job_id = submit(&mut client, job_spec("warm-up", warm_up.collect())).await?;
        wait_job(&mut client, job_id, JOB_TIMEOUT).await?;
        let tasks = plan.sleep_tasks_per_slot * workers as u32 * slots;
        let mut runs = Vec::new();
        let mut others = Vec::new();
        let mut repeated = 0;
        for repeat in 0..plan.repeats {
            for attempt in 1..=ATTEMPTS_PER_RUN {
                let meter = OthersMeter::start(&cluster);
                let spec = job_spec(
                    "scaling-sleep",
                    (0..tasks).map(|_| sleep_task(plan.sleep_ms)).collect(),
                );
                let job_id = submit(&mut client, spec).await?;
                let status = wait_job(&mut client, job_id, JOB_TIMEOUT).await?;
                let others_cores = meter.others_cores(&cluster);
                anyhow::ensure!(status.state == "succeeded", "sleep job ended {status:?}");
                let detail = cluster.job_detail(job_id).await?;
                let seconds = job_seconds(&detail)
                    .ok_or_else(|| anyhow::anyhow!("job {job_id} has no finish time"))?;
                let throughput = f64::from(tasks) / seconds;
                say(&format!(
                    "throughput, sleep {} ms: {workers} workers × {slots} slots, run {}/{}: {tasks} tasks in {seconds:.2} s = {throughput:.0} tasks/s; other processes: {} cores",
                    plan.sleep_ms,
                    repeat + 1,
                    plan.repeats,
                    cores_text(others_cores)
                ));
                if !disturbed(others_cores) || attempt == ATTEMPTS_PER_RUN {
                    runs.push(throughput);
                    others.push(others_cores);
                    break;
                }
                say("disturbed by other processes: repeating the run");
                repeated += 1;
            }
        }
        cluster.stop().await?;
        points.push(point(workers, slots, runs, others, repeated));
    }
    Ok(SleepScaling {
        task_ms: plan.sleep_ms,
        tasks_per_slot: plan.sleep_tasks_per_slot,
        curve: curve("tasks/s", points),
    })
}

/// Measures word-count throughput and cost at each worker count of the plan.
pub async fn wordcount_scaling(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
) -> anyhow::Result<WordcountScaling> {
    let corpus = workdir.join("corpus");
    say(&format!(
        "writing a {} MB corpus for the word count…",
        plan.corpus_mb
    ));
    let writing = std::time::Instant::now();
    let oracle = tokio::task::spawn_blocking({
        let corpus = corpus.clone();
        let bytes = plan.corpus_mb * 1_000_000;
        move || crate::corpus::write_corpus(&corpus, bytes, 4, 42)
    })
    .await??;
    say(&format!(
        "corpus written in {:.1} s",
        writing.elapsed().as_secs_f64()
    ));
    let mut runs = Vec::new();
    let mut points = Vec::new();
    let mut output_matches_oracle = false;
    let mut map_tasks = 0;
    let mut corpus_bytes = 0;
    for &workers in &plan.scaling_workers {
        let dir = workdir.join(format!("scaling-wordcount-{workers}"));
        let cluster =
            EvalCluster::start(host, &dir, &ClusterOptions::default(), &vec![1; workers]).await?;
        let mut throughputs = Vec::new();
        let mut others = Vec::new();
        let mut repeated = 0;
        for repeat in 0..plan.repeats {
            let output = dir.join(format!("counts-{repeat}"));
            for attempt in 1..=ATTEMPTS_PER_RUN {
                let run = wordcount_once(host, plan, &cluster, &corpus, &output, workers).await?;
                if runs.is_empty() && !output_matches_oracle {
                    output_matches_oracle = matches_oracle(&output, &oracle)?;
                }
                map_tasks = run.map_tasks;
                corpus_bytes = run.input_bytes;
                say(&format!(
                    "throughput, word count: {workers} workers × 1 slot, run {}/{}: {:.2} s = {:.0} MB/s, {:.1} core-s/GB, slots busy {:.0}% of the time; other processes: {} cores",
                    repeat + 1,
                    plan.repeats,
                    run.run.seconds,
                    run.run.mb_per_s,
                    run.run.core_seconds_per_gb,
                    run.run.slot_utilisation * 100.0,
                    cores_text(run.run.others_cores)
                ));
                // The outputs are checked once; the others only take disk space.
                let _ = std::fs::remove_dir_all(&output);
                if !disturbed(run.run.others_cores) || attempt == ATTEMPTS_PER_RUN {
                    throughputs.push(run.run.mb_per_s);
                    others.push(run.run.others_cores);
                    runs.push(run.run);
                    break;
                }
                say("disturbed by other processes: repeating the run");
                repeated += 1;
            }
        }
        cluster.stop().await?;
        points.push(point(workers, 1, throughputs, others, repeated));
    }
    let _ = std::fs::remove_dir_all(&corpus);
    let cost = cost_points(&runs, corpus_bytes);
    Ok(WordcountScaling {
        corpus_bytes,
        map_tasks,
        reducers: REDUCERS,
        output_matches_oracle,
        curve: curve("MB/s", points),
        runs,
        cost,
    })
}

struct MeasuredWordcount {
    run: WordcountRun,
    map_tasks: u32,
    input_bytes: u64,
}

async fn wordcount_once(
    host: &dyn Host,
    plan: &Plan,
    cluster: &EvalCluster,
    corpus: &Path,
    output: &Path,
    workers: usize,
) -> anyhow::Result<MeasuredWordcount> {
    let split_bytes = (plan.corpus_mb * 1_000_000).div_ceil(MAP_TASKS);
    let planned = corpus::plan_wordcount(&host.jobs(), corpus, output, REDUCERS, split_bytes)?;
    prepare_output_dir(output, true)?;
    let mut client = cluster.client();
    let meter = OthersMeter::start(cluster);
    let before = cluster.cpu();
    let job_id = host.submit_planned(&mut client, &planned).await?;
    let status = wait_job(&mut client, job_id, JOB_TIMEOUT).await?;
    let after = cluster.cpu();
    let others_cores = meter.others_cores(cluster);
    anyhow::ensure!(status.state == "succeeded", "word count ended {status:?}");
    let detail = cluster.job_detail(job_id).await?;
    let seconds =
        job_seconds(&detail).ok_or_else(|| anyhow::anyhow!("job {job_id} has no finish time"))?;
    let cpu_coordinator_s = (after.coordinator - before.coordinator).max(0.0);
    let cpu_workers_s = (after.workers - before.workers).max(0.0);
    let gigabytes = planned.input_bytes as f64 / 1e9;
    let busy_s = detail
        .history
        .workers
        .iter()
        .map(|share| share.busy_ms as f64 / 1000.0)
        .sum::<f64>();
    Ok(MeasuredWordcount {
        run: WordcountRun {
            workers,
            seconds,
            mb_per_s: planned.input_bytes as f64 / 1e6 / seconds,
            cpu_coordinator_s,
            cpu_workers_s,
            core_seconds_per_gb: (cpu_coordinator_s + cpu_workers_s) / gigabytes,
            busy_s,
            slot_utilisation: busy_s / (seconds * workers as f64),
            others_cores,
        },
        map_tasks: planned.map_tasks,
        input_bytes: planned.input_bytes,
    })
}

/// Compares the committed output with the count made while writing the corpus.
fn matches_oracle(output: &Path, oracle: &HashMap<Vec<u8>, u64>) -> anyhow::Result<bool> {
    let (_, mismatch) = corpus::compare(output, REDUCERS, oracle)?;
    if let Some(problem) = &mismatch {
        say(&format!("word count output does NOT match: {problem}"));
    }
    Ok(mismatch.is_none())
}

/// Returns the cost per worker count: medians over that count's runs.
fn cost_points(runs: &[WordcountRun], corpus_bytes: u64) -> Vec<CostPoint> {
    let mut worker_counts: Vec<usize> = runs.iter().map(|run| run.workers).collect();
    worker_counts.dedup();
    let gigabytes = corpus_bytes as f64 / 1e9;
    let mut points = Vec::new();
    for workers in worker_counts {
        let these: Vec<&WordcountRun> = runs.iter().filter(|run| run.workers == workers).collect();
        let per_gb: Vec<f64> = these.iter().map(|run| run.core_seconds_per_gb).collect();
        let coordinator_share: Vec<f64> = these
            .iter()
            .map(|run| run.cpu_coordinator_s / (run.cpu_coordinator_s + run.cpu_workers_s))
            .collect();
        let wall: Vec<f64> = these.iter().map(|run| run.seconds / gigabytes).collect();
        let cores: Vec<f64> = these
            .iter()
            .map(|run| (run.cpu_coordinator_s + run.cpu_workers_s) / run.seconds)
            .collect();
        let others: Vec<f64> = these.iter().filter_map(|run| run.others_cores).collect();
        points.push(CostPoint {
            workers,
            core_seconds_per_gb: median(&per_gb).unwrap_or(f64::NAN),
            coordinator_share: median(&coordinator_share).unwrap_or(f64::NAN),
            wall_seconds_per_gb: median(&wall).unwrap_or(f64::NAN),
            cores_used: median(&cores).unwrap_or(f64::NAN),
            cores_used_by_others: median(&others),
        });
    }
    points
}

pub(crate) fn point(
    workers: usize,
    slots_per_worker: u32,
    runs: Vec<f64>,
    others_cores: Vec<Option<f64>>,
    disturbed_runs_repeated: usize,
) -> ScalingPoint {
    ScalingPoint {
        workers,
        slots_per_worker,
        median: median(&runs).unwrap_or(f64::NAN),
        runs,
        speedup: None,
        efficiency: None,
        others_cores,
        disturbed_runs_repeated,
    }
}

/// What the rest of the machine does while the cluster runs: the machine's busy time
/// minus the cluster's, from `/proc`, over the wall time of the measurement.
struct OthersMeter {
    started: Instant,
    machine_busy_s: Option<f64>,
    cluster: CpuSample,
}

impl OthersMeter {
    fn start(cluster: &EvalCluster) -> Self {
        Self {
            started: Instant::now(),
            machine_busy_s: procstat::machine_busy_seconds(),
            cluster: cluster.cpu(),
        }
    }

    /// Returns the cores the rest of the machine kept busy since the start, on average.
    fn others_cores(&self, cluster: &EvalCluster) -> Option<f64> {
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let machine_s = procstat::machine_busy_seconds()? - self.machine_busy_s?;
        let now = cluster.cpu();
        let cluster_s =
            (now.coordinator - self.cluster.coordinator) + (now.workers - self.cluster.workers);
        Some(((machine_s - cluster_s) / elapsed_s).max(0.0))
    }
}

/// Whether other processes used enough of the machine to disturb a measurement.
fn disturbed(others_cores: Option<f64>) -> bool {
    others_cores.is_some_and(|cores| cores > DISTURBED_OTHERS_CORES)
}

fn cores_text(cores: Option<f64>) -> String {
    cores.map_or_else(|| "unknown".into(), |cores| format!("{cores:.2}"))
}

/// Completes the points with their speed-up and efficiency against one worker.
pub(crate) fn curve(unit: &'static str, mut points: Vec<ScalingPoint>) -> ScalingCurve {
    let baseline = points
        .iter()
        .find(|point| point.workers == 1)
        .map(|point| point.median);
    for point in &mut points {
        point.speedup = baseline.and_then(|baseline| speedup(point.median, baseline));
        point.efficiency = point
            .speedup
            .and_then(|speedup| efficiency(speedup, point.workers));
    }
    ScalingCurve { unit, points }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speedups_are_against_the_one_worker_median() {
        let curve = curve(
            "tasks/s",
            vec![
                point(1, 2, vec![90.0, 100.0, 110.0], Vec::new(), 0),
                point(2, 2, vec![190.0, 200.0, 230.0], Vec::new(), 0),
                point(4, 2, vec![360.0], Vec::new(), 0),
            ],
        );
        let speedups: Vec<Option<f64>> = curve.points.iter().map(|p| p.speedup).collect();
        assert_eq!(speedups, vec![Some(1.0), Some(2.0), Some(3.6)]);
        assert_eq!(curve.points[2].efficiency, Some(0.9));
    }

    #[test]
    fn only_runs_with_busy_neighbours_are_disturbed() {
        assert!(!disturbed(None));
        assert!(!disturbed(Some(0.1)));
        assert!(disturbed(Some(0.9)));
    }

    #[test]
    fn cost_is_the_median_per_worker_count() {
        let run = |workers, coordinator, workers_cpu| WordcountRun {
            workers,
            seconds: 1.0,
            mb_per_s: 500.0,
            cpu_coordinator_s: coordinator,
            cpu_workers_s: workers_cpu,
            core_seconds_per_gb: (coordinator + workers_cpu) / 0.5,
            busy_s: 1.0,
            slot_utilisation: 1.0,
            others_cores: None,
        };
        let runs = vec![
            run(1, 0.1, 0.9),
            run(1, 0.1, 1.9),
            run(1, 0.1, 0.4),
            run(2, 0.2, 1.8),
        ];
        let cost = cost_points(&runs, 500_000_000);
        assert_eq!(cost.len(), 2);
        assert!((cost[0].core_seconds_per_gb - 2.0).abs() < 1e-9);
        assert!((cost[0].coordinator_share - 0.1).abs() < 1e-9);
        assert!((cost[1].core_seconds_per_gb - 4.0).abs() < 1e-9);
        assert!((cost[1].wall_seconds_per_gb - 2.0).abs() < 1e-9);
        // 2 CPU seconds in 1 wall second; nothing known about other processes.
        assert!((cost[1].cores_used - 2.0).abs() < 1e-9);
        assert_eq!(cost[1].cores_used_by_others, None);
    }
}
