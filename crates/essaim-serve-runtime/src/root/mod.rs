//! The query root (seed 000's ambassador): one address in front of every shard.
//!
//! A query goes to one replica of every shard at once (scatter); the answers are merged
//! (gather). Three rules keep the tail short and the answer honest:
//! - **deadline**: every query has one; a shard that has not answered by then is left
//!   out and named (`partial: true`, `missing_shards`), never waited for;
//! - **hedging**: a shard that has not answered after its recent p95 gets the same
//!   request on another replica, within the hedge budget; the first answer wins and
//!   the other request is dropped, which closes its connection and cancels it at the
//!   leaf;
//! - **failover**: a replica that refuses the connection or fails is taken out of the
//!   pool and the request goes to another replica at once (not counted as a hedge).
//!
//! With a query cache ([`cache`]), a query's complete answer is kept in the cache proxy
//! and later queries meaning the same thing over the same index are answered from it.
//!
//! The table of leaves and the hedge budget sit behind plain mutexes held only for a
//! few field updates, never across an `.await`: every query touches them a few times
//! per shard, and a single owner task reached by messages would add a hop to each.
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use essaim_serve::answer_key::answer_key;
use essaim_serve::balance::{BalanceRule, ReplicaIndex};
use essaim_serve::hedge::{HedgeBudget, HedgePolicy};
use essaim_serve::query::{Query, QueryError, QueryLimits, merge_answers};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::client::{CallError, HttpClient, encode_query_value};
use crate::metrics::{OutcomeLabels, ReplicaLabels, RootMetrics, ShardLabels};
use crate::wire::{QueryAnswer, Registration, SearchAnswer};

pub mod cache;
pub mod http;
pub mod table;

pub use cache::{Lookup, QueryCache, QueryCacheConfig};
pub use table::{LeafTable, Outcome, Pick, RegistrationRefused, ReplicaView};

/// Default deadline of a query.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
/// Longest deadline a request may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);

/// How the root serves.
#[derive(Debug, Clone)]
pub struct RootConfig {
    /// N.
    pub shards: u32,
    /// R.
    pub replicas: u32,
    /// How a shard's replica is chosen.
    pub balance: BalanceRule,
    /// When to hedge.
    pub hedge: HedgePolicy,
    /// The deadline of a query that names none (default [`DEFAULT_DEADLINE`]).
    pub default_deadline: Duration,
    /// What a query may be.
    pub limits: QueryLimits,
    /// The index's case folding.
    pub lowercase: bool,
    /// The roots `https://` leaves are verified with (and the certificate presented to
    /// leaves requiring one).
    pub trust: essaim_tls::ClientTrust,
    /// Where complete answers are cached, if anywhere.
    pub cache: Option<QueryCacheConfig>,
}

/// The query root.
#[derive(Debug)]
pub struct Root {
    config: RootConfig,
    table: Mutex<LeafTable>,
    /// One hedge budget per shard: a hiccup that makes every shard late at once (the
    /// root starved of CPU, say) spends one token of each shard, not a shared bucket
    /// that the slow leaves of the next queries would then find empty.
    budgets: Mutex<Vec<HedgeBudget>>,
    client: HttpClient,
    cache: Option<QueryCache>,
    metrics: RootMetrics,
}

impl Root {
    /// Returns a root with no leaf registered yet.
    pub fn new(config: RootConfig) -> Arc<Self> {
        let table = LeafTable::new(config.shards, config.replicas, config.balance);
        let budgets = (0..config.shards)
            .map(|_| HedgeBudget::new(&config.hedge))
            .collect();
        let client = HttpClient::new(&config.trust);
        let cache = config.cache.clone().map(QueryCache::new);
        Arc::new(Self {
            config,
            cache,
            table: Mutex::new(table),
            budgets: Mutex::new(budgets),
            client,
            metrics: RootMetrics::new(),
        })
    }

    /// Returns the root's metrics.
    pub fn metrics(&self) -> &RootMetrics {
        &self.metrics
    }

    /// Returns the root's configuration.
    pub fn config(&self) -> &RootConfig {
        &self.config
    }

    fn table(&self) -> MutexGuard<'_, LeafTable> {
        // Poison-tolerant: every critical section leaves the table consistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn budgets(&self) -> MutexGuard<'_, Vec<HedgeBudget>> {
        self.budgets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a leaf's registration.
    pub fn register(&self, leaf: &Registration) -> Result<(), RegistrationRefused> {
        self.table().register(Instant::now(), leaf)
    }

    /// Returns every known replica.
    pub fn replicas(&self) -> Vec<ReplicaView> {
        self.table().view(Instant::now())
    }

    /// Returns true when every shard has a replica receiving requests, and refreshes
    /// the `ready_replicas` gauges.
    pub fn every_shard_ready(&self) -> bool {
        let counts = self.table().ready_counts(Instant::now());
        for (shard, count) in counts.iter().enumerate() {
            let labels = ShardLabels {
                shard: shard.to_string(),
            };
            self.metrics
                .ready_replicas
                .get_or_create(&labels)
                .set(*count as i64);
        }
        counts.iter().all(|count| *count > 0)
    }

    /// Answers `text` from the query cache, or else from every shard that answers
    /// within `deadline` (a complete answer is then cached); `key` steers key-affinity
    /// balancing.
    pub async fn query(
        &self,
        text: &str,
        deadline: Duration,
        key: Option<&str>,
    ) -> Result<QueryAnswer, QueryError> {
        let started = Instant::now();
        let query = match Query::parse(text, self.config.limits, self.config.lowercase) {
            Ok(query) => query,
            Err(error) => {
                self.metrics.refused_queries.inc();
                return Err(error);
            }
        };
        // The key to fill once the shards have answered: set only after a miss.
        let mut fill_after_miss = None;
        if let Some(cache) = &self.cache {
            let cache_key = answer_key(cache.index(), &query);
            // Half the deadline at most, so that a short deadline leaves the shards time.
            let budget = deadline.min(MAX_DEADLINE) / 2;
            match cache.lookup(&cache_key, budget, &self.metrics).await {
                Lookup::Hit(documents) => return Ok(self.cached_answer(documents, started)),
                Lookup::Miss => fill_after_miss = Some(cache_key),
                Lookup::Failed => {}
            }
        }
        let answer = self.scatter_gather(text, started, deadline, key).await;
        if let (Some(cache), Some(cache_key)) = (&self.cache, fill_after_miss)
            && !answer.partial
        {
            cache.store(cache_key, &answer.documents, &self.metrics);
        }
        Ok(answer)
    }

    /// Returns the answer of a cache hit: complete, no shard asked.
    fn cached_answer(&self, documents: Vec<String>, started: Instant) -> QueryAnswer {
        self.metrics.queries.inc();
        let elapsed = started.elapsed();
        self.metrics.query_duration.observe(elapsed.as_secs_f64());
        QueryAnswer {
            documents,
            partial: false,
            missing_shards: Vec::new(),
            shards: self.config.shards,
            hedges: 0,
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            cached: true,
        }
    }

    /// Waits for the query cache's stores in flight; called once serving has stopped.
    pub async fn finish_cache_stores(&self) {
        if let Some(cache) = &self.cache {
            cache.finish_stores().await;
        }
    }

    /// Scatters `text` to every shard and gathers what answers by `started + deadline`.
    async fn scatter_gather(
        &self,
        text: &str,
        started: Instant,
        deadline: Duration,
        key: Option<&str>,
    ) -> QueryAnswer {
        let path = format!("/search?q={}", encode_query_value(text));
        let hedges = AtomicU32::new(0);
        let shards = self.config.shards;
        let until = tokio::time::Instant::from_std(started + deadline.min(MAX_DEADLINE));
        let asks = (0..shards).map(|shard| {
            let ask = self.ask_shard(shard, &path, key, &hedges);
            async move { (shard, tokio::time::timeout_at(until, ask).await) }
        });
        // All shards are polled by this one task: no spawn per shard, and a shard past
        // the deadline is dropped with its requests, which cancels them at the leaves.
        let results = futures_util::future::join_all(asks).await;
        let mut answers = Vec::new();
        let mut missing_shards = Vec::new();
        for (shard, result) in results {
            match result {
                Ok(Some(documents)) => answers.push(documents),
                Ok(None) | Err(_) => missing_shards.push(shard),
            }
        }
        let documents = merge_answers(answers.iter().map(Vec::as_slice));
        let partial = !missing_shards.is_empty();
        self.metrics.queries.inc();
        self.metrics.fanout.observe(f64::from(shards));
        if partial {
            self.metrics.partial_answers.inc();
        }
        let elapsed = started.elapsed();
        self.metrics.query_duration.observe(elapsed.as_secs_f64());
        QueryAnswer {
            documents,
            partial,
            missing_shards,
            shards,
            hedges: hedges.load(Ordering::Relaxed),
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            cached: false,
        }
    }

    /// Asks one shard: a first replica, a hedge after the shard's recent p95 (within
    /// the budget), and another replica after each failure. `None` when no replica can
    /// answer.
    async fn ask_shard(
        &self,
        shard: u32,
        path: &str,
        key: Option<&str>,
        hedges: &AtomicU32,
    ) -> Option<Vec<String>> {
        let mut tried: Vec<ReplicaIndex> = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        let first = self.table().pick(Instant::now(), shard, &tried, key)?;
        self.budgets()[shard as usize].on_leaf_request();
        tried.push(first.replica);
        in_flight.push(self.call_leaf(shard, first, path));
        let hedge_delay = self.table().hedge_delay(shard, &self.config.hedge);
        let hedge_timer = tokio::time::sleep(hedge_delay);
        tokio::pin!(hedge_timer);
        let mut may_hedge = self.config.hedge.enabled && self.config.replicas > 1;
        let mut hedge_replica = None;
        loop {
            tokio::select! {
                Some((replica, result)) = in_flight.next() => match result {
                    Ok(documents) => {
                        if hedge_replica == Some(replica) {
                            self.metrics.hedges_won.inc();
                        }
                        return Some(documents);
                    }
                    Err(error) => {
                        tracing::debug!(shard, replica, error = %error, "leaf request failed, trying another replica");
                        if let Some(next) = self.table().pick(Instant::now(), shard, &tried, key) {
                            tried.push(next.replica);
                            in_flight.push(self.call_leaf(shard, next, path));
                        }
                    }
                },
                () = &mut hedge_timer, if may_hedge => {
                    may_hedge = false;
                    if !self.budgets()[shard as usize].try_spend() {
                        self.metrics.hedges_refused_by_budget.inc();
                        continue;
                    }
                    let Some(next) = self.table().pick(Instant::now(), shard, &tried, key) else {
                        continue;
                    };
                    tried.push(next.replica);
                    hedge_replica = Some(next.replica);
                    hedges.fetch_add(1, Ordering::Relaxed);
                    self.metrics.hedges_sent.inc();
                    in_flight.push(self.call_leaf(shard, next, path));
                }
                else => return None,
            }
        }
    }

    /// Calls one replica; the request's end (answered, failed, or dropped) is recorded
    /// in the table and the metrics by a guard, whichever way the future ends.
    async fn call_leaf(
        &self,
        shard: u32,
        pick: Pick,
        path: &str,
    ) -> (ReplicaIndex, Result<Vec<String>, CallError>) {
        let labels = ReplicaLabels {
            shard: shard.to_string(),
            replica: pick.replica.to_string(),
        };
        self.metrics.leaf_requests.get_or_create(&labels).inc();
        let mut guard = InFlight {
            root: self,
            shard,
            pick: pick.clone(),
            started: Instant::now(),
            outcome: Outcome::Cancelled,
        };
        let url = format!("{}{path}", pick.url);
        let result = self
            .client
            .get_json::<SearchAnswer>(&url)
            .await
            .map(|answer| answer.documents);
        guard.outcome = match &result {
            Ok(_) => Outcome::Answered(guard.started.elapsed()),
            Err(_) => Outcome::Failed,
        };
        (pick.replica, result)
    }
}

/// A leaf request in flight; records its outcome when dropped.
struct InFlight<'a> {
    root: &'a Root,
    shard: u32,
    pick: Pick,
    started: Instant,
    outcome: Outcome,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let labels = ReplicaLabels {
            shard: self.shard.to_string(),
            replica: self.pick.replica.to_string(),
        };
        let word = match self.outcome {
            Outcome::Answered(latency) => {
                self.root
                    .metrics
                    .leaf_duration
                    .get_or_create(&labels)
                    .observe(latency.as_secs_f64());
                "answered"
            }
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        };
        let outcome = OutcomeLabels {
            shard: labels.shard,
            replica: labels.replica,
            outcome: word.to_owned(),
        };
        self.root.metrics.leaf_answers.get_or_create(&outcome).inc();
        self.root
            .table()
            .finish(self.shard, self.pick.replica, &self.pick.url, self.outcome);
    }
}

#[cfg(test)]
mod tests;
