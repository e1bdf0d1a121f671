//! Runs interactive serving on the cluster: a **leaf** holds one shard of an index in
//! memory and answers queries on its own HTTP port; the **query root** (seed 000's
//! ambassador: one address in front of every shard) scatters a query to one replica of
//! every shard, gathers the answers within a deadline, and hedges slow leaves.
//!
//! Leaves are long-running tasks of kind [`LEAF_TASK_KIND`], one per (shard, replica),
//! in one job the coordinator schedules and supervises like a pipeline's stream tasks:
//! a leaf whose worker dies is re-queued by the coordinator, pulled by another worker,
//! reloads its shard and registers again with the root. The root learns where leaves
//! are only from their registrations (every [`REGISTER_EVERY`]), so it needs no access
//! to the coordinator and a leaf that stops registering leaves the pool.
//!
//! | module | concept |
//! |---|---|
//! | [`wire`] | the task payload, registrations and answers as JSON, shared by leaf, root and CLI |
//! | [`leaf`] | a leaf's HTTP server: `/search`, `/healthz`, `/readyz`, `/metrics`; the bench-only injected latency |
//! | [`executor`] | the `serve.leaf` task kind: load, listen, register, run until cancelled |
//! | [`root`] | the query root: the table of leaves, scatter/gather with deadlines and hedging, complete answers kept in a cache proxy, its HTTP API |
//! | [`client`] | the small HTTP client the root, the leaves and `essaim query` share |
//! | [`metrics`] | every metric of the serving layer |
#![warn(missing_docs)]

use std::time::Duration;

pub mod client;
pub mod executor;
pub mod leaf;
pub mod metrics;
pub mod root;
pub mod wire;

pub use executor::LeafExecutor;
pub use wire::LEAF_TASK_KIND;

/// How often a leaf registers again with the root (its heartbeat).
pub const REGISTER_EVERY: Duration = Duration::from_millis(500);
/// A replica not heard from for this long receives no more requests.
pub const REPLICA_SILENT_AFTER: Duration = Duration::from_secs(3);
/// A leaf that cannot reach its root for this long stops: the serving job is orphaned.
pub const ROOT_LOST_AFTER: Duration = Duration::from_secs(30);
