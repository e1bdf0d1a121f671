//! The `model.serve` task kind: one replica of a model runner, served until the
//! coordinator cancels the attempt.
//!
//! An attempt: parse the payload and its models (malformed: a permanent failure);
//! start an `essaim_runner::Runner` on the worker's advertised host, on a port of the
//! system's choosing (with the worker's certificate on a TLS worker, which the
//! registry's client trusts too: `essaim_worker::serving`); wait for its first load (an unknown model or alias, a missing or
//! corrupt artifact, an artifact it does not read: a permanent failure naming it; a
//! registry it cannot reach: a retryable one); then register with the front every
//! [`REGISTER_EVERY`] until cancelled. The runner meanwhile follows its aliases and
//! reports its use to the registry as a runner on its own does, under
//! `NAME/replica-R`. A replica reaches the registry with its worker's own token
//! ([`ModelServeExecutor::with_registry_token`]): the payload carries none.
//!
//! The task never ends on its own: a worker that dies takes the replica with it, the
//! coordinator re-queues the task once the worker is declared dead, and another worker
//! runs it. A registration the front refuses (a newer attempt holds the replica) fails
//! the attempt as retryable; a front unreachable for [`FRONT_LOST_AFTER`] ends it.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use essaim_core::{TaskFailure, TaskOutput};
use essaim_registry::client::RegistryClient;
use essaim_runner::reload::ReloadError;
use essaim_runner::usage::UsageSettings;
use essaim_runner::{Runner, RunnerConfig, RunnerError};
use essaim_worker::front_registration::{FrontRegistration, register_until_cancelled};
use essaim_worker::serving::{WorkerTls, serving_url};
use essaim_worker::{AttemptContext, ExecutionFuture, Executor};
use tokio_util::sync::CancellationToken;

use crate::wire::{ModelServeSpec, Registration};
use crate::{FRONT_LOST_AFTER, REGISTER_EVERY};

/// Who the registry's audit log names for a replica's canary decisions (as a runner
/// on its own).
const ACTOR: &str = "essaim-serve";

/// Runs `model.serve` attempts.
#[derive(Debug, Clone, Default)]
pub struct ModelServeExecutor {
    /// The worker's own token, offered to the registry (where the worker's role reads
    /// models and reports their use).
    registry_token: Option<Arc<str>>,
}

impl ModelServeExecutor {
    /// Returns the executor, reaching the registry without a token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the executor offering `token` (the worker's own) to the registry.
    pub fn with_registry_token(mut self, token: Option<String>) -> Self {
        self.registry_token = token.map(Arc::from);
        self
    }
}

impl Executor for ModelServeExecutor {
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture {
        let token = self.registry_token.clone();
        Box::pin(async move { run_replica(attempt, cancel, token).await })
    }

    fn needs_scratch_dir(&self, _payload: &[u8]) -> bool {
        false
    }

    /// A replica runs until stopped: it holds no slot, and the coordinator spreads a
    /// job's replicas over the workers (and moves some when workers join or leave).
    fn long_running(&self) -> bool {
        true
    }
}

/// Resolves the worker's advertised host to the address a replica listens on.
async fn listen_address(attempt: &AttemptContext) -> Result<(String, SocketAddr), TaskFailure> {
    let host = attempt
        .advertised_host()
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let resolved = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|error| TaskFailure::new(format!("cannot resolve {host}: {error}"), true))?
        .next()
        .ok_or_else(|| TaskFailure::new(format!("{host} resolves to no address"), true))?;
    Ok((host, resolved))
}

async fn start_runner(
    spec: &ModelServeSpec,
    listen: SocketAddr,
    token: Option<&str>,
    tls: &WorkerTls,
) -> Result<Runner, TaskFailure> {
    let models = spec.plans().map_err(|error| {
        TaskFailure::new(format!("the model.serve task's models: {error}"), false)
    })?;
    let client = RegistryClient::new_trusting(&spec.registry_url, token, ACTOR, &tls.trust)
        .map_err(|error| TaskFailure::new(format!("registry: {error}"), false))?;
    let config = RunnerConfig {
        listen,
        models,
        limits: spec.batch.limits(),
        reload_interval: Duration::from_millis(spec.reload_interval_ms),
        client,
        usage: UsageSettings {
            name: Some(spec.replica_name()),
            address: None,
            interval: Duration::from_millis(spec.usage_interval_ms),
        },
        // A TLS worker's replica serves with the worker's certificate.
        tls: tls.server.clone(),
    };
    Runner::start(config).await.map_err(|error| {
        let retryable = !matches!(error, RunnerError::Config(_));
        TaskFailure::new(essaim_core::error_chain::error_chain(&error), retryable)
    })
}

/// Returns the attempt's failure when the first load failed: permanent if any of
/// its causes is.
fn load_failure(failures: &[ReloadError]) -> Option<TaskFailure> {
    if failures.is_empty() {
        return None;
    }
    let retryable = failures.iter().all(ReloadError::is_retryable);
    let causes: Vec<String> = failures
        .iter()
        .map(|error| essaim_core::error_chain::error_chain(error))
        .collect();
    let message = format!("cannot load the models: {}", causes.join("; "));
    Some(TaskFailure::new(message, retryable))
}

async fn run_replica(
    attempt: AttemptContext,
    cancel: CancellationToken,
    token: Option<Arc<str>>,
) -> Result<TaskOutput, TaskFailure> {
    let spec: ModelServeSpec = serde_json::from_slice(&attempt.payload)
        .map_err(|error| TaskFailure::new(format!("malformed model.serve task: {error}"), false))?;
    let (host, listen) = listen_address(&attempt).await?;
    let started = Instant::now();
    let mut runner = start_runner(&spec, listen, token.as_deref(), &attempt.tls).await?;
    let first_load = tokio::select! {
        () = cancel.cancelled() => None,
        failures = runner.first_load() => Some(failures),
    };
    let Some(failures) = first_load else {
        runner.shutdown().await;
        return Ok(TaskOutput::default());
    };
    if let Some(failed) = load_failure(&failures) {
        runner.shutdown().await;
        return Err(failed);
    }
    let url = serving_url(&attempt.tls, &host, runner.local_addr().port());
    tracing::info!(
        replica = spec.replica,
        %url,
        load_ms = started.elapsed().as_millis() as u64,
        correlation_id = %attempt.correlation_id,
        "model replica serving"
    );
    let registration = Registration {
        replica: spec.replica,
        url,
        worker: attempt.worker_name.clone(),
        attempt: attempt.attempt_id.0,
    };
    let registration = FrontRegistration {
        front: "the front",
        role: "replica",
        endpoint: format!("{}/replicas", spec.front_url),
        body: Bytes::from(serde_json::to_vec(&registration).expect("registrations serialize")),
        every: REGISTER_EVERY,
        lost_after: FRONT_LOST_AFTER,
        trust: attempt.tls.trust.clone(),
    };
    let outcome = register_until_cancelled(&registration, &cancel).await;
    runner.shutdown().await;
    outcome.map(|()| TaskOutput::default())
}
