//! The evaluation's plots, one SVG per question, drawn with `essaim_report::svg` from the
//! results alone.
//!
//! Pure: no I/O and no clock, so the same `results.json` always gives the same files.

use crate::Results;
use crate::balance::BalanceCase;
use crate::scaling::ScalingCurve;
use crate::summary::{number, seconds_label};
use essaim_report::svg::{Chart, Marker, MarkerAt, PALETTE, Series, SeriesKind, XAxis, row_to_svg};

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
                    "word count, CPU-bound",
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
    crate::stream_plots::stream_plots(results, &mut plots);
    plots
}

/// Throughput with the linear ideal, and speed-up with its ideal.
pub(crate) fn scaling_charts(what: &str, curve: &ScalingCurve, cores: Option<usize>) -> Vec<Chart> {
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
        .map(|point| match point.workers {
            1 => "1 worker".to_string(),
            workers => format!("{workers} workers"),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plot_is_a_well_formed_svg_document() {
        let results = super::super::fixture::sample_results();
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
                "elasticity.svg",
                "stream_throughput.svg",
                "stream_cost.svg",
                "stream_balance.svg",
                "stream_recovery.svg",
                "stream_elasticity.svg"
            ]
        );
        for plot in &plots {
            let document = essaim_report::svg::document(&plot.svg);
            let parsed = roxmltree::Document::parse(&document)
                .unwrap_or_else(|error| panic!("{} is not XML: {error}", plot.file_name));
            assert_eq!(parsed.root_element().tag_name().name(), "svg");
        }
    }
}
