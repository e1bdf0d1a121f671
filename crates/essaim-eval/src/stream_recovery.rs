//! Recovery of a pipeline after SIGKILL of a worker (question 3): the flights are
//! published at a steady rate while the pipeline runs, so that its lag is normally
//! small; once 40% of them are out, the worker running the most units is killed. The
//! time is measured from the kill, on the coordinator's stream board sampled every
//! 250 ms: until every unit is reported again by a live worker, and until the lag is
//! back to normal for good: from then on, for 2 s or until the stream ends, no more than
//! the most it was in the 3 s before the kill, or half a second of input, whichever is
//! larger (the end of the stream, everything read, counts as no lag). (A unit that moved reports its backlog only once it reads again, so the lag
//! peaks after the units are back.) Then the stream ends and the tables must equal the
//! oracle's: nothing lost, nothing counted twice.
//!
//! The same is done to the coordinator: SIGKILL, then started again at once on its
//! journal and port (as a supervisor would), the workers finding it at the URL they know.

use crate::cluster::EvalCluster;
use crate::stats::median;
use crate::stream_scaling::stream_cluster_options;
use crate::stream_stack::{AfterSample, StreamSample, StreamStack, run_pipeline};
use crate::{Host, Plan, say};
use essaim_coordinator::streams::PipelineView;
use nix::sys::signal::Signal;
use serde::Serialize;
use std::path::Path;

/// Share of the replay's duration after which the worker is killed.
const KILL_AT: f64 = 0.4;
/// The window before the kill whose largest lag counts as normal, s.
const NORMAL_WINDOW_S: f64 = 3.0;
/// How long the lag must stay normal to count as back to normal, s.
const STAYS_NORMAL_S: f64 = 2.0;

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRecoveryRun {
    /// The worker killed.
    pub killed_worker: String,
    /// Units it ran.
    pub units_killed: u32,
    /// When, s since the submission.
    pub killed_at_s: f64,
    /// The lag counted as normal.
    pub normal_lag: i64,
    /// The most lag after the kill.
    pub peak_lag: i64,
    /// Kill → every unit reported again by a live worker, s.
    pub units_back_s: Option<f64>,
    /// Kill → lag back to normal with every unit reported, s.
    pub lag_normal_s: Option<f64>,
    /// The job's duration, s.
    pub job_seconds: f64,
    /// The board over the run.
    pub samples: Vec<StreamSample>,
}

/// The scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRecovery {
    /// Events of each run.
    pub events: u64,
    /// Rate they were published at, events/s (asked).
    pub rate: f64,
    /// Worker processes before the kill.
    pub workers: usize,
    /// `--worker-timeout-ms` of the coordinator.
    pub worker_timeout_ms: u64,
    /// `--heartbeat-ms`.
    pub heartbeat_ms: u64,
    /// Every SIGKILL of a worker.
    pub runs: Vec<StreamRecoveryRun>,
    /// Median of their `lag_normal_s`.
    pub median_lag_normal_s: Option<f64>,
    /// Every SIGKILL of the coordinator, started again at once on its journal and
    /// port (`killed_worker` is `coordinator`; its units are all the units).
    pub coordinator_runs: Vec<StreamRecoveryRun>,
    /// Median of their `lag_normal_s`.
    pub coordinator_median_lag_normal_s: Option<f64>,
    /// Every run's tables equalled the oracle's (else the scenario failed).
    pub oracle_matched: bool,
}

/// Runs the scenario on `stack`.
pub async fn stream_recovery(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
    stack: &StreamStack,
) -> anyhow::Result<StreamRecovery> {
    let options = stream_cluster_options();
    let workers = plan.stream_cluster_workers.max(2);
    let (mut runs, mut coordinator_runs) = (Vec::new(), Vec::new());
    let mut events = 0;
    for victim in [Victim::Worker, Victim::Coordinator] {
        for repeat in 0..plan.stream_repeats {
            let dir = workdir.join(format!("stream-recovery-{}-{repeat}", victim.name()));
            let mut cluster = EvalCluster::start(host, &dir, &options, &vec![2; workers]).await?;
            let (run, published) = one_kill(&mut cluster, plan, stack, victim).await?;
            cluster.stop().await?;
            events = published;
            say(&format!(
                "stream-recovery, {} run {}/{}: {} ({} units) killed at {:.1} s; units back after {:?} s, lag back to normal ({}) after {:?} s (peak {}); tables equal the oracle",
                victim.name(),
                repeat + 1,
                plan.stream_repeats,
                run.killed_worker,
                run.units_killed,
                run.killed_at_s,
                run.units_back_s,
                run.normal_lag,
                run.lag_normal_s,
                run.peak_lag
            ));
            match victim {
                Victim::Worker => runs.push(run),
                Victim::Coordinator => coordinator_runs.push(run),
            }
        }
    }
    let median_normal = |runs: &[StreamRecoveryRun]| {
        median(
            &runs
                .iter()
                .filter_map(|run| run.lag_normal_s)
                .collect::<Vec<_>>(),
        )
    };
    Ok(StreamRecovery {
        events,
        rate: plan.stream_rate,
        workers,
        worker_timeout_ms: options.worker_timeout.as_millis() as u64,
        heartbeat_ms: options.heartbeat.as_millis() as u64,
        median_lag_normal_s: median_normal(&runs),
        coordinator_median_lag_normal_s: median_normal(&coordinator_runs),
        runs,
        coordinator_runs,
        oracle_matched: true,
    })
}

/// Runs the pipeline over a paced stream on `cluster`, kills `victim` mid-stream,
/// checks the tables; returns the run and the events published.
async fn one_kill(
    cluster: &mut EvalCluster,
    plan: &Plan,
    stack: &StreamStack,
    victim: Victim,
) -> anyhow::Result<(StreamRecoveryRun, u64)> {
    let run = stack.fresh_run().await?;
    stack.reset_stream().await?;
    let duration_s = plan.stream_paced_events as f64 / plan.stream_rate;
    let mut kill = Kill::new(victim, (duration_s * KILL_AT).max(2.0), plan.stream_rate);
    let job = stack.job(&run)?;
    let (published, observed) = tokio::join!(
        stack.publish(plan.stream_paced_events, Some(plan.stream_rate)),
        run_pipeline(cluster, job, |cluster, sample, views| {
            kill.on_sample(cluster, sample, views)
        })
    );
    let (published, observed) = (published?, observed?);
    let when = format!("after SIGKILL of the {}", victim.name());
    stack.check(&run, plan.stream_paced_events, &when).await?;
    let killed = kill
        .killed
        .ok_or_else(|| anyhow::anyhow!("the stream ended before the kill"))?;
    let units_back_at = kill.units_back_at;
    // The stream ended with everything read: no lag at the end, which may come
    // between two samples.
    let mut with_end = observed.samples.clone();
    if let Some(last) = observed.samples.last() {
        with_end.push(StreamSample {
            t_s: observed.job_seconds.max(last.t_s + 0.001),
            lag: 0,
            ..last.clone()
        });
    }
    let result = StreamRecoveryRun {
        killed_worker: killed.worker,
        units_killed: killed.units,
        killed_at_s: killed.at_s,
        normal_lag: killed.normal_lag,
        peak_lag: kill.peak_lag,
        units_back_s: units_back_at.map(|at| at - killed.at_s),
        lag_normal_s: lag_normal_at(&with_end, units_back_at, killed.normal_lag)
            .map(|at| at - killed.at_s),
        job_seconds: observed.job_seconds,
        samples: observed.samples,
    };
    Ok((result, published.events))
}

/// What is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// The worker running the most units; the others take its units over.
    Worker,
    /// The coordinator, started again at once on its journal.
    Coordinator,
}

impl Victim {
    fn name(self) -> &'static str {
        match self {
            Victim::Worker => "worker",
            Victim::Coordinator => "coordinator",
        }
    }
}

/// The first sample from `units_back_at` on after which the lag stays at most
/// `normal` for [`STAYS_NORMAL_S`] (or until the last sample).
fn lag_normal_at(samples: &[StreamSample], units_back_at: Option<f64>, normal: i64) -> Option<f64> {
    let from = units_back_at?;
    let after: Vec<&StreamSample> = samples.iter().filter(|sample| sample.t_s >= from).collect();
    after.iter().enumerate().find_map(|(index, sample)| {
        let stays = after[index..]
            .iter()
            .take_while(|later| later.t_s <= sample.t_s + STAYS_NORMAL_S)
            .all(|later| later.lag <= normal);
        stays.then_some(sample.t_s)
    })
}

/// The kill that happened.
struct Killed {
    worker: String,
    units: u32,
    at_s: f64,
    normal_lag: i64,
}

/// Decides, sample by sample, when to kill and when the pipeline has recovered.
struct Kill {
    victim: Victim,
    at_s: f64,
    /// The floor of the normal lag: half a second of input.
    floor: i64,
    before: Vec<StreamSample>,
    units: u32,
    killed: Option<Killed>,
    peak_lag: i64,
    units_back_at: Option<f64>,
}

impl Kill {
    fn new(victim: Victim, at_s: f64, rate: f64) -> Self {
        Self {
            victim,
            at_s,
            floor: (rate * 0.5) as i64,
            before: Vec::new(),
            units: 0,
            killed: None,
            peak_lag: 0,
            units_back_at: None,
        }
    }

    fn on_sample(
        &mut self,
        cluster: &mut EvalCluster,
        sample: &StreamSample,
        views: &[PipelineView],
    ) -> anyhow::Result<AfterSample> {
        let Some(killed) = &self.killed else {
            self.units = self.units.max(sample.units);
            self.before.push(sample.clone());
            if sample.t_s >= self.at_s && sample.units == self.units && self.units > 0 {
                return self.kill(cluster, sample, views);
            }
            return Ok(AfterSample::Continue);
        };
        self.peak_lag = self.peak_lag.max(sample.lag);
        // A dead worker's last reports stay on the board until they are stale; a
        // restarted coordinator's board starts empty.
        let alive_units = views
            .iter()
            .flat_map(|view| view.units.iter())
            .filter(|unit| unit.worker_name != killed.worker)
            .count() as u32;
        if alive_units >= self.units {
            self.units_back_at.get_or_insert(sample.t_s);
        }
        Ok(AfterSample::Continue)
    }

    /// Kills the victim: the worker running the most units now, or the coordinator
    /// (by asking [`run_pipeline`] to restart it).
    fn kill(
        &mut self,
        cluster: &mut EvalCluster,
        sample: &StreamSample,
        views: &[PipelineView],
    ) -> anyhow::Result<AfterSample> {
        let (victim, units, then) = match self.victim {
            Victim::Coordinator => (
                "coordinator".to_owned(),
                self.units,
                AfterSample::RestartCoordinator,
            ),
            Victim::Worker => {
                let mut by_worker = std::collections::BTreeMap::<&str, u32>::new();
                for unit in views.iter().flat_map(|view| view.units.iter()) {
                    *by_worker.entry(unit.worker_name.as_str()).or_default() += 1;
                }
                let Some((worker, units)) = by_worker.into_iter().max_by_key(|(_, units)| *units)
                else {
                    return Ok(AfterSample::Continue);
                };
                cluster.signal_worker(worker, Signal::SIGKILL)?;
                (worker.to_owned(), units, AfterSample::Continue)
            }
        };
        let normal_lag = self
            .before
            .iter()
            .filter(|before| before.t_s >= sample.t_s - NORMAL_WINDOW_S)
            .map(|before| before.lag)
            .max()
            .unwrap_or(0)
            .max(self.floor);
        self.killed = Some(Killed {
            worker: victim,
            units,
            at_s: sample.t_s,
            normal_lag,
        });
        Ok(then)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, lag: i64) -> StreamSample {
        StreamSample {
            t_s,
            lag,
            records_per_second: 0.0,
            units: 11,
            workers: 1,
            stream_workers: 1,
        }
    }

    #[test]
    fn the_lag_is_normal_again_once_it_stays_low() {
        // Units back at 6 s with a stale low lag, then their backlog, then caught up.
        let lags = [
            (5.0, 900),
            (6.0, 100),
            (6.5, 1800),
            (7.0, 400),
            (8.0, 450),
            (9.5, 200),
        ];
        let samples: Vec<StreamSample> = lags.iter().map(|&(t, lag)| sample(t, lag)).collect();
        assert_eq!(lag_normal_at(&samples, Some(6.0), 500), Some(7.0));
        // Never back before the units are.
        assert_eq!(lag_normal_at(&samples, None, 500), None);
        // A lag that never comes down is never normal.
        assert_eq!(lag_normal_at(&samples, Some(6.0), 50), None);
        // The end of the stream ends the wait.
        assert_eq!(lag_normal_at(&samples, Some(9.0), 250), Some(9.5));
    }
}
