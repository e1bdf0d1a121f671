//! A leaf's HTTP server: one shard in memory, answering `GET /search?q=…` with the
//! shard's matching documents, beside `/healthz`, `/readyz` and `/metrics`.
//!
//! A search the caller abandons (a hedge's loser, a query past its deadline) is
//! dropped by the server when its connection closes; a guard counts it in
//! `essaim_serve_leaf_searches_cancelled_total`, so the cancellation is observable.
//!
//! **Bench only**: an [`InjectedLatency`] makes every search wait (a usual wait, and
//! with some probability a slow one) before answering. It exists to measure the tail
//! at scale and hedging (`bench/serve_tail.sh`); `essaim index serve` sets it only from
//! hidden `--bench-*` flags.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Query as QueryString, State};
use axum::http::StatusCode;
use axum::routing::get;
use essaim_core::rng::SeededRng;
use essaim_serve::query::{Query, QueryLimits};
use essaim_serve::shard::ShardIndex;
use essaim_telemetry::Health;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::metrics::LeafMetrics;
use crate::wire::{ErrorBody, InjectedLatency, SearchAnswer};

/// What a leaf's handlers share.
#[derive(Debug)]
pub struct LeafState {
    shard: ShardIndex,
    lowercase: bool,
    limits: QueryLimits,
    metrics: LeafMetrics,
    injected: Option<(InjectedLatency, Mutex<SeededRng>)>,
}

impl LeafState {
    /// Returns the state of a leaf holding `shard`.
    pub fn new(
        shard: ShardIndex,
        lowercase: bool,
        injected: Option<InjectedLatency>,
        seed_salt: u64,
    ) -> Self {
        let metrics = LeafMetrics::new();
        metrics.terms.set(shard.term_count() as i64);
        Self {
            shard,
            lowercase,
            limits: QueryLimits::default(),
            metrics,
            injected: injected.map(|latency| {
                let seed = essaim_core::rng::mix(latency.seed ^ seed_salt);
                (latency, Mutex::new(SeededRng::new(seed)))
            }),
        }
    }

    /// Returns the leaf's metrics.
    pub fn metrics(&self) -> &LeafMetrics {
        &self.metrics
    }

    /// The injected wait of the next search, if any (bench only).
    fn injected_wait(&self) -> Option<Duration> {
        let (latency, rng) = self.injected.as_ref()?;
        // The lock only guards one draw; never held across an await.
        let slow =
            rng.lock().unwrap_or_else(PoisonError::into_inner).unit() < latency.slow_probability;
        let micros = if slow {
            latency.slow_us
        } else {
            latency.base_us
        };
        Some(Duration::from_micros(micros))
    }
}

/// Returns the leaf's router: `/search`, `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: Arc<LeafState>, health: Health) -> Router {
    let mut registry = Registry::default();
    state.metrics.register(&mut registry);
    Router::new()
        .route("/search", get(search))
        .with_state(state)
        .merge(essaim_telemetry::router(registry, health))
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: String,
}

/// Counts a search as cancelled unless it answered.
struct CancelGuard<'a> {
    metrics: &'a LeafMetrics,
    answered: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.metrics.cancelled.inc();
        }
    }
}

type Refusal = (StatusCode, Json<ErrorBody>);

async fn search(
    State(state): State<Arc<LeafState>>,
    QueryString(params): QueryString<SearchParams>,
) -> Result<Json<SearchAnswer>, Refusal> {
    let started = Instant::now();
    state.metrics.searches.inc();
    let mut guard = CancelGuard {
        metrics: &state.metrics,
        answered: false,
    };
    let query = Query::parse(&params.q, state.limits, state.lowercase).map_err(|error| {
        guard.answered = true;
        let body = ErrorBody {
            error: error.to_string(),
        };
        (StatusCode::BAD_REQUEST, Json(body))
    })?;
    if let Some(wait) = state.injected_wait() {
        tokio::time::sleep(wait).await;
    }
    // Evaluation is a few binary searches over sorted posting lists: microseconds for
    // the queries the limits allow, so it runs inline rather than on a blocking thread.
    let documents = query.evaluate(&state.shard);
    guard.answered = true;
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(SearchAnswer { documents }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::client::{HttpClient, encode_query_value};

    async fn start(state: Arc<LeafState>) -> (String, tokio_util::sync::CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        let health = Health::new();
        health.set_ready();
        let app = router(state, health);
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(essaim_telemetry::serve_http(listener, app, stopped));
        (url, stop)
    }

    fn shard() -> ShardIndex {
        let mut postings = BTreeMap::new();
        postings.insert("cat".to_owned(), vec!["/a".to_owned(), "/b".to_owned()]);
        postings.insert("dog".to_owned(), vec!["/b".to_owned()]);
        ShardIndex::from_postings(postings)
    }

    #[tokio::test]
    async fn a_leaf_answers_searches_and_refuses_empty_ones() {
        let state = Arc::new(LeafState::new(shard(), true, None, 0));
        let (url, stop) = start(state).await;
        let client = HttpClient::new(&Default::default());
        let answer: SearchAnswer = client
            .get_json(&format!("{url}/search?q={}", encode_query_value("Cat dog")))
            .await
            .unwrap();
        assert_eq!(answer.documents, ["/b"]);
        let refused = client
            .get_json::<SearchAnswer>(&format!("{url}/search?q=%20"))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("empty"), "{refused}");
        stop.cancel();
    }

    #[tokio::test]
    async fn an_abandoned_search_is_cancelled_at_the_leaf() {
        let slow = InjectedLatency {
            base_us: 5_000_000,
            slow_us: 5_000_000,
            slow_probability: 0.0,
            seed: 1,
        };
        let state = Arc::new(LeafState::new(shard(), true, Some(slow), 0));
        let (url, stop) = start(Arc::clone(&state)).await;
        let client = HttpClient::new(&Default::default());
        let search_url = format!("{url}/search?q=cat");
        let call = client.get_json::<SearchAnswer>(&search_url);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), call)
                .await
                .is_err()
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        while state.metrics().cancelled.get() == 0 {
            assert!(
                Instant::now() < deadline,
                "the leaf never dropped the search"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
    }
}
