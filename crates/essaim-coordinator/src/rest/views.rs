//! Scheduler and observatory state turned into the REST models.

use super::models::*;
use crate::history::{Bucket, DURATION_BOUNDS_MS, OTHER_WORKERS};
use crate::observatory::Observatory;
use essaim_core::{Job, Scheduler};

/// Longest-running attempts listed on a job's page.
const LONGEST_RUNNING_LISTED: usize = 10;

pub(super) fn bucket_view(start_unix_ms: u64, bucket: &Bucket) -> BucketView {
    BucketView {
        start_unix_ms,
        submitted: bucket.submitted,
        committed: bucket.committed,
        failed: bucket.failed,
        dead_lettered: bucket.dead_lettered,
        outputs_lost: bucket.outputs_lost,
        busy_ms: bucket.busy_ms,
    }
}

pub(super) fn stage_views(job: &Job) -> Vec<StageView> {
    job.stage_counts()
        .into_iter()
        .zip(job.stage_kinds())
        .map(|(stage, kind)| StageView {
            kind: kind.to_string(),
            total: stage.total,
            succeeded: stage.succeeded,
            running: stage.running,
            failed: stage.failed,
        })
        .collect()
}

pub(super) fn job_summary(scheduler: &Scheduler, job: &Job) -> JobSummary {
    let counts = job.counts();
    JobSummary {
        id: job.id.0,
        name: job.spec.name.clone(),
        state: job.state.name().to_string(),
        reason: job.state.reason().to_string(),
        priority: job.spec.priority,
        total: job.tasks().len() as u32,
        tasks: TaskCountsView {
            pending: counts.pending,
            running: counts.running,
            retrying: counts.retrying,
            succeeded: counts.succeeded,
            dead_lettered: counts.dead_lettered,
            purged: counts.purged,
            skipped: counts.skipped,
        },
        stages: stage_views(job),
        submitted_unix_ms: job.submitted_at,
        finished_unix_ms: job.finished_at,
        attempts_started: job.counters.attempts_started,
        attempts_failed: job.counters.attempts_failed,
        results_rejected: job.counters.results_rejected,
        speculative_attempts: job.counters.speculative_attempts,
        outputs_lost: job.counters.outputs_lost,
        processing_version: job.processing_version.clone(),
        owner: job.owner.clone(),
        required_labels: job.required_labels.clone(),
        waiting_for_labels: scheduler.waits_for_labels(job),
        waiting_for_anti_affinity: scheduler.waits_for_anti_affinity(job),
    }
}

pub(super) fn failure_view(
    task_index: u32,
    error: &essaim_core::AttemptError,
    worker: String,
) -> FailureView {
    FailureView {
        task_index,
        attempt_id: error.attempt.to_string(),
        worker,
        at_unix_ms: error.at,
        message: error.failure.message.clone(),
        exit_code: error.failure.exit_code,
        stderr_tail: error.failure.stderr_tail.clone(),
        retryable: error.failure.retryable,
    }
}

/// A worker's name (remembered after it left), or its id when it was never seen.
pub(super) fn worker_label(
    observatory: &Observatory,
    scheduler: &Scheduler,
    worker: essaim_core::WorkerId,
) -> String {
    observatory
        .worker_name(scheduler, worker)
        .unwrap_or_else(|| worker.to_string())
}

pub(super) fn history_view(
    scheduler: &Scheduler,
    observatory: &Observatory,
    job: &Job,
    now: u64,
) -> JobHistoryView {
    let history = observatory.history().job(job.id);
    // Running attempts of this job, longest first.
    let mut running: Vec<SlowTaskView> = scheduler
        .attempts()
        .filter(|(_, attempt)| attempt.task.job == job.id)
        .map(|(_, attempt)| SlowTaskView {
            task_index: attempt.task.index,
            duration_ms: now.saturating_sub(attempt.started_at),
            worker: worker_label(observatory, scheduler, attempt.worker),
            running: true,
        })
        .collect();
    running.sort_by_key(|slow| std::cmp::Reverse(slow.duration_ms));
    running.truncate(LONGEST_RUNNING_LISTED);
    let Some(history) = history else {
        return JobHistoryView {
            bucket_ms: crate::history::FIRST_BUCKET_MS,
            timeline: Vec::new(),
            workers: Vec::new(),
            durations: durations_view(&crate::history::DurationHistogram::default()),
            slowest: running,
            recent_failures: Vec::new(),
        };
    };
    let timeline = &history.timeline;
    let mut slowest = running;
    slowest.extend(history.slowest.iter().map(|slow| SlowTaskView {
        task_index: slow.task_index,
        duration_ms: slow.duration_ms,
        worker: slow.worker.clone(),
        running: false,
    }));
    JobHistoryView {
        bucket_ms: timeline.bucket_ms,
        timeline: timeline
            .buckets
            .iter()
            .enumerate()
            .map(|(index, bucket)| {
                bucket_view(
                    timeline.origin_ms + index as u64 * timeline.bucket_ms,
                    bucket,
                )
            })
            .collect(),
        workers: history
            .workers
            .iter()
            .map(|(id, share)| WorkerShareView {
                worker_id: if *id == OTHER_WORKERS {
                    "other".into()
                } else {
                    id.to_string()
                },
                name: share.name.clone(),
                committed: share.committed,
                failed: share.failed,
                busy_ms: share.busy_ms,
                build: share.build.clone(),
            })
            .collect(),
        durations: durations_view(&history.durations),
        slowest,
        recent_failures: history
            .recent_failures
            .iter()
            .rev()
            .map(|failure| failure_view(failure.task_index, &failure.error, failure.worker.clone()))
            .collect(),
    }
}

pub(super) fn durations_view(durations: &crate::history::DurationHistogram) -> DurationsView {
    let any = durations.count > 0;
    DurationsView {
        bounds_ms: DURATION_BOUNDS_MS.to_vec(),
        counts: durations.counts.to_vec(),
        count: durations.count,
        mean_ms: durations.mean_ms(),
        min_ms: any.then_some(durations.min_ms),
        p50_ms: durations.quantile_upper_bound_ms(0.5),
        p95_ms: durations.quantile_upper_bound_ms(0.95),
        p99_ms: durations.quantile_upper_bound_ms(0.99),
        max_ms: any.then_some(durations.max_ms),
    }
}

pub(super) fn text_of(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_string)
}
