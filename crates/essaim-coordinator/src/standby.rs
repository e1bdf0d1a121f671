//! What a standby coordinator serves on its port while another one leads: `/healthz`
//! (alive), `/readyz` (not ready: a Service that routes on readiness sends clients to the
//! leader only), `/metrics` (its leadership metrics), `/api/v1/cluster`, and to every
//! other call "not the leader" with where the leader is:
//!
//! - a gRPC call gets status UNAVAILABLE with the leader's URL in the
//!   `essaim-leader` metadata (clients retry there);
//! - an HTTP call gets 503 with `{"error": …, "leader": …}` and the same header.

use crate::cluster::{self, ClusterSource};
use crate::{CoordinatorError, ListenSocket};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use essaim_telemetry::prometheus_client::registry::Registry;
use essaim_telemetry::{Health, LeadershipMetrics};
use std::sync::{Arc, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Who leads, as last seen by this standby.
pub(crate) type KnownLeader = Arc<RwLock<Option<String>>>;

/// A standby's server, until [`StandbyServer::stop`].
pub(crate) struct StandbyServer {
    stop: CancellationToken,
    server: JoinHandle<Result<(), std::io::Error>>,
}

impl StandbyServer {
    /// Stops serving; the socket stays open for the next role's server.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.await;
    }
}

/// Starts serving as a standby on `socket`.
pub(crate) fn serve(
    socket: &ListenSocket,
    leader: KnownLeader,
    metrics: LeadershipMetrics,
    cluster: ClusterSource,
    tls: Option<essaim_tls::ServerTls>,
) -> Result<StandbyServer, CoordinatorError> {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let health = Health::new();
    health.set_not_ready("standby: another coordinator leads");
    let router = Router::new()
        .fallback(not_the_leader)
        .with_state(leader)
        .merge(essaim_telemetry::router(registry, health))
        .merge(cluster::router(cluster));
    let listener = socket.listener()?;
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        essaim_tls::serve(
            listener,
            tls.as_ref(),
            router,
            server_stop.cancelled_owned(),
        )
        .await
    });
    Ok(StandbyServer { stop, server })
}

async fn not_the_leader(State(leader): State<KnownLeader>, request: Request) -> Response {
    let leader = leader.read().map(|leader| leader.clone()).unwrap_or(None);
    let message = match &leader {
        Some(url) => format!("this coordinator is a standby; the leader is {url}"),
        None => {
            "this coordinator is a standby and no leader is elected yet; retry shortly".to_string()
        }
    };
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    let mut response = if is_grpc {
        // A "trailers-only" gRPC answer: the status travels in the headers.
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            HeaderValue::from(tonic::Code::Unavailable as i32),
        );
        if let Ok(value) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", value);
        }
        response
    } else {
        let body = serde_json::json!({ "error": message, "leader": leader });
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    };
    if let Some(value) = leader.and_then(|url| HeaderValue::from_str(&url).ok()) {
        response
            .headers_mut()
            .insert(essaim_proto::LEADER_METADATA, value);
    }
    response
}
