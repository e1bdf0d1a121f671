//! What crosses a process boundary, as JSON: the leaf task's payload, a leaf's
//! registration with the root, a leaf's answer, and the root's answer to a query.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The task kind workers advertise for leaves.
pub const LEAF_TASK_KIND: &str = "serve.leaf";

/// Everything a worker needs to run one leaf (the task payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafSpec {
    /// The index job's output directory (readable from every worker).
    pub index_dir: PathBuf,
    /// N, the number of shards.
    pub shards: u32,
    /// The shard this leaf holds.
    pub shard: u32,
    /// Which replica of the shard this leaf is.
    pub replica: u32,
    /// The query root's URL, where the leaf registers.
    pub root_url: String,
    /// Whether the index folded case (the `index` job's `lowercase`, default true).
    pub lowercase: bool,
    /// Benchmarks only: latency added to every search (see [`InjectedLatency`]).
    #[serde(default)]
    pub injected_latency: Option<InjectedLatency>,
}

/// Benchmarks only: a leaf made slow on purpose, to measure tails and hedging.
///
/// Every search first waits `base_us`; with probability `slow_probability` it waits
/// `slow_us` instead. Set by `essaim index serve`'s hidden `--bench-*` flags, which
/// only `bench/serve_tail.sh` uses; a served index never has it otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectedLatency {
    /// The usual wait, in microseconds.
    pub base_us: u64,
    /// The slow wait, in microseconds.
    pub slow_us: u64,
    /// The chance that a search is slow, in `[0, 1]`.
    pub slow_probability: f64,
    /// Seeds the leaf's draws (mixed with its shard and replica).
    pub seed: u64,
}

/// A leaf telling the root where it serves (sent every `REGISTER_EVERY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The shard it holds.
    pub shard: u32,
    /// Its replica number.
    pub replica: u32,
    /// Its base URL (`http://host:port`).
    pub url: String,
    /// The worker it runs on.
    pub worker: String,
    /// Its attempt id: a newer attempt of the same replica replaces an older one.
    pub attempt: u64,
}

/// A leaf's answer to `GET /search?q=…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchAnswer {
    /// The matching documents of the leaf's shard, sorted.
    pub documents: Vec<String>,
}

/// The root's answer to `GET /query?q=…` (and `essaim query --output json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswer {
    /// The matching documents of every shard that answered, sorted and distinct.
    pub documents: Vec<String>,
    /// True when a shard did not answer before the deadline.
    pub partial: bool,
    /// The shards left out, in order.
    pub missing_shards: Vec<u32>,
    /// Shards asked (the fan-out).
    pub shards: u32,
    /// Hedged leaf requests sent for this query.
    pub hedges: u32,
    /// Time the root spent, in milliseconds.
    pub elapsed_ms: f64,
    /// True when the answer came from the query cache (no shard was asked); absent in
    /// the answers of roots older than the cache, hence the default.
    #[serde(default)]
    pub cached: bool,
}

/// An error body: what was refused and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The reason, for people.
    pub error: String,
}
