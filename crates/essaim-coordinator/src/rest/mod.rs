//! The REST/JSON API: the gRPC read calls (and the operator's few writes: cancel,
//! requeue, purge) for browsers, scripts and `curl`, described by an OpenAPI document
//! at [`OPENAPI_PATH`].
//!
//! Why a second API: gRPC needs generated clients and HTTP/2, and a dashboard or a shell
//! script has neither. The REST side reads the same actor through the same queries, so
//! the two cannot disagree; it also serves what only the dashboard and the job report
//! need (the observatory's history and queue statistics).
//!
//! A token (the cluster token or a principal's), when the coordinator has credentials,
//! is required as `Authorization: Bearer <token>` on every `/api/v1` path except the
//! OpenAPI document, with the role the route needs (`crate::auth`): 401 without a known
//! token, 403 without the role. Errors are `{"error": "…"}` with the
//! status that says what kind of mistake it was.
//!
//! | module | concept |
//! |---|---|
//! | `models` | the JSON shapes, with their OpenAPI schemas |
//! | `views` | scheduler and observatory state → models |
//! | `handlers` | one function per route |
//! | this file | the router, request parsing, errors, the document |

mod handlers;
mod models;
mod submit;
mod views;

pub use models::*;

use crate::actor::{Command, QueryView};
use crate::auth::Authenticator;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use essaim_core::{JobError, JobId};
use essaim_store::SharedResults;
use handlers::*;
use tokio::sync::{mpsc, oneshot};
use utoipa::OpenApi;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Most results one call returns.
const MAX_RESULTS_PER_CALL: u32 = 10_000;

/// What the REST handlers need.
#[derive(Clone)]
pub struct RestState {
    /// The actor's command channel.
    pub commands_tx: mpsc::Sender<Command>,
    /// Reads committed results.
    pub results: SharedResults,
    /// Who may call which route (see [`crate::auth`]).
    pub authenticator: Authenticator,
    /// Plans and submits what `POST /api/v1/jobs` is given.
    pub(crate) submitter: crate::submission::Submitter,
    /// Running pipelines' units, for `GET /api/v1/streams`.
    pub streams: crate::streams::StreamBoard,
    /// The secret of the per-job file capabilities: a results page carries its job's.
    pub capability_key: essaim_proto::capability::CapabilityKey,
}

struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, Failure>;

fn unavailable() -> Failure {
    Failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "the coordinator is shutting down".into(),
    )
}

fn job_not_found(job: JobId) -> Failure {
    Failure(StatusCode::NOT_FOUND, JobError::NotFound(job).to_string())
}

impl RestState {
    async fn ask<T>(
        &self,
        build: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Failure> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands_tx
            .send(build(reply_tx))
            .await
            .map_err(|_| unavailable())?;
        reply_rx.await.map_err(|_| unavailable())
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(QueryView<'_>) -> T + Send + 'static,
    ) -> Result<T, Failure> {
        self.ask(|reply| {
            Command::Query(Box::new(move |view| {
                let _ = reply.send(read(view));
            }))
        })
        .await
    }
}

/// Largest job id the API accepts: 2^53 − 1, the largest integer a JavaScript client
/// reads exactly (ids are handed out from 1 upwards, so none is ever larger).
pub const MAX_JOB_ID: u64 = (1 << 53) - 1;
/// Largest task index the API accepts.
const MAX_TASK_INDEX: u32 = i32::MAX as u32;

fn bad_request(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

fn checked_job_id(id: u64) -> Result<JobId, Failure> {
    if (1..=MAX_JOB_ID).contains(&id) {
        Ok(JobId(id))
    } else {
        Err(bad_request(format!(
            "a job id is between 1 and {MAX_JOB_ID}"
        )))
    }
}

/// The job id of the path, checked; a malformed one is a JSON 400.
struct JobPath(JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        let Path(id) = Path::<u64>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: PathRejection| bad_request(rejection.body_text()))?;
        checked_job_id(id).map(JobPath)
    }
}

/// A query string; a malformed one is a JSON 400.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        let Query(query) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: QueryRejection| bad_request(rejection.body_text()))?;
        Ok(ApiQuery(query))
    }
}

/// A JSON body; a malformed one is a JSON 400 (415 without the JSON content type).
struct ApiJson<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Failure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Failure> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection @ JsonRejection::MissingJsonContentType(_)) => Err(Failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                rejection.body_text(),
            )),
            Err(rejection) => Err(bad_request(rejection.body_text())),
        }
    }
}

// ------------------------------------------------------------------ document

struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The cluster token or a principal's (--token / ESSAIM_TOKEN), when the coordinator has credentials",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI description of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "essaim coordinator REST API", description = "Submit task farms, MapReduce jobs and pipelines (planned by the coordinator); read the cluster's jobs, workers, dead letters and results; cancel jobs; requeue or purge dead letters."),
    components(schemas(submit::MapReduceJobView)),
    paths(overview, list_jobs, submit::submit_job, submit::mapreduce_jobs, get_job, job_results, job_tasks, cancel_job, list_workers,
        list_streams, list_dead_letters, requeue_dead_letters, purge_dead_letters),
    modifiers(&BearerSecurity),
)]
pub struct ApiDoc;

async fn openapi_document() -> Response {
    match ApiDoc::openapi().to_pretty_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => Failure(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn no_such_path() -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        format!("no such API path; the API is described at {OPENAPI_PATH}"),
    )
}

/// Returns `router` with the role check of [`crate::auth`] on every route, as on
/// `/api/v1` (the model registry's routes are served this way).
pub fn with_auth(router: Router, authenticator: Authenticator) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        authenticator,
        crate::auth::check_rest,
    ))
}

/// Returns the REST router (`/api/v1/...`), to merge with the coordinator's others.
pub fn router(state: RestState) -> Router {
    let authenticator = state.authenticator.clone();
    let api = Router::new()
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/jobs", get(list_jobs).post(submit::submit_job))
        .route("/api/v1/mapreduce-jobs", get(submit::mapreduce_jobs))
        .route("/api/v1/jobs/{job_id}", get(get_job))
        .route("/api/v1/jobs/{job_id}/results", get(job_results))
        .route("/api/v1/jobs/{job_id}/tasks", get(job_tasks))
        .route("/api/v1/jobs/{job_id}/cancel", post(cancel_job))
        .route("/api/v1/workers", get(list_workers))
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/dead-letters", get(list_dead_letters))
        .route("/api/v1/dead-letters/requeue", post(requeue_dead_letters))
        .route("/api/v1/dead-letters/purge", post(purge_dead_letters))
        .route("/api/v1/{*rest}", get(no_such_path).post(no_such_path))
        .with_state(state);
    let api = with_auth(api, authenticator);
    Router::new()
        .route(OPENAPI_PATH, get(openapi_document))
        .merge(api)
}
