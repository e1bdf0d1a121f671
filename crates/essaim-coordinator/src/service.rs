//! The gRPC service: translates wire requests into actor commands and replies back.
//!
//! Handlers validate what the wire cannot (limits, zero values), never touch the
//! scheduler directly, and map every refusal to a gRPC status whose message says what to
//! do about it.

use crate::actor::{CancelRefusal, Command, DeadLetterTarget, Query, wall_clock_ms};
use crate::auth::Principal;
use crate::submission::owned_by;
use crate::views;
use essaim_core::{AttemptId, JobError, JobId, Scheduler, SpecError, TaskId, WorkerId, WorkerInfo};
use essaim_proto::capability::CapabilityKey;
use essaim_proto::v1::{self, coordinator_server::Coordinator};
use essaim_proto::{output_to_wire, raw_job_spec_from_wire, reported_result_from_wire};
use essaim_store::SharedResults;
use essaim_telemetry::{AuthSurface, CoordinatorMetrics};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

/// Timing the coordinator hands to workers at registration.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTiming {
    /// How often workers heart-beat.
    pub heartbeat_interval: Duration,
    /// Silence after which a worker is dead.
    pub worker_timeout: Duration,
    /// Longest a pull is held open.
    pub long_poll: Duration,
}

/// The `essaim.v1.Coordinator` implementation.
pub struct CoordinatorService {
    pub(crate) commands_tx: mpsc::Sender<Command>,
    pub(crate) results: SharedResults,
    pub(crate) timing: WorkerTiming,
    pub(crate) metrics: CoordinatorMetrics,
    pub(crate) admission: crate::admission::Admission,
    /// Plans and submits what `PlanAndSubmit` is given (as REST's `POST /api/v1/jobs`).
    pub(crate) submitter: crate::submission::Submitter,
    /// This incarnation's epoch, which attempts granted by an older one carry below it.
    pub(crate) epoch: u64,
    /// The trace each job was submitted in, handed on with its grants.
    pub(crate) job_traces: crate::job_traces::JobTraces,
    /// The secret of the per-job file capabilities, handed to registering workers.
    pub(crate) capability_key: CapabilityKey,
    /// The stream units' progress the heartbeats carry.
    pub(crate) streams: crate::streams::StreamBoard,
}

/// Longest a client may ask `WaitJob` to wait in one call.
const MAX_WAIT: Duration = Duration::from_secs(60);

impl CoordinatorService {
    /// Counts `attempts` granted by an older epoch (before a restart or a failover):
    /// this incarnation never granted them, so their tasks run again.
    fn count_older_epoch(&self, attempts: impl Iterator<Item = AttemptId>) {
        let older = attempts
            .filter(|attempt| attempt.epoch() < self.epoch)
            .count();
        self.metrics
            .attempts_from_older_epoch_total
            .inc_by(older as u64);
    }

    async fn ask<T>(
        &self,
        method: &'static str,
        build: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands_tx
            .send(build(reply_tx))
            .await
            .map_err(|_| Status::unavailable("the coordinator is shutting down"))?;
        let answer = reply_rx
            .await
            .map_err(|_| Status::unavailable("the coordinator is shutting down"))?;
        self.metrics.record_rpc(method, started.elapsed());
        Ok(answer)
    }

    async fn query<T: Send + 'static>(
        &self,
        method: &'static str,
        read: impl FnOnce(&Scheduler) -> T + Send + 'static,
    ) -> Result<T, Status> {
        self.ask(method, |reply| {
            let query: Query = Box::new(move |view| {
                let _ = reply.send(read(view.scheduler));
            });
            Command::Query(query)
        })
        .await
    }

    async fn job_status(&self, job: JobId) -> Result<v1::JobStatus, Status> {
        self.query("GetJob", move |scheduler| {
            scheduler
                .job(job)
                .map(|job| views::job_status(scheduler, job))
        })
        .await?
        .ok_or_else(|| Status::not_found(JobError::NotFound(job).to_string()))
    }
}

/// Checks the results a worker sends; a malformed one refuses the whole call (the worker
/// keeps them and the error names the field).
fn decode_results(
    results: Vec<v1::AttemptResult>,
) -> Result<Vec<essaim_core::ReportedResult>, Status> {
    results
        .into_iter()
        .map(reported_result_from_wire)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Status::invalid_argument(error.to_string()))
}

fn spec_error_status(error: SpecError) -> Status {
    Status::invalid_argument(error.to_string())
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register_worker(
        &self,
        request: Request<v1::RegisterWorkerRequest>,
    ) -> Result<Response<v1::RegisterWorkerResponse>, Status> {
        let request = request.into_inner();
        if request.slots == 0 {
            return Err(Status::invalid_argument("a worker needs at least one slot"));
        }
        let info = WorkerInfo {
            name: request.name,
            build: request.build,
            slots: request.slots,
            kinds: request.kinds.iter().cloned().collect(),
            file_server_url: request.file_server_url,
            data_dirs: request.data_dirs,
            labels: request.labels.into_iter().collect(),
            long_running_kinds: request
                .long_running_kinds
                .into_iter()
                .filter(|kind| request.kinds.contains(kind))
                .collect(),
        };
        let worker = self
            .ask("RegisterWorker", |reply| Command::Register { info, reply })
            .await?;
        Ok(Response::new(v1::RegisterWorkerResponse {
            worker_id: worker.0,
            heartbeat_interval_ms: self.timing.heartbeat_interval.as_millis() as u64,
            worker_timeout_ms: self.timing.worker_timeout.as_millis() as u64,
            long_poll_ms: self.timing.long_poll.as_millis() as u64,
            file_capability_key: self.capability_key.as_bytes().to_vec(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let held = request.held_attempts.into_iter().map(AttemptId).collect();
        let worker = WorkerId(request.worker_id);
        let stream_units = request.stream_units;
        let answer = self
            .ask("Heartbeat", |reply| Command::Heartbeat {
                worker,
                held,
                draining: request.draining,
                busy_slots: request.busy_slots,
                scratch_jobs: request.scratch_jobs.into_iter().map(JobId).collect(),
                reply,
            })
            .await?;
        // Held from before a restart or failover, they are among the attempts the worker
        // is told to stop (all it holds, when it must register anew), and it drops
        // them: each is counted once.
        self.count_older_epoch(answer.cancel.iter().copied());
        if !answer.reregister {
            self.streams.record(worker, stream_units, Instant::now());
        }
        Ok(Response::new(v1::HeartbeatResponse {
            reregister: answer.reregister,
            cancel_attempts: answer.cancel.into_iter().map(|a| a.0).collect(),
            release_jobs: answer.release_jobs.into_iter().map(|job| job.0).collect(),
        }))
    }

    async fn pull_tasks(
        &self,
        request: Request<v1::PullTasksRequest>,
    ) -> Result<Response<v1::PullTasksResponse>, Status> {
        let request = request.into_inner();
        let worker = WorkerId(request.worker_id);
        if !request.results.is_empty() {
            let results = decode_results(request.results)?;
            self.count_older_epoch(results.iter().map(|result| result.attempt));
            self.ask("ReportResults", |reply| Command::Report {
                worker,
                results,
                reply,
            })
            .await?;
        }
        let max = request.max_tasks.min(10_000);
        let wait = self.timing.long_poll;
        let answer = self
            .ask("PullTasks", |reply| Command::Pull {
                worker,
                max,
                wait,
                reply,
            })
            .await?;
        let assignments = answer
            .assignments
            .into_iter()
            .map(|mut assignment| {
                assignment.trace_parent = self.job_traces.of(assignment.task.job);
                essaim_proto::assignment_to_wire(assignment)
            })
            .collect();
        Ok(Response::new(v1::PullTasksResponse {
            assignments,
            reregister: answer.reregister,
        }))
    }

    async fn report_results(
        &self,
        request: Request<v1::ReportResultsRequest>,
    ) -> Result<Response<v1::ReportResultsResponse>, Status> {
        let request = request.into_inner();
        let worker = WorkerId(request.worker_id);
        let results = decode_results(request.results)?;
        self.count_older_epoch(results.iter().map(|result| result.attempt));
        let answer = self
            .ask("ReportResults", |reply| Command::Report {
                worker,
                results,
                reply,
            })
            .await?;
        Ok(Response::new(v1::ReportResultsResponse {
            rejected: answer.rejected,
            reregister: answer.reregister,
        }))
    }

    async fn watch_inputs(
        &self,
        request: Request<v1::WatchInputsRequest>,
    ) -> Result<Response<v1::WatchInputsResponse>, Status> {
        let request = request.into_inner();
        // A reducer waits at most as long as a pull: a coordinator that stopped answering
        // is noticed as soon.
        let wait = Duration::from_millis(request.timeout_ms).min(self.timing.long_poll);
        let answer = self
            .ask("WatchInputs", |reply| Command::WatchInputs {
                worker: WorkerId(request.worker_id),
                attempt: AttemptId(request.attempt_id),
                known_version: request.known_version,
                wait,
                reply,
            })
            .await?;
        let Some(inputs) = answer else {
            return Ok(Response::new(v1::WatchInputsResponse {
                lease_lost: true,
                ..Default::default()
            }));
        };
        Ok(Response::new(v1::WatchInputsResponse {
            lease_lost: false,
            version: inputs.version,
            outputs: inputs
                .outputs
                .into_iter()
                .map(essaim_proto::upstream_output_to_wire)
                .collect(),
            complete: inputs.complete,
        }))
    }

    async fn deregister_worker(
        &self,
        request: Request<v1::DeregisterWorkerRequest>,
    ) -> Result<Response<v1::DeregisterWorkerResponse>, Status> {
        let request = request.into_inner();
        let worker = WorkerId(request.worker_id);
        let returned = request
            .returned_attempts
            .into_iter()
            .map(AttemptId)
            .collect();
        self.ask("DeregisterWorker", |reply| Command::Deregister {
            worker,
            returned,
            reply,
        })
        .await?;
        Ok(Response::new(v1::DeregisterWorkerResponse {}))
    }

    async fn submit_job(
        &self,
        request: Request<v1::SubmitJobRequest>,
    ) -> Result<Response<v1::SubmitJobResponse>, Status> {
        // Before reading the spec: a full disk refuses the job whatever its size.
        self.admission
            .check_submission()
            .map_err(|refusal| Status::resource_exhausted(refusal.to_string()))?;
        let principal = caller(&request)?;
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| Status::invalid_argument("field `spec` is missing"))?;
        self.submitter
            .check_commands(&principal, AuthSurface::Grpc, &spec)
            .map_err(|refusal| refusal.to_status())?;
        let raw = owned_by(&principal, raw_job_spec_from_wire(spec));
        let job = self
            .ask("SubmitJob", |reply| Command::Submit { raw, reply })
            .await?
            .map_err(spec_error_status)?;
        // This handler runs in the request's span, a child of the client's: the job's
        // attempts become children of it.
        if let Some(traceparent) = essaim_telemetry::trace_context::current_traceparent() {
            self.job_traces.record(job, traceparent);
        }
        tracing::info!(job = %job, principal = %principal.name, "job submitted");
        Ok(Response::new(v1::SubmitJobResponse { job_id: job.0 }))
    }

    async fn plan_and_submit(
        &self,
        request: Request<v1::PlanAndSubmitRequest>,
    ) -> Result<Response<v1::PlanAndSubmitResponse>, Status> {
        use crate::submission::SubmitFailure;
        let started = Instant::now();
        let principal = caller(&request)?;
        let request = serde_json::from_str(&request.into_inner().request_json)
            .map_err(|error| Status::invalid_argument(format!("request_json: {error}")))?;
        let submitted = self
            .submitter
            .submit(&principal, AuthSurface::Grpc, request)
            .await;
        let answer = submitted.map_err(|failure| {
            let message = failure.to_string();
            match failure {
                SubmitFailure::DiskBelowReserve(_) => Status::resource_exhausted(message),
                SubmitFailure::Invalid(_) => Status::invalid_argument(message),
                SubmitFailure::Unsupported(_) => Status::unimplemented(message),
                SubmitFailure::AlreadyRunning(_) => Status::already_exists(message),
                SubmitFailure::Forbidden(refusal) => refusal.to_status(),
                SubmitFailure::Unavailable => Status::unavailable(message),
                SubmitFailure::Internal(_) => Status::internal(message),
            }
        })?;
        self.metrics.record_rpc("PlanAndSubmit", started.elapsed());
        Ok(Response::new(v1::PlanAndSubmitResponse {
            job_id: answer.job_id,
            name: answer.name,
            tasks: answer.tasks,
            plan_json: answer.plan.to_string(),
        }))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        Ok(Response::new(
            self.job_status(JobId(request.into_inner().job_id)).await?,
        ))
    }

    async fn list_jobs(
        &self,
        _request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let jobs = self
            .query("ListJobs", |scheduler| {
                scheduler
                    .jobs()
                    .map(|job| views::job_status(scheduler, job))
                    .collect()
            })
            .await?;
        Ok(Response::new(v1::ListJobsResponse { jobs }))
    }

    async fn wait_job(
        &self,
        request: Request<v1::WaitJobRequest>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        let request = request.into_inner();
        let job = JobId(request.job_id);
        let wait = Duration::from_millis(request.timeout_ms).min(MAX_WAIT);
        self.job_status(job).await?;
        self.ask("WaitJob", |reply| Command::WaitJob { job, wait, reply })
            .await?;
        Ok(Response::new(self.job_status(job).await?))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        let by = caller(&request)?;
        let job = JobId(request.into_inner().job_id);
        let result = self
            .ask("CancelJob", |reply| Command::Cancel { job, by, reply })
            .await?;
        match result {
            Ok(()) => Ok(Response::new(self.job_status(job).await?)),
            Err(CancelRefusal::Job(error @ JobError::NotFound(_))) => {
                Err(Status::not_found(error.to_string()))
            }
            Err(CancelRefusal::Job(error @ JobError::AlreadyFinished { .. })) => {
                Err(Status::failed_precondition(error.to_string()))
            }
            Err(refusal @ CancelRefusal::NotOwner { .. }) => {
                Err(Status::permission_denied(refusal.to_string()))
            }
        }
    }

    async fn get_results(
        &self,
        request: Request<v1::GetResultsRequest>,
    ) -> Result<Response<v1::GetResultsResponse>, Status> {
        let request = request.into_inner();
        let job = JobId(request.job_id);
        let total = self.job_status(job).await?.total;
        let limit = if request.limit == 0 {
            1000
        } else {
            request.limit.min(10_000)
        } as usize;
        let (found, next_task) =
            views::results_page(self.results.clone(), job, request.from_task, limit, total)
                .await
                .map_err(Status::internal)?;
        let results = found
            .into_iter()
            .map(|r| v1::TaskResult {
                task_index: r.task.index,
                attempt_id: r.attempt.0,
                output: Some(output_to_wire(&r.output)),
                duration_ms: r.duration_ms,
                worker_id: r.worker.0,
            })
            .collect();
        // Whoever may read the results may fetch the job's file results too, and only them.
        let file_capability = self.capability_key.capability_of(job.0);
        Ok(Response::new(v1::GetResultsResponse {
            results,
            next_task,
            file_capability,
        }))
    }

    async fn list_workers(
        &self,
        _request: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
        let now = wall_clock_ms();
        let workers = self
            .query("ListWorkers", move |scheduler| {
                views::workers(scheduler, now)
            })
            .await?;
        Ok(Response::new(v1::ListWorkersResponse { workers }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        let job = request.into_inner().job_id;
        let job = (job != 0).then_some(JobId(job));
        let dead_letters = self
            .query("ListDeadLetters", move |scheduler| {
                views::dead_letters(scheduler, job)
            })
            .await?;
        Ok(Response::new(v1::ListDeadLettersResponse { dead_letters }))
    }

    async fn requeue_dead_letters(
        &self,
        request: Request<v1::DeadLetterSelection>,
    ) -> Result<Response<v1::DeadLetterChange>, Status> {
        let tasks = target(request.into_inner())?;
        let affected = self
            .ask("RequeueDeadLetters", |reply| Command::Requeue {
                tasks,
                reply,
            })
            .await?;
        Ok(Response::new(v1::DeadLetterChange { affected }))
    }

    async fn purge_dead_letters(
        &self,
        request: Request<v1::DeadLetterSelection>,
    ) -> Result<Response<v1::DeadLetterChange>, Status> {
        let tasks = target(request.into_inner())?;
        let affected = self
            .ask("PurgeDeadLetters", |reply| Command::Purge { tasks, reply })
            .await?;
        Ok(Response::new(v1::DeadLetterChange { affected }))
    }
}

fn target(selection: v1::DeadLetterSelection) -> Result<DeadLetterTarget, Status> {
    if !selection.tasks.is_empty() {
        return Ok(DeadLetterTarget::Tasks(
            selection
                .tasks
                .into_iter()
                .map(|t| TaskId::new(JobId(t.job_id), t.task_index))
                .collect(),
        ));
    }
    if selection.job_id == 0 {
        return Err(Status::invalid_argument(
            "name a job or tasks: refusing to act on every dead letter of every job",
        ));
    }
    Ok(DeadLetterTarget::Job(JobId(selection.job_id)))
}

/// Returns the principal the auth layer (`crate::auth`) left on `request`. Its absence
/// means the layer is missing: refuse rather than admit anyone.
fn caller<T>(request: &Request<T>) -> Result<Arc<Principal>, Status> {
    request
        .extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| Status::internal("the request passed no authentication check"))
}
