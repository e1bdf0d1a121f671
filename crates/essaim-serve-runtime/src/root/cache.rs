//! Query answers kept in the cache (`essaim cache proxy`), in front of scatter/gather.
//!
//! Cache-aside: a query's key ([`essaim_serve::answer_key`]: the served index's identity
//! and the normalised query) is looked up first; a hit answers at once, a miss runs the
//! scatter/gather and stores its answer in the background. Three rules keep the cache
//! from ever making an answer wrong, slower than a bound, or failed:
//! - only a **complete** answer is stored: a partial one (a shard missed its deadline)
//!   would otherwise be served as if whole for the entry's whole time to live;
//! - a lookup has its own short timeout ([`QueryCacheConfig::lookup_timeout`]); a cache
//!   that is down, slow or answers nonsense is counted
//!   (`essaim_serve_cache_errors_total`) and the query goes on to the shards; for
//!   [`SKIP_AFTER_ERROR`] after a call that failed the cache is not asked at all (counted
//!   in `essaim_serve_cache_skipped_total`), so a stalled cache costs the timeout to
//!   one query a second rather than to every query;
//! - a store never delays the answer: it runs in a tracked background task, at most
//!   [`MAX_STORES_IN_FLIGHT`] at once (beyond that it is dropped and counted), and only
//!   after a miss, since a lookup that failed says the cache is unlikely to take it.
//!
//! The client is the cache runtime's own ([`NodeClient`]): the proxy speaks the nodes'
//! API, so it is one more address to it.
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use essaim_cache_runtime::client::NodeClient;
use essaim_serve::answer_key::IndexIdentity;
use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;

use crate::metrics::{CacheOpLabels, RootMetrics};

/// Default time an answer stays in the cache.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default longest wait for a lookup before the query goes on to the shards.
pub const DEFAULT_CACHE_LOOKUP_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest wait for a store (in the background, so it may take longer than a lookup).
const STORE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the cache is left alone after a failed lookup.
pub const SKIP_AFTER_ERROR: Duration = Duration::from_secs(1);
/// Most stores in flight: a slow cache must not pile up tasks at the query rate.
pub const MAX_STORES_IN_FLIGHT: usize = 64;

/// Where and how answers are cached.
#[derive(Debug, Clone)]
pub struct QueryCacheConfig {
    /// The cache proxy's address, `host:port`.
    pub proxy: String,
    /// The identity of the served index, part of every key.
    pub index: IndexIdentity,
    /// How long an answer stays (default [`DEFAULT_CACHE_TTL`]).
    pub ttl: Duration,
    /// Longest wait for a lookup (default [`DEFAULT_CACHE_LOOKUP_TIMEOUT`]).
    pub lookup_timeout: Duration,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// The documents of a complete answer stored earlier.
    Hit(Vec<String>),
    /// Nothing under the key.
    Miss,
    /// The cache failed, timed out or is skipped after a failure (counted); the answer
    /// should not be stored.
    Failed,
}

/// The value stored under an answer's key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CachedAnswer {
    /// The matching documents, sorted and distinct.
    documents: Vec<String>,
}

/// The root's client of the cache, with its metrics and background stores.
#[derive(Debug)]
pub struct QueryCache {
    config: QueryCacheConfig,
    lookups: NodeClient,
    stores: NodeClient,
    in_flight: TaskTracker,
    /// Until when lookups are skipped, after a failed one. Held for a read or a write,
    /// never across an `.await`.
    skip_until: Mutex<Option<Instant>>,
}

impl QueryCache {
    /// Returns a cache client for `config`.
    pub fn new(config: QueryCacheConfig) -> Self {
        Self {
            lookups: NodeClient::new(config.lookup_timeout),
            stores: NodeClient::new(STORE_TIMEOUT),
            config,
            in_flight: TaskTracker::new(),
            skip_until: Mutex::new(None),
        }
    }

    /// Returns the identity of the served index.
    pub fn index(&self) -> &IndexIdentity {
        &self.config.index
    }

    fn skip_until(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // Poison-tolerant: the value is a plain instant, valid whatever happened.
        self.skip_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks `key` up within `budget` (or the lookup timeout, if shorter), counting a
    /// hit, a miss, an error or a skip (within [`SKIP_AFTER_ERROR`] of a failed lookup).
    pub async fn lookup(&self, key: &str, budget: Duration, metrics: &RootMetrics) -> Lookup {
        let skipping = self
            .skip_until()
            .is_some_and(|until| Instant::now() < until);
        if skipping {
            metrics.cache_skipped.inc();
            return Lookup::Failed;
        }
        let get = self.lookups.get(&self.config.proxy, key);
        let found = if budget < self.config.lookup_timeout {
            let Ok(found) = tokio::time::timeout(budget, get).await else {
                // The query's own short deadline, not the cache, ended the wait: counted,
                // but the cache is not left alone for it.
                count_error(metrics, "lookup");
                return Lookup::Failed;
            };
            found
        } else {
            get.await
        };
        let error = match found {
            Ok(None) => {
                metrics.cache_misses.inc();
                return Lookup::Miss;
            }
            Ok(Some(value)) => match serde_json::from_slice::<CachedAnswer>(&value.value) {
                Ok(answer) => {
                    metrics.cache_hits.inc();
                    return Lookup::Hit(answer.documents);
                }
                // One bad entry, not a cache out of order: no pause.
                Err(error) => format!("undecodable cached answer: {error}"),
            },
            Err(error) => {
                *self.skip_until() = Some(Instant::now() + SKIP_AFTER_ERROR);
                error.to_string()
            }
        };
        tracing::debug!(key, error, "query cache lookup failed, asking the shards");
        count_error(metrics, "lookup");
        Lookup::Failed
    }

    /// Stores the documents of a complete answer under `key`, in the background.
    pub fn store(&self, key: String, documents: &[String], metrics: &RootMetrics) {
        if self.in_flight.len() >= MAX_STORES_IN_FLIGHT {
            metrics.cache_stores_dropped.inc();
            return;
        }
        let value = serde_json::to_vec(&CachedAnswer {
            documents: documents.to_vec(),
        })
        .expect("a list of strings always serializes");
        let client = self.stores.clone();
        let proxy = self.config.proxy.clone();
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let metrics = metrics.clone();
        self.in_flight.spawn(async move {
            // The tag is the proxy's business (it tags with its own epoch).
            let stored = client
                .put(&proxy, &key, Bytes::from(value), 0, Some(ttl_ms), None)
                .await;
            match stored {
                Ok(()) => {
                    metrics.cache_stores.inc();
                }
                Err(error) => {
                    tracing::debug!(key, error = %error, "query cache store failed");
                    count_error(&metrics, "store");
                }
            }
        });
    }

    /// Waits for the stores in flight (each ends within its timeout).
    pub async fn finish_stores(&self) {
        self.in_flight.close();
        self.in_flight.wait().await;
    }
}

fn count_error(metrics: &RootMetrics, op: &str) {
    let labels = CacheOpLabels { op: op.to_owned() };
    metrics.cache_errors.get_or_create(&labels).inc();
}
