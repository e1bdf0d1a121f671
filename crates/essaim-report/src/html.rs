//! The page of `essaim report`: from what the coordinator's REST API says about a job,
//! one self-contained HTML page with the plots of `plots` inlined.
//!
//! Pure: no I/O and no clock (the snapshot time comes in), so the same data always gives
//! the same bytes and the tests can check the page without a cluster. The page has no
//! script and loads nothing: it can be mailed, archived or attached to a ticket as is.

use crate::plots::{Plot, balance, format_duration_ms, overall_rate, plots, round_to};
use crate::svg::{escape, format_number};
use essaim_coordinator::rest::{DurationsView, JobDetail, QueueView, WorkerView};
use std::fmt::Write;

/// What the report is made from.
pub struct ReportInput<'a> {
    /// The job, its history and queue statistics.
    pub detail: &'a JobDetail,
    /// The workers alive at the snapshot.
    pub live_workers: &'a [WorkerView],
    /// The coordinator's clock when the data was read, ms since the Unix epoch.
    pub snapshot_unix_ms: u64,
    /// Where it was read from.
    pub coordinator_url: &'a str,
}

/// The rendered report.
pub struct Report {
    /// The page.
    pub html: String,
    /// The plots, in page order.
    pub plots: Vec<Plot>,
}

/// Attempts beyond each task's first, speculative copies excluded: every retry after a
/// failure, a lost lease or a lost output, and every requeue of a dead letter.
pub fn retries(detail: &JobDetail) -> u64 {
    let job = &detail.job;
    let tasks_never_started = u64::from(job.tasks.pending) + u64::from(job.tasks.skipped);
    let tasks_started = u64::from(job.total).saturating_sub(tasks_never_started);
    job.attempts_started
        .saturating_sub(job.speculative_attempts)
        .saturating_sub(tasks_started)
}

/// Renders the report.
pub fn render(input: &ReportInput<'_>) -> Report {
    let plots = plots(input.detail);
    let html = page(input, &plots);
    Report { html, plots }
}

// ------------------------------------------------------------------ page

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1480px;color:#222;padding:0 16px}\
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.meta{color:#666;margin-top:0}table{border-collapse:collapse;margin:8px 0}\
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}\
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.tables{display:flex;flex-wrap:wrap;gap:24px}.plot svg{max-width:100%;height:auto}\
pre{background:#f7f7f7;border:1px solid #e4e4e4;padding:6px;margin:0;max-height:16em;overflow:auto;font-size:12px;white-space:pre-wrap}\
.state-succeeded{color:#1a7f37}.state-failed,.state-cancelled{color:#cf222e}.state-running{color:#0969da}";

fn page(input: &ReportInput<'_>, plots: &[Plot]) -> String {
    let detail = input.detail;
    let job = &detail.job;
    let name = if job.name.is_empty() {
        "unnamed".to_string()
    } else {
        job.name.clone()
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>essaim report: job {} ({})</title><style>{STYLE}</style></head><body>\n",
        job.id,
        escape(&name)
    );
    let _ = writeln!(
        html,
        "<h1>Job {} — {} <span class=\"state-{state}\">{state}</span></h1>",
        job.id,
        escape(&name),
        state = escape(&job.state)
    );
    let snapshot_note = if job.state == "running" {
        "a snapshot of a running job; run the command again for a newer one"
    } else {
        "the job had finished"
    };
    let _ = writeln!(
        html,
        "<p class=\"meta\">Read from {} at {} ({snapshot_note}).</p>",
        escape(input.coordinator_url),
        format_unix_ms(input.snapshot_unix_ms)
    );
    if !job.reason.is_empty() {
        let _ = writeln!(html, "<p><b>Reason:</b> {}</p>", escape(&job.reason));
    }
    html.push_str("<h2>Summary</h2>\n<div class=\"tables\">");
    html.push_str(&summary_table(input));
    html.push_str(&tasks_table(detail));
    html.push_str(&durations_table(&detail.history.durations));
    if let Some(queue) = &detail.queue {
        html.push_str(&queue_table(queue));
    }
    if !detail.counters.is_empty() {
        let rows: Vec<(String, String)> = detail
            .counters
            .iter()
            .map(|(name, value)| (name.clone(), value.to_string()))
            .collect();
        html.push_str(&key_value_table("Counters", &rows));
    }
    html.push_str("</div>\n");
    for plot in plots {
        let _ = write!(
            html,
            "<h2>{}</h2>\n<div class=\"plot\">{}</div>\n",
            escape(plot.heading),
            plot.svg
        );
        if plot.file_name == "workers.svg" {
            html.push_str(&balance_paragraph(detail, input.live_workers));
        }
        if plot.file_name == "durations.svg" && !detail.history.slowest.is_empty() {
            html.push_str(&slowest_table(detail));
        }
    }
    html.push_str(&failures_section(detail));
    html.push_str("</body></html>\n");
    html
}

fn summary_table(input: &ReportInput<'_>) -> String {
    let detail = input.detail;
    let job = &detail.job;
    let end = job.finished_unix_ms.unwrap_or(input.snapshot_unix_ms);
    let elapsed_ms = end.saturating_sub(job.submitted_unix_ms);
    let mut rows = vec![
        ("State".to_string(), job.state.clone()),
        ("Submitted".into(), format_unix_ms(job.submitted_unix_ms)),
        (
            "Finished".into(),
            job.finished_unix_ms
                .map_or_else(|| "not yet".into(), format_unix_ms),
        ),
        (
            if job.finished_unix_ms.is_some() {
                "Duration".into()
            } else {
                "Running for".into()
            },
            format_duration_ms(elapsed_ms),
        ),
        ("Priority".into(), job.priority.to_string()),
        ("Tasks".into(), job.total.to_string()),
        ("Attempts started".into(), job.attempts_started.to_string()),
        ("Attempts failed".into(), job.attempts_failed.to_string()),
        ("Retries".into(), retries(detail).to_string()),
        (
            "Speculative copies".into(),
            job.speculative_attempts.to_string(),
        ),
        (
            "Late results rejected".into(),
            job.results_rejected.to_string(),
        ),
        ("Outputs lost".into(), job.outputs_lost.to_string()),
    ];
    let throughput = overall_rate(detail, Some(input.snapshot_unix_ms)).map_or_else(
        || "–".into(),
        |rate| format!("{} tasks/s", format_number(round_to(rate, 3))),
    );
    rows.push(("Throughput".into(), throughput));
    key_value_table("Job", &rows)
}

fn tasks_table(detail: &JobDetail) -> String {
    let tasks = &detail.job.tasks;
    let mut rows: Vec<(String, String)> = [
        ("succeeded", tasks.succeeded),
        ("running", tasks.running),
        ("pending", tasks.pending),
        ("retrying", tasks.retrying),
        ("dead-lettered", tasks.dead_lettered),
        ("purged", tasks.purged),
        ("skipped", tasks.skipped),
    ]
    .iter()
    .map(|(name, count)| (name.to_string(), count.to_string()))
    .collect();
    if detail.job.stages.len() > 1 {
        for (index, stage) in detail.job.stages.iter().enumerate() {
            rows.push((
                format!("stage {index} ({})", stage.kind),
                format!(
                    "{}/{} succeeded, {} running, {} failed",
                    stage.succeeded, stage.total, stage.running, stage.failed
                ),
            ));
        }
    }
    key_value_table("Tasks by state", &rows)
}

fn durations_table(durations: &DurationsView) -> String {
    let ms = |value: Option<u64>| value.map_or_else(|| "–".into(), format_duration_ms);
    let rows = vec![
        (
            "Committed attempts".to_string(),
            durations.count.to_string(),
        ),
        (
            "Mean".into(),
            durations.mean_ms.map_or_else(
                || "–".into(),
                |mean| format_duration_ms(mean.round() as u64),
            ),
        ),
        ("Shortest".into(), ms(durations.min_ms)),
        ("p50 ≤".into(), ms(durations.p50_ms)),
        ("p95 ≤".into(), ms(durations.p95_ms)),
        ("p99 ≤".into(), ms(durations.p99_ms)),
        ("Longest".into(), ms(durations.max_ms)),
    ];
    key_value_table("Durations", &rows)
}

fn queue_table(queue: &QueueView) -> String {
    let optional = |value: Option<f64>, unit: &str| {
        value.map_or_else(
            || "–".into(),
            |v| format!("{} {unit}", format_number(round_to(v, 3))),
        )
    };
    let rows = vec![
        (
            "Arrival rate".to_string(),
            optional(Some(queue.arrival_rate), "tasks/s"),
        ),
        (
            "Completion rate".into(),
            optional(Some(queue.completion_rate), "tasks/s"),
        ),
        (
            "Mean service time".into(),
            optional(queue.mean_service_seconds, "s"),
        ),
        ("Backlog".into(), queue.backlog.to_string()),
        (
            "Utilisation".into(),
            format!("{:.0} %", queue.utilisation * 100.0),
        ),
        (
            "Backlog growth".into(),
            optional(queue.backlog_growth_rate, "tasks/s"),
        ),
        ("Saturated".into(), queue.saturated.to_string()),
        ("Drains in".into(), optional(queue.drain_seconds, "s")),
        (
            "Slots needed".into(),
            format_number(round_to(queue.slots_needed, 2)),
        ),
        (
            "Recommended workers".into(),
            queue.recommended_workers.to_string(),
        ),
    ];
    key_value_table("Queue (1 min averages)", &rows)
}

fn key_value_table(caption: &str, rows: &[(String, String)]) -> String {
    let mut html = format!("<table><tr><th colspan=\"2\">{}</th></tr>", escape(caption));
    for (key, value) in rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(key),
            escape(value)
        );
    }
    html.push_str("</table>");
    html
}

fn balance_paragraph(detail: &JobDetail, live_workers: &[WorkerView]) -> String {
    let shares = &detail.history.workers;
    let mut html = String::from("<p>");
    match balance(shares) {
        None => html.push_str("No committed attempt yet, so no busy time to compare."),
        Some(balance) if balance.workers == 1 => html.push_str(&format!(
            "One worker ran every committed attempt ({} busy): nothing to balance.",
            format_duration_ms(balance.max_busy_ms.round() as u64)
        )),
        Some(balance) => {
            let verdict =
                if balance.max_over_mean <= 1.25 && balance.coefficient_of_variation <= 0.15 {
                    "balanced"
                } else if balance.max_over_mean <= 2.0 {
                    "somewhat uneven"
                } else {
                    "unbalanced"
                };
            html.push_str(&format!(
                "Load is <b>{verdict}</b> over the {} workers that committed results: busy time max/mean = <b>{:.2}</b> (1 is perfect, {} means one worker did everything), coefficient of variation = <b>{:.2}</b> (0 is perfect); mean busy time {}, largest {}.",
                balance.workers,
                balance.max_over_mean,
                balance.workers,
                balance.coefficient_of_variation,
                format_duration_ms(balance.mean_busy_ms.round() as u64),
                format_duration_ms(balance.max_busy_ms.round() as u64),
            ));
        }
    }
    let idle: Vec<&str> = live_workers
        .iter()
        .filter(|live| !shares.iter().any(|share| share.worker_id == live.id))
        .map(|live| live.name.as_str())
        .collect();
    if !idle.is_empty() {
        html.push_str(&format!(
            " Live workers with no attempt of this job: {}.",
            escape(&idle.join(", "))
        ));
    }
    html.push_str("</p>\n");
    html
}

fn slowest_table(detail: &JobDetail) -> String {
    let mut html = String::from(
        "<table><tr><th>Slowest tasks</th><th>duration</th><th>worker</th><th>state</th></tr>",
    );
    for slow in &detail.history.slowest {
        let _ = write!(
            html,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            slow.task_index,
            format_duration_ms(slow.duration_ms),
            escape(&slow.worker),
            if slow.running { "running" } else { "committed" }
        );
    }
    html.push_str("</table>\n");
    html
}

fn failures_section(detail: &JobDetail) -> String {
    let failures = &detail.history.recent_failures;
    let mut html = String::from("<h2>Recent failures</h2>\n");
    if failures.is_empty() {
        html.push_str("<p>No attempt of this job failed.</p>\n");
        return html;
    }
    let _ = write!(
        html,
        "<p>The {} most recent failed attempts, newest first ({} failed in all).</p>\n<table><tr><th>task</th><th>attempt</th><th>worker</th><th>when</th><th>what happened</th><th>exit code</th><th>retryable</th><th>end of standard error</th></tr>",
        failures.len(),
        detail.job.attempts_failed
    );
    for failure in failures {
        let _ = write!(
            html,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            failure.task_index,
            escape(&failure.attempt_id),
            escape(&failure.worker),
            format_unix_ms(failure.at_unix_ms),
            escape(&failure.message),
            failure
                .exit_code
                .map_or_else(|| "–".into(), |code| code.to_string()),
            if failure.retryable { "yes" } else { "no" },
            escape(&failure.stderr_tail)
        );
    }
    html.push_str("</table>\n");
    html
}

// ------------------------------------------------------------------ formatting

/// Formats Unix milliseconds as `YYYY-MM-DD hh:mm:ss.mmm UTC`.
pub fn format_unix_ms(unix_ms: u64) -> String {
    let days = (unix_ms / 86_400_000) as i64;
    let in_day = unix_ms % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Returns the proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::tests::detail;

    #[test]
    fn retries_count_attempts_beyond_each_started_task() {
        // 40 tasks started once each, 1 speculative copy, so 4 retries out of 45.
        assert_eq!(retries(&detail()), 4);
    }

    #[test]
    fn the_page_escapes_what_it_quotes_and_holds_every_plot() {
        let detail = detail();
        let report = render(&ReportInput {
            detail: &detail,
            live_workers: &[],
            snapshot_unix_ms: 1_700_000_005_000,
            coordinator_url: "http://127.0.0.1:7070",
        });
        let html = &report.html;
        assert!(html.contains("nightly &lt;etl&gt; &amp; co"), "{html}");
        assert!(!html.contains("<script>"), "the stderr tail is escaped");
        assert!(html.contains("&lt;/pre&gt;&lt;script&gt;boom()"), "{html}");
        assert!(
            !html.contains("src=") && !html.contains("href="),
            "no external resource"
        );
        assert!(html.contains("max/mean = <b>1.33</b>"), "{html}");
        assert!(html.contains("a snapshot of a running job"), "{html}");
        assert_eq!(report.plots.len(), 4);
        for plot in &report.plots {
            assert!(html.contains(&plot.svg), "{} is inlined", plot.file_name);
            let document = crate::svg::document(&plot.svg);
            roxmltree::Document::parse(&document)
                .unwrap_or_else(|error| panic!("{}: {error}\n{document}", plot.file_name));
        }
        let workers = &report.plots[1].svg;
        assert!(workers.contains("worker-1") && workers.contains("worker-2"));
        let durations = &report.plots[2].svg;
        for quantile in ["p50 ≤ 32 ms", "p95 ≤ 64 ms", "p99 ≤ 400 ms"] {
            assert!(durations.contains(quantile), "{quantile}: {durations}");
        }
    }

    #[test]
    fn times_format_in_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            format_unix_ms(1_709_210_096_789),
            "2024-02-29 12:34:56.789 UTC"
        );
    }
}
