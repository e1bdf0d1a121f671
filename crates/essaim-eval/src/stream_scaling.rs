//! Streaming throughput against the number of workers (question 1) and its cost
//! (question 5): the flights pipeline of `essaim demo stream` over the shipped flights,
//! replayed into NATS beforehand (a backlog, read as fast as the cluster can), on 1, 2,
//! 4… worker processes. Events/s is the source's events over the job's duration on the
//! coordinator's clock (submission to the end of the stream, start-up included); cost is
//! the CPU time of the coordinator and worker processes per million events (NATS and
//! PostgreSQL, the stack's other processes, are not counted). Every run's tables must
//! equal the oracle's.

use crate::cluster::{ClusterOptions, EvalCluster};
use crate::scaling::{ScalingCurve, curve, point};
use crate::stats::median;
use crate::stream_stack::{AfterSample, StreamStack, run_pipeline};
use crate::{Host, Plan, say};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Cost at one worker count.
#[derive(Debug, Clone, Serialize)]
pub struct StreamCostPoint {
    /// Worker processes.
    pub workers: usize,
    /// Median core-seconds (coordinator and workers) per million events.
    pub core_seconds_per_million: f64,
    /// Median share of the coordinator in it.
    pub coordinator_share: f64,
    /// Median cores the cluster kept busy.
    pub cores_used: f64,
}

/// The scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct StreamScaling {
    /// Events of each run.
    pub events: u64,
    /// Source partitions.
    pub partitions: u32,
    /// Units of each stage (one task each).
    pub units_by_stage: BTreeMap<String, u32>,
    /// The replay's rate into NATS, before the runs.
    pub replay_events_per_s: f64,
    /// Events/s against workers.
    pub curve: ScalingCurve,
    /// Core-seconds per million events against workers.
    pub cost: Vec<StreamCostPoint>,
    /// Every run's tables equalled the oracle's (else the scenario failed).
    pub oracle_matched: bool,
}

/// Runs the scenario on `stack`.
pub async fn stream_scaling(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
    stack: &StreamStack,
) -> anyhow::Result<StreamScaling> {
    let replayed = stack.replay(plan.stream_events).await?;
    say(&format!(
        "stream-scaling: {} flights replayed at {:.0} events/s",
        replayed.events, replayed.events_per_second
    ));
    let mut points = Vec::new();
    let mut cost = Vec::new();
    let mut units_by_stage = BTreeMap::new();
    for &workers in &plan.stream_workers {
        let dir = workdir.join(format!("stream-scaling-{workers}"));
        let mut cluster =
            EvalCluster::start(host, &dir, &stream_cluster_options(), &vec![2; workers]).await?;
        let mut rates = Vec::new();
        let mut costs = Vec::new();
        for repeat in 0..plan.stream_repeats {
            let run = stack.fresh_run().await?;
            // A failed run drops the cluster, which kills its processes.
            let observed = run_pipeline(&mut cluster, stack.job(&run)?, |_, _, _| {
                Ok(AfterSample::Continue)
            })
            .await?;
            stack.check(&run, plan.stream_events, "scaling").await?;
            let rate = replayed.events as f64 / observed.job_seconds;
            say(&format!(
                "stream-scaling: {workers} workers, run {}/{}: {rate:.0} events/s in {:.1} s, {:.2} core-s; tables equal the oracle",
                repeat + 1,
                plan.stream_repeats,
                observed.job_seconds,
                observed.core_seconds
            ));
            rates.push(rate);
            costs.push((
                observed.core_seconds / replayed.events as f64 * 1e6,
                observed.coordinator_core_seconds / observed.core_seconds.max(f64::EPSILON),
                observed.core_seconds / observed.job_seconds,
            ));
            units_by_stage = observed.units_by_stage;
        }
        cluster.stop().await?;
        let column = |pick: fn(&(f64, f64, f64)) -> f64| {
            median(&costs.iter().map(pick).collect::<Vec<_>>()).unwrap_or(f64::NAN)
        };
        cost.push(StreamCostPoint {
            workers,
            core_seconds_per_million: column(|run| run.0),
            coordinator_share: column(|run| run.1),
            cores_used: column(|run| run.2),
        });
        let others = vec![None; rates.len()];
        points.push(point(workers, 2, rates, others, 0));
    }
    Ok(StreamScaling {
        events: replayed.events,
        partitions: 3,
        units_by_stage,
        replay_events_per_s: replayed.events_per_second,
        curve: curve("events/s", points),
        cost,
        oracle_matched: true,
    })
}

/// The coordinator of every stream scenario: heartbeats every 200 ms and a 1 s worker
/// timeout, so that a killed worker's units move within about a second.
pub fn stream_cluster_options() -> ClusterOptions {
    ClusterOptions {
        worker_timeout: std::time::Duration::from_millis(1000),
        heartbeat: std::time::Duration::from_millis(200),
        drain_target_secs: None,
    }
}
