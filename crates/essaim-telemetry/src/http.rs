//! The HTTP endpoints every essaim process serves: `/metrics`, `/healthz`, `/readyz`.
//!
//! Kept apart from the gRPC server so that a probe or a scrape still answers when the
//! gRPC side is overloaded or not yet started. The router carries no state type
//! (`Router<()>`), so a process can merge it with its own HTTP routes.
//!
//! `/metrics` negotiates its format: OpenMetrics for a scraper whose `Accept` header
//! prefers it (Prometheus does), the classic text format 0.0.4 otherwise (curl,
//! `promtool check metrics`, older scrapers), converted by `classic_text.rs`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::classic_text::{CLASSIC_TEXT_CONTENT_TYPE, openmetrics_to_classic};
use crate::{Health, ProcessMetrics};

/// The content type of the `/metrics` response, as required by OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    health: Health,
}

/// Returns a router serving `GET /metrics` (the metrics of `registry`, as OpenMetrics
/// or classic text depending on the `Accept` header),
/// `GET /healthz` (always 200 `ok`) and `GET /readyz` (200 `ready`, or 503 with the
/// reason from `health`).
///
/// The process metrics and `essaim_build_info` ([`ProcessMetrics`]) are added to
/// `registry` here, so that every endpoint that serves `/metrics` carries them without
/// its role having to remember.
pub fn router(mut registry: Registry, health: Health) -> Router {
    ProcessMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(HttpState { registry, health })
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for in-flight
/// requests to finish.
///
/// Accepted connections get `TCP_NODELAY`. hyper writes a streamed response's headers
/// and its first body chunk in two writes; with Nagle's algorithm on, the second waits
/// for the ACK of the first, which the client delays by up to 40 ms (Linux's delayed
/// ACK). That cost a reducer about 40 ms per range request of a small map output.
///
/// Errors accepting a connection are retried by axum rather than returned, so in
/// practice this only returns once `shutdown` has completed.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    // Encoding walks every metric; at a few hundred series this is well under the
    // 0.5 ms budget for blocking an async task, so no spawn_blocking.
    let mut body = String::new();
    if let Err(error) = encode(&mut body, &state.registry) {
        tracing::warn!(%error, "failed to encode metrics");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to encode metrics",
        )
            .into_response();
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    if prefers_openmetrics(accept) {
        return ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response();
    }
    let classic = openmetrics_to_classic(&body);
    ([(header::CONTENT_TYPE, CLASSIC_TEXT_CONTENT_TYPE)], classic).into_response()
}

/// Returns true when an `Accept` header asks for OpenMetrics at least as much as for
/// plain text. Without the header, or with only wildcards, the answer is no: the classic
/// format is what any Prometheus-compatible reader understands.
///
/// Prometheus sends `application/openmetrics-text;version=1.0.0,…,text/plain;
/// version=0.0.4;q=0.5,*/*;q=0.1`, so it gets OpenMetrics.
fn prefers_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut openmetrics_quality: f32 = 0.0;
    let mut text_quality: f32 = 0.0;
    for media_range in accept.split(',') {
        let mut parameters = media_range.split(';').map(str::trim);
        let media_type = parameters.next().unwrap_or_default().to_ascii_lowercase();
        // An unreadable quality counts as 1, the default of a range without one.
        let quality = parameters
            .filter_map(|parameter| parameter.strip_prefix("q="))
            .find_map(|value| value.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media_type.as_str() {
            "application/openmetrics-text" => {
                openmetrics_quality = openmetrics_quality.max(quality);
            }
            "text/plain" => text_quality = text_quality.max(quality),
            _ => {}
        }
    }
    openmetrics_quality > 0.0 && openmetrics_quality >= text_quality
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let Some(reason) = state.health.not_ready_reason() else {
        return (StatusCode::OK, "ready").into_response();
    };
    (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::oneshot;

    use super::*;
    use crate::CoordinatorMetrics;

    /// A telemetry server on a free loopback port, stopped by [`TestServer::stop`].
    struct TestServer {
        address: std::net::SocketAddr,
        shutdown: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl TestServer {
        async fn start(app: Router) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
            let address = listener.local_addr().expect("bound socket has an address");
            let (shutdown, shutdown_rx) = oneshot::channel::<()>();
            let stopped = async move {
                let _ = shutdown_rx.await;
            };
            let task = tokio::spawn(serve_http(listener, app, stopped));
            TestServer {
                address,
                shutdown,
                task,
            }
        }

        async fn stop(self) {
            self.shutdown.send(()).expect("server is still running");
            let served = self.task.await.expect("server task did not panic");
            served.expect("server stopped cleanly");
        }
    }

    /// Sends one HTTP/1.0 GET (the server closes the connection after the response, so
    /// reading to the end needs no HTTP parsing) and returns the raw response.
    async fn get_raw(address: std::net::SocketAddr, path: &str) -> String {
        get_raw_accepting(address, path, None).await
    }

    /// Like [`get_raw`], with an `Accept` header when `accept` is given.
    async fn get_raw_accepting(
        address: std::net::SocketAddr,
        path: &str,
        accept: Option<&str>,
    ) -> String {
        let mut stream = TcpStream::connect(address)
            .await
            .expect("connect to test server");
        let accept = accept
            .map(|accept| format!("Accept: {accept}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n{accept}\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read response");
        response
    }

    #[tokio::test]
    async fn endpoints_report_metrics_liveness_and_readiness() {
        let mut registry = Registry::default();
        let metrics = CoordinatorMetrics::register(&mut registry);
        metrics.jobs_submitted_total.inc();
        let health = Health::new();
        health.set_not_ready("not registered");

        let server = TestServer::start(router(registry, health.clone())).await;
        let address = server.address;

        // What Prometheus 2.x sends: OpenMetrics first.
        let prometheus_accept = "application/openmetrics-text;version=1.0.0,\
            application/openmetrics-text;version=0.0.1;q=0.75,\
            text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let response = get_raw_accepting(address, "/metrics", Some(prometheus_accept)).await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.contains(OPENMETRICS_CONTENT_TYPE), "{response}");
        assert!(
            response.contains("essaim_coordinator_jobs_submitted_total 1\n"),
            "{response}"
        );
        assert!(response.ends_with("# EOF\n"), "{response}");
        assert!(response.contains("essaim_build_info{"), "{response}");

        // Without an Accept header (curl, promtool): the classic format.
        let response = get_raw(address, "/metrics").await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.contains(CLASSIC_TEXT_CONTENT_TYPE), "{response}");
        assert!(
            response.contains(
                "# TYPE essaim_coordinator_jobs_submitted_total counter\n\
                 essaim_coordinator_jobs_submitted_total 1\n"
            ),
            "{response}"
        );
        assert!(!response.contains("# EOF"), "{response}");

        let response = get_raw(address, "/healthz").await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.ends_with("\r\n\r\nok"), "{response}");

        let response = get_raw(address, "/readyz").await;
        assert!(response.starts_with("HTTP/1.0 503"), "{response}");
        assert!(response.ends_with("\r\n\r\nnot registered"), "{response}");

        health.set_ready();
        let response = get_raw(address, "/readyz").await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.ends_with("\r\n\r\nready"), "{response}");

        server.stop().await;
    }

    #[test]
    fn openmetrics_is_served_only_to_who_prefers_it() {
        for (accept, openmetrics) in [
            (None, false),
            (Some("*/*"), false),
            (Some("text/plain"), false),
            (Some("application/openmetrics-text"), true),
            (Some("Application/OpenMetrics-Text; version=1.0.0"), true),
            (
                Some("text/plain;q=0.5, application/openmetrics-text;q=0.9"),
                true,
            ),
            (
                Some("application/openmetrics-text;q=0.3, text/plain"),
                false,
            ),
            (Some("application/openmetrics-text;q=0"), false),
            (Some("application/json, */*;q=0.1"), false),
        ] {
            assert_eq!(
                prefers_openmetrics(accept),
                openmetrics,
                "Accept: {accept:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_merged_router_serves_both_its_routes_and_the_telemetry_ones() {
        let telemetry = router(Registry::default(), Health::new());
        let merged: Router = Router::new()
            .route("/other", get(|| async { "other route" }))
            .merge(telemetry);
        let server = TestServer::start(merged).await;
        let address = server.address;

        let response = get_raw(address, "/other").await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.ends_with("\r\n\r\nother route"), "{response}");
        let response = get_raw(address, "/healthz").await;
        assert!(response.ends_with("\r\n\r\nok"), "{response}");
        let response = get_raw(address, "/metrics").await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        let response = get_raw(address, "/nowhere").await;
        assert!(response.starts_with("HTTP/1.0 404"), "{response}");

        server.stop().await;
    }
}
