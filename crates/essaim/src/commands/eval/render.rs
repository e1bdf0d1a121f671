//! The evaluation's plots (SVG, drawn with `report_svg`) and its Markdown summary, from
//! the results alone.
//!
//! Pure: no I/O and no clock, so the tests can check the output without a cluster, and
//! the same `results.json` always gives the same files.

use super::Results;
use super::balance::BalanceCase;
use super::scaling::ScalingCurve;
use crate::report_svg::{Chart, Marker, MarkerAt, PALETTE, Series, SeriesKind, XAxis, row_to_svg};
use std::fmt::Write;

/// One plot file.
pub struct PlotFile {
    /// E.g. `throughput_sleep.svg`.
    pub file_name: &'static str,
    /// The `<svg>` element.
    pub svg: String,
}

/// Returns the plots of the scenarios that ran.
pub fn plots(results: &Results) -> Vec<PlotFile> {
    let mut plots = Vec::new();
    if let Some(sleep) = &results.throughput_sleep {
        plots.push(PlotFile {
            file_name: "throughput_sleep.svg",
            svg: row_to_svg(
                "Throughput vs workers: sleep tasks",
                &scaling_charts(
                    &format!("{} ms sleep tasks", sleep.task_ms),
                    &sleep.curve,
                    None,
                ),
            ),
        });
    }
    if let Some(wordcount) = &results.throughput_wordcount {
        plots.push(PlotFile {
            file_name: "throughput_wordcount.svg",
            svg: row_to_svg(
                "Throughput vs workers: word count",
                &scaling_charts(
                    "word count (CPU-bound)",
                    &wordcount.curve,
                    Some(results.machine.cores),
                ),
            ),
        });
        plots.push(PlotFile {
            file_name: "cost.svg",
            svg: cost_chart(results).to_svg(),
        });
    }
    if let Some(balance) = &results.balance {
        plots.push(PlotFile {
            file_name: "balance.svg",
            svg: row_to_svg(
                "Load distribution across workers",
                &[
                    balance_chart("Equal workers", &balance.homogeneous),
                    balance_chart("Workers with 1, 2, 4… slots", &balance.heterogeneous),
                ],
            ),
        });
    }
    if let Some(recovery) = &results.recovery {
        let labels: Vec<String> = recovery
            .crash
            .iter()
            .map(|case| format!("timeout {}", seconds_label(case.worker_timeout_ms)))
            .collect();
        let bars = |name: &str, colour, value: fn(&super::recovery::CrashCase) -> f64| Series {
            name: name.into(),
            colour,
            kind: SeriesKind::Bars,
            points: recovery
                .crash
                .iter()
                .enumerate()
                .map(|(index, case)| (index as f64, value(case)))
                .collect(),
        };
        let chart = Chart {
            title: "Recovery after SIGKILL of a worker (median)".into(),
            x_label: "coordinator --worker-timeout-ms".into(),
            y_label: "seconds after the kill".into(),
            x_axis: XAxis::Categories(labels),
            series: vec![
                bars("worker timeout", PALETTE[5], |case| {
                    case.worker_timeout_ms as f64 / 1000.0
                }),
                bars("tasks re-queued", PALETTE[1], |case| case.median_requeued_s),
                bars("tasks running again", PALETTE[0], |case| {
                    case.median_running_elsewhere_s
                }),
            ],
            markers: Vec::new(),
        };
        plots.push(PlotFile {
            file_name: "recovery.svg",
            svg: chart.to_svg(),
        });
    }
    if let Some(elasticity) = &results.elasticity {
        plots.push(PlotFile {
            file_name: "elasticity.svg",
            svg: row_to_svg(
                "Scaling out and draining mid-job",
                &elasticity_charts(elasticity),
            ),
        });
    }
    plots
}

/// Throughput with the linear ideal, and speed-up with its ideal.
fn scaling_charts(what: &str, curve: &ScalingCurve, cores: Option<usize>) -> Vec<Chart> {
    let baseline = curve
        .points
        .iter()
        .find(|point| point.workers == 1)
        .map(|point| point.median);
    let line = |name: &str, colour, points: Vec<(f64, f64)>| Series {
        name: name.into(),
        colour,
        kind: SeriesKind::Line,
        points,
    };
    let measured = curve
        .points
        .iter()
        .map(|point| (point.workers as f64, point.median))
        .collect();
    let ideal_throughput = curve
        .points
        .iter()
        .filter_map(|point| {
            baseline.map(|base| (point.workers as f64, base * point.workers as f64))
        })
        .collect();
    let speedups = curve
        .points
        .iter()
        .filter_map(|point| point.speedup.map(|speedup| (point.workers as f64, speedup)))
        .collect();
    let ideal_speedup = curve
        .points
        .iter()
        .map(|point| (point.workers as f64, point.workers as f64))
        .collect();
    let markers: Vec<Marker> = cores
        .map(|cores| Marker {
            at: MarkerAt::X(cores as f64),
            label: format!("{cores} cores"),
        })
        .into_iter()
        .collect();
    vec![
        Chart {
            title: format!("Throughput, {what} (median)"),
            x_label: "workers".into(),
            y_label: curve.unit.into(),
            x_axis: XAxis::Linear { bar_width: 0.0 },
            series: vec![
                line("measured", PALETTE[0], measured),
                line("linear", PALETTE[5], ideal_throughput),
            ],
            markers: markers.clone(),
        },
        Chart {
            title: "Speed-up over 1 worker".into(),
            x_label: "workers".into(),
            y_label: "speed-up".into(),
            x_axis: XAxis::Linear { bar_width: 0.0 },
            series: vec![
                line("measured", PALETTE[1], speedups),
                line("linear", PALETTE[5], ideal_speedup),
            ],
            markers,
        },
    ]
}

/// Committed-task share against slot share, per worker, for the plotted run.
fn balance_chart(title: &str, case: &BalanceCase) -> Chart {
    let Some(run) = case.runs.get(case.plotted_run) else {
        return Chart {
            title: title.into(),
            x_label: "worker".into(),
            y_label: "share".into(),
            x_axis: XAxis::Categories(Vec::new()),
            series: Vec::new(),
            markers: Vec::new(),
        };
    };
    let labels = run
        .workers
        .iter()
        .map(|worker| {
            let plural = if worker.slots == 1 { "" } else { "s" };
            format!("{} ({} slot{plural})", worker.name, worker.slots)
        })
        .collect();
    let bars = |name: &str, colour, value: fn(&super::balance::WorkerShare) -> f64| Series {
        name: name.into(),
        colour,
        kind: SeriesKind::Bars,
        points: run
            .workers
            .iter()
            .enumerate()
            .map(|(index, worker)| (index as f64, value(worker) * 100.0))
            .collect(),
    };
    let busy_total: f64 = run.workers.iter().map(|worker| worker.busy_s).sum();
    let busy_share = Series {
        name: "share of busy time".into(),
        colour: PALETTE[2],
        kind: SeriesKind::Bars,
        points: run
            .workers
            .iter()
            .enumerate()
            .map(|(index, worker)| (index as f64, worker.busy_s / busy_total * 100.0))
            .collect(),
    };
    Chart {
        title: format!(
            "{title}: busy-time CV per slot {}",
            number(case.median_busy_cv, 3)
        ),
        x_label: "worker".into(),
        y_label: "% of the job".into(),
        x_axis: XAxis::Categories(labels),
        series: vec![
            bars("share of slots", PALETTE[5], |worker| worker.slot_share),
            bars("share of tasks", PALETTE[0], |worker| {
                worker.committed_share
            }),
            busy_share,
        ],
        markers: Vec::new(),
    }
}

fn elasticity_charts(elasticity: &super::elasticity::Elasticity) -> Vec<Chart> {
    let markers: Vec<Marker> = elasticity
        .events
        .iter()
        .map(|event| Marker {
            at: MarkerAt::X(event.t_s),
            label: event.what.clone(),
        })
        .collect();
    let committed = Series {
        name: "committed/s".into(),
        colour: PALETTE[0],
        kind: SeriesKind::Line,
        points: elasticity
            .throughput
            .iter()
            // In the middle of its second.
            .map(|second| (second.t_s + 0.5, second.committed as f64))
            .collect(),
    };
    let workers = Series {
        name: "live workers".into(),
        colour: PALETTE[0],
        kind: SeriesKind::Line,
        points: elasticity
            .samples
            .iter()
            .map(|sample| (sample.t_s, f64::from(sample.workers)))
            .collect(),
    };
    let recommended = Series {
        name: "recommended workers".into(),
        colour: PALETTE[1],
        kind: SeriesKind::Line,
        points: elasticity
            .samples
            .iter()
            .filter_map(|sample| sample.recommended_workers.map(|r| (sample.t_s, r as f64)))
            .collect(),
    };
    vec![
        Chart {
            title: format!(
                "Committed tasks per second ({} ms tasks)",
                elasticity.task_ms
            ),
            x_label: "seconds since submission".into(),
            y_label: "tasks per second".into(),
            x_axis: XAxis::Linear { bar_width: 0.0 },
            series: vec![committed],
            markers: markers.clone(),
        },
        Chart {
            title: "Workers: live and recommended".into(),
            x_label: "seconds since submission".into(),
            y_label: "workers".into(),
            x_axis: XAxis::Linear { bar_width: 0.0 },
            series: vec![workers, recommended],
            markers,
        },
    ]
}

fn cost_chart(results: &Results) -> Chart {
    let cost = results
        .throughput_wordcount
        .as_ref()
        .map(|wordcount| wordcount.cost.as_slice())
        .unwrap_or_default();
    let labels = cost
        .iter()
        .map(|point| format!("{} workers", point.workers))
        .collect();
    let bars = |name: &str, colour, value: fn(&super::scaling::CostPoint) -> f64| Series {
        name: name.into(),
        colour,
        kind: SeriesKind::Bars,
        points: cost
            .iter()
            .enumerate()
            .map(|(index, point)| (index as f64, value(point)))
            .collect(),
    };
    Chart {
        title: "Cost of the word count per GB of input (median)".into(),
        x_label: "workers (1 slot each)".into(),
        y_label: "seconds per GB".into(),
        x_axis: XAxis::Categories(labels),
        series: vec![
            bars("core-seconds (CPU)", PALETTE[0], |point| {
                point.core_seconds_per_gb
            }),
            bars("wall seconds", PALETTE[4], |point| {
                point.wall_seconds_per_gb
            }),
        ],
        markers: Vec::new(),
    }
}

// ------------------------------------------------------------------ Markdown

/// Returns `value` with `decimals` decimals, or `–` when it is not a number.
fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "–".into()
    }
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".into(), |value| number(value, decimals))
}

fn seconds_label(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{} s", millis / 1000)
    } else {
        format!("{} s", millis as f64 / 1000.0)
    }
}

/// Returns the Markdown summary of the results.
pub fn summary(results: &Results) -> String {
    let mut out = String::new();
    let machine = &results.machine;
    let _ = writeln!(out, "# essaim evaluation ({} mode)\n", results.mode);
    let _ = writeln!(
        out,
        "Machine: {} cores (`available_parallelism`), {}; load average before {} and after {}. Took {:.0} s.\n",
        machine.cores,
        machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        load(machine.load_average_before),
        load(machine.load_average_after),
        results.wall_seconds
    );
    if let Some(sleep) = &results.throughput_sleep {
        let _ = writeln!(
            out,
            "## 1a. Throughput vs workers: {} ms sleep tasks (I/O-bound)\n",
            sleep.task_ms
        );
        scaling_table(&mut out, &sleep.curve);
    }
    if let Some(wordcount) = &results.throughput_wordcount {
        let _ = writeln!(
            out,
            "## 1b. Throughput vs workers: word count of {} MB (CPU-bound)\n",
            number(wordcount.corpus_bytes as f64 / 1e6, 0)
        );
        let _ = writeln!(
            out,
            "{} map tasks, {} reducers, 1 slot per worker; this machine has {} cores, so CPU-bound work cannot scale past {} workers. Output matches the count made while writing the corpus: {}.\n",
            wordcount.map_tasks,
            wordcount.reducers,
            machine.cores,
            machine.cores,
            if wordcount.output_matches_oracle {
                "yes"
            } else {
                "NO"
            }
        );
        scaling_table(&mut out, &wordcount.curve);
        let _ = writeln!(out, "## 5. Cost: core-seconds per GB (word count)\n");
        let _ = writeln!(
            out,
            "| workers | core-s per GB (coordinator + workers) | coordinator's share | wall s per GB |\n|---|---|---|---|"
        );
        for point in &wordcount.cost {
            let _ = writeln!(
                out,
                "| {} | {} | {}% | {} |",
                point.workers,
                number(point.core_seconds_per_gb, 2),
                number(point.coordinator_share * 100.0, 1),
                number(point.wall_seconds_per_gb, 2)
            );
        }
        out.push('\n');
    }
    if let Some(balance) = &results.balance {
        let _ = writeln!(out, "## 2. Load distribution across workers\n");
        for case in [&balance.homogeneous, &balance.heterogeneous] {
            balance_table(&mut out, case);
        }
    }
    if let Some(recovery) = &results.recovery {
        let _ = writeln!(out, "## 3a. Recovery after SIGKILL of a worker\n");
        let _ = writeln!(
            out,
            "| worker timeout | heartbeat | runs | kill → re-queued, median (s) | kill → running again, median (min..max) (s) |\n|---|---|---|---|---|"
        );
        for case in &recovery.crash {
            let (low, high) = case.running_elsewhere_range_s;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} ({}..{}) |",
                seconds_label(case.worker_timeout_ms),
                seconds_label(case.heartbeat_ms),
                case.runs.len(),
                number(case.median_requeued_s, 3),
                number(case.median_running_elsewhere_s, 3),
                number(low, 3),
                number(high, 3)
            );
        }
        let _ = writeln!(
            out,
            "\n## 3b. Partition: a worker frozen past the timeout\n"
        );
        let _ = writeln!(
            out,
            "| run | frozen (s) | running when frozen | freeze → re-queued (s) | late results rejected by the coordinator | dropped by the worker | output complete and correct |\n|---|---|---|---|---|---|---|"
        );
        for (index, run) in recovery.partition.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                index + 1,
                number(run.frozen_s, 1),
                run.running_at_freeze,
                number(run.requeued_s, 3),
                run.results_rejected,
                run.dropped_by_worker,
                if run.output_complete_and_correct {
                    "yes"
                } else {
                    "NO"
                }
            );
        }
        out.push('\n');
    }
    if let Some(elasticity) = &results.elasticity {
        let _ = writeln!(out, "## 4. Scaling out and draining mid-job\n");
        let _ = writeln!(
            out,
            "{} tasks of {} ms, {} slots per worker, `--drain-target-secs {}`; the job took {} s; every task committed: {}.\n",
            elasticity.tasks,
            elasticity.task_ms,
            elasticity.slots_per_worker,
            number(elasticity.drain_target_secs, 0),
            number(elasticity.job_seconds, 1),
            if elasticity.all_committed {
                "yes"
            } else {
                "NO"
            }
        );
        let _ = writeln!(
            out,
            "| phase | from (s) | to (s) | committed/s, median |\n|---|---|---|---|"
        );
        for phase in &elasticity.phases {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                phase.label,
                number(phase.from_s, 1),
                number(phase.to_s, 1),
                optional(phase.median_committed_per_s, 0)
            );
        }
        let _ = writeln!(
            out,
            "\n| t (s) | live workers | busy slots | waiting tasks | recommended workers |\n|---|---|---|---|---|"
        );
        for sample in &elasticity.samples {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                number(sample.t_s, 1),
                sample.workers,
                sample.busy_slots,
                sample.tasks_waiting,
                sample
                    .recommended_workers
                    .map_or_else(|| "–".into(), |r| r.to_string())
            );
        }
        out.push('\n');
    }
    if !results.plots.is_empty() {
        let _ = writeln!(out, "## Plots\n");
        for plot in &results.plots {
            let _ = writeln!(out, "![{plot}]({plot})");
        }
    }
    out
}

fn load(load: Option<[f64; 3]>) -> String {
    load.map_or_else(
        || "unknown".into(),
        |[one, five, fifteen]| format!("{one:.2} / {five:.2} / {fifteen:.2}"),
    )
}

fn scaling_table(out: &mut String, curve: &ScalingCurve) {
    let _ = writeln!(
        out,
        "| workers | slots each | {} per run | median | speed-up | efficiency |\n|---|---|---|---|---|---|",
        curve.unit
    );
    for point in &curve.points {
        let runs: Vec<String> = point.runs.iter().map(|run| number(*run, 1)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            point.workers,
            point.slots_per_worker,
            runs.join(", "),
            number(point.median, 1),
            optional(point.speedup, 2),
            optional(point.efficiency, 2)
        );
    }
    out.push('\n');
}

fn balance_table(out: &mut String, case: &BalanceCase) {
    let _ = writeln!(
        out,
        "Workers with {:?} slots, tasks of {}–{} ms; over {} runs, per slot: committed-task CV {}, busy-time CV {}, busy-time max/mean {}. The run closest to the median:\n",
        case.slots,
        case.task_ms.0,
        case.task_ms.1,
        case.runs.len(),
        number(case.median_committed_cv, 3),
        number(case.median_busy_cv, 3),
        number(case.median_busy_max_over_mean, 3)
    );
    let Some(run) = case.runs.get(case.plotted_run) else {
        return;
    };
    let _ = writeln!(
        out,
        "| worker | slots | share of slots | committed | share of tasks | busy (s) |\n|---|---|---|---|---|---|"
    );
    for worker in &run.workers {
        let _ = writeln!(
            out,
            "| {} | {} | {}% | {} | {}% | {} |",
            worker.name,
            worker.slots,
            number(worker.slot_share * 100.0, 1),
            worker.committed,
            number(worker.committed_share * 100.0, 1),
            number(worker.busy_s, 2)
        );
    }
    let _ = writeln!(
        out,
        "| total | | | {} of {} tasks | | |\n",
        run.committed_sum, run.tasks
    );
}

#[cfg(test)]
mod tests {
    use super::super::balance::{Balance, BalanceRun, WorkerShare};
    use super::super::elasticity::{
        Elasticity, OverviewSample, Phase, ScalingEvent, SecondOfThroughput,
    };
    use super::super::recovery::{CrashCase, CrashRun, PartitionRun, Recovery};
    use super::super::scaling::{
        CostPoint, ScalingPoint, SleepScaling, WordcountRun, WordcountScaling,
    };
    use super::super::stats::spread;
    use super::super::{Machine, Plan};
    use super::*;

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

    fn sample_results() -> Results {
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
                }],
                cost: vec![CostPoint {
                    workers: 1,
                    core_seconds_per_gb: 6.4,
                    coordinator_share: 0.02,
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
            plots: vec!["balance.svg".into()],
        }
    }

    #[test]
    fn every_plot_is_a_well_formed_svg_document() {
        let results = sample_results();
        let plots = plots(&results);
        let names: Vec<&str> = plots.iter().map(|plot| plot.file_name).collect();
        assert_eq!(
            names,
            [
                "throughput_sleep.svg",
                "throughput_wordcount.svg",
                "cost.svg",
                "balance.svg",
                "recovery.svg",
                "elasticity.svg"
            ]
        );
        for plot in &plots {
            let document = crate::report_svg::document(&plot.svg);
            let parsed = roxmltree::Document::parse(&document)
                .unwrap_or_else(|error| panic!("{} is not XML: {error}", plot.file_name));
            assert_eq!(parsed.root_element().tag_name().name(), "svg");
        }
    }

    #[test]
    fn the_summary_has_a_table_per_question() {
        let summary = summary(&sample_results());
        for heading in [
            "## 1a.", "## 1b.", "## 2.", "## 3a.", "## 3b.", "## 4.", "## 5.",
        ] {
            assert!(summary.contains(heading), "{heading} missing:\n{summary}");
        }
        assert!(summary.contains("| 2 | 2 | 185.0 | 185.0 | 1.95 | 0.97 |"));
        assert!(summary.contains("| 1 s | 0.2 s | 1 | 1.050 | 1.060 (1.060..1.060) |"));
        assert!(summary.contains("cannot scale past 2 workers"));
        assert!(summary.contains("![balance.svg](balance.svg)"));
    }

    #[test]
    fn missing_numbers_print_as_dashes() {
        assert_eq!(number(f64::NAN, 2), "–");
        assert_eq!(optional(None, 1), "–");
        assert_eq!(number(1.23456, 2), "1.23");
        assert_eq!(seconds_label(5000), "5 s");
        assert_eq!(seconds_label(1500), "1.5 s");
    }
}
