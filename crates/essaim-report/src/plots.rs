//! The four plots of `essaim report`, as charts of `svg`, and the numbers they
//! show: throughput over time, work per worker and how balanced it is, the duration
//! histogram with its percentiles, and retries and failures over time.
//!
//! Pure, like the page that holds them (`html`): data in, SVG out.

use crate::svg::{
    Chart, Marker, MarkerAt, PALETTE, Series, SeriesKind, XAxis, format_number, row_to_svg,
};
use essaim_coordinator::rest::{BucketView, DurationsView, JobDetail, WorkerShareView};

/// One plot: its file name in the report directory and its SVG element.
pub struct Plot {
    /// E.g. `throughput.svg`.
    pub file_name: &'static str,
    /// Its heading on the page.
    pub heading: &'static str,
    /// The `<svg>` element.
    pub svg: String,
}

/// Returns the four plots of a job, in page order.
pub fn plots(detail: &JobDetail) -> Vec<Plot> {
    vec![
        Plot {
            file_name: "throughput.svg",
            heading: "Throughput over time",
            svg: throughput_chart(detail).to_svg(),
        },
        Plot {
            file_name: "workers.svg",
            heading: "Work per worker",
            svg: row_to_svg("Work per worker", &workers_charts(&detail.history.workers)),
        },
        Plot {
            file_name: "durations.svg",
            heading: "Task durations",
            svg: durations_chart(&detail.history.durations).to_svg(),
        },
        Plot {
            file_name: "failures.svg",
            heading: "Retries and failures over time",
            svg: failures_chart(detail).to_svg(),
        },
    ]
}

/// How evenly the job's busy time was spread over the workers that ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    /// Workers counted.
    pub workers: usize,
    /// Mean busy time, ms.
    pub mean_busy_ms: f64,
    /// Largest busy time, ms.
    pub max_busy_ms: f64,
    /// Largest over mean: 1 is perfect balance; with N workers, N means one did it all.
    pub max_over_mean: f64,
    /// Population standard deviation over mean: 0 is perfect balance.
    pub coefficient_of_variation: f64,
}

/// Returns the balance of busy time over `shares`, leaving out the `other` aggregate
/// (workers past the per-job limit), or `None` without busy time to compare.
pub fn balance(shares: &[WorkerShareView]) -> Option<Balance> {
    let busy: Vec<f64> = shares
        .iter()
        .filter(|share| share.worker_id != "other")
        .map(|share| share.busy_ms as f64)
        .collect();
    if busy.is_empty() {
        return None;
    }
    let mean = busy.iter().sum::<f64>() / busy.len() as f64;
    if mean <= 0.0 {
        return None;
    }
    let max = busy.iter().copied().fold(0.0, f64::max);
    let variance = busy.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / busy.len() as f64;
    Some(Balance {
        workers: busy.len(),
        mean_busy_ms: mean,
        max_busy_ms: max,
        max_over_mean: max / mean,
        coefficient_of_variation: variance.sqrt() / mean,
    })
}

// ------------------------------------------------------------------ charts

/// Start of the time axis: the job's submission (or its first bucket, if earlier).
fn time_origin_ms(detail: &JobDetail) -> u64 {
    let first_bucket = detail.history.timeline.first().map(|b| b.start_unix_ms);
    first_bucket.map_or(detail.job.submitted_unix_ms, |start| {
        start.min(detail.job.submitted_unix_ms)
    })
}

fn seconds_since(origin_ms: u64, unix_ms: u64) -> f64 {
    (unix_ms as f64 - origin_ms as f64) / 1000.0
}

/// (a) Results committed and attempts failed per second, per bucket.
fn throughput_chart(detail: &JobDetail) -> Chart {
    let origin = time_origin_ms(detail);
    let bucket_seconds = detail.history.bucket_ms.max(1) as f64 / 1000.0;
    let rate_series = |name: &str, colour, count: fn(&BucketView) -> u64| Series {
        name: name.into(),
        colour,
        kind: SeriesKind::Line,
        points: detail
            .history
            .timeline
            .iter()
            .map(|bucket| {
                let middle = seconds_since(origin, bucket.start_unix_ms) + bucket_seconds / 2.0;
                (middle, count(bucket) as f64 / bucket_seconds)
            })
            .collect(),
    };
    let committed = rate_series("committed / s", PALETTE[0], |b| b.committed);
    let failed = rate_series("failed attempts / s", PALETTE[1], |b| b.failed);
    let mut markers = Vec::new();
    if let Some(rate) = overall_rate(detail, None) {
        markers.push(Marker {
            at: MarkerAt::Y(rate),
            label: format!("mean {} / s", format_number(round_to(rate, 3))),
        });
    }
    Chart {
        title: format!(
            "Throughput (buckets of {})",
            format_duration_ms(detail.history.bucket_ms)
        ),
        x_label: "seconds since submission".into(),
        y_label: "per second".into(),
        x_axis: XAxis::Linear { bar_width: 0.0 },
        series: vec![committed, failed],
        markers,
    }
}

/// (b) Tasks and busy time per worker, with the mean busy time marked.
fn workers_charts(shares: &[WorkerShareView]) -> [Chart; 2] {
    let labels: Vec<String> = shares.iter().map(worker_name).collect();
    let indexed = |value: fn(&WorkerShareView) -> f64| -> Vec<(f64, f64)> {
        shares
            .iter()
            .enumerate()
            .map(|(index, share)| (index as f64, value(share)))
            .collect()
    };
    let tasks = Chart {
        title: "Tasks per worker".into(),
        x_label: "worker".into(),
        y_label: "tasks".into(),
        x_axis: XAxis::Categories(labels.clone()),
        series: vec![
            Series {
                name: "committed".into(),
                colour: PALETTE[0],
                kind: SeriesKind::Bars,
                points: indexed(|share| share.committed as f64),
            },
            Series {
                name: "failed attempts".into(),
                colour: PALETTE[1],
                kind: SeriesKind::Bars,
                points: indexed(|share| share.failed as f64),
            },
        ],
        markers: Vec::new(),
    };
    let mut markers = Vec::new();
    if let Some(balance) = balance(shares) {
        markers.push(Marker {
            at: MarkerAt::Y(balance.mean_busy_ms / 1000.0),
            label: format!(
                "mean {} s; max/mean {:.2}",
                format_number(round_to(balance.mean_busy_ms / 1000.0, 3)),
                balance.max_over_mean
            ),
        });
    }
    let busy = Chart {
        title: "Busy time per worker".into(),
        x_label: "worker".into(),
        y_label: "seconds of committed attempts".into(),
        x_axis: XAxis::Categories(labels),
        series: vec![Series {
            name: "busy time".into(),
            colour: PALETTE[2],
            kind: SeriesKind::Bars,
            points: indexed(|share| share.busy_ms as f64 / 1000.0),
        }],
        markers,
    };
    [tasks, busy]
}

fn worker_name(share: &WorkerShareView) -> String {
    if share.name.is_empty() {
        share.worker_id.clone()
    } else {
        share.name.clone()
    }
}

/// (c) The duration histogram, trimmed to its non-empty range, with p50/p95/p99 marked.
fn durations_chart(durations: &DurationsView) -> Chart {
    let bucket_count = durations.counts.len();
    let non_empty: Vec<usize> = (0..bucket_count)
        .filter(|index| durations.counts[*index] > 0)
        .collect();
    // One empty bucket either side, so the shape's edges show.
    let first = non_empty.first().map_or(0, |index| index.saturating_sub(1));
    let last = non_empty.last().map_or(bucket_count.min(8), |index| {
        (index + 1).min(bucket_count.saturating_sub(1))
    });
    let labels: Vec<String> = (first..=last)
        .map(|index| match durations.bounds_ms.get(index) {
            Some(bound) => format!("≤{}", format_duration_ms(*bound)),
            None => format!(
                ">{}",
                format_duration_ms(durations.bounds_ms.last().copied().unwrap_or(0))
            ),
        })
        .collect();
    let points = (first..=last)
        .map(|index| {
            (
                (index - first) as f64,
                durations.counts.get(index).copied().unwrap_or(0) as f64,
            )
        })
        .collect();
    let mut markers = Vec::new();
    let quantiles = [
        ("p50", durations.p50_ms),
        ("p95", durations.p95_ms),
        ("p99", durations.p99_ms),
    ];
    for (name, value) in quantiles {
        let Some(value) = value else { continue };
        let x = histogram_position(&durations.bounds_ms, value) - first as f64;
        markers.push(Marker {
            at: MarkerAt::X(x),
            label: format!("{name} ≤ {}", format_duration_ms(value)),
        });
    }
    Chart {
        title: format!("Durations of {} committed attempts", durations.count),
        x_label: "duration (bucket upper bound)".into(),
        y_label: "attempts".into(),
        x_axis: XAxis::Categories(labels),
        series: vec![Series {
            name: "attempts".into(),
            colour: PALETTE[0],
            kind: SeriesKind::Bars,
            points,
        }],
        markers,
    }
}

/// Returns where `value_ms` falls on the histogram's category axis: bucket `i` spans
/// `[i, i + 1]` and covers `(bounds[i-1], bounds[i]]`; inside it, the position is
/// proportional on a log scale (the bounds grow geometrically).
fn histogram_position(bounds_ms: &[u64], value_ms: u64) -> f64 {
    let Some(index) = bounds_ms.iter().position(|bound| value_ms <= *bound) else {
        return bounds_ms.len() as f64 + 1.0;
    };
    let upper = bounds_ms[index] as f64;
    let lower = if index == 0 {
        0.0
    } else {
        bounds_ms[index - 1] as f64
    };
    let fraction = if lower <= 0.0 {
        value_ms as f64 / upper.max(1.0)
    } else {
        ((value_ms as f64).ln() - lower.ln()) / (upper.ln() - lower.ln())
    };
    index as f64 + fraction.clamp(0.0, 1.0)
}

/// (d) Failed attempts, dead letters and lost outputs per bucket.
fn failures_chart(detail: &JobDetail) -> Chart {
    let origin = time_origin_ms(detail);
    let bucket_seconds = detail.history.bucket_ms.max(1) as f64 / 1000.0;
    let counts = |name: &str, colour, count: fn(&BucketView) -> u64| Series {
        name: name.into(),
        colour,
        kind: SeriesKind::Bars,
        points: detail
            .history
            .timeline
            .iter()
            .map(|bucket| {
                (
                    seconds_since(origin, bucket.start_unix_ms),
                    count(bucket) as f64,
                )
            })
            .collect(),
    };
    Chart {
        title: format!(
            "Retries and failures (buckets of {})",
            format_duration_ms(detail.history.bucket_ms)
        ),
        x_label: "seconds since submission".into(),
        y_label: "per bucket".into(),
        x_axis: XAxis::Linear {
            bar_width: bucket_seconds,
        },
        series: vec![
            counts("failed attempts", PALETTE[1], |b| b.failed),
            counts("dead-lettered", PALETTE[3], |b| b.dead_lettered),
            counts("outputs lost", PALETTE[4], |b| b.outputs_lost),
        ],
        markers: Vec::new(),
    }
}

/// Committed tasks per second of the job's life so far (to `now_ms` when running).
pub fn overall_rate(detail: &JobDetail, now_ms: Option<u64>) -> Option<f64> {
    let job = &detail.job;
    let end = job.finished_unix_ms.or(now_ms).or_else(|| {
        detail
            .history
            .timeline
            .last()
            .map(|bucket| bucket.start_unix_ms + detail.history.bucket_ms)
    })?;
    let seconds = end.saturating_sub(job.submitted_unix_ms) as f64 / 1000.0;
    (seconds > 0.0).then(|| f64::from(job.tasks.succeeded) / seconds)
}

// ------------------------------------------------------------------ formatting

/// Rounds to `decimals` decimals, for labels.
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// Formats a duration for people: `750 ms`, `1.02 s`, `42.5 s`, `3.2 min`, `1.5 h`.
pub fn format_duration_ms(ms: u64) -> String {
    let seconds = ms as f64 / 1000.0;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..10_000 => format!("{seconds:.2} s"),
        10_000..120_000 => format!("{seconds:.1} s"),
        120_000..7_200_000 => format!("{:.1} min", seconds / 60.0),
        _ => format!("{:.1} h", seconds / 3600.0),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use essaim_coordinator::rest::{
        FailureView, JobHistoryView, JobSummary, SlowTaskView, StageView, TaskCountsView,
    };

    pub(crate) fn share(name: &str, committed: u64, busy_ms: u64) -> WorkerShareView {
        WorkerShareView {
            worker_id: format!("id-{name}"),
            name: name.into(),
            committed,
            failed: 1,
            busy_ms,
            build: None,
        }
    }

    /// A running job of 40 tasks on two workers, with a failure.
    pub(crate) fn detail() -> JobDetail {
        let mut counts = vec![0; 25];
        counts[5] = 30;
        counts[6] = 8;
        counts[9] = 2;
        JobDetail {
            job: JobSummary {
                id: 7,
                name: "nightly <etl> & co".into(),
                state: "running".into(),
                reason: String::new(),
                priority: 0,
                total: 40,
                tasks: TaskCountsView {
                    pending: 0,
                    running: 2,
                    retrying: 1,
                    succeeded: 37,
                    dead_lettered: 0,
                    purged: 0,
                    skipped: 0,
                },
                stages: vec![StageView {
                    kind: "command".into(),
                    total: 40,
                    succeeded: 37,
                    running: 2,
                    failed: 0,
                }],
                submitted_unix_ms: 1_700_000_000_000,
                finished_unix_ms: None,
                attempts_started: 45,
                attempts_failed: 4,
                results_rejected: 0,
                speculative_attempts: 1,
                outputs_lost: 0,
                processing_version: Some("nightly v2 · essaim 0.1.0 (abc1234)".into()),
                owner: Some("ci".into()),
                required_labels: Default::default(),
                waiting_for_labels: false,
                waiting_for_anti_affinity: false,
            },
            counters: [("bytes_read".to_string(), 12)].into_iter().collect(),
            queue: None,
            history: JobHistoryView {
                bucket_ms: 1000,
                timeline: (0..5)
                    .map(|second| BucketView {
                        start_unix_ms: 1_700_000_000_000 + second * 1000,
                        submitted: if second == 0 { 40 } else { 0 },
                        committed: 8,
                        failed: second % 2,
                        dead_lettered: 0,
                        outputs_lost: 0,
                        busy_ms: 800,
                    })
                    .collect(),
                workers: vec![share("worker-1", 20, 2000), share("worker-2", 17, 1000)],
                durations: DurationsView {
                    bounds_ms: (0..24).map(|power| 1u64 << power).collect(),
                    counts,
                    count: 40,
                    mean_ms: Some(50.0),
                    min_ms: Some(20),
                    p50_ms: Some(32),
                    p95_ms: Some(64),
                    p99_ms: Some(400),
                    max_ms: Some(400),
                },
                slowest: vec![SlowTaskView {
                    task_index: 3,
                    duration_ms: 400,
                    worker: "worker-1".into(),
                    running: false,
                }],
                recent_failures: vec![FailureView {
                    task_index: 9,
                    attempt_id: "a1".into(),
                    worker: "worker-2".into(),
                    at_unix_ms: 1_700_000_001_000,
                    message: "exit code 3".into(),
                    exit_code: Some(3),
                    stderr_tail: "</pre><script>boom()</script>".into(),
                    retryable: true,
                }],
            },
        }
    }

    #[test]
    fn balance_is_max_over_mean_and_the_coefficient_of_variation() {
        let balance = balance(&[share("a", 1, 3000), share("b", 1, 1000)]).unwrap();
        assert_eq!(balance.workers, 2);
        assert!((balance.max_over_mean - 1.5).abs() < 1e-9, "{balance:?}");
        assert!(
            (balance.coefficient_of_variation - 0.5).abs() < 1e-9,
            "{balance:?}"
        );
        let even = super::balance(&[share("a", 1, 500), share("b", 1, 500)]).unwrap();
        assert_eq!(even.coefficient_of_variation, 0.0);
        assert_eq!(super::balance(&[share("a", 0, 0)]), None);
        assert_eq!(super::balance(&[]), None);
    }

    #[test]
    fn histogram_positions_are_bucket_edges_or_log_interpolated() {
        let bounds = [1, 2, 4, 8];
        assert_eq!(histogram_position(&bounds, 1), 1.0);
        assert_eq!(histogram_position(&bounds, 4), 3.0);
        assert!((histogram_position(&bounds, 3) - (2.0 + 3f64.log2() - 1.0)).abs() < 1e-9);
        assert_eq!(histogram_position(&bounds, 100), 5.0);
    }

    #[test]
    fn durations_format_for_people() {
        assert_eq!(format_duration_ms(999), "999 ms");
        assert_eq!(format_duration_ms(1024), "1.02 s");
        assert_eq!(format_duration_ms(90_000), "90.0 s");
        assert_eq!(format_duration_ms(600_000), "10.0 min");
    }
}
