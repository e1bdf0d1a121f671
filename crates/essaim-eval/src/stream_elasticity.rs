//! A pipeline while workers come and go (question 4): the flights are published at a
//! steady rate while the pipeline runs on one worker; after a third of the replay two
//! workers are added, and after two thirds the first two are drained (SIGTERM: they
//! hand their units back and leave). The coordinator moves units to the new workers
//! and away from the drained ones; the lag, sampled every 250 ms on the stream board,
//! shows what each move costs. Then the tables must equal the oracle's.

use crate::cluster::EvalCluster;
use crate::elasticity::ScalingEvent;
use crate::stats::median;
use crate::stream_scaling::stream_cluster_options;
use crate::stream_stack::{AfterSample, StreamSample, StreamStack, run_pipeline};
use crate::{Host, Plan, say};
use essaim_coordinator::streams::PipelineView;
use nix::sys::signal::Signal;
use serde::Serialize;
use std::path::Path;

/// Workers added, and then drained.
const CHANGED: usize = 2;

/// The lag in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct LagPhase {
    /// E.g. `3 workers`.
    pub label: String,
    /// Start, s since the submission.
    pub from_s: f64,
    /// End, s since the submission.
    pub to_s: f64,
    /// Median lag of its samples.
    pub median_lag: Option<f64>,
    /// Largest lag of its samples.
    pub max_lag: i64,
    /// Median records/s of its samples.
    pub median_records_per_s: Option<f64>,
}

/// The scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct StreamElasticity {
    /// Events published.
    pub events: u64,
    /// Rate they were published at, events/s (asked).
    pub rate: f64,
    /// The job's duration, s.
    pub job_seconds: f64,
    /// The board over the run.
    pub samples: Vec<StreamSample>,
    /// Workers added and drained.
    pub events_log: Vec<ScalingEvent>,
    /// The lag between the changes.
    pub phases: Vec<LagPhase>,
    /// The tables equalled the oracle's (else the scenario failed).
    pub oracle_matched: bool,
}

/// Runs the scenario on `stack`.
pub async fn stream_elasticity(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
    stack: &StreamStack,
) -> anyhow::Result<StreamElasticity> {
    let dir = workdir.join("stream-elasticity");
    let mut cluster = EvalCluster::start(host, &dir, &stream_cluster_options(), &[2]).await?;
    let run = stack.fresh_run().await?;
    stack.reset_stream().await?;
    let duration_s = (plan.stream_paced_events) as f64 / plan.stream_rate;
    let (add_at, drain_at) = (duration_s / 3.0, duration_s * 2.0 / 3.0);
    let mut log: Vec<ScalingEvent> = Vec::new();
    let job = stack.job(&run)?;
    let on_sample = |cluster: &mut EvalCluster, sample: &StreamSample, _: &[PipelineView]| {
        if log.is_empty() && sample.t_s >= add_at {
            for _ in 0..CHANGED {
                cluster.add_worker(2, false)?;
            }
            log.push(ScalingEvent {
                t_s: sample.t_s,
                what: format!("+{CHANGED} workers"),
            });
        } else if log.len() == 1 && sample.t_s >= drain_at {
            for name in cluster.worker_names().into_iter().take(CHANGED) {
                cluster.signal_worker(&name, Signal::SIGTERM)?;
            }
            log.push(ScalingEvent {
                t_s: sample.t_s,
                what: format!("drain {CHANGED}"),
            });
        }
        anyhow::Ok(AfterSample::Continue)
    };
    let (published, observed) = tokio::join!(
        stack.publish(plan.stream_paced_events, Some(plan.stream_rate)),
        run_pipeline(&mut cluster, job, on_sample)
    );
    let (published, observed) = (published?, observed?);
    cluster.stop().await?;
    stack
        .check(
            &run,
            plan.stream_paced_events,
            "after adding and draining workers",
        )
        .await?;
    anyhow::ensure!(
        log.len() == 2,
        "the stream ended after {:.1} s, before the workers were added and drained",
        observed.job_seconds
    );
    let phases = phases(&observed.samples, &log, observed.job_seconds);
    for phase in &phases {
        say(&format!(
            "stream-elasticity: {} from {:.1} s to {:.1} s: median lag {:?}, most {}",
            phase.label, phase.from_s, phase.to_s, phase.median_lag, phase.max_lag
        ));
    }
    say("stream-elasticity: tables equal the oracle");
    Ok(StreamElasticity {
        events: published.events,
        rate: plan.stream_rate,
        job_seconds: observed.job_seconds,
        samples: observed.samples,
        events_log: log,
        phases,
        oracle_matched: true,
    })
}

/// The samples between the changes, summarised.
fn phases(samples: &[StreamSample], log: &[ScalingEvent], end_s: f64) -> Vec<LagPhase> {
    let bounds: Vec<f64> = std::iter::once(0.0)
        .chain(log.iter().map(|event| event.t_s))
        .chain(std::iter::once(end_s))
        .collect();
    let labels = ["1 worker", "3 workers", "1 worker (after the drain)"];
    bounds
        .windows(2)
        .zip(labels)
        .map(|(bound, label)| {
            let inside: Vec<&StreamSample> = samples
                .iter()
                .filter(|sample| sample.t_s >= bound[0] && sample.t_s < bound[1])
                .collect();
            let lags: Vec<f64> = inside.iter().map(|sample| sample.lag as f64).collect();
            let rates: Vec<f64> = inside
                .iter()
                .map(|sample| sample.records_per_second)
                .collect();
            LagPhase {
                label: label.to_owned(),
                from_s: bound[0],
                to_s: bound[1],
                median_lag: median(&lags),
                max_lag: inside.iter().map(|sample| sample.lag).max().unwrap_or(0),
                median_records_per_s: median(&rates),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, lag: i64) -> StreamSample {
        StreamSample {
            t_s,
            lag,
            records_per_second: 10.0,
            units: 11,
            workers: 1,
            stream_workers: 1,
        }
    }

    #[test]
    fn phases_split_the_samples_at_the_changes() {
        let samples = [
            sample(0.5, 4),
            sample(1.5, 9),
            sample(2.5, 1),
            sample(3.5, 2),
        ];
        let log = [
            ScalingEvent {
                t_s: 1.0,
                what: "+2".into(),
            },
            ScalingEvent {
                t_s: 3.0,
                what: "drain 2".into(),
            },
        ];
        let phases = phases(&samples, &log, 4.0);
        assert_eq!(phases.len(), 3);
        assert_eq!(phases[0].max_lag, 4);
        assert_eq!(phases[1].max_lag, 9);
        assert_eq!(phases[1].median_lag, Some(5.0));
        assert_eq!(phases[2].to_s, 4.0);
    }
}
