//! How evenly pull-based scheduling spreads work over workers (question 2), from the
//! per-worker shares of the coordinator's job history: committed tasks and busy time.
//!
//! Two cases, each with tasks of uneven length (sleeps drawn from a seeded uniform
//! range, so a worker that happens to get long tasks commits fewer of them):
//! - **homogeneous**: equal workers; the shares should be equal;
//! - **heterogeneous**: workers with different slot counts; a worker pulls as many tasks
//!   as it has free slots, so its share should follow its slots. Its work *per slot*
//!   is then what should be equal.

use crate::cluster::{ClusterOptions, EvalCluster, job_spec, sleep_task, submit, wait_job};
use crate::stats::{Spread, median, spread};
use crate::{Host, Plan, say};
use essaim_core::rng::SeededRng;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Longest one job may take before the scenario fails.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Shortest and longest task, ms: a mean of 25 ms.
const TASK_MS: (u64, u64) = (5, 45);

/// One worker's part of a job.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerShare {
    /// The worker's name.
    pub name: String,
    /// Its slots.
    pub slots: u32,
    /// Tasks it committed.
    pub committed: u64,
    /// Busy time of its committed attempts, s.
    pub busy_s: f64,
    /// Its share of the job's committed tasks.
    pub committed_share: f64,
    /// Its share of the cluster's slots.
    pub slot_share: f64,
}

/// One job's distribution.
#[derive(Debug, Clone, Serialize)]
pub struct BalanceRun {
    /// Tasks of the job.
    pub tasks: u32,
    /// Sum of the workers' committed tasks (equals `tasks`: every commit is counted
    /// once, on the worker that made it).
    pub committed_sum: u64,
    /// Per worker, by name.
    pub workers: Vec<WorkerShare>,
    /// Spread of committed tasks per slot.
    pub committed_per_slot: Option<Spread>,
    /// Spread of busy time per slot.
    pub busy_per_slot: Option<Spread>,
}

/// One cluster shape, over the repeats.
#[derive(Debug, Clone, Serialize)]
pub struct BalanceCase {
    /// Slots of each worker.
    pub slots: Vec<u32>,
    /// Task length range, ms.
    pub task_ms: (u64, u64),
    /// Every repeat.
    pub runs: Vec<BalanceRun>,
    /// Median coefficient of variation of committed tasks per slot.
    pub median_committed_cv: f64,
    /// Median coefficient of variation of busy time per slot.
    pub median_busy_cv: f64,
    /// Median max/mean of busy time per slot.
    pub median_busy_max_over_mean: f64,
    /// Index in `runs` of the run with the median busy-time CV (the one plotted).
    pub plotted_run: usize,
}

/// Both cases.
#[derive(Debug, Clone, Serialize)]
pub struct Balance {
    /// Equal workers.
    pub homogeneous: BalanceCase,
    /// Workers with different slot counts.
    pub heterogeneous: BalanceCase,
}

/// Runs both cases.
pub async fn balance(host: &dyn Host, plan: &Plan, workdir: &Path) -> anyhow::Result<Balance> {
    let homogeneous = case(
        host,
        plan,
        &workdir.join("balance-homogeneous"),
        &plan.balance_slots,
    )
    .await?;
    let heterogeneous = case(
        host,
        plan,
        &workdir.join("balance-heterogeneous"),
        &plan.heterogeneous_slots,
    )
    .await?;
    Ok(Balance {
        homogeneous,
        heterogeneous,
    })
}

async fn case(
    host: &dyn Host,
    plan: &Plan,
    dir: &Path,
    slots: &[u32],
) -> anyhow::Result<BalanceCase> {
    let cluster = EvalCluster::start(host, dir, &ClusterOptions::default(), slots).await?;
    let mut client = cluster.client();
    let total_slots: u32 = slots.iter().sum();
    let tasks = plan.balance_tasks_per_slot * total_slots;
    let mut runs = Vec::new();
    for repeat in 0..plan.repeats {
        let mut rng = SeededRng::new(7 + repeat as u64);
        let spec = job_spec(
            "balance",
            (0..tasks)
                .map(|_| sleep_task(TASK_MS.0 + rng.up_to(TASK_MS.1 - TASK_MS.0)))
                .collect(),
        );
        let job_id = submit(&mut client, spec).await?;
        let status = wait_job(&mut client, job_id, JOB_TIMEOUT).await?;
        anyhow::ensure!(status.state == "succeeded", "balance job ended {status:?}");
        let detail = cluster.job_detail(job_id).await?;
        let shares: Vec<WorkerShare> = detail
            .history
            .workers
            .iter()
            // `other` pools workers past the history's per-job limit; there are none here.
            .filter(|share| share.worker_id != "other")
            .map(|share| {
                let worker_slots = cluster.slots_of(&share.name).unwrap_or(0);
                WorkerShare {
                    name: share.name.clone(),
                    slots: worker_slots,
                    committed: share.committed,
                    busy_s: share.busy_ms as f64 / 1000.0,
                    committed_share: share.committed as f64 / f64::from(tasks),
                    slot_share: f64::from(worker_slots) / f64::from(total_slots),
                }
            })
            .collect();
        let run = summarise(tasks, shares);
        say(&format!(
            "load distribution, slots {slots:?}, run {}/{}: committed per worker {:?}, busy-time CV per slot {:.3}",
            repeat + 1,
            plan.repeats,
            run.workers.iter().map(|w| w.committed).collect::<Vec<_>>(),
            run.busy_per_slot
                .map_or(f64::NAN, |s| s.coefficient_of_variation)
        ));
        runs.push(run);
    }
    cluster.stop().await?;
    let cvs = |pick: fn(&BalanceRun) -> Option<Spread>, field: fn(Spread) -> f64| -> Vec<f64> {
        runs.iter()
            .map(|run| pick(run).map_or(f64::NAN, field))
            .collect()
    };
    let busy_cvs = cvs(|run| run.busy_per_slot, |s| s.coefficient_of_variation);
    let median_busy_cv = median(&busy_cvs).unwrap_or(f64::NAN);
    let plotted_run = busy_cvs
        .iter()
        .enumerate()
        .min_by(|a, b| {
            (a.1 - median_busy_cv)
                .abs()
                .total_cmp(&(b.1 - median_busy_cv).abs())
        })
        .map_or(0, |(index, _)| index);
    Ok(BalanceCase {
        slots: slots.to_vec(),
        task_ms: TASK_MS,
        median_committed_cv: median(&cvs(
            |run| run.committed_per_slot,
            |s| s.coefficient_of_variation,
        ))
        .unwrap_or(f64::NAN),
        median_busy_cv,
        median_busy_max_over_mean: median(&cvs(|run| run.busy_per_slot, |s| s.max_over_mean))
            .unwrap_or(f64::NAN),
        plotted_run,
        runs,
    })
}

/// Returns the run's distribution, workers sorted by name.
fn summarise(tasks: u32, mut workers: Vec<WorkerShare>) -> BalanceRun {
    workers.sort_by(|a, b| a.name.cmp(&b.name));
    let per_slot = |value: fn(&WorkerShare) -> f64| -> Vec<f64> {
        workers
            .iter()
            .filter(|worker| worker.slots > 0)
            .map(|worker| value(worker) / f64::from(worker.slots))
            .collect()
    };
    BalanceRun {
        tasks,
        committed_sum: workers.iter().map(|worker| worker.committed).sum(),
        committed_per_slot: spread(&per_slot(|worker| worker.committed as f64)),
        busy_per_slot: spread(&per_slot(|worker| worker.busy_s)),
        workers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(name: &str, slots: u32, committed: u64, busy_s: f64) -> WorkerShare {
        WorkerShare {
            name: name.into(),
            slots,
            committed,
            busy_s,
            committed_share: 0.0,
            slot_share: 0.0,
        }
    }

    #[test]
    fn work_in_proportion_to_slots_is_perfectly_balanced_per_slot() {
        let run = summarise(
            70,
            vec![
                share("eval-2", 4, 40, 1.0),
                share("eval-0", 1, 10, 0.25),
                share("eval-1", 2, 20, 0.5),
            ],
        );
        assert_eq!(run.committed_sum, 70);
        let names: Vec<&str> = run.workers.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["eval-0", "eval-1", "eval-2"]);
        let committed = run.committed_per_slot.expect("work was done");
        assert!(committed.coefficient_of_variation.abs() < 1e-12);
        let busy = run.busy_per_slot.expect("work was done");
        assert!((busy.max_over_mean - 1.0).abs() < 1e-12);
    }

    #[test]
    fn equal_tasks_on_unequal_slots_are_unbalanced_per_slot() {
        let run = summarise(30, vec![share("a", 1, 15, 1.0), share("b", 2, 15, 1.0)]);
        let committed = run.committed_per_slot.expect("work was done");
        // Per slot: 15 and 7.5; mean 11.25, deviation 3.75.
        assert!((committed.coefficient_of_variation - 3.75 / 11.25).abs() < 1e-12);
    }
}
