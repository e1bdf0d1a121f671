//! Read models: the scheduler's state turned into wire messages for clients.

use essaim_core::{Job, Scheduler, TaskId};
use essaim_proto::{failure_to_wire, v1};

/// Returns a job's status as clients see it.
pub fn job_status(scheduler: &Scheduler, job: &Job) -> v1::JobStatus {
    let counts = job.counts();
    v1::JobStatus {
        job_id: job.id.0,
        name: job.spec.name.clone(),
        state: job.state.name().to_string(),
        reason: job.state.reason().to_string(),
        total: job.tasks().len() as u32,
        pending: counts.pending,
        running: counts.running,
        retrying: counts.retrying,
        succeeded: counts.succeeded,
        dead_lettered: counts.dead_lettered + counts.purged,
        skipped: counts.skipped,
        submitted_unix_ms: job.submitted_at,
        finished_unix_ms: job.finished_at.unwrap_or(0),
        attempts_started: job.counters.attempts_started,
        attempts_failed: job.counters.attempts_failed,
        results_rejected: job.counters.results_rejected,
        speculative_attempts: job.counters.speculative_attempts,
        priority: job.spec.priority,
        stages: job
            .stage_counts()
            .into_iter()
            .zip(job.stage_kinds())
            .map(|(stage, kind)| v1::StageStatus {
                total: stage.total,
                succeeded: stage.succeeded,
                running: stage.running,
                failed: stage.failed,
                kind: kind.to_string(),
            })
            .collect(),
        counters: job
            .task_counters()
            .iter()
            .map(|(name, value)| (name.clone(), *value))
            .collect(),
        outputs_lost: job.counters.outputs_lost,
        processing_version: job.processing_version.clone().unwrap_or_default(),
        owner: job.owner.clone().unwrap_or_default(),
        required_labels: job.required_labels.clone().into_iter().collect(),
        waiting_for_labels: scheduler.waits_for_labels(job),
        waiting_for_anti_affinity: scheduler.waits_for_anti_affinity(job),
    }
}

/// Returns the dead letters of one job, or of every job, with their error history.
pub fn dead_letters(scheduler: &Scheduler, job: Option<essaim_core::JobId>) -> Vec<v1::DeadLetter> {
    scheduler
        .dead_letters(job)
        .into_iter()
        .filter_map(|task: TaskId| {
            let job = scheduler.job(task.job)?;
            let spec = &job.spec.tasks[task.index as usize];
            let errors = job.tasks()[task.index as usize]
                .errors()
                .iter()
                .map(|error| v1::AttemptError {
                    attempt_id: error.attempt.0,
                    worker_id: error.worker.0,
                    at_unix_ms: error.at,
                    failure: Some(failure_to_wire(&error.failure)),
                })
                .collect();
            Some(v1::DeadLetter {
                job_id: task.job.0,
                task_index: task.index,
                kind: spec.kind.clone(),
                // Connector URLs in a pipeline's payload may hold passwords.
                payload: crate::masking::mask_payload(&spec.payload),
                errors,
            })
        })
        .collect()
}

/// Returns every live worker.
pub fn workers(scheduler: &Scheduler, now: u64) -> Vec<v1::WorkerStatus> {
    scheduler
        .workers()
        .map(|(id, worker)| v1::WorkerStatus {
            worker_id: id.0,
            name: worker.info.name.clone(),
            slots: worker.info.slots,
            busy_slots: worker.busy_slots,
            held_attempts: worker.held.len() as u32,
            last_heartbeat_age_ms: now.saturating_sub(worker.last_seen),
            draining: worker.draining,
            kinds: worker.info.kinds.iter().cloned().collect(),
            file_server_url: worker.info.file_server_url.clone(),
            build: worker.info.build.clone(),
            labels: worker.info.labels.clone().into_iter().collect(),
        })
        .collect()
}

/// Reads up to `limit` committed results of `job` from task `from` off the async workers;
/// returns them with the index to ask from next (`total`, the job's task count, when
/// none are left).
pub async fn results_page(
    reader: essaim_store::SharedResults,
    job: essaim_core::JobId,
    from: u32,
    limit: usize,
    total: u32,
) -> Result<(Vec<essaim_core::CommittedResult>, u32), String> {
    let found = tokio::task::spawn_blocking(move || reader.results(job, from, limit))
        .await
        .map_err(|_| "result reader failed".to_string())?
        .map_err(|error| format!("failed to read results: {error}"))?;
    let next_task = if found.len() < limit {
        total
    } else {
        found.last().map_or(total, |r| r.task.index + 1)
    };
    Ok((found, next_task))
}
