//! The summary of a finished MapReduce job: what it read, wrote and took, its counters,
//! and, for a failed job, the errors of its dead letters.

use std::collections::BTreeMap;
use std::time::Duration;

use essaim_mapreduce::plan::PlannedJob;
use essaim_proto::v1;

use crate::output::{OutputFormat, print_json};

/// Prints what a MapReduce job did; `failed_tasks` are its dead letters, whose errors
/// say why it failed.
pub(crate) fn print_summary(
    planned: &PlannedJob,
    job: &v1::JobStatus,
    elapsed: Duration,
    succeeded: bool,
    failed_tasks: &[v1::DeadLetter],
    format: OutputFormat,
) {
    let seconds = elapsed.as_secs_f64();
    let megabytes_per_second = planned.input_bytes as f64 / 1e6 / seconds.max(1e-9);
    let counters: BTreeMap<&String, &u64> = job.counters.iter().collect();
    // Skipped key groups count as records of the budget, as they do at the commit.
    let skipped_records: u64 = [
        essaim_mapreduce::counters::MAP_SKIPPED_RECORDS,
        essaim_mapreduce::counters::REDUCE_SKIPPED_GROUPS,
    ]
    .iter()
    .filter_map(|counter| job.counters.get(*counter))
    .sum();
    let reused_map_tasks = job
        .counters
        .get(essaim_mapreduce::counters::MAP_REUSED_TASKS)
        .copied()
        .unwrap_or(0);
    if format == OutputFormat::Json {
        print_json(&serde_json::json!({
            "job_id": job.job_id,
            "job": planned.config.job,
            "state": job.state,
            "reason": job.reason,
            "succeeded": succeeded,
            "output": planned.config.output_dir,
            "input_files": planned.input_files.len(),
            "input_bytes": planned.input_bytes,
            "map_tasks": planned.map_tasks,
            "plan_seconds": planned.planning.as_secs_f64(),
            "reducers": planned.config.reducers,
            "steps": planned.steps,
            "wall_seconds": seconds,
            "megabytes_per_second": megabytes_per_second,
            "attempts_failed": job.attempts_failed,
            "outputs_lost": job.outputs_lost,
            "skipped_records": skipped_records,
            "reused_map_tasks": reused_map_tasks,
            "failed_tasks": failed_tasks.iter().map(failed_task_json).collect::<Vec<_>>(),
            "counters": counters,
        }));
        return;
    }
    let verdict = if succeeded { "succeeded" } else { "FAILED" };
    crate::outln!(
        "job {} ({}) {verdict} in {seconds:.2} s: {} input files, {:.1} MB, {:.1} MB/s, {} map tasks, {} reducers{}",
        job.job_id,
        planned.config.job,
        planned.input_files.len(),
        planned.input_bytes as f64 / 1e6,
        megabytes_per_second,
        planned.map_tasks,
        planned.config.reducers,
        if planned.steps > 1 {
            format!(", {} steps", planned.steps)
        } else {
            String::new()
        }
    );
    if !job.reason.is_empty() {
        crate::outln!("  reason: {}", job.reason);
    }
    if job.attempts_failed > 0 || job.outputs_lost > 0 {
        crate::outln!(
            "  recovery: {} failed attempts re-run, {} lost map outputs recomputed",
            job.attempts_failed,
            job.outputs_lost
        );
    }
    if reused_map_tasks > 0 {
        crate::outln!(
            "  reused: {reused_map_tasks} of {} map outputs taken from the task cache (inputs unchanged)",
            planned.map_tasks
        );
    }
    if skipped_records > 0 {
        crate::outln!(
            "  skipped: {skipped_records} input records the job fails on; see `essaim skipped {}`",
            planned.config.output_dir
        );
    }
    for letter in failed_tasks.iter().take(MAX_FAILED_TASKS_SHOWN) {
        // A command's error ends with the lines of its standard error: kept indented.
        crate::outln!(
            "  failed task {} ({}): {}",
            letter.task_index,
            letter.kind,
            last_error(letter).replace('\n', "\n      ")
        );
    }
    crate::outln!("  counters:");
    for (name, value) in counters {
        crate::outln!("    {name:<28} {value}");
    }
    if succeeded {
        crate::outln!("  output: {}", planned.config.output_dir);
    } else {
        crate::outln!(
            "  no output was committed; see `essaim dlq list --job {}`",
            job.job_id
        );
    }
}

/// Failed tasks named in a summary: the first say why; the dead-letter queue has all.
const MAX_FAILED_TASKS_SHOWN: usize = 3;

/// Returns the last error of a dead letter.
fn last_error(letter: &v1::DeadLetter) -> String {
    letter
        .errors
        .last()
        .and_then(|error| error.failure.as_ref())
        .map(|failure| failure.message.clone())
        .unwrap_or_default()
}

fn failed_task_json(letter: &v1::DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "task_index": letter.task_index,
        "kind": letter.kind,
        "error": last_error(letter),
    })
}
