//! The runner's HTTP API: the Open Inference Protocol v2 endpoints, beside the
//! telemetry crate's `/metrics`, `/healthz` and `/readyz`.
//!
//! | endpoint | answer |
//! |---|---|
//! | `POST /v2/models/{name}/infer` | the labels and scores ([`crate::oip`]); 400, 404, 429, 503 |
//! | `GET /v2/models/{name}/ready` | 200 once its primary is loaded, else 503; 404 if not served |
//! | `GET /v2/models/{name}` | the model's metadata |
//! | `GET /v2/health/live` | 200 while the process runs |
//! | `GET /v2/health/ready` | 200 once every model is loaded (503 before), with `degraded` |
//! | `GET /v2` | the server's metadata |
//!
//! Handlers translate and count; what a request means is decided in `oip` and
//! `served`.

use crate::health::RunnerHealth;
use crate::metrics::RunnerMetrics;
use crate::oip::{self, InferError};
use crate::served::ServedModel;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest request body: 1024 rows of about 16 KiB of text.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Served name → model.
    pub models: Arc<BTreeMap<String, Arc<ServedModel>>>,
    /// Readiness.
    pub health: RunnerHealth,
    /// Metrics.
    pub metrics: RunnerMetrics,
}

/// Returns the OIP routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn refusal(error: &InferError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({ "error": error.to_string() }))).into_response()
}

async fn infer(State(state): State<ApiState>, Path(name): Path<String>, body: Bytes) -> Response {
    let Some(model) = state.models.get(&name) else {
        state.metrics.count_request("unknown", "unknown_model");
        return refusal(&InferError::UnknownModel(name));
    };
    let answer = match oip::parse_request(&body) {
        Ok(rows) => model.infer(rows).await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(response) => {
            state.metrics.count_request(&name, "answered");
            axum::Json(response).into_response()
        }
        Err(error) => {
            state.metrics.count_request(&name, error.outcome());
            refusal(&error)
        }
    }
}

async fn model_ready(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    let Some(model) = state.models.get(&name) else {
        return refusal(&InferError::UnknownModel(name));
    };
    let ready = model.primary.get().is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "name": name, "ready": ready }))).into_response()
}

async fn model_metadata(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    let Some(model) = state.models.get(&name) else {
        return refusal(&InferError::UnknownModel(name));
    };
    let loaded = model.loaded_versions();
    let Some(primary) = loaded.first() else {
        return refusal(&InferError::NotReady(name));
    };
    let versions = loaded.iter().map(|v| v.version.to_string()).collect();
    let mut metadata = serde_json::to_value(oip::metadata(&name, versions, primary.classes.len()))
        .expect("metadata always serialises");
    metadata["parameters"] = json!({
        "classes": primary.classes,
        "reference": model.primary.reference.to_string(),
        "rollout": model.rollout.mode(),
        "sha256": primary.sha256,
    });
    axum::Json(metadata).into_response()
}

async fn live() -> Response {
    axum::Json(json!({ "live": true })).into_response()
}

async fn ready(State(state): State<ApiState>) -> Response {
    let view = state.health.view();
    let status = if view.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(view)).into_response()
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "essaim",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
    .into_response()
}
