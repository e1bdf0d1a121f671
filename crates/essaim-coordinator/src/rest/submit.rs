//! `POST /api/v1/jobs`: a job planned here and submitted, and the MapReduce jobs this
//! coordinator can plan. See [`crate::planning`] for why planning runs here.

use super::models::ApiError;
use super::{ApiJson, Failure, RestState};
use crate::auth::Principal;
use crate::planning::{SubmitAnswer, SubmitRequest};
use crate::submission::SubmitFailure;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use essaim_telemetry::AuthSurface;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// A MapReduce job this coordinator can plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapReduceJobView {
    /// Its name, as `job` of a MapReduce submission.
    pub name: String,
    /// What it does.
    pub description: String,
}

/// Plans and submits a job: a task farm (`kind: tasks`), a MapReduce job the binary
/// knows (`kind: mapreduce`) or a streaming pipeline (`kind: stream`). Inputs are listed,
/// sized and sampled, and the output prepared, by the coordinator.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = SubmitRequest,
    responses((status = 201, body = SubmitAnswer, description = "Planned and submitted"),
        (status = 400, body = ApiError, description = "The request cannot be planned: the error says why"),
        (status = 409, body = ApiError, description = "A pipeline of that name is running"),
        (status = 501, body = ApiError, description = "This coordinator cannot plan that kind of job"),
        (status = 507, body = ApiError, description = "The journal's disk is below its reserve"),
        (status = 500, body = ApiError, description = "Planning failed unexpectedly"),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError, description = "The principal lacks `submit`, or `commands` for a job that runs commands"),
        (status = 415, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn submit_job(
    State(state): State<RestState>,
    Extension(principal): Extension<Arc<Principal>>,
    ApiJson(request): ApiJson<SubmitRequest>,
) -> Result<(StatusCode, Json<SubmitAnswer>), Failure> {
    let submitted = state
        .submitter
        .submit(&principal, AuthSurface::Rest, request)
        .await;
    match submitted {
        Ok(answer) => Ok((StatusCode::CREATED, Json(answer))),
        Err(failure) => {
            let status = match &failure {
                SubmitFailure::DiskBelowReserve(_) => StatusCode::INSUFFICIENT_STORAGE,
                SubmitFailure::Invalid(_) => StatusCode::BAD_REQUEST,
                SubmitFailure::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
                SubmitFailure::AlreadyRunning(_) => StatusCode::CONFLICT,
                SubmitFailure::Forbidden(refusal) => refusal.http_status(),
                SubmitFailure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                SubmitFailure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(Failure(status, failure.to_string()))
        }
    }
}

/// The MapReduce jobs this coordinator can plan.
#[utoipa::path(get, path = "/api/v1/mapreduce-jobs", tag = "jobs",
    responses((status = 200, body = [MapReduceJobView]), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub(super) async fn mapreduce_jobs(State(state): State<RestState>) -> Json<Vec<MapReduceJobView>> {
    let jobs = state.submitter.mapreduce_jobs();
    Json(
        jobs.into_iter()
            .map(|(name, description)| MapReduceJobView { name, description })
            .collect(),
    )
}
