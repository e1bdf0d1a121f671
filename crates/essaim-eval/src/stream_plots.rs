//! The plots of the stream scenarios, drawn from their results alone (pure, like
//! `plots.rs`, which calls this).

use crate::Results;
use crate::plots::{PlotFile, scaling_charts};
use crate::stream_stack::StreamSample;
use essaim_report::svg::{Chart, Marker, MarkerAt, PALETTE, Series, SeriesKind, XAxis, row_to_svg};

/// Appends the plots of the stream scenarios that ran.
pub fn stream_plots(results: &Results, plots: &mut Vec<PlotFile>) {
    if let Some(scaling) = &results.stream_scaling {
        plots.push(PlotFile {
            file_name: "stream_throughput.svg",
            svg: row_to_svg(
                "Streaming throughput vs workers: flights pipeline",
                &scaling_charts(
                    "flights, NATS → PostgreSQL",
                    &scaling.curve,
                    Some(results.machine.cores),
                ),
            ),
        });
        let labels = scaling
            .cost
            .iter()
            .map(|point| format!("{} worker{}", point.workers, plural(point.workers)))
            .collect();
        let chart = Chart {
            title: "Cost per million events (median; NATS and PostgreSQL not counted)".into(),
            x_label: "workers".into(),
            y_label: "core-seconds per million events".into(),
            x_axis: XAxis::Categories(labels),
            series: vec![Series {
                name: "coordinator + workers".into(),
                colour: PALETTE[0],
                kind: SeriesKind::Bars,
                points: scaling
                    .cost
                    .iter()
                    .enumerate()
                    .map(|(index, point)| (index as f64, point.core_seconds_per_million))
                    .collect(),
            }],
            markers: Vec::new(),
        };
        plots.push(PlotFile {
            file_name: "stream_cost.svg",
            svg: chart.to_svg(),
        });
    }
    if let Some(balance) = &results.stream_balance {
        let labels = balance
            .shares
            .iter()
            .map(|share| share.name.clone())
            .collect();
        let bars =
            |name: &str, colour, value: fn(&crate::stream_balance::StreamWorkerShare) -> f64| {
                Series {
                    name: name.into(),
                    colour,
                    kind: SeriesKind::Bars,
                    points: balance
                        .shares
                        .iter()
                        .enumerate()
                        .map(|(index, share)| (index as f64, value(share) * 100.0))
                        .collect(),
                }
            };
        let chart = Chart {
            title: format!("Load of a pipeline on {} workers", balance.workers),
            x_label: "worker".into(),
            y_label: "% of the run".into(),
            x_axis: XAxis::Categories(labels),
            series: vec![
                bars("source records", PALETTE[0], |share| share.source_share),
                bars("shuffled records", PALETTE[1], |share| share.shuffled_share),
                bars("CPU time", PALETTE[2], |share| share.cpu_share),
            ],
            markers: Vec::new(),
        };
        plots.push(PlotFile {
            file_name: "stream_balance.svg",
            svg: chart.to_svg(),
        });
    }
    let recoveries = results.stream_recovery.as_ref().map(|recovery| {
        [
            ("stream_recovery.svg", "worker", recovery.runs.first()),
            (
                "stream_recovery_coordinator.svg",
                "coordinator",
                recovery.coordinator_runs.first(),
            ),
        ]
    });
    for (file_name, victim, run) in recoveries.into_iter().flatten() {
        let Some(run) = run else { continue };
        let mut markers = vec![Marker {
            at: MarkerAt::X(run.killed_at_s),
            label: format!("SIGKILL {}", run.killed_worker),
        }];
        if let Some(normal) = run.lag_normal_s {
            markers.push(Marker {
                at: MarkerAt::X(run.killed_at_s + normal),
                label: "lag back to normal".into(),
            });
        }
        plots.push(PlotFile {
            file_name,
            svg: row_to_svg(
                &format!("A pipeline after SIGKILL of the {victim}"),
                &timeline_charts(&run.samples, &markers),
            ),
        });
    }
    if let Some(elasticity) = &results.stream_elasticity {
        let markers: Vec<Marker> = elasticity
            .events_log
            .iter()
            .map(|event| Marker {
                at: MarkerAt::X(event.t_s),
                label: event.what.clone(),
            })
            .collect();
        plots.push(PlotFile {
            file_name: "stream_elasticity.svg",
            svg: row_to_svg(
                "A pipeline while workers are added and drained",
                &timeline_charts(&elasticity.samples, &markers),
            ),
        });
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// The lag over time, and the workers over time, with the same markers.
fn timeline_charts(samples: &[StreamSample], markers: &[Marker]) -> Vec<Chart> {
    let line = |name: &str, colour, value: fn(&StreamSample) -> f64| Series {
        name: name.into(),
        colour,
        kind: SeriesKind::Line,
        points: samples
            .iter()
            .map(|sample| (sample.t_s, value(sample)))
            .collect(),
    };
    vec![
        Chart {
            title: "Lag (messages not yet read, all units)".into(),
            x_label: "seconds since submission".into(),
            y_label: "messages".into(),
            x_axis: XAxis::Linear { bar_width: 0.0 },
            series: vec![line("lag", PALETTE[0], |sample| sample.lag as f64)],
            markers: markers.to_vec(),
        },
        Chart {
            title: "Workers".into(),
            x_label: "seconds since submission".into(),
            y_label: "workers".into(),
            x_axis: XAxis::Linear { bar_width: 0.0 },
            series: vec![
                line("live", PALETTE[0], |sample| f64::from(sample.workers)),
                line("running units", PALETTE[1], |sample| {
                    f64::from(sample.stream_workers)
                }),
            ],
            markers: markers.to_vec(),
        },
    ]
}
