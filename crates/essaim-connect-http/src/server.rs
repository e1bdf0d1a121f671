//! The HTTP side: routes, the order of the checks, and the answers.
//!
//! Checks run cheapest first and before anything is stored: token (401), source
//! (404), a free slot (429), content type (415), body size and time (413, 408), then
//! the whole body line by line (400, 413), and only then the publishing (503 if the
//! broker fails).
//! A slot is taken before the body is read, so memory is bounded by
//! `max_concurrent_requests × max_body_bytes` and a flood is refused, not queued.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

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
}

/// Connects to NATS, ensures every source's stream, and returns the endpoint's routes
/// (`POST /ingest/{source}`, `GET /healthz`), to serve on a listener of one's own.
pub async fn router(config: IngestConfig) -> Result<Router, IngestError> {
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
    let shared = Arc::new(Shared {
        slots: Semaphore::new(config.max_concurrent_requests),
        config,
        routes,
        broker,
    });
    Ok(Router::new()
        .route("/ingest/{source}", post(ingest))
        .route("/healthz", get(healthz))
        .with_state(shared))
}

/// A running ingest endpoint.
pub struct IngestServer {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl IngestServer {
    /// Validates `config`, connects to NATS (which must be up: [`IngestError::Nats`]
    /// otherwise), ensures the streams, and serves on `config.listen`.
    pub async fn start(config: IngestConfig) -> Result<IngestServer, IngestError> {
        let listen = config.listen;
        let router = router(config).await?;
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
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%local_addr, "HTTP ingest listening");
        Ok(IngestServer {
            local_addr,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for the requests in progress.
    pub async fn shutdown(mut self) -> Result<(), IngestError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result.map_err(IngestError::Serve),
            Err(error) => Err(IngestError::Serve(std::io::Error::other(error))),
        }
    }
}

impl Drop for IngestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
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

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let broker = if shared.broker.connected() {
        "connected"
    } else {
        "disconnected"
    };
    axum::Json(serde_json::json!({ "status": "ok", "broker": broker })).into_response()
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

async fn ingest(
    State(shared): State<Arc<Shared>>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
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
    match shared
        .broker
        .publish(route, &body, &records, key.as_deref())
        .await
    {
        Ok(receipt) => {
            tracing::debug!(source, ?receipt, "ingested");
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
