//! The root's HTTP API:
//!
//! | route | what |
//! |---|---|
//! | `GET /query?q=…[&deadline_ms=…][&key=…]` | the answer as JSON ([`QueryAnswer`], `cached: true` when it came from the query cache); 400 for an empty or oversized query |
//! | `POST /leaves` | a leaf's registration; 409 when refused (the leaf then fails its attempt) |
//! | `GET /shards` | every known replica: shard, worker, URL, readiness, in flight, p95 |
//! | `GET /healthz`, `/readyz`, `/metrics` | as every essaim process; ready once every shard has a replica |
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query as QueryString, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use essaim_telemetry::Health;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{MAX_DEADLINE, ReplicaView, Root};
use crate::wire::{ErrorBody, QueryAnswer, Registration};

/// How often readiness (every shard served) is re-evaluated.
const READINESS_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Deserialize)]
struct QueryParams {
    q: String,
    deadline_ms: Option<u64>,
    key: Option<String>,
}

type Refusal = (StatusCode, Json<ErrorBody>);

fn refusal(status: StatusCode, error: impl std::fmt::Display) -> Refusal {
    (
        status,
        Json(ErrorBody {
            error: error.to_string(),
        }),
    )
}

async fn query(
    State(root): State<Arc<Root>>,
    QueryString(params): QueryString<QueryParams>,
) -> Result<Json<QueryAnswer>, Refusal> {
    let deadline = match params.deadline_ms {
        None => root.config().default_deadline,
        Some(0) => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "deadline_ms must be at least 1",
            ));
        }
        Some(millis) if Duration::from_millis(millis) > MAX_DEADLINE => {
            let limit = MAX_DEADLINE.as_millis();
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                format!("deadline_ms must be at most {limit}"),
            ));
        }
        Some(millis) => Duration::from_millis(millis),
    };
    root.query(&params.q, deadline, params.key.as_deref())
        .await
        .map(Json)
        .map_err(|error| refusal(StatusCode::BAD_REQUEST, error))
}

async fn register(
    State(root): State<Arc<Root>>,
    Json(leaf): Json<Registration>,
) -> Result<Json<serde_json::Value>, Refusal> {
    root.register(&leaf)
        .map(|()| Json(serde_json::json!({})))
        .map_err(|refused| refusal(StatusCode::CONFLICT, refused))
}

async fn shards(State(root): State<Arc<Root>>) -> Json<Vec<ReplicaView>> {
    Json(root.replicas())
}

/// Returns the root's router.
pub fn router(root: Arc<Root>, health: Health) -> Router {
    let mut registry = Registry::default();
    root.metrics().register(&mut registry);
    Router::new()
        .route("/query", get(query))
        .route("/leaves", post(register))
        .route("/shards", get(shards))
        .with_state(root)
        .merge(essaim_telemetry::router(registry, health))
}

/// Serves the root on `listener` (over TLS with `tls`) until `shutdown` is cancelled;
/// `/readyz` follows whether every shard has a replica receiving requests.
pub async fn serve(
    root: Arc<Root>,
    listener: tokio::net::TcpListener,
    tls: Option<essaim_tls::ServerTls>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let health = Health::new();
    health.set_not_ready("waiting for a replica of every shard");
    let readiness = {
        let root = Arc::clone(&root);
        let health = health.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(READINESS_EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                if root.every_shard_ready() {
                    health.set_ready();
                } else {
                    health.set_not_ready("a shard has no replica receiving requests");
                }
            }
        })
    };
    let app = router(Arc::clone(&root), health);
    let stopped = shutdown.clone().cancelled_owned();
    let served = essaim_tls::serve(listener, tls.as_ref(), app, stopped).await;
    shutdown.cancel();
    let _ = readiness.await;
    root.finish_cache_stores().await;
    served
}
