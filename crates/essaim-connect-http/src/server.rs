//! The HTTP side: routes, the order of the checks, and the answers.
//!
//! Checks run cheapest first and before anything is stored: token (401), source
//! (404), a free slot (429), content type (415), body size and time (413, 408), then
//! the whole body line by line (400, 413), and only then the publishing (503 if the
//! broker fails).
//! A slot is taken before the body is read, so memory is bounded by
//! `max_concurrent_requests × max_body_bytes` and a flood is refused, not queued.
//!
//! Every answer is counted (`essaim_ingest_*`, defined in `essaim-telemetry`), and the
//! process serves the same `/metrics`, `/healthz` and `/readyz` as every essaim process,
//! ready only while the broker connection is up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use essaim_telemetry::prometheus_client::registry::Registry;
use essaim_telemetry::{Health, IngestMetrics, IngestRefusal, prometheus_client};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use essaim_connect::error_chain;

use crate::body::{self, BodyError};
use crate::broker::{Broker, PublishFailure, Receipt, Route};
use crate::config::IngestConfig;
use crate::{IngestError, auth};

/// The header naming the record key (as does the `key` query parameter, which wins).
pub const KEY_HEADER: &str = "x-essaim-key";

/// Content types accepted (parameters such as `charset` aside). A request without one
/// is accepted too.
pub const CONTENT_TYPES: [&str; 3] = ["text/csv", "text/plain", "application/x-ndjson"];

struct Shared {
    config: IngestConfig,
    routes: HashMap<String, Arc<Route>>,
    broker: Broker,
    slots: Semaphore,
    metrics: IngestMetrics,
}

/// How often the broker connection's state is copied into `/readyz` and the
/// `essaim_ingest_broker_connected` gauge: a probe learns of an outage within this.
const READINESS_PERIOD: Duration = Duration::from_millis(250);

/// Connects to NATS, ensures every source's stream, and returns the endpoint's state.
async fn connect(config: IngestConfig, metrics: IngestMetrics) -> Result<Arc<Shared>, IngestError> {
    config.validate()?;
    let context =
        essaim_connect_nats::broker::connect(&config.nats_url, config.request_timeout).await?;
    let broker = Broker::new(context, config.publish_window, config.request_timeout);
    let mut routes = HashMap::new();
    for source in &config.sources {
        let route = Arc::new(Route::new(source.clone()));
        broker.ensure(&route).await?;
        routes.insert(source.name.clone(), route);
    }
    Ok(Arc::new(Shared {
        slots: Semaphore::new(config.max_concurrent_requests),
        config,
        routes,
        broker,
        metrics,
    }))
}

/// Returns the routes of the endpoint (`POST /ingest/{source}`) with the scrape and
/// probe endpoints every essaim process serves (`/metrics`, `/healthz`, `/readyz`).
fn router(shared: Arc<Shared>, registry: Registry, health: Health) -> Router {
    Router::new()
        .route("/ingest/{source}", post(ingest))
        .with_state(shared)
        .merge(essaim_telemetry::router(registry, health))
}

/// Keeps `/readyz` and the connection gauge equal to the broker connection's state
/// until `stop`: ready only while the broker is connected, since a request cannot be
/// stored otherwise.
async fn watch_broker(shared: Arc<Shared>, health: Health, stop: CancellationToken) {
    loop {
        let connected = shared.broker.connected();
        shared.metrics.broker_connected.set(i64::from(connected));
        if connected {
            health.set_ready();
        } else {
            health.set_not_ready("the broker is disconnected");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(READINESS_PERIOD) => {}
        }
    }
}

/// A running ingest endpoint.
pub struct IngestServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    broker_watch: JoinHandle<()>,
}

impl IngestServer {
    /// Validates `config`, connects to NATS (which must be up: [`IngestError::Nats`]
    /// otherwise), ensures the streams, and serves on `config.listen`.
    pub async fn start(config: IngestConfig) -> Result<IngestServer, IngestError> {
        Self::start_with_tls(config, None).await
    }

    /// Starts as [`Self::start`] does, serving TLS with `tls` when given.
    pub async fn start_with_tls(
        config: IngestConfig,
        tls: Option<essaim_tls::ServerTls>,
    ) -> Result<IngestServer, IngestError> {
        let listen = config.listen;
        let mut registry = Registry::default();
        let metrics = IngestMetrics::register(&mut registry);
        let shared = connect(config, metrics).await?;
        let health = Health::new();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| IngestError::Bind {
                address: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| IngestError::Bind {
            address: listen,
            source,
        })?;
        let stop = CancellationToken::new();
        let broker_watch = tokio::spawn(watch_broker(
            Arc::clone(&shared),
            health.clone(),
            stop.clone(),
        ));
        let app = router(shared, registry, health);
        let stopped = stop.clone().cancelled_owned();
        let tls_on = tls.is_some();
        let server =
            tokio::spawn(
                async move { essaim_tls::serve(listener, tls.as_ref(), app, stopped).await },
            );
        tracing::info!(%local_addr, tls = tls_on, "HTTP ingest listening");
        Ok(IngestServer {
            local_addr,
            stop,
            server,
            broker_watch,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for the requests in progress.
    pub async fn shutdown(mut self) -> Result<(), IngestError> {
        self.stop.cancel();
        // The watcher only sleeps and reads a flag: it ends at the next cancellation point.
        let _watch_ended = (&mut self.broker_watch).await;
        match (&mut self.server).await {
            Ok(result) => result.map_err(IngestError::Serve),
            Err(error) => Err(IngestError::Serve(std::io::Error::other(error))),
        }
    }
}

impl Drop for IngestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A refused request: its status and a JSON body `{"error": …, "line": …}` (the line
/// when one is to blame), with `Retry-After` when coming back later may help.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    line: Option<usize>,
    retry_after: Option<Duration>,
}

fn refuse(status: StatusCode, message: impl ToString) -> Refusal {
    Refusal {
        status,
        message: message.to_string(),
        line: None,
        retry_after: None,
    }
}

fn retry_later(status: StatusCode, message: impl ToString, retry_after: Duration) -> Refusal {
    Refusal {
        retry_after: Some(retry_after),
        ..refuse(status, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(line) = self.line {
            body["line"] = line.into();
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(retry_after) = self.retry_after {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The `key` query parameter, else the `X-Essaim-Key` header.
fn record_key(query: Option<&str>, headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    if let Some(query) = query {
        let pairs: Vec<(String, String)> = query_pairs(query);
        if let Some((_, key)) = pairs.into_iter().find(|(name, _)| name == "key") {
            return Ok(Some(key));
        }
    }
    match headers.get(KEY_HEADER) {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key) => Ok(Some(key.to_owned())),
            Err(_) => Err(refuse(
                StatusCode::BAD_REQUEST,
                "the X-Essaim-Key header is not visible ASCII",
            )),
        },
    }
}

/// Decodes `a=b&c=d` (percent-encoding and `+` as space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 2;
                    }
                    None => decoded.push(b'%'),
                }
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn content_type_accepted(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    CONTENT_TYPES
        .iter()
        .any(|accepted| essence.eq_ignore_ascii_case(accepted))
}

/// Handles `POST /ingest/{source}` ([`ingest_request`]) and counts its outcome.
async fn ingest(
    State(shared): State<Arc<Shared>>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    request_body: Body,
) -> Result<axum::Json<Receipt>, Refusal> {
    let metrics = &shared.metrics;
    metrics.requests_in_flight.inc();
    // A guard, not a decrement after the call: a client that hangs up drops this future.
    let _in_flight = InFlight(&metrics.requests_in_flight);
    let outcome = ingest_request(&shared, source, query, headers, request_body).await;
    if let Err(refusal) = &outcome {
        metrics.record_refused(refusal_reason(refusal.status));
    }
    outcome
}

/// Takes one request off the in-flight gauge when dropped.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Returns the metric reason of a refusal with `status`: one status, one reason (the
/// table of the crate doc).
fn refusal_reason(status: StatusCode) -> IngestRefusal {
    match status {
        StatusCode::UNAUTHORIZED => IngestRefusal::Unauthorized,
        StatusCode::NOT_FOUND => IngestRefusal::UnknownSource,
        StatusCode::TOO_MANY_REQUESTS => IngestRefusal::Saturated,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => IngestRefusal::ContentType,
        StatusCode::PAYLOAD_TOO_LARGE => IngestRefusal::TooLarge,
        StatusCode::REQUEST_TIMEOUT => IngestRefusal::BodyTimeout,
        StatusCode::SERVICE_UNAVAILABLE => IngestRefusal::BrokerUnavailable,
        _ => IngestRefusal::BadRequest,
    }
}

/// Checks, reads and publishes one request (the order of the module doc).
async fn ingest_request(
    shared: &Shared,
    source: String,
    query: Option<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<axum::Json<Receipt>, Refusal> {
    let config = &shared.config;
    if let Some(token) = &config.bearer_token
        && !auth::authorized(&headers, token)
    {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        ));
    }
    let Some(route) = shared.routes.get(&source) else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("unknown source `{source}`"),
        ));
    };
    let Ok(_slot) = shared.slots.try_acquire() else {
        return Err(retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests in progress",
            config.retry_after,
        ));
    };
    if !content_type_accepted(&headers) {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the content type must be one of {}",
                CONTENT_TYPES.join(", ")
            ),
        ));
    }
    let key = record_key(query.as_deref(), &headers)?;
    let body = tokio::time::timeout(
        config.body_timeout,
        read_body(request_body, config.max_body_bytes),
    )
    .await
    .map_err(|_| {
        refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {:?}", config.body_timeout),
        )
    })??;
    let records = body::records(&body, config.max_line_bytes).map_err(|problem| {
        let status = match problem {
            BodyError::LineTooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Empty | BodyError::NotUtf8 { .. } => StatusCode::BAD_REQUEST,
        };
        Refusal {
            line: problem.line(),
            ..refuse(status, &problem)
        }
    })?;
    let publish_started = Instant::now();
    let published = shared
        .broker
        .publish(route, &body, &records, key.as_deref())
        .await;
    let metrics = &shared.metrics;
    metrics
        .publish_duration_seconds
        .observe(publish_started.elapsed().as_secs_f64());
    match published {
        Ok(receipt) => {
            tracing::debug!(source, ?receipt, "ingested");
            metrics.record_accepted(receipt.accepted as u64, body.len() as u64);
            Ok(axum::Json(receipt))
        }
        Err(failure) => {
            tracing::warn!(source, %failure, "ingest failed: answering 503");
            let reason = match &failure {
                // Its message is the client error's own: print that error's chain.
                PublishFailure::Nats { source } => error_chain(source),
                _ => failure.to_string(),
            };
            let message = format!("the broker did not store the records ({reason})");
            Err(retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                message,
                config.retry_after,
            ))
        }
    }
}

async fn read_body(body: Body, max: usize) -> Result<Bytes, Refusal> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(problem) if problem.downcast_ref::<LengthLimitError>().is_some() => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than max_body_bytes = {max}"),
        )),
        Err(problem) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("reading the body failed: {problem}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_the_query_then_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(record_key(None, &headers).ok(), Some(None));
        headers.insert(KEY_HEADER, HeaderValue::from_static("from-header"));
        assert_eq!(
            record_key(Some("x=1"), &headers).ok(),
            Some(Some("from-header".to_owned()))
        );
        assert_eq!(
            record_key(Some("x=1&key=a%2Fb+c"), &headers).ok(),
            Some(Some("a/b c".to_owned()))
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn content_types_are_matched_without_parameters() {
        let mut headers = HeaderMap::new();
        assert!(content_type_accepted(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Text/CSV; charset=utf-8"),
        );
        assert!(content_type_accepted(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!content_type_accepted(&headers));
    }
}
