//! Behaviour under a changing cluster (question 4): one long job of short `sleep` tasks
//! while the cluster scales out from 2 to 4 workers and back in to 2 by draining.
//!
//! The job starts on 2 workers. After one phase, 2 workers are started; after the
//! second, the 2 original workers get SIGTERM, which drains them: they stop pulling, hand
//! back the tasks they have not started, finish the running ones and leave. Once a
//! second, `/api/v1/overview` is sampled for the live workers and the queue statistics,
//! with `recommended_workers`, the number an autoscaler would act on. At the end the
//! coordinator's per-second throughput series gives the committed tasks of every second.
//!
//! The coordinator runs with a drain target (`--drain-target-secs`) of the order of the
//! job's length rather than its default of 5 minutes, so that the recommendation reacts
//! to a backlog this size instead of calling one worker enough.

use crate::cluster::{ClusterOptions, EvalCluster, job_seconds, job_spec, sleep_task, submit};
use crate::stats::median;
use crate::{Host, Plan, say};
use nix::sys::signal::Signal;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Slots of every worker.
const SLOTS: u32 = 2;
/// Workers at the start and end, and after scaling out.
const SMALL: usize = 2;
const LARGE: usize = 4;
/// Longest the job may run past its planned end before the scenario fails.
const OVERRUN: Duration = Duration::from_secs(120);

/// One sample of `/api/v1/overview`.
#[derive(Debug, Clone, Serialize)]
pub struct OverviewSample {
    /// Seconds since the job's submission.
    pub t_s: f64,
    /// Live workers.
    pub workers: u32,
    /// Their slots.
    pub slots: u64,
    /// Busy slots.
    pub busy_slots: u64,
    /// Tasks waiting for a slot.
    pub tasks_waiting: u64,
    /// `essaim_coordinator_queue_recommended_workers`.
    pub recommended_workers: Option<u64>,
    /// The completion rate (moving average), tasks/s.
    pub completion_rate: Option<f64>,
}

/// Committed tasks in one second.
#[derive(Debug, Clone, Serialize)]
pub struct SecondOfThroughput {
    /// Start of the second, seconds since the job's submission.
    pub t_s: f64,
    /// Tasks committed in it.
    pub committed: u64,
}

/// A scaling action.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingEvent {
    /// Seconds since the job's submission.
    pub t_s: f64,
    /// What was done.
    pub what: String,
}

/// Throughput in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// E.g. `2 workers`.
    pub label: String,
    /// Start, s since submission.
    pub from_s: f64,
    /// End, s since submission.
    pub to_s: f64,
    /// Median of the committed tasks of the whole seconds inside the phase (the
    /// seconds that straddle a change are left out).
    pub median_committed_per_s: Option<f64>,
}

/// The scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct Elasticity {
    /// Task length, ms.
    pub task_ms: u64,
    /// Slots per worker.
    pub slots_per_worker: u32,
    /// Tasks of the job.
    pub tasks: u32,
    /// `--drain-target-secs` of the coordinator.
    pub drain_target_secs: f64,
    /// Submission to commit, s.
    pub job_seconds: f64,
    /// Whether the job succeeded with every task committed.
    pub all_committed: bool,
    /// Scaling actions.
    pub events: Vec<ScalingEvent>,
    /// The phases between them.
    pub phases: Vec<Phase>,
    /// Committed tasks per second.
    pub throughput: Vec<SecondOfThroughput>,
    /// Overview samples, one a second.
    pub samples: Vec<OverviewSample>,
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Runs the scenario.
pub async fn elasticity(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
) -> anyhow::Result<Elasticity> {
    let phase = Duration::from_secs(plan.phase_secs);
    // Slot-seconds of the three phases (2, 4, then 2 workers), at one task per
    // (task + ~1 ms of round trip) per slot.
    let slot_seconds = (SMALL + LARGE + SMALL) as f64 * f64::from(SLOTS) * phase.as_secs_f64();
    let tasks = (slot_seconds * 1000.0 / (plan.elastic_task_ms as f64 + 1.0)) as u32;
    let drain_target_secs = 3.0 * phase.as_secs_f64();
    let options = ClusterOptions {
        drain_target_secs: Some(drain_target_secs),
        ..ClusterOptions::default()
    };
    let mut cluster =
        EvalCluster::start(host, &workdir.join("elasticity"), &options, &[SLOTS; SMALL]).await?;
    let original: Vec<String> = cluster
        .workers_view()
        .await?
        .into_iter()
        .map(|worker| worker.name)
        .collect();
    let mut client = cluster.client();
    let spec = job_spec(
        "elasticity",
        (0..tasks)
            .map(|_| sleep_task(plan.elastic_task_ms))
            .collect(),
    );
    let job_id = submit(&mut client, spec).await?;
    let submitted_ms = cluster.job_detail(job_id).await?.job.submitted_unix_ms;
    let since_submission = |unix_ms: u64| (unix_ms as f64 - submitted_ms as f64) / 1000.0;
    say(&format!(
        "elasticity: {tasks} tasks of {} ms on {SMALL} workers × {SLOTS} slots; scale out after {} s, drain after {} s",
        plan.elastic_task_ms,
        phase.as_secs(),
        2 * phase.as_secs()
    ));

    let started = Instant::now();
    let mut events = Vec::new();
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let overview = cluster.overview().await?;
        samples.push(OverviewSample {
            t_s: since_submission(overview.now_unix_ms),
            workers: overview.workers,
            slots: overview.slots,
            busy_slots: overview.busy_slots,
            tasks_waiting: overview.tasks_waiting,
            recommended_workers: overview
                .queue
                .as_ref()
                .map(|queue| queue.recommended_workers),
            completion_rate: overview.queue.as_ref().map(|queue| queue.completion_rate),
        });
        let job = cluster.job_detail(job_id).await?.job;
        if job.state != "running" {
            break;
        }
        let elapsed = started.elapsed();
        if events.is_empty() && elapsed >= phase {
            for _ in SMALL..LARGE {
                cluster.add_worker(SLOTS, false)?;
            }
            events.push(ScalingEvent {
                t_s: since_submission(unix_ms_now()),
                what: format!("scale out {SMALL}→{LARGE}"),
            });
            say(&format!("elasticity: {} workers started", LARGE - SMALL));
        } else if events.len() == 1 && elapsed >= 2 * phase {
            for name in &original {
                cluster.signal_worker(name, Signal::SIGTERM)?;
            }
            events.push(ScalingEvent {
                t_s: since_submission(unix_ms_now()),
                what: format!("drain {LARGE}→{SMALL}"),
            });
            say(&format!("elasticity: {} workers draining", original.len()));
        }
        anyhow::ensure!(
            elapsed < 3 * phase + OVERRUN,
            "the elasticity job is still running after {elapsed:?}"
        );
    }
    let drained = events.len() == 2;
    if drained {
        for name in &original {
            cluster
                .wait_worker_exit(name, Duration::from_secs(30))
                .await?;
        }
    }
    let detail = cluster.job_detail(job_id).await?;
    let overview = cluster.overview().await?;
    cluster.stop().await?;

    let finished_ms = detail.job.finished_unix_ms.unwrap_or(overview.now_unix_ms);
    let throughput: Vec<SecondOfThroughput> = overview
        .throughput
        .iter()
        .filter(|point| {
            let start_ms = point.unix_second * 1000;
            start_ms + 1000 > submitted_ms && start_ms <= finished_ms
        })
        .map(|point| SecondOfThroughput {
            t_s: since_submission(point.unix_second * 1000),
            committed: point.committed,
        })
        .collect();
    let job_seconds = job_seconds(&detail).unwrap_or(f64::NAN);
    let boundaries: Vec<f64> = std::iter::once(0.0)
        .chain(events.iter().map(|event| event.t_s))
        .chain(std::iter::once(job_seconds))
        .collect();
    let labels = [SMALL, LARGE, SMALL];
    let phases = boundaries
        .windows(2)
        .zip(labels)
        .map(|(window, workers)| phase_rate(&throughput, window[0], window[1], workers))
        .collect();
    Ok(Elasticity {
        task_ms: plan.elastic_task_ms,
        slots_per_worker: SLOTS,
        tasks,
        drain_target_secs,
        job_seconds,
        all_committed: detail.job.state == "succeeded" && detail.job.tasks.succeeded == tasks,
        events,
        phases,
        throughput,
        samples,
    })
}

/// Returns the phase `[from_s, to_s)` with the median of the seconds inside it.
fn phase_rate(throughput: &[SecondOfThroughput], from_s: f64, to_s: f64, workers: usize) -> Phase {
    let inner: Vec<f64> = throughput
        .iter()
        .filter(|second| second.t_s >= from_s && second.t_s + 1.0 <= to_s)
        .map(|second| second.committed as f64)
        .collect();
    Phase {
        label: format!("{workers} workers"),
        from_s,
        to_s,
        median_committed_per_s: median(&inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_rates_leave_out_the_seconds_that_straddle_a_change() {
        let throughput: Vec<SecondOfThroughput> = [5, 80, 80, 81, 120, 160, 158, 162, 90]
            .iter()
            .enumerate()
            .map(|(index, committed)| SecondOfThroughput {
                t_s: index as f64 - 0.3,
                committed: *committed,
            })
            .collect();
        // Seconds start at -0.3, 0.7, 1.7, …: those at 0.7, 1.7 and 2.7 are inside
        // [0, 4); the one at 3.7 straddles the change at 4.
        let first = phase_rate(&throughput, 0.0, 4.0, 2);
        assert_eq!(first.median_committed_per_s, Some(80.0));
        let second = phase_rate(&throughput, 4.0, 8.5, 4);
        assert_eq!(second.median_committed_per_s, Some(160.0));
        assert_eq!(second.label, "4 workers");
        let empty = phase_rate(&throughput, 0.0, 1.5, 2);
        assert_eq!(empty.median_committed_per_s, None);
    }
}
