//! Recovery after a crash and after a partition (question 3).
//!
//! **Crash.** A worker holding running tasks is killed with SIGKILL. The coordinator
//! notices when the worker has been silent for `--worker-timeout-ms` (checked on its
//! periodic tick), re-queues the worker's attempts, and idle workers pull them. Two
//! instants are measured from the kill, polling the job every 5 ms: when the attempts are
//! re-queued (the job's failed attempts grow by what the victim held), and when every
//! task is running again, elsewhere. The cluster keeps enough free slots on the other
//! workers for the victim's tasks, so the second instant measures the platform, not a
//! wait for a slot.
//!
//! **Partition.** A worker is frozen with SIGSTOP for longer than the worker timeout,
//! then resumed with SIGCONT. Its commands keep running while it is frozen (they are
//! processes of their own), so it wakes up with results to report, from attempts whose
//! leases have expired and whose tasks ran elsewhere. Those late results must not count:
//! either the coordinator rejects them (`results_rejected`) or the worker drops them
//! itself once it learns its session is over (which it logs at debug level). Then every
//! task's committed output is checked: present once, and the right value.

use crate::cluster::{
    ClusterOptions, EvalCluster, job_spec, job_status, results, sleep_task, submit, wait_job,
};
use crate::stats::{median, min_max};
use crate::{Host, Plan, say};
use essaim_proto::v1;
use nix::sys::signal::Signal;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Period of the polls that time the recovery.
const POLL_PERIOD: Duration = Duration::from_millis(5);
/// Workers × slots of the crash scenario, and its long tasks (more than the victim's
/// slots are free elsewhere: 8 slots, 6 tasks).
const CRASH_WORKERS: usize = 4;
const CRASH_SLOTS: u32 = 2;
const CRASH_TASKS: u32 = 6;
/// How long the frozen worker stays frozen, in worker timeouts.
const FREEZE_TIMEOUTS: f64 = 2.5;

/// One SIGKILL.
#[derive(Debug, Clone, Serialize)]
pub struct CrashRun {
    /// Attempts the victim held when it was killed.
    pub held: u32,
    /// Kill → its attempts re-queued, s.
    pub requeued_s: f64,
    /// Kill → every task running again, s.
    pub running_elsewhere_s: f64,
}

/// The crash runs of one worker timeout.
#[derive(Debug, Clone, Serialize)]
pub struct CrashCase {
    /// `--worker-timeout-ms`.
    pub worker_timeout_ms: u64,
    /// `--heartbeat-ms`.
    pub heartbeat_ms: u64,
    /// Every repeat.
    pub runs: Vec<CrashRun>,
    /// Median of `requeued_s`.
    pub median_requeued_s: f64,
    /// Median of `running_elsewhere_s`.
    pub median_running_elsewhere_s: f64,
    /// Smallest and largest `running_elsewhere_s`.
    pub running_elsewhere_range_s: (f64, f64),
}

/// One SIGSTOP … SIGCONT.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionRun {
    /// `--worker-timeout-ms`.
    pub worker_timeout_ms: u64,
    /// How long the worker was frozen, s.
    pub frozen_s: f64,
    /// Attempts running on it when it was frozen: the results that arrive late.
    pub running_at_freeze: u32,
    /// Freeze → its attempts re-queued, s.
    pub requeued_s: f64,
    /// Late results the coordinator rejected (`results_rejected`).
    pub results_rejected: u64,
    /// Late results the worker dropped itself (from its debug log).
    pub dropped_by_worker: u64,
    /// Tasks of the job.
    pub tasks: u32,
    /// Whether the job succeeded with exactly one result per task, each the expected
    /// output.
    pub output_complete_and_correct: bool,
}

/// Both scenarios.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// One case per worker timeout.
    pub crash: Vec<CrashCase>,
    /// Every partition repeat.
    pub partition: Vec<PartitionRun>,
}

/// Runs both scenarios.
pub async fn recovery(host: &dyn Host, plan: &Plan, workdir: &Path) -> anyhow::Result<Recovery> {
    let mut crash = Vec::new();
    for &timeout_ms in &plan.recovery_timeouts_ms {
        crash.push(crash_case(host, plan, workdir, timeout_ms).await?);
    }
    let mut partition = Vec::new();
    for repeat in 0..plan.repeats {
        let dir = workdir.join(format!("partition-{repeat}"));
        let run = partition_run(host, plan, &dir).await?;
        say(&format!(
            "partition, run {}/{}: frozen {:.1} s with {} running; re-queued after {:.2} s; {} late results rejected by the coordinator, {} dropped by the worker; output complete and correct: {}",
            repeat + 1,
            plan.repeats,
            run.frozen_s,
            run.running_at_freeze,
            run.requeued_s,
            run.results_rejected,
            run.dropped_by_worker,
            run.output_complete_and_correct
        ));
        partition.push(run);
    }
    Ok(Recovery { crash, partition })
}

/// Returns the heartbeat period used with `timeout_ms`: the coordinator's default of
/// 1 s with its default timeout, a fifth of a shorter one (as the benchmarks do).
pub fn heartbeat_for(timeout_ms: u64) -> u64 {
    if timeout_ms >= 5000 {
        1000
    } else {
        (timeout_ms / 5).max(50)
    }
}

fn options(timeout_ms: u64) -> ClusterOptions {
    ClusterOptions {
        worker_timeout: Duration::from_millis(timeout_ms),
        heartbeat: Duration::from_millis(heartbeat_for(timeout_ms)),
        drain_target_secs: None,
    }
}

async fn crash_case(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
    timeout_ms: u64,
) -> anyhow::Result<CrashCase> {
    let dir = workdir.join(format!("crash-{timeout_ms}"));
    let mut cluster = EvalCluster::start(
        host,
        &dir,
        &options(timeout_ms),
        &[CRASH_SLOTS; CRASH_WORKERS],
    )
    .await?;
    let mut client = cluster.client();
    let mut runs = Vec::new();
    for repeat in 0..plan.crash_repeats {
        let spec = job_spec(
            "crash",
            (0..CRASH_TASKS).map(|_| sleep_task(600_000)).collect(),
        );
        let job_id = submit(&mut client, spec).await?;
        let job = poll_until(&mut client, job_id, "every task to run", |job| {
            job.running == CRASH_TASKS
        })
        .await?;
        let failed_before = job.attempts_failed;
        let victim = cluster
            .workers_view()
            .await?
            .into_iter()
            .max_by_key(|worker| worker.held_attempts)
            .ok_or_else(|| anyhow::anyhow!("no worker"))?;
        let held = victim.held_attempts;
        cluster.signal_worker(&victim.name, Signal::SIGKILL)?;
        let killed_at = Instant::now();
        let requeued = poll_until(
            &mut client,
            job_id,
            "the victim's attempts to be re-queued",
            |job| job.attempts_failed >= failed_before + u64::from(held),
        )
        .await?;
        let requeued_s = killed_at.elapsed().as_secs_f64();
        // Already running everywhere at the re-queue poll if the grants were that quick.
        if requeued.running != CRASH_TASKS {
            poll_until(&mut client, job_id, "every task to run again", |job| {
                job.running == CRASH_TASKS
            })
            .await?;
        }
        let running_elsewhere_s = killed_at.elapsed().as_secs_f64();
        say(&format!(
            "recovery after SIGKILL, worker timeout {timeout_ms} ms, run {}/{}: {held} attempts re-queued after {requeued_s:.3} s, all running again after {running_elsewhere_s:.3} s",
            repeat + 1,
            plan.crash_repeats
        ));
        runs.push(CrashRun {
            held,
            requeued_s,
            running_elsewhere_s,
        });
        // Back to the starting point: no job, four workers.
        client.cancel_job(v1::CancelJobRequest { job_id }).await?;
        cluster
            .wait_worker_exit(&victim.name, Duration::from_secs(10))
            .await?;
        cluster.add_worker(CRASH_SLOTS, false)?;
        cluster.wait_for_workers(CRASH_WORKERS).await?;
    }
    cluster.stop().await?;
    let running: Vec<f64> = runs.iter().map(|run| run.running_elsewhere_s).collect();
    let requeued: Vec<f64> = runs.iter().map(|run| run.requeued_s).collect();
    Ok(CrashCase {
        worker_timeout_ms: timeout_ms,
        heartbeat_ms: heartbeat_for(timeout_ms),
        median_requeued_s: median(&requeued).unwrap_or(f64::NAN),
        median_running_elsewhere_s: median(&running).unwrap_or(f64::NAN),
        running_elsewhere_range_s: min_max(&running).unwrap_or((f64::NAN, f64::NAN)),
        runs,
    })
}

/// The value the partition job's task `index` prints.
fn expected_output(index: u32) -> String {
    format!("{}\n", u64::from(index) * 7 + 3)
}

async fn partition_run(host: &dyn Host, plan: &Plan, dir: &Path) -> anyhow::Result<PartitionRun> {
    let timeout_ms = plan.partition_timeout_ms;
    let mut cluster = EvalCluster::start(host, dir, &options(timeout_ms), &[2]).await?;
    let victim = cluster.add_worker(2, true)?;
    cluster.wait_for_workers(2).await?;
    let mut client = cluster.client();
    let task = v1::TaskSpec {
        kind: "command".into(),
        payload: serde_json::json!({
            "argv": ["sh", "-c", "sleep 0.25; echo $((ESSAIM_TASK_INDEX * 7 + 3))"]
        })
        .to_string()
        .into_bytes(),
        ..Default::default()
    };
    let tasks = plan.partition_tasks;
    let mut spec = job_spec("partition", vec![task; tasks as usize]);
    spec.max_attempts = 10;
    let job_id = submit(&mut client, spec).await?;
    // Mid-job, with the victim busy: a few commits done, and attempts on it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let running_at_freeze = loop {
        let job = job_status(&mut client, job_id).await?;
        let on_victim = cluster
            .workers_view()
            .await?
            .into_iter()
            .find(|worker| worker.name == victim)
            .map_or(0, |worker| worker.busy_slots);
        if job.succeeded >= 4 && on_victim > 0 {
            break on_victim;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the victim never ran a task: {job:?}"
        );
        tokio::time::sleep(POLL_PERIOD).await;
    };
    let failed_before = job_status(&mut client, job_id).await?.attempts_failed;
    cluster.signal_worker(&victim, Signal::SIGSTOP)?;
    let frozen_at = Instant::now();
    let frozen_for = Duration::from_secs_f64(timeout_ms as f64 / 1000.0 * FREEZE_TIMEOUTS);
    poll_until(
        &mut client,
        job_id,
        "the frozen worker's attempts to be re-queued",
        |job| job.attempts_failed >= failed_before + u64::from(running_at_freeze),
    )
    .await?;
    let requeued_s = frozen_at.elapsed().as_secs_f64();
    tokio::time::sleep(frozen_for.saturating_sub(frozen_at.elapsed())).await;
    cluster.signal_worker(&victim, Signal::SIGCONT)?;
    let frozen_s = frozen_at.elapsed().as_secs_f64();
    let status = wait_job(&mut client, job_id, Duration::from_secs(120)).await?;

    // The late results meet one fence or the other soon after the worker wakes up.
    let log = cluster
        .worker_log(&victim)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("no log for {victim}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (results_rejected, dropped_by_worker) = loop {
        let rejected = job_status(&mut client, job_id).await?.results_rejected;
        let dropped = dropped_results(&std::fs::read_to_string(&log).unwrap_or_default());
        let all_fenced = rejected + dropped >= u64::from(running_at_freeze);
        if all_fenced || Instant::now() > deadline {
            break (rejected, dropped);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let committed = results(&mut client, job_id).await?;
    let mut seen = vec![0u32; tasks as usize];
    let mut outputs_right = true;
    for result in &committed {
        let Some(count) = seen.get_mut(result.task_index as usize) else {
            outputs_right = false;
            continue;
        };
        *count += 1;
        let text = result
            .output
            .as_ref()
            .map(|output| String::from_utf8_lossy(&output.inline).into_owned())
            .unwrap_or_default();
        outputs_right &= text == expected_output(result.task_index);
    }
    let each_once = seen.iter().all(|count| *count == 1);
    cluster.stop().await?;
    Ok(PartitionRun {
        worker_timeout_ms: timeout_ms,
        frozen_s,
        running_at_freeze,
        requeued_s,
        results_rejected,
        dropped_by_worker,
        tasks,
        output_complete_and_correct: status.state == "succeeded" && each_once && outputs_right,
    })
}

/// Counts the attempt results a worker's JSON debug log says it dropped instead of
/// reporting: those of an older registration, those it held when it learnt it was no
/// longer registered, and attempts the coordinator had cancelled.
fn dropped_results(log: &str) -> u64 {
    let mut dropped = 0;
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &event["fields"];
        let message = fields["message"].as_str().unwrap_or_default();
        if message.starts_with("dropping results") {
            dropped += fields["dropped"].as_u64().unwrap_or(1);
        } else if message == "cancelled attempt ended; not reported" {
            dropped += 1;
        }
    }
    dropped
}

/// Polls job `job_id` every 5 ms until `done`, for at most a minute.
async fn poll_until(
    client: &mut essaim_proto::CoordinatorClient,
    job_id: u64,
    what: &str,
    done: impl Fn(&v1::JobStatus) -> bool,
) -> anyhow::Result<v1::JobStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = job_status(client, job_id).await?;
        if done(&job) {
            return Ok(job);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {job:?}"
        );
        tokio::time::sleep(POLL_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_results_are_counted_from_the_json_log() {
        let log = [
            r#"{"timestamp":"t","level":"DEBUG","fields":{"message":"dropping results of an older registration","dropped":2},"target":"essaim_worker::report"}"#,
            r#"{"timestamp":"t","level":"DEBUG","fields":{"message":"cancelled attempt ended; not reported","attempt":"1f"},"target":"essaim_worker::dispatch"}"#,
            r#"{"timestamp":"t","level":"INFO","fields":{"message":"registered","generation":2},"target":"essaim_worker"}"#,
            "not json at all",
        ]
        .join("\n");
        assert_eq!(dropped_results(&log), 3);
        assert_eq!(dropped_results(""), 0);
    }

    #[test]
    fn heartbeats_follow_the_timeout() {
        assert_eq!(heartbeat_for(5000), 1000);
        assert_eq!(heartbeat_for(1000), 200);
        assert_eq!(heartbeat_for(100), 50);
    }

    #[test]
    fn partition_outputs_are_a_function_of_the_index() {
        assert_eq!(expected_output(0), "3\n");
        assert_eq!(expected_output(5), "38\n");
    }
}
