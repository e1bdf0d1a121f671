//! A cache node: one [`Store`] behind `GET`/`PUT`/`DELETE /v1/cache/{key}`, with the
//! probe and scrape endpoints of every essaim process.
//!
//! The store sits behind a `std::sync::Mutex`: each request holds it for one map
//! operation (microseconds, no `.await` inside), which costs less than a message to an
//! owning task and a reply channel. The node's clock is the time since it started,
//! passed to the store on every call; a restarted node starts empty, which the proxy's
//! tags make safe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use essaim_cache::store::{PutError, Store};
use essaim_telemetry::Health;
use essaim_telemetry::prometheus_client::registry::Registry;

use crate::metrics::NodeMetrics;
use crate::wire::{FILL_BELOW_HEADER, TAG_HEADER, TTL_HEADER, insert_ttl, parse_ttl_ms};

/// How a node is sized.
#[derive(Debug, Clone, Copy)]
pub struct NodeConfig {
    /// Most bytes held (keys, values and bookkeeping).
    pub max_bytes: u64,
    /// Largest value accepted.
    pub max_value_bytes: usize,
}

#[derive(Clone)]
struct NodeState {
    store: Arc<Mutex<Store>>,
    started: Instant,
    metrics: NodeMetrics,
}

impl NodeState {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn with_store<T>(&self, operation: impl FnOnce(&mut Store) -> T) -> T {
        // A poisoned lock means a panic mid-operation; the store's own invariants are
        // restored by every operation before it returns, so keep serving.
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let result = operation(&mut store);
        let stats = store.stats();
        drop(store);
        self.metrics.bytes.set(stats.bytes as i64);
        self.metrics.entries.set(stats.entries as i64);
        self.metrics.expirations.set(stats.expirations as i64);
        result
    }
}

/// Returns the router of a node: the cache API and `/metrics`, `/healthz`, `/readyz`
/// (ready at once: an empty cache is a working cache).
pub fn router(config: NodeConfig) -> Router {
    let metrics = NodeMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let health = Health::new();
    health.set_ready();
    let state = NodeState {
        store: Arc::new(Mutex::new(Store::new(
            config.max_bytes,
            config.max_value_bytes,
        ))),
        started: Instant::now(),
        metrics,
    };
    Router::new()
        .route(
            "/v1/cache/{*key}",
            get(get_value).put(put_value).delete(delete_value),
        )
        .route("/v1/cache/", any(empty_key))
        .route("/v1/cache", any(empty_key))
        .layer(DefaultBodyLimit::max(body_limit(config.max_value_bytes)))
        .with_state(state)
        .merge(essaim_telemetry::router(registry, health))
}

/// Returns the largest body read. Twice the value limit: a value a little over the
/// limit is read whole and refused with a 413 of ours, so the client gets the answer
/// (closing on an unread body would reset the connection under it); far larger bodies
/// are refused by axum before they are read.
pub(crate) fn body_limit(max_value_bytes: usize) -> usize {
    max_value_bytes.saturating_mul(2).max(64 * 1024)
}

/// Answers a request without a key.
pub(crate) async fn empty_key() -> Response {
    (StatusCode::BAD_REQUEST, "the key is empty\n").into_response()
}

async fn get_value(State(state): State<NodeState>, Path(key): Path<String>) -> Response {
    let timer = Instant::now();
    let now = state.now_ms();
    let found = state.with_store(|store| store.get(&key, now));
    let response = match found {
        Some(found) => {
            state.metrics.hits.inc();
            let mut headers = HeaderMap::new();
            headers.insert(TAG_HEADER, HeaderValue::from(found.tag));
            insert_ttl(&mut headers, found.ttl_left_ms);
            (StatusCode::OK, headers, found.value).into_response()
        }
        None => {
            state.metrics.misses.inc();
            StatusCode::NOT_FOUND.into_response()
        }
    };
    state
        .metrics
        .duration
        .observe(timer.elapsed().as_secs_f64());
    response
}

/// A request refused before it reached a store: its status and why.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.message)).into_response()
    }
}

/// Reads a write's time to live from the `ttl` parameter or the header; `Err` when
/// one is given but malformed.
pub(crate) fn requested_ttl(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Option<u64>, Refusal> {
    let text = match query.get("ttl") {
        Some(text) => Some(text.as_str()),
        None => headers
            .get(TTL_HEADER)
            .and_then(|value| value.to_str().ok()),
    };
    match text {
        None => Ok(None),
        Some(text) => parse_ttl_ms(text).map(Some).ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("the ttl `{text}` is not a positive number of seconds"),
            )
        }),
    }
}

async fn put_value(
    State(state): State<NodeState>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let timer = Instant::now();
    let ttl = match requested_ttl(&query, &headers) {
        Ok(ttl) => ttl,
        Err(refused) => {
            state.metrics.refused.inc();
            return refused.into_response();
        }
    };
    let tag = headers
        .get(TAG_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0);
    let fill_below = headers
        .get(FILL_BELOW_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    let now = state.now_ms();
    let outcome = state.with_store(|store| {
        let newer = fill_below
            .is_some_and(|below| store.tag_of(&key, now).is_some_and(|held| held >= below));
        if newer {
            return Ok(0);
        }
        store.put(&key, body, tag, ttl, now)
    });
    let response = match outcome {
        Ok(evicted) => {
            state.metrics.puts.inc();
            state.metrics.evictions.inc_by(evicted);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            state.metrics.refused.inc();
            refusal(&error).into_response()
        }
    };
    state
        .metrics
        .duration
        .observe(timer.elapsed().as_secs_f64());
    response
}

/// Returns the answer to a refused write: 413 for a value over the limit, 400 else.
pub(crate) fn refusal(error: &PutError) -> Refusal {
    let status = match error {
        PutError::ValueTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        PutError::EmptyKey | PutError::KeyTooLong { .. } => StatusCode::BAD_REQUEST,
    };
    Refusal::new(status, error.to_string())
}

async fn delete_value(State(state): State<NodeState>, Path(key): Path<String>) -> Response {
    if state.with_store(|store| store.delete(&key)) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
