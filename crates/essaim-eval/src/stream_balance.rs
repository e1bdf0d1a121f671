//! Load distribution of a pipeline across workers (question 2): the flights backlog on
//! several workers, each worker's share of the records its units read (per stage, from
//! the coordinator's stream board, sampled every 250 ms) and of the CPU time of the
//! worker processes (from `/proc`). A pipeline's grain is the unit (one per source
//! partition, one per shuffle partition), so with 3 + 8 units the shares can only be
//! as even as units divide among workers. The tables must equal the oracle's.

use crate::cluster::EvalCluster;
use crate::stats::{Spread, spread};
use crate::stream_scaling::stream_cluster_options;
use crate::stream_stack::{AfterSample, StreamStack, run_pipeline};
use crate::{Host, Plan, say};
use serde::Serialize;
use std::path::Path;

/// One worker's share.
#[derive(Debug, Clone, Serialize)]
pub struct StreamWorkerShare {
    /// The worker's name.
    pub name: String,
    /// Records its source units read (the most each unit reported on it).
    pub source_records: u64,
    /// Records its shuffled units read.
    pub shuffled_records: u64,
    /// Its share of the source records.
    pub source_share: f64,
    /// Its share of the shuffled records.
    pub shuffled_share: f64,
    /// CPU seconds of its process during the run.
    pub cpu_s: f64,
    /// Its share of the workers' CPU time.
    pub cpu_share: f64,
}

/// The scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct StreamBalance {
    /// Events of the run.
    pub events: u64,
    /// Worker processes.
    pub workers: usize,
    /// Every worker's share.
    pub shares: Vec<StreamWorkerShare>,
    /// Spread of the source records over the workers.
    pub source_spread: Option<Spread>,
    /// Spread of the shuffled records.
    pub shuffled_spread: Option<Spread>,
    /// Spread of the CPU time.
    pub cpu_spread: Option<Spread>,
    /// The tables equalled the oracle's (else the scenario failed).
    pub oracle_matched: bool,
}

/// Runs the scenario on `stack`.
pub async fn stream_balance(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
    stack: &StreamStack,
) -> anyhow::Result<StreamBalance> {
    let replayed = stack.replay(plan.stream_events).await?;
    let workers = plan.stream_cluster_workers;
    let dir = workdir.join("stream-balance");
    let mut cluster =
        EvalCluster::start(host, &dir, &stream_cluster_options(), &vec![2; workers]).await?;
    let run = stack.fresh_run().await?;
    let observed = run_pipeline(&mut cluster, stack.job(&run)?, |_, _, _| {
        Ok(AfterSample::Continue)
    })
    .await?;
    let names = cluster.worker_names();
    cluster.stop().await?;
    stack.check(&run, plan.stream_events, "balance").await?;
    let records = |name: &str, stage: &str| {
        observed
            .records
            .get(&(name.to_owned(), stage.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    let total = |stage: &str| names.iter().map(|name| records(name, stage)).sum::<u64>();
    let (source_total, shuffled_total) = (total("source"), total("shuffled"));
    let cpu = |name: &str| {
        observed
            .worker_core_seconds
            .get(name)
            .copied()
            .unwrap_or(0.0)
    };
    let cpu_total: f64 = names.iter().map(|name| cpu(name)).sum();
    let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    let shares: Vec<StreamWorkerShare> = names
        .iter()
        .map(|name| StreamWorkerShare {
            name: name.clone(),
            source_records: records(name, "source"),
            shuffled_records: records(name, "shuffled"),
            source_share: share(records(name, "source") as f64, source_total as f64),
            shuffled_share: share(records(name, "shuffled") as f64, shuffled_total as f64),
            cpu_s: cpu(name),
            cpu_share: share(cpu(name), cpu_total),
        })
        .collect();
    let spread_of =
        |pick: fn(&StreamWorkerShare) -> f64| spread(&shares.iter().map(pick).collect::<Vec<_>>());
    let balance = StreamBalance {
        events: replayed.events,
        workers,
        source_spread: spread_of(|worker| worker.source_records as f64),
        shuffled_spread: spread_of(|worker| worker.shuffled_records as f64),
        cpu_spread: spread_of(|worker| worker.cpu_s),
        shares,
        oracle_matched: true,
    };
    say(&format!(
        "stream-balance: {workers} workers, CPU CV {:.3}, source records CV {:.3}; tables equal the oracle",
        balance
            .cpu_spread
            .map_or(f64::NAN, |spread| spread.coefficient_of_variation),
        balance
            .source_spread
            .map_or(f64::NAN, |spread| spread.coefficient_of_variation),
    ));
    Ok(balance)
}
