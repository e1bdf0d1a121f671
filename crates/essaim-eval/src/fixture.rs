//! A complete, made-up `Results` for the tests of the plots and the summary.

use crate::balance::{Balance, BalanceCase, BalanceRun, WorkerShare};
use crate::elasticity::{Elasticity, OverviewSample, Phase, ScalingEvent, SecondOfThroughput};
use crate::failover::{Failover, FailoverRun, FaultCase};
use crate::recovery::{CrashCase, CrashRun, PartitionRun, Recovery};
use crate::scaling::{
    CostPoint, ScalingCurve, ScalingPoint, SleepScaling, WordcountRun, WordcountScaling,
};
use crate::stats::spread;
use crate::stream_balance::{StreamBalance, StreamWorkerShare};
use crate::stream_elasticity::StreamElasticity;
use crate::stream_recovery::{StreamRecovery, StreamRecoveryRun};
use crate::stream_scaling::{StreamCostPoint, StreamScaling};
use crate::stream_stack::StreamSample;
use crate::{Machine, Plan, Results};

fn curve(unit: &'static str, medians: &[(usize, f64)]) -> ScalingCurve {
    let baseline = medians[0].1;
    ScalingCurve {
        unit,
        points: medians
            .iter()
            .map(|(workers, median)| ScalingPoint {
                workers: *workers,
                slots_per_worker: 2,
                runs: vec![*median],
                median: *median,
                speedup: Some(median / baseline),
                efficiency: Some(median / baseline / *workers as f64),
                others_cores: vec![Some(0.05)],
                disturbed_runs_repeated: 0,
            })
            .collect(),
    }
}

fn balance_case(slots: &[u32]) -> BalanceCase {
    let total: u32 = slots.iter().sum();
    let workers: Vec<WorkerShare> = slots
        .iter()
        .enumerate()
        .map(|(index, slots)| WorkerShare {
            // Names with markup must not break the documents.
            name: format!("w<{index}>&"),
            slots: *slots,
            committed: u64::from(*slots) * 10,
            busy_s: f64::from(*slots) * 0.25,
            committed_share: f64::from(*slots) / f64::from(total),
            slot_share: f64::from(*slots) / f64::from(total),
        })
        .collect();
    BalanceCase {
        slots: slots.to_vec(),
        task_ms: (5, 45),
        runs: vec![BalanceRun {
            tasks: total * 10,
            committed_sum: u64::from(total) * 10,
            committed_per_slot: spread(&[10.0; 3]),
            busy_per_slot: spread(&[0.25; 3]),
            workers,
        }],
        median_committed_cv: 0.0,
        median_busy_cv: 0.0,
        median_busy_max_over_mean: 1.0,
        plotted_run: 0,
    }
}

/// Returns results with every scenario filled in, and worker names full of markup.
pub fn sample_results() -> Results {
    Results {
        version: 1,
        mode: "quick",
        machine: Machine {
            cores: 2,
            cpu_model: Some("AMD EPYC".into()),
            kernel: None,
            memory_kb: None,
            load_average_before: Some([0.1, 0.2, 0.3]),
            load_average_after: None,
        },
        started_unix_ms: 0,
        wall_seconds: 30.0,
        plan: Plan::quick(),
        throughput_sleep: Some(SleepScaling {
            task_ms: 20,
            tasks_per_slot: 25,
            curve: curve("tasks/s", &[(1, 95.0), (2, 185.0)]),
        }),
        throughput_wordcount: Some(WordcountScaling {
            corpus_bytes: 8_000_000,
            map_tasks: 8,
            reducers: 4,
            output_matches_oracle: true,
            curve: curve("MB/s", &[(1, 150.0), (2, 260.0)]),
            runs: vec![WordcountRun {
                workers: 1,
                seconds: 0.05,
                mb_per_s: 150.0,
                cpu_coordinator_s: 0.001,
                cpu_workers_s: 0.05,
                core_seconds_per_gb: 6.4,
                busy_s: 0.04,
                slot_utilisation: 0.8,
                others_cores: Some(0.01),
            }],
            cost: vec![CostPoint {
                workers: 1,
                core_seconds_per_gb: 6.4,
                coordinator_share: 0.02,
                cores_used: 1.0,
                cores_used_by_others: Some(0.2),
                wall_seconds_per_gb: 6.6,
            }],
        }),
        balance: Some(Balance {
            homogeneous: balance_case(&[2, 2, 2, 2]),
            heterogeneous: balance_case(&[1, 2, 4]),
        }),
        recovery: Some(Recovery {
            crash: vec![CrashCase {
                worker_timeout_ms: 1000,
                heartbeat_ms: 200,
                runs: vec![CrashRun {
                    held: 2,
                    requeued_s: 1.05,
                    running_elsewhere_s: 1.06,
                }],
                median_requeued_s: 1.05,
                median_running_elsewhere_s: 1.06,
                running_elsewhere_range_s: (1.06, 1.06),
            }],
            partition: vec![PartitionRun {
                worker_timeout_ms: 1000,
                frozen_s: 2.5,
                running_at_freeze: 2,
                requeued_s: 1.05,
                results_rejected: 1,
                dropped_by_worker: 1,
                tasks: 16,
                output_complete_and_correct: true,
            }],
        }),
        elasticity: Some(Elasticity {
            task_ms: 50,
            slots_per_worker: 2,
            tasks: 900,
            drain_target_secs: 9.0,
            job_seconds: 9.5,
            all_committed: true,
            events: vec![ScalingEvent {
                t_s: 3.0,
                what: "scale out 2→4".into(),
            }],
            phases: vec![Phase {
                label: "2 workers".into(),
                from_s: 0.0,
                to_s: 3.0,
                median_committed_per_s: Some(76.0),
            }],
            throughput: vec![SecondOfThroughput {
                t_s: 0.2,
                committed: 70,
            }],
            samples: vec![OverviewSample {
                t_s: 0.0,
                workers: 2,
                slots: 4,
                busy_slots: 4,
                tasks_waiting: 800,
                recommended_workers: None,
                completion_rate: None,
            }],
        }),
        failover: Some(Failover {
            skipped: None,
            lease_secs: 2,
            kill: Some(FaultCase {
                fault: "SIGKILL",
                runs: vec![FailoverRun {
                    to_new_leader_s: 2.1,
                    to_first_commit_s: 2.4,
                    last_to_first_commit_s: Some(2.45),
                    refused_writes: None,
                    stood_by: None,
                    every_task_committed_once: true,
                }],
                median_to_first_commit_s: 2.4,
                to_first_commit_range_s: (2.4, 2.4),
            }),
            stop: None,
        }),
        streams_skipped: None,
        stream_scaling: Some(StreamScaling {
            events: 50_000,
            partitions: 3,
            units_by_stage: [("source".to_owned(), 3), ("shuffled".to_owned(), 8)].into(),
            replay_events_per_s: 40_000.0,
            curve: crate::scaling::curve(
                "events/s",
                vec![
                    crate::scaling::point(1, 2, vec![20_000.0], vec![None], 0),
                    crate::scaling::point(2, 2, vec![30_000.0], vec![None], 0),
                ],
            ),
            cost: vec![StreamCostPoint {
                workers: 1,
                core_seconds_per_million: 40.0,
                coordinator_share: 0.01,
                cores_used: 0.9,
            }],
            oracle_matched: true,
        }),
        stream_balance: Some(StreamBalance {
            events: 50_000,
            workers: 2,
            shares: vec![StreamWorkerShare {
                name: "eval-0".into(),
                source_records: 25_000,
                shuffled_records: 20_000,
                source_share: 0.5,
                shuffled_share: 0.5,
                cpu_s: 1.0,
                cpu_share: 0.5,
            }],
            source_spread: None,
            shuffled_spread: None,
            cpu_spread: None,
            oracle_matched: true,
        }),
        stream_recovery: Some(StreamRecovery {
            events: 50_000,
            rate: 5_000.0,
            workers: 2,
            worker_timeout_ms: 1000,
            heartbeat_ms: 200,
            runs: vec![StreamRecoveryRun {
                killed_worker: "eval-0".into(),
                units_killed: 6,
                killed_at_s: 4.0,
                normal_lag: 2500,
                peak_lag: 9000,
                units_back_s: Some(1.2),
                lag_normal_s: Some(2.0),
                job_seconds: 11.0,
                samples: vec![stream_sample(3.75, 100), stream_sample(4.0, 9000)],
            }],
            median_lag_normal_s: Some(2.0),
            coordinator_runs: Vec::new(),
            coordinator_median_lag_normal_s: None,
            oracle_matched: true,
        }),
        stream_elasticity: Some(StreamElasticity {
            events: 50_000,
            rate: 5_000.0,
            job_seconds: 11.0,
            samples: vec![stream_sample(0.25, 100), stream_sample(4.0, 300)],
            events_log: vec![ScalingEvent {
                t_s: 3.4,
                what: "+2 workers".into(),
            }],
            phases: Vec::new(),
            oracle_matched: true,
        }),
        plots: vec!["balance.svg".into()],
    }
}

fn stream_sample(t_s: f64, lag: i64) -> StreamSample {
    StreamSample {
        t_s,
        lag,
        records_per_second: 5000.0,
        units: 11,
        workers: 2,
        stream_workers: 2,
    }
}
