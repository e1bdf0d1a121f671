//! The front of a model served on the cluster: the one address of the Open Inference
//! Protocol, in front of the replicas that registered.
//!
//! | route | what |
//! |---|---|
//! | `POST /v2/models/{name}/infer`, `GET /v2/models/{name}/ready`, `GET /v2/models/{name}`, `GET /v2` | forwarded to a ready replica, the answer passed back as it is |
//! | `GET /v2/health/ready` | 503 while no replica is ready; else forwarded (so `degraded` shows) |
//! | `GET /v2/health/live` | 200 while the front runs |
//! | `POST /replicas` | a replica's registration; 409 when refused (the replica then fails its attempt) |
//! | `GET /replicas` | every known replica: worker, URL, readiness, in flight |
//! | `GET /healthz`, `/readyz`, `/metrics` | as every essaim process; ready once a replica is |
//!
//! A request goes to the ready replica with the fewest requests in flight; one that
//! fails at the connection level marks that replica down and is sent once more, to
//! another replica. Scoring changes nothing, so sending it again is safe.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use essaim_http_client::PooledClient;
use essaim_telemetry::Health;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::metrics::FrontMetrics;
use crate::table::{Outcome, RegistrationRefused, ReplicaTable, ReplicaView};
use crate::wire::{ErrorBody, Registration};

/// How often silent replicas are dropped and readiness re-evaluated.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(200);
/// Tries of one request: the first, and one retry on another replica.
const TRIES: usize = 2;
/// Longest a replica may take to answer a forwarded request; past it the replica is
/// marked down and the request retried elsewhere.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection to a replica may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The front's state.
#[derive(Debug)]
pub struct Front {
    table: Mutex<ReplicaTable>,
    /// Forwards requests to replicas as bytes, status and content type unchanged.
    forwarder: PooledClient,
    metrics: FrontMetrics,
}

impl Front {
    /// Returns a front for `replicas` replicas, none registered yet, verifying
    /// `https://` replicas with `trust` (which presents its certificate to replicas
    /// requiring one).
    pub fn new(replicas: u32, trust: &essaim_tls::ClientTrust) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(ReplicaTable::new(replicas)),
            forwarder: PooledClient::new(trust, CONNECT_TIMEOUT, REQUEST_TIMEOUT),
            metrics: FrontMetrics::new(),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, ReplicaTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a replica's registration.
    pub fn register(&self, registration: &Registration) -> Result<(), RegistrationRefused> {
        self.table().register(Instant::now(), registration)
    }

    /// Returns every known replica.
    pub fn replicas(&self) -> Vec<ReplicaView> {
        self.table().view(Instant::now())
    }

    /// Returns the number of replicas receiving requests.
    pub fn ready_count(&self) -> usize {
        self.table().ready_count(Instant::now())
    }

    /// Returns the front's metrics.
    pub fn metrics(&self) -> &FrontMetrics {
        &self.metrics
    }

    /// Drops silent replicas and updates the gauges.
    fn housekeeping(&self) {
        let now = Instant::now();
        let mut table = self.table();
        for dropped in table.drop_silent(now) {
            tracing::warn!(
                replica = dropped.replica, worker = %dropped.worker, url = %dropped.url,
                "model replica silent: dropped until it registers again"
            );
        }
        self.metrics.replicas.set(table.view(now).len() as i64);
        self.metrics
            .ready_replicas
            .set(table.ready_count(now) as i64);
    }

    /// Sends `method path` to a ready replica, and once more to another one if the
    /// first fails at the connection level.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let content_type = headers.get(http::header::CONTENT_TYPE);
        let mut tried = Vec::new();
        let mut last_failure = None;
        for _ in 0..TRIES {
            let Some(pick) = self.table().pick(Instant::now(), &tried) else {
                break;
            };
            if !tried.is_empty() {
                self.metrics.retries.inc();
            }
            self.metrics.count_request(pick.replica);
            let url = format!("{}{path_and_query}", pick.url);
            let sent = self
                .forwarder
                .call(method.clone(), &url, content_type, body.clone())
                .await;
            match sent {
                Ok(answer) => {
                    self.table().finish(&pick, Outcome::Answered);
                    if answer.status().is_server_error() {
                        self.metrics.count_error(pick.replica);
                    }
                    return answer_response(answer);
                }
                Err(failure) => {
                    self.table().finish(&pick, Outcome::Unreachable);
                    self.metrics.count_error(pick.replica);
                    tracing::warn!(
                        replica = pick.replica, error = %failure,
                        "model replica unreachable: marked down"
                    );
                    tried.push(pick.replica);
                    last_failure = Some(failure);
                }
            }
        }
        self.metrics.unanswered.inc();
        let (status, error) = match last_failure {
            Some(failure) => (StatusCode::BAD_GATEWAY, failure.to_string()),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no replica of the model is ready".to_owned(),
            ),
        };
        refusal(status, error)
    }
}

/// A replica's answer passed back: status, content type and body unchanged.
fn answer_response(answer: http::Response<Bytes>) -> Response {
    let (parts, body) = answer.into_parts();
    let mut response = (parts.status, body).into_response();
    if let Some(content_type) = parts.headers.get(http::header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type.clone());
    }
    response
}

fn refusal(status: StatusCode, error: impl std::fmt::Display) -> Response {
    let body = ErrorBody {
        error: error.to_string(),
    };
    (status, axum::Json(body)).into_response()
}

async fn forwarded(
    State(front): State<Arc<Front>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), ToString::to_string);
    front.forward(method, &path, &headers, body).await
}

async fn health_ready(
    State(front): State<Arc<Front>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if front.ready_count() == 0 {
        let body = serde_json::json!({ "ready": false, "reason": "no replica is ready" });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    front
        .forward(method, uri.path(), &headers, Bytes::new())
        .await
}

async fn live() -> Response {
    axum::Json(serde_json::json!({ "live": true })).into_response()
}

async fn register(
    State(front): State<Arc<Front>>,
    axum::Json(registration): axum::Json<Registration>,
) -> Response {
    match front.register(&registration) {
        Ok(()) => axum::Json(serde_json::json!({})).into_response(),
        Err(refused) => refusal(StatusCode::CONFLICT, refused),
    }
}

async fn replicas(State(front): State<Arc<Front>>) -> axum::Json<Vec<ReplicaView>> {
    axum::Json(front.replicas())
}

/// Returns the front's router.
pub fn router(front: Arc<Front>, health: Health) -> Router {
    let mut registry = Registry::default();
    front.metrics().register(&mut registry);
    Router::new()
        .route("/v2", get(forwarded))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(health_ready))
        .route("/v2/models/{name}", get(forwarded))
        .route("/v2/models/{name}/ready", get(forwarded))
        .route("/v2/models/{name}/infer", post(forwarded))
        .route("/replicas", post(register).get(replicas))
        .layer(DefaultBodyLimit::max(essaim_runner::http::MAX_BODY_BYTES))
        .with_state(front)
        .merge(essaim_telemetry::router(registry, health))
}

/// Serves the front on `listener` (over TLS with `tls`) until `shutdown` is cancelled;
/// `/readyz` follows whether a replica is ready, and silent replicas are dropped as
/// time passes.
pub async fn serve(
    front: Arc<Front>,
    listener: tokio::net::TcpListener,
    tls: Option<essaim_tls::ServerTls>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let health = Health::new();
    health.set_not_ready("waiting for a replica");
    let housekeeping = {
        let (front, health, shutdown) = (Arc::clone(&front), health.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(HOUSEKEEPING_EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                front.housekeeping();
                if front.ready_count() > 0 {
                    health.set_ready();
                } else {
                    health.set_not_ready("no replica is ready");
                }
            }
        })
    };
    let app = router(front, health);
    let stopped = shutdown.clone().cancelled_owned();
    let served = essaim_tls::serve(listener, tls.as_ref(), app, stopped).await;
    shutdown.cancel();
    let _ = housekeeping.await;
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves a replica answering every inference with `answer`; returns its URL.
    async fn replica(answer: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route(
            "/v2/models/{name}/infer",
            post(move || async move { answer }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Returns the URL of a port nothing listens on any more.
    async fn closed_port() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    fn registration(replica: u32, url: String) -> Registration {
        Registration {
            replica,
            url,
            worker: format!("w{replica}"),
            attempt: u64::from(replica) + 1,
        }
    }

    async fn infer(front: &Front) -> (StatusCode, Bytes) {
        let response = front
            .forward(
                Method::POST,
                "/v2/models/m/infer",
                &HeaderMap::new(),
                Bytes::from("{}"),
            )
            .await;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, body)
    }

    #[tokio::test]
    async fn a_request_to_a_dead_replica_is_answered_by_another() {
        let front = Front::new(2, &Default::default());
        front
            .register(&registration(0, closed_port().await))
            .unwrap();
        front
            .register(&registration(1, replica("from 1").await))
            .unwrap();
        for _ in 0..4 {
            assert_eq!(infer(&front).await, (StatusCode::OK, Bytes::from("from 1")));
        }
        assert_eq!(
            front.metrics().retries.get(),
            1,
            "one retry, then it is down"
        );
        assert_eq!(front.ready_count(), 1);
    }

    #[tokio::test]
    async fn without_a_replica_left_the_front_says_why() {
        let front = Front::new(1, &Default::default());
        assert_eq!(infer(&front).await.0, StatusCode::SERVICE_UNAVAILABLE);
        front
            .register(&registration(0, closed_port().await))
            .unwrap();
        let (status, body) = infer(&front).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(
            String::from_utf8_lossy(&body).contains("cannot reach"),
            "{body:?}"
        );
        assert_eq!(front.metrics().unanswered.get(), 2);
    }
}
