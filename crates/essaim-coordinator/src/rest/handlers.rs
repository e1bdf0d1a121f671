//! One function per route; the `#[utoipa::path]` on each is its entry in the OpenAPI
//! document.

use super::models::*;
use super::views::*;
use super::{
    ApiJson, ApiQuery, ApiResult, Failure, JobPath, MAX_TASK_INDEX, RestState, bad_request,
    checked_job_id, job_not_found,
};
use crate::actor::{CancelRefusal, Command, DeadLetterTarget};
use crate::auth::Principal;
use crate::observatory::task_state_name;
use crate::streams::PipelineView;
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use essaim_core::{JobError, TaskId, TaskState};
use std::sync::Arc;

/// The cluster at a glance: workers, slots, jobs, queue statistics and the last 15
/// minutes of throughput.
#[utoipa::path(get, path = "/api/v1/overview", tag = "cluster",
    responses((status = 200, body = Overview), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn overview(State(state): State<RestState>) -> ApiResult<Overview> {
    let overview = state
        .read(|view| {
            let scheduler = view.scheduler;
            let (mut workers, mut slots, mut busy) = (0u32, 0u64, 0u64);
            for (_, worker) in scheduler.workers() {
                workers += 1;
                slots += u64::from(worker.info.slots);
                busy += u64::from(worker.busy_slots);
            }
            let (mut running_jobs, mut waiting, mut running) = (0u32, 0u64, 0u64);
            let mut total = 0u32;
            for job in scheduler.jobs() {
                total += 1;
                if job.state == essaim_core::JobState::Running {
                    running_jobs += 1;
                    let counts = job.counts();
                    waiting += u64::from(counts.pending + counts.retrying);
                    running += u64::from(counts.running);
                }
            }
            let history = view.observatory.history_mut();
            let last_minute = history.cluster_last(view.now, 60);
            let throughput = history
                .cluster_series(view.now)
                .into_iter()
                .map(|(second, bucket)| ThroughputPoint {
                    unix_second: second,
                    submitted: bucket.submitted,
                    committed: bucket.committed,
                    failed: bucket.failed,
                })
                .collect();
            Overview {
                now_unix_ms: view.now,
                workers,
                slots,
                busy_slots: busy,
                jobs_running: running_jobs,
                jobs_total: total,
                dead_letters: scheduler.dead_letter_count(),
                tasks_waiting: waiting,
                tasks_running: running,
                committed_per_second_1m: last_minute.committed as f64 / 60.0,
                queue: view.observatory.cluster_queue().map(QueueView::from),
                throughput,
            }
        })
        .await?;
    Ok(Json(overview))
}

/// Every job the coordinator holds, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, body = [JobSummary]), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn list_jobs(State(state): State<RestState>) -> ApiResult<Vec<JobSummary>> {
    let jobs = state
        .read(|view| {
            let mut jobs: Vec<JobSummary> = view
                .scheduler
                .jobs()
                .map(|job| job_summary(view.scheduler, job))
                .collect();
            jobs.reverse();
            jobs
        })
        .await?;
    Ok(Json(jobs))
}

/// One job with its counters, queue statistics and history.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}", tag = "jobs",
    params(("job_id" = u64, Path, description = "The job's id", minimum = 1, maximum = 9007199254740991_u64)),
    responses((status = 200, body = JobDetail), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn get_job(
    State(state): State<RestState>,
    JobPath(job): JobPath,
) -> ApiResult<JobDetail> {
    state
        .read(move |view| {
            let scheduler = view.scheduler;
            let found = scheduler.job(job)?;
            Some(JobDetail {
                job: job_summary(scheduler, found),
                counters: found.task_counters().clone(),
                queue: view.observatory.job_queue(job).map(QueueView::from),
                history: history_view(scheduler, view.observatory, found, view.now),
            })
        })
        .await?
        .map(Json)
        .ok_or_else(|| job_not_found(job))
}

/// Committed results of a job, in task order, a page at a time.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/results", tag = "jobs",
    params(("job_id" = u64, Path, description = "The job's id", minimum = 1, maximum = 9007199254740991_u64), PageQuery),
    responses((status = 200, body = ResultsPage), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn job_results(
    State(state): State<RestState>,
    JobPath(job): JobPath,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<ResultsPage> {
    let (from, limit) = query.checked()?;
    let limit = limit as usize;
    let total = state
        .read(move |view| view.scheduler.job(job).map(|j| j.tasks().len() as u32))
        .await?
        .ok_or_else(|| job_not_found(job))?;
    let (found, next_task) =
        crate::views::results_page(state.results.clone(), job, from, limit, total)
            .await
            .map_err(|error| Failure(StatusCode::INTERNAL_SERVER_ERROR, error))?;
    let results = found
        .into_iter()
        .map(|result| ResultView {
            task_index: result.task.index,
            attempt_id: result.attempt.to_string(),
            worker_id: result.worker.to_string(),
            duration_ms: result.duration_ms,
            inline_text: text_of(&result.output.inline),
            inline_bytes: result.output.inline.len() as u64,
            file_url: result.output.file.as_ref().map(|f| f.url.clone()),
            file_bytes: result.output.file.as_ref().map(|f| f.size_bytes),
            counters: result.output.counters,
        })
        .collect();
    let file_capability = state.capability_key.capability_of(job.0);
    Ok(Json(ResultsPage {
        results,
        next_task,
        file_capability,
    }))
}

/// Cancels a running job: its pending tasks are skipped, its running attempts stopped.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/cancel", tag = "jobs",
    params(("job_id" = u64, Path, description = "The job's id", minimum = 1, maximum = 9007199254740991_u64)),
    responses((status = 200, body = JobSummary), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The job already finished"), (status = 401, body = ApiError),
        (status = 403, body = ApiError, description = "The caller neither submitted the job nor is an admin")),
    security(("bearer" = [])))]
pub(super) async fn cancel_job(
    State(state): State<RestState>,
    Extension(by): Extension<Arc<Principal>>,
    JobPath(job): JobPath,
) -> ApiResult<JobSummary> {
    match state
        .ask(|reply| Command::Cancel { job, by, reply })
        .await?
    {
        Ok(()) => {}
        Err(CancelRefusal::Job(error @ JobError::NotFound(_))) => {
            return Err(Failure(StatusCode::NOT_FOUND, error.to_string()));
        }
        Err(CancelRefusal::Job(error @ JobError::AlreadyFinished { .. })) => {
            return Err(Failure(StatusCode::CONFLICT, error.to_string()));
        }
        Err(refusal @ CancelRefusal::NotOwner { .. }) => {
            return Err(Failure(StatusCode::FORBIDDEN, refusal.to_string()));
        }
    }
    state
        .read(move |view| {
            let scheduler = view.scheduler;
            scheduler
                .job(job)
                .map(|found| job_summary(scheduler, found))
        })
        .await?
        .map(Json)
        .ok_or_else(|| job_not_found(job))
}

/// Live workers.
#[utoipa::path(get, path = "/api/v1/workers", tag = "cluster",
    responses((status = 200, body = [WorkerView]), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn list_workers(State(state): State<RestState>) -> ApiResult<Vec<WorkerView>> {
    let workers = state
        .read(|view| {
            view.scheduler
                .workers()
                .map(|(id, worker)| WorkerView {
                    id: id.to_string(),
                    name: worker.info.name.clone(),
                    slots: worker.info.slots,
                    busy_slots: worker.busy_slots,
                    held_attempts: worker.held.len() as u32,
                    last_heartbeat_age_ms: view.now.saturating_sub(worker.last_seen),
                    draining: worker.draining,
                    kinds: worker.info.kinds.iter().cloned().collect(),
                    file_server_url: worker.info.file_server_url.clone(),
                    build: worker.info.build.clone(),
                    labels: worker.info.labels.clone(),
                })
                .collect()
        })
        .await?;
    Ok(Json(workers))
}

/// Running pipelines: each unit's worker, lag, throughput and last commit, as workers
/// report them in their heartbeats, and the stream workers each pipeline needs.
#[utoipa::path(get, path = "/api/v1/streams", tag = "cluster",
    responses((status = 200, body = [PipelineView]), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn list_streams(State(state): State<RestState>) -> ApiResult<Vec<PipelineView>> {
    let mut pipelines = state
        .streams
        .pipelines(std::time::Instant::now(), crate::actor::wall_clock_ms());
    let names: std::collections::BTreeMap<String, String> = state
        .read(|view| {
            view.scheduler
                .workers()
                .map(|(id, worker)| (id.to_string(), worker.info.name.clone()))
                .collect()
        })
        .await?;
    for unit in pipelines
        .iter_mut()
        .flat_map(|pipeline| pipeline.units.iter_mut())
    {
        unit.worker_name = names.get(&unit.worker).cloned().unwrap_or_default();
    }
    Ok(Json(pipelines))
}

/// Dead letters (of one job, or of every job) with their error history.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "dead letters",
    params(DeadLettersQuery),
    responses((status = 200, body = [DeadLetterView]), (status = 400, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn list_dead_letters(
    State(state): State<RestState>,
    ApiQuery(query): ApiQuery<DeadLettersQuery>,
) -> ApiResult<Vec<DeadLetterView>> {
    let job = query.job.map(checked_job_id).transpose()?;
    let letters = state
        .read(move |view| {
            let scheduler = view.scheduler;
            let observatory = &*view.observatory;
            scheduler
                .dead_letters(job)
                .into_iter()
                .filter_map(|task: TaskId| {
                    let job = scheduler.job(task.job)?;
                    let spec = &job.spec.tasks[task.index as usize];
                    let record = &job.tasks()[task.index as usize];
                    Some(DeadLetterView {
                        job_id: task.job.0,
                        job_name: job.spec.name.clone(),
                        task_index: task.index,
                        kind: spec.kind.clone(),
                        // Connector URLs in a pipeline's payload may hold passwords.
                        payload_text: text_of(&crate::masking::mask_payload(&spec.payload)),
                        payload_bytes: spec.payload.len() as u64,
                        errors: record
                            .errors()
                            .iter()
                            .map(|error| {
                                failure_view(
                                    task.index,
                                    error,
                                    worker_label(observatory, scheduler, error.worker),
                                )
                            })
                            .collect(),
                    })
                })
                .collect()
        })
        .await?;
    Ok(Json(letters))
}

pub(super) fn selection_target(
    selection: DeadLetterSelection,
) -> Result<DeadLetterTarget, Failure> {
    let job = checked_job_id(selection.job_id)?;
    match selection.task_indexes {
        None => Ok(DeadLetterTarget::Job(job)),
        Some(indexes) => {
            if let Some(index) = indexes.iter().find(|index| **index > MAX_TASK_INDEX) {
                return Err(bad_request(format!("task index {index} is out of range")));
            }
            Ok(DeadLetterTarget::Tasks(
                indexes
                    .into_iter()
                    .map(|index| TaskId::new(job, index))
                    .collect(),
            ))
        }
    }
}

/// Puts dead letters back in the queue with fresh attempts.
#[utoipa::path(post, path = "/api/v1/dead-letters/requeue", tag = "dead letters",
    request_body = DeadLetterSelection,
    responses((status = 200, body = DeadLetterChange), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 415, body = ApiError, description = "The body is not sent as application/json")),
    security(("bearer" = [])))]
pub(super) async fn requeue_dead_letters(
    State(state): State<RestState>,
    ApiJson(selection): ApiJson<DeadLetterSelection>,
) -> ApiResult<DeadLetterChange> {
    let tasks = selection_target(selection)?;
    let affected = state.ask(|reply| Command::Requeue { tasks, reply }).await?;
    Ok(Json(DeadLetterChange { affected }))
}

/// Removes dead letters for good.
#[utoipa::path(post, path = "/api/v1/dead-letters/purge", tag = "dead letters",
    request_body = DeadLetterSelection,
    responses((status = 200, body = DeadLetterChange), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 415, body = ApiError, description = "The body is not sent as application/json")),
    security(("bearer" = [])))]
pub(super) async fn purge_dead_letters(
    State(state): State<RestState>,
    ApiJson(selection): ApiJson<DeadLetterSelection>,
) -> ApiResult<DeadLetterChange> {
    let tasks = selection_target(selection)?;
    let affected = state.ask(|reply| Command::Purge { tasks, reply }).await?;
    Ok(Json(DeadLetterChange { affected }))
}

/// Tasks of a job with their state, a page at a time (for the job page's task table).
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/tasks", tag = "jobs",
    params(("job_id" = u64, Path, description = "The job's id", minimum = 1, maximum = 9007199254740991_u64), PageQuery),
    responses((status = 200, body = TasksPage), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn job_tasks(
    State(state): State<RestState>,
    JobPath(job): JobPath,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<TasksPage> {
    let (from, limit) = query.checked()?;
    state
        .read(move |view| {
            let found = view.scheduler.job(job)?;
            let end = from.saturating_add(limit).min(found.tasks().len() as u32);
            let tasks = (from.min(end)..end)
                .map(|index| {
                    let task = &found.tasks()[index as usize];
                    let spec = &found.spec.tasks[index as usize];
                    TaskView {
                        index,
                        kind: spec.kind.clone(),
                        stage: spec.stage,
                        state: task_state_name(task.state()).to_string(),
                        failures: task.errors().len() as u32,
                        last_error: task.errors().last().map(|e| e.failure.message.clone()),
                        running_attempts: match task.state() {
                            TaskState::Running { attempts } => {
                                attempts.iter().map(ToString::to_string).collect()
                            }
                            _ => Vec::new(),
                        },
                    }
                })
                .collect();
            Some(TasksPage {
                tasks,
                next_task: end,
                total: found.tasks().len() as u32,
            })
        })
        .await?
        .map(Json)
        .ok_or_else(|| job_not_found(job))
}
