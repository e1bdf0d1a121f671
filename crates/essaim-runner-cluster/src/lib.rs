//! Model runners on the cluster (seed 004's central runners: compute pooled on the
//! cluster's workers). A **replica** is one `essaim_runner::Runner` run as a
//! long-running task of kind [`MODEL_SERVE_TASK_KIND`] on a worker: it loads the
//! models of its payload from the registry, serves the runner's own router on the
//! worker's advertised host, reports its use to the registry as a runner on its own
//! does, and registers with the **front** every [`REGISTER_EVERY`]. The front (run by
//! `essaim serve --on-cluster`) is the one address clients know: it forwards the Open
//! Inference Protocol to the replica with the fewest requests in flight, and retries
//! once on another replica a request that failed at the connection level.
//!
//! The coordinator places and supervises the replicas as it does a pipeline's stream
//! tasks: spread over the workers (the kind is long-running, so a replica holds no
//! slot), re-queued when their worker dies. The front learns where replicas are only
//! from their registrations, so it needs no access to the coordinator, and a replica
//! that stops registering leaves the table.
//!
//! | module | concept |
//! |---|---|
//! | [`wire`] | the task payload and a replica's registration, as JSON |
//! | [`executor`] | the `model.serve` task kind: build the runner, load, listen, register until cancelled |
//! | [`table`] | the front's table of replicas: least outstanding, stale replicas dropped, retries elsewhere (pure) |
//! | [`front`] | the front: forwarding, registrations, readiness, its HTTP API |
//! | [`metrics`] | the front's metrics |
#![warn(missing_docs)]

use std::time::Duration;

pub mod executor;
pub mod front;
pub mod metrics;
pub mod table;
pub mod wire;

pub use executor::ModelServeExecutor;
pub use wire::MODEL_SERVE_TASK_KIND;

/// How often a replica registers again with the front (its heartbeat).
pub const REGISTER_EVERY: Duration = Duration::from_millis(500);
/// A replica not heard from for this long is dropped from the front's table.
pub const REPLICA_SILENT_AFTER: Duration = Duration::from_secs(3);
/// A replica that cannot reach its front for this long stops: the job is orphaned.
pub const FRONT_LOST_AFTER: Duration = Duration::from_secs(30);
