//! The `serve.leaf` task kind: one replica of one shard, held in memory and served
//! until the coordinator cancels the attempt.
//!
//! An attempt: parse the payload; load the shard on a blocking thread (a corrupt shard
//! is a permanent failure naming the file, a read error a retryable one); listen on the
//! worker's advertised host, on a port of the system's choosing (with the worker's
//! certificate on a TLS worker: `essaim_worker::serving`); register with the
//! root every [`REGISTER_EVERY`] until cancelled. The task never ends on its own: a
//! worker that dies takes the leaf with it, the coordinator re-queues the task once the
//! worker is declared dead, and another worker runs it (and reloads the shard) — the
//! supervision every long-running task gets, as a pipeline's stream tasks do.
//!
//! The leaf is a long-running task: it holds no slot, and the coordinator places a
//! shard's replicas on different workers (the job gives them one anti-affinity group).
//! A registration the root still refuses (another replica of the shard on this worker,
//! which placement no longer does, or this attempt was replaced) fails the attempt as
//! retryable, so the coordinator places it again.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use essaim_core::{TaskFailure, TaskOutput};
use essaim_serve::shard::{ShardError, ShardId, load_shard};
use essaim_telemetry::Health;
use essaim_worker::front_registration::{FrontRegistration, register_until_cancelled};
use essaim_worker::serving::ServingListener;
use essaim_worker::{AttemptContext, ExecutionFuture, Executor};
use tokio_util::sync::CancellationToken;

use crate::leaf::{LeafState, router};
use crate::wire::{LeafSpec, Registration};
use crate::{REGISTER_EVERY, ROOT_LOST_AFTER};

/// Runs `serve.leaf` attempts.
#[derive(Debug, Clone, Default)]
pub struct LeafExecutor;

impl LeafExecutor {
    /// Returns the executor.
    pub fn new() -> Self {
        Self
    }
}

impl Executor for LeafExecutor {
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture {
        Box::pin(run_leaf(attempt, cancel))
    }

    fn needs_scratch_dir(&self, _payload: &[u8]) -> bool {
        false
    }

    /// A leaf serves until stopped: it holds no slot (a worker's slots stay for batch
    /// work), and the coordinator spreads the leaves over the workers, a shard's replicas
    /// on different ones (their anti-affinity group).
    fn long_running(&self) -> bool {
        true
    }
}

async fn load(spec: &LeafSpec) -> Result<essaim_serve::shard::ShardIndex, TaskFailure> {
    let index_dir: PathBuf = spec.index_dir.clone();
    let (shards, shard) = (spec.shards, ShardId(spec.shard));
    let loaded = tokio::task::spawn_blocking(move || load_shard(&index_dir, shards, shard))
        .await
        .map_err(|error| TaskFailure::new(format!("shard loading panicked: {error}"), true))?;
    loaded.map_err(|error: ShardError| {
        let retryable = error.is_retryable();
        TaskFailure::new(essaim_core::error_chain::error_chain(&error), retryable)
    })
}

async fn run_leaf(
    attempt: AttemptContext,
    cancel: CancellationToken,
) -> Result<TaskOutput, TaskFailure> {
    let spec: LeafSpec = serde_json::from_slice(&attempt.payload)
        .map_err(|error| TaskFailure::new(format!("malformed serve.leaf task: {error}"), false))?;
    let started = Instant::now();
    let shard = tokio::select! {
        () = cancel.cancelled() => return Ok(TaskOutput::default()),
        loaded = load(&spec) => loaded?,
    };
    // On a TLS worker the leaf serves with the worker's certificate (`https://`).
    let listener = ServingListener::bind(&attempt).await?;
    let url = listener.url().to_owned();
    let salt = (u64::from(spec.shard) << 32) | u64::from(spec.replica);
    let state = Arc::new(LeafState::new(
        shard,
        spec.lowercase,
        spec.injected_latency,
        salt,
    ));
    let health = Health::new();
    health.set_ready();
    let stop_server = cancel.child_token();
    let server = listener.serve(router(state, health.clone()), stop_server.clone());
    tracing::info!(
        shard = spec.shard,
        replica = spec.replica,
        %url,
        load_ms = started.elapsed().as_millis() as u64,
        correlation_id = %attempt.correlation_id,
        "leaf serving"
    );
    let registration = Registration {
        shard: spec.shard,
        replica: spec.replica,
        url,
        worker: attempt.worker_name.clone(),
        attempt: attempt.attempt_id.0,
    };
    let registration = FrontRegistration {
        front: "the query root",
        role: "leaf",
        endpoint: format!("{}/leaves", spec.root_url),
        body: Bytes::from(serde_json::to_vec(&registration).expect("registrations serialize")),
        every: REGISTER_EVERY,
        lost_after: ROOT_LOST_AFTER,
        trust: attempt.tls.trust.clone(),
    };
    let outcome = register_until_cancelled(&registration, &cancel).await;
    health.set_not_ready("stopping");
    stop_server.cancel();
    let _ = server.await;
    outcome.map(|()| TaskOutput::default())
}
