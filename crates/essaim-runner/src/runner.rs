//! A running model runner: its listener, its registry task and its batchers, started
//! together and stopped in an order that drops no request.
//!
//! Shutdown: the HTTP server stops accepting and finishes the requests it holds (their
//! versions' batchers answer them), the registry task stops polling, and then, once
//! the last handle of every version is gone, each batcher drains and ends; the task
//! tracker is awaited for all of them and the shadow comparisons still running. The
//! usage heartbeat stops with the registry task and withdraws the runner's report.

use crate::batch::BatchLimits;
use crate::config::{ConfigError, ServedModelPlan, check_distinct};
use crate::health::RunnerHealth;
use crate::http::{ApiState, router};
use crate::metrics::RunnerMetrics;
use crate::reload::{RegistryTask, ReloadError};
use crate::served::ServedModel;
use crate::usage::{UsageReporter, UsageSettings};
use essaim_registry::client::RegistryClient;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Default time between two polls of the registry.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Canary decisions waiting for the registry task: they are rare (one per pair of
/// versions), and one that finds the channel full is simply taken again later.
const PENDING_DECISIONS: usize = 16;

/// What a runner serves and how.
pub struct RunnerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The models.
    pub models: Vec<ServedModelPlan>,
    /// Batching of every version.
    pub limits: BatchLimits,
    /// Time between two polls of the registry.
    pub reload_interval: Duration,
    /// The registry.
    pub client: RegistryClient,
    /// The usage heartbeat (see [`crate::usage`]).
    pub usage: UsageSettings,
    /// The certificate to serve TLS with (`None`: plain HTTP).
    pub tls: Option<essaim_tls::ServerTls>,
}

/// Why a runner did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The model list is not servable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address cannot be listened on.
    #[error("failed to listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The download directory cannot be created.
    #[error("failed to create a directory for downloaded artifacts")]
    DownloadDir(#[source] std::io::Error),
}

/// A started runner.
pub struct Runner {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    registry_task: JoinHandle<()>,
    usage_task: JoinHandle<()>,
    tracker: TaskTracker,
    health: RunnerHealth,
    first_poll: Option<oneshot::Receiver<Vec<ReloadError>>>,
    // Removed when the runner is dropped; artifacts only pass through it.
    _download_dir: tempfile::TempDir,
}

impl Runner {
    /// Binds, starts loading every model, and serves; readiness follows the loads.
    pub async fn start(config: RunnerConfig) -> Result<Self, RunnerError> {
        check_distinct(&config.models)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| RunnerError::Bind {
                address: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| RunnerError::Bind {
            address: config.listen,
            source,
        })?;
        let download_dir = tempfile::Builder::new()
            .prefix("essaim-serve-")
            .tempdir()
            .map_err(RunnerError::DownloadDir)?;
        let metrics = RunnerMetrics::new();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let probe = essaim_telemetry::Health::new();
        let health = RunnerHealth::new(probe.clone());
        let tracker = TaskTracker::new();
        let (decisions_tx, decisions_rx) = mpsc::channel(PENDING_DECISIONS);
        let (first_poll_tx, first_poll) = oneshot::channel();
        let models: Vec<Arc<ServedModel>> = config
            .models
            .into_iter()
            .map(|plan| {
                Arc::new(ServedModel::new(
                    plan,
                    metrics.clone(),
                    tracker.clone(),
                    decisions_tx.clone(),
                ))
            })
            .collect();
        let shutdown = CancellationToken::new();
        let mut usage = config.usage;
        let scheme = essaim_tls::url_scheme(config.tls.as_ref());
        usage.address = usage
            .address
            .or_else(|| Some(format!("{scheme}://{local_addr}")));
        let reporter = UsageReporter::new(config.client.clone(), usage, local_addr, models.clone());
        let usage_task = tokio::spawn(reporter.run(shutdown.clone()));
        let task = RegistryTask {
            client: config.client,
            models: models.clone(),
            reload_interval: config.reload_interval,
            limits: config.limits,
            metrics: metrics.clone(),
            health: health.clone(),
            tracker: tracker.clone(),
            download_dir: download_dir.path().to_path_buf(),
            first_poll: Some(first_poll_tx),
        };
        let registry_task = tokio::spawn(task.run(decisions_rx, shutdown.clone()));
        let state = ApiState {
            models: Arc::new(
                models
                    .into_iter()
                    .map(|m| (m.name.clone(), m))
                    .collect::<BTreeMap<_, _>>(),
            ),
            health: health.clone(),
            metrics,
        };
        let app = router(state).merge(essaim_telemetry::router(registry, probe));
        let stop = shutdown.clone();
        let tls = config.tls;
        let server = tokio::spawn(async move {
            essaim_tls::serve(listener, tls.as_ref(), app, stop.cancelled_owned()).await
        });
        Ok(Self {
            local_addr,
            shutdown,
            server,
            registry_task,
            usage_task,
            tracker,
            health,
            first_poll: Some(first_poll),
            _download_dir: download_dir,
        })
    }

    /// Waits for the first poll of the registry and returns its failures (empty when
    /// every version was loaded). A runner on its own keeps polling whatever they are;
    /// a runner placed as a task decides from them whether to stop
    /// ([`ReloadError::is_retryable`]). Empty when asked a second time.
    pub async fn first_load(&mut self) -> Vec<ReloadError> {
        match self.first_poll.take() {
            Some(first_poll) => first_poll.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Returns the address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Returns its readiness.
    pub fn health(&self) -> &RunnerHealth {
        &self.health
    }

    /// Stops accepting, answers what it holds, and waits for every task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the runner's HTTP server failed"),
            Err(error) => tracing::warn!(%error, "the runner's HTTP server panicked"),
        }
        let _ = self.registry_task.await;
        let _ = self.usage_task.await;
        // Every version's last handle is gone with the server and the registry task.
        self.tracker.close();
        self.tracker.wait().await;
    }
}
