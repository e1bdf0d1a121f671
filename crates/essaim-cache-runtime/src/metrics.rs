//! Every metric of the cache, in one file, named `essaim_cache_<name>_<unit>[_total]`.
//!
//! Labels are bounded by configuration: `node` is one of the proxy's `--nodes`, `op`
//! one of `get`, `put`, `delete`, `probe`; never a key.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// One node and one operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NodeOpLabels {
    /// The node's address.
    pub node: String,
    /// `get`, `put`, `delete` or `probe`.
    pub op: String,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NodeLabels {
    /// The node's address.
    pub node: String,
}

fn latency_histogram() -> Histogram {
    // 20 µs to about 5 s.
    Histogram::new(exponential_buckets(0.000_02, 2.0, 18))
}

/// A cache node's metrics.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    /// Reads that found a live value.
    pub hits: Counter,
    /// Reads that found nothing.
    pub misses: Counter,
    /// Values stored.
    pub puts: Counter,
    /// Writes refused (bad key, value over the limit, bad TTL).
    pub refused: Counter,
    /// Entries evicted to make room.
    pub evictions: Counter,
    /// Entries expired.
    pub expirations: Gauge,
    /// Bytes charged.
    pub bytes: Gauge,
    /// Entries held.
    pub entries: Gauge,
    /// Time to serve a request.
    pub duration: Histogram,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self {
            hits: Counter::default(),
            misses: Counter::default(),
            puts: Counter::default(),
            refused: Counter::default(),
            evictions: Counter::default(),
            expirations: Gauge::default(),
            bytes: Gauge::default(),
            entries: Gauge::default(),
            duration: latency_histogram(),
        }
    }
}

impl NodeMetrics {
    /// Registers every node metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let node = registry.sub_registry_with_prefix("essaim_cache_node");
        node.register("hits", "Reads that found a live value", self.hits.clone());
        node.register("misses", "Reads that found nothing", self.misses.clone());
        node.register("puts", "Values stored", self.puts.clone());
        node.register("refused", "Writes refused", self.refused.clone());
        node.register(
            "evictions",
            "Entries evicted to make room",
            self.evictions.clone(),
        );
        node.register(
            "expired_entries",
            "Entries removed since start because their time to live had passed",
            self.expirations.clone(),
        );
        node.register_with_unit(
            "memory",
            "Bytes charged for the entries held",
            Unit::Bytes,
            self.bytes.clone(),
        );
        node.register("entries", "Entries held", self.entries.clone());
        node.register_with_unit(
            "request_duration",
            "Time to serve a request",
            Unit::Seconds,
            self.duration.clone(),
        );
    }
}

/// The proxy's metrics.
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    /// Reads answered with a value.
    pub hits: Counter,
    /// Reads answered 404.
    pub misses: Counter,
    /// Writes accepted by at least one holder.
    pub writes: Counter,
    /// Requests refused before routing (bad key, value over the limit).
    pub refused: Counter,
    /// Calls to nodes, per node and operation.
    pub node_requests: Family<NodeOpLabels, Counter>,
    /// Calls to nodes that failed or timed out, per node and operation.
    pub node_errors: Family<NodeOpLabels, Counter>,
    /// Values copied to a holder that missed them (read repair, extra replicas).
    pub repairs: Counter,
    /// Whether each node is up (1) or marked down (0).
    pub node_up: Family<NodeLabels, Gauge>,
    /// Extra replicas granted to hot shards.
    pub hot_replicas_added: Counter,
    /// Extra replicas withdrawn.
    pub hot_replicas_dropped: Counter,
    /// Extra replicas now.
    pub hot_replicas: Gauge,
    /// Time to answer a client request.
    pub duration: Histogram,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            hits: Counter::default(),
            misses: Counter::default(),
            writes: Counter::default(),
            refused: Counter::default(),
            node_requests: Family::default(),
            node_errors: Family::default(),
            repairs: Counter::default(),
            node_up: Family::default(),
            hot_replicas_added: Counter::default(),
            hot_replicas_dropped: Counter::default(),
            hot_replicas: Gauge::default(),
            duration: latency_histogram(),
        }
    }
}

impl ProxyMetrics {
    /// Registers every proxy metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let proxy = registry.sub_registry_with_prefix("essaim_cache_proxy");
        proxy.register("hits", "Reads answered with a value", self.hits.clone());
        proxy.register("misses", "Reads answered 404", self.misses.clone());
        proxy.register("writes", "Writes accepted", self.writes.clone());
        proxy.register("refused", "Requests refused", self.refused.clone());
        proxy.register(
            "node_requests",
            "Calls to cache nodes",
            self.node_requests.clone(),
        );
        proxy.register(
            "node_errors",
            "Calls to cache nodes that failed or timed out",
            self.node_errors.clone(),
        );
        proxy.register(
            "repairs",
            "Values copied to a holder that missed them",
            self.repairs.clone(),
        );
        proxy.register(
            "node_up",
            "Whether a node is routed to",
            self.node_up.clone(),
        );
        proxy.register(
            "hot_replicas_added",
            "Extra replicas granted to hot shards",
            self.hot_replicas_added.clone(),
        );
        proxy.register(
            "hot_replicas_dropped",
            "Extra replicas withdrawn once the heat passed",
            self.hot_replicas_dropped.clone(),
        );
        proxy.register(
            "hot_replicas",
            "Extra replicas held now",
            self.hot_replicas.clone(),
        );
        proxy.register_with_unit(
            "request_duration",
            "Time to answer a client request",
            Unit::Seconds,
            self.duration.clone(),
        );
    }
}
