//! The evaluation's Markdown summary: one section and table per question, from the
//! results alone.
//!
//! Pure: no I/O and no clock, so the same `results.json` always gives the same text.

use crate::Results;
use crate::balance::BalanceCase;
use crate::elasticity::Elasticity;
use crate::failover::Failover;
use crate::recovery::Recovery;
use crate::scaling::{ScalingCurve, WordcountScaling};
use std::fmt::Write;

/// Returns `value` with `decimals` decimals, or `–` when it is not a number.
pub fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "–".into()
    }
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".into(), |value| number(value, decimals))
}

/// Returns a duration in ms as seconds, e.g. `5 s` or `1.5 s`.
pub fn seconds_label(millis: u64) -> String {
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
        wordcount_sections(&mut out, wordcount, machine.cores);
    }
    if let Some(balance) = &results.balance {
        let _ = writeln!(out, "## 2. Load distribution across workers\n");
        for case in [&balance.homogeneous, &balance.heterogeneous] {
            balance_table(&mut out, case);
        }
    }
    if let Some(recovery) = &results.recovery {
        recovery_sections(&mut out, recovery);
    }
    if let Some(elasticity) = &results.elasticity {
        elasticity_section(&mut out, elasticity);
    }
    if let Some(failover) = &results.failover {
        failover_section(&mut out, failover);
    }
    crate::stream_summary::stream_sections(&mut out, results);
    if !results.plots.is_empty() {
        let _ = writeln!(out, "## Plots\n");
        for plot in &results.plots {
            let _ = writeln!(out, "![{plot}]({plot})");
        }
    }
    out
}

/// Questions 1 (CPU-bound) and 5: the word count's throughput and cost.
fn wordcount_sections(out: &mut String, wordcount: &WordcountScaling, cores: usize) {
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
        cores,
        cores,
        yes_no(wordcount.output_matches_oracle)
    );
    scaling_table(out, &wordcount.curve);
    let _ = writeln!(out, "## 5. Cost: core-seconds per GB (word count)\n");
    let _ = writeln!(
        out,
        "| workers | core-s per GB (coordinator + workers) | coordinator's share | wall s per GB | cores used by the cluster | cores used by other processes |\n|---|---|---|---|---|---|"
    );
    for point in &wordcount.cost {
        let _ = writeln!(
            out,
            "| {} | {} | {}% | {} | {} | {} |",
            point.workers,
            number(point.core_seconds_per_gb, 2),
            number(point.coordinator_share * 100.0, 1),
            number(point.wall_seconds_per_gb, 2),
            number(point.cores_used, 2),
            optional(point.cores_used_by_others, 2)
        );
    }
    out.push('\n');
}

/// Question 3: recovery after SIGKILL and after a partition.
fn recovery_sections(out: &mut String, recovery: &Recovery) {
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
            yes_no(run.output_complete_and_correct)
        );
    }
    out.push('\n');
}

/// Question 4: scaling out and draining mid-job.
fn elasticity_section(out: &mut String, elasticity: &Elasticity) {
    let _ = writeln!(out, "## 4. Scaling out and draining mid-job\n");
    let _ = writeln!(
        out,
        "{} tasks of {} ms, {} slots per worker, `--drain-target-secs {}`; the job took {} s; every task committed: {}.\n",
        elasticity.tasks,
        elasticity.task_ms,
        elasticity.slots_per_worker,
        number(elasticity.drain_target_secs, 0),
        number(elasticity.job_seconds, 1),
        yes_no(elasticity.all_committed)
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

/// Question 6: failover of the leader coordinator.
fn failover_section(out: &mut String, failover: &Failover) {
    let _ = writeln!(out, "## 6. Failover of the coordinator\n");
    if let Some(reason) = &failover.skipped {
        let _ = writeln!(out, "Skipped: {reason}.\n");
        return;
    }
    let _ = writeln!(
        out,
        "Two coordinators elected through a 3-member etcd (leader lease {} s), 2 workers × 4 slots, 4,000 tasks of 20 ms; the leader is faulted after 200 commits.\n",
        failover.lease_secs
    );
    let _ = writeln!(
        out,
        "| fault | run | → new leader (s) | → first commit (s) | old leader's last commit → first commit (s) | refused writes of the resumed leader | it stood by | every task committed once |\n|---|---|---|---|---|---|---|---|"
    );
    for case in [&failover.kill, &failover.stop].into_iter().flatten() {
        for (index, run) in case.runs.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                case.fault,
                index + 1,
                number(run.to_new_leader_s, 2),
                number(run.to_first_commit_s, 2),
                optional(run.last_to_first_commit_s, 2),
                run.refused_writes
                    .map_or_else(|| "–".into(), |n| n.to_string()),
                run.stood_by.map_or("–", yes_no),
                yes_no(run.every_task_committed_once)
            );
        }
    }
    out.push('\n');
    for case in [&failover.kill, &failover.stop].into_iter().flatten() {
        let (low, high) = case.to_first_commit_range_s;
        let _ = writeln!(
            out,
            "{}: fault → first commit by the new leader, median {} s (min {}, max {}).\n",
            case.fault,
            number(case.median_to_first_commit_s, 2),
            number(low, 2),
            number(high, 2)
        );
    }
}

/// `yes`, or a `NO` that stands out.
pub(crate) fn yes_no(yes: bool) -> &'static str {
    if yes { "yes" } else { "NO" }
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
        "| workers | slots each | {} per run | median | speed-up | efficiency | cores used by other processes, per run | runs repeated (disturbed) |\n|---|---|---|---|---|---|---|---|",
        curve.unit
    );
    for point in &curve.points {
        let runs: Vec<String> = point.runs.iter().map(|run| number(*run, 1)).collect();
        let others: Vec<String> = point
            .others_cores
            .iter()
            .map(|cores| optional(*cores, 2))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            point.workers,
            point.slots_per_worker,
            runs.join(", "),
            number(point.median, 1),
            optional(point.speedup, 2),
            optional(point.efficiency, 2),
            others.join(", "),
            point.disturbed_runs_repeated
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
    use super::*;

    #[test]
    fn the_summary_has_a_table_per_question() {
        let summary = summary(&super::super::fixture::sample_results());
        for heading in [
            "## 1a.", "## 1b.", "## 2.", "## 3a.", "## 3b.", "## 4.", "## 5.", "## 6.",
        ] {
            assert!(summary.contains(heading), "{heading} missing:\n{summary}");
        }
        assert!(summary.contains("| 2 | 2 | 185.0 | 185.0 | 1.95 | 0.97 | 0.05 | 0 |"));
        assert!(summary.contains("| 1 s | 0.2 s | 1 | 1.050 | 1.060 (1.060..1.060) |"));
        assert!(summary.contains("cannot scale past 2 workers"));
        assert!(summary.contains("| SIGKILL | 1 | 2.10 | 2.40 | 2.45 | – | – | yes |"));
        assert!(summary.contains("SIGKILL: fault → first commit by the new leader, median 2.40 s"));
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
