//! Every metric of the serving layer, in one file (the telemetry crate's rule for a
//! capability's metrics), named `essaim_serve_<name>_<unit>[_total]`.
//!
//! Labels are bounded by configuration: `shard` and `replica` are numbers below N and R
//! (N ≤ 1024), `outcome` is one of three words, `op` one of two; never a query or a
//! document.
//! Requests in flight to leaves are counted in and out with two counters
//! (`leaf_requests` − `leaf_answers`), as the house rule for fast queues asks.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// One replica of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// The shard number.
    pub shard: String,
    /// The replica number.
    pub replica: String,
}

/// A leaf request's end.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The shard number.
    pub shard: String,
    /// The replica number.
    pub replica: String,
    /// `answered`, `failed` or `cancelled` (a hedge's loser, or past the deadline).
    pub outcome: String,
}

/// One shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ShardLabels {
    /// The shard number.
    pub shard: String,
}

/// A call to the query cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheOpLabels {
    /// `lookup` or `store`.
    pub op: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 13 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// The query root's metrics.
#[derive(Debug, Clone)]
pub struct RootMetrics {
    /// Queries answered (complete or partial).
    pub queries: Counter,
    /// Answers with a missing shard.
    pub partial_answers: Counter,
    /// Queries refused before they ran (empty, oversized).
    pub refused_queries: Counter,
    /// Time to answer a query.
    pub query_duration: Histogram,
    /// Shards asked per query (the fan-out).
    pub fanout: Histogram,
    /// Leaf requests sent, per replica (hedges included).
    pub leaf_requests: Family<ReplicaLabels, Counter>,
    /// Leaf requests ended, per replica and outcome.
    pub leaf_answers: Family<OutcomeLabels, Counter>,
    /// Latency of answered leaf requests, per replica.
    pub leaf_duration: Family<ReplicaLabels, Histogram, fn() -> Histogram>,
    /// Hedged requests sent.
    pub hedges_sent: Counter,
    /// Hedged requests that answered first.
    pub hedges_won: Counter,
    /// Hedges not sent because the budget was spent.
    pub hedges_refused_by_budget: Counter,
    /// Replicas receiving requests, per shard.
    pub ready_replicas: Family<ShardLabels, Gauge>,
    /// Queries answered from the query cache.
    pub cache_hits: Counter,
    /// Query cache lookups that found nothing.
    pub cache_misses: Counter,
    /// Query cache calls that failed or timed out, per operation.
    pub cache_errors: Family<CacheOpLabels, Counter>,
    /// Lookups not attempted, shortly after a failed one.
    pub cache_skipped: Counter,
    /// Complete answers stored in the query cache.
    pub cache_stores: Counter,
    /// Stores not attempted because too many were in flight.
    pub cache_stores_dropped: Counter,
}

impl Default for RootMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RootMetrics {
    /// Returns unregistered metrics at zero.
    pub fn new() -> Self {
        Self {
            queries: Counter::default(),
            partial_answers: Counter::default(),
            refused_queries: Counter::default(),
            query_duration: latency_histogram(),
            fanout: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            leaf_requests: Family::default(),
            leaf_answers: Family::default(),
            leaf_duration: Family::new_with_constructor(latency_histogram),
            hedges_sent: Counter::default(),
            hedges_won: Counter::default(),
            hedges_refused_by_budget: Counter::default(),
            ready_replicas: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_errors: Family::default(),
            cache_skipped: Counter::default(),
            cache_stores: Counter::default(),
            cache_stores_dropped: Counter::default(),
        }
    }

    /// Registers every root metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let serve = registry.sub_registry_with_prefix("essaim_serve");
        serve.register("queries", "Queries answered", self.queries.clone());
        serve.register(
            "partial_answers",
            "Answers with a shard missing at the deadline",
            self.partial_answers.clone(),
        );
        serve.register(
            "refused_queries",
            "Queries refused before they ran (empty, oversized)",
            self.refused_queries.clone(),
        );
        serve.register_with_unit(
            "query_duration",
            "Time to answer a query",
            Unit::Seconds,
            self.query_duration.clone(),
        );
        serve.register(
            "fanout_shards",
            "Shards asked per query",
            self.fanout.clone(),
        );
        serve.register(
            "leaf_requests",
            "Leaf requests sent, hedges included",
            self.leaf_requests.clone(),
        );
        serve.register(
            "leaf_answers",
            "Leaf requests ended, by outcome",
            self.leaf_answers.clone(),
        );
        serve.register_with_unit(
            "leaf_request_duration",
            "Latency of answered leaf requests",
            Unit::Seconds,
            self.leaf_duration.clone(),
        );
        serve.register(
            "hedges_sent",
            "Hedged leaf requests sent",
            self.hedges_sent.clone(),
        );
        serve.register(
            "hedges_won",
            "Hedged leaf requests that answered first",
            self.hedges_won.clone(),
        );
        serve.register(
            "hedges_refused_by_budget",
            "Hedges not sent because the budget was spent",
            self.hedges_refused_by_budget.clone(),
        );
        serve.register(
            "ready_replicas",
            "Replicas receiving requests, per shard",
            self.ready_replicas.clone(),
        );
        serve.register(
            "cache_hits",
            "Queries answered from the query cache",
            self.cache_hits.clone(),
        );
        serve.register(
            "cache_misses",
            "Query cache lookups that found nothing",
            self.cache_misses.clone(),
        );
        serve.register(
            "cache_errors",
            "Query cache calls that failed or timed out, by operation",
            self.cache_errors.clone(),
        );
        serve.register(
            "cache_skipped",
            "Query cache lookups not attempted, shortly after a failed one",
            self.cache_skipped.clone(),
        );
        serve.register(
            "cache_stores",
            "Complete answers stored in the query cache",
            self.cache_stores.clone(),
        );
        serve.register(
            "cache_stores_dropped",
            "Query cache stores not attempted because too many were in flight",
            self.cache_stores_dropped.clone(),
        );
    }
}

/// A leaf's metrics, on the leaf's own `/metrics`.
#[derive(Debug, Clone)]
pub struct LeafMetrics {
    /// Searches started.
    pub searches: Counter,
    /// Searches dropped before they answered (the caller went away).
    pub cancelled: Counter,
    /// Time to answer a search.
    pub duration: Histogram,
    /// Terms held.
    pub terms: Gauge,
}

impl Default for LeafMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl LeafMetrics {
    /// Returns unregistered metrics at zero.
    pub fn new() -> Self {
        Self {
            searches: Counter::default(),
            cancelled: Counter::default(),
            duration: latency_histogram(),
            terms: Gauge::default(),
        }
    }

    /// Registers every leaf metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let leaf = registry.sub_registry_with_prefix("essaim_serve_leaf");
        leaf.register("searches", "Searches started", self.searches.clone());
        leaf.register(
            "searches_cancelled",
            "Searches dropped before they answered (a hedge's loser, a deadline)",
            self.cancelled.clone(),
        );
        leaf.register_with_unit(
            "search_duration",
            "Time to answer a search",
            Unit::Seconds,
            self.duration.clone(),
        );
        leaf.register("terms", "Terms held in memory", self.terms.clone());
    }
}
