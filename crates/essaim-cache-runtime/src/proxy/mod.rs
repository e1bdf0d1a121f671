//! The cache proxy: one address in front of the cache nodes, routing each key to the
//! holders of its shard.
//!
//! - **Writes** go to every live holder at once, tagged with the placement's epoch. A
//!   holder that cannot be reached is marked down (its stint as a holder ends, so what
//!   it holds is never trusted again); one that refuses the value loses its old copy.
//! - **Reads** start at a holder chosen in turn (so a hot shard's extra replicas share
//!   its load) and fail over to the next on a miss, an untrusted tag, an error or a
//!   timeout. A hit found after misses is copied back to the holders that missed it
//!   (read repair), which is how a node back from the dead and a new extra replica fill
//!   up.
//! - **Down nodes** are skipped (the ring's next node stands in) and probed on
//!   `/healthz` with exponential backoff and full jitter until they answer.
//! - **Hot shards**: every request is counted in its shard's sliding window; once per
//!   `hot_interval` the policy of `essaim_cache::hot` grants or withdraws extra
//!   replicas.
//!
//! The placement is shared behind a `std::sync::RwLock` read on every request and
//! written only when a node goes down or up or the hot-shard loop changes it; no lock
//! is held across an `.await` (the proxy copies the holders it needs).

mod routes;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use essaim_cache::hot::{HotChange, HotPolicy, HotShards, RateWindow};
use essaim_cache::placement::{Placement, PlacementError};
use essaim_core::backoff::full_jitter_delay;
use essaim_core::rng::SeededRng;
use essaim_telemetry::Health;
use essaim_telemetry::prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::client::NodeClient;
use crate::metrics::{NodeLabels, ProxyMetrics};

/// How a proxy routes.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The nodes' addresses (`host:port`).
    pub nodes: Vec<String>,
    /// Base replicas per shard.
    pub replicas: usize,
    /// Shards the keys are cut into.
    pub shards: u32,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// Longest a call to a node may take before it counts as failed.
    pub node_timeout: Duration,
    /// The hot-shard policy.
    pub hot: HotPolicy,
    /// How often the policy runs.
    pub hot_interval: Duration,
    /// The span of the sliding window of request rates.
    pub rate_window: Duration,
    /// `Some`: the nodes serve TLS, verified with this trust (which presents its
    /// certificate to nodes requiring one); `None`: plain HTTP.
    pub node_tls: Option<essaim_tls::ClientTrust>,
}

/// First and longest wait between two probes of a down node, in milliseconds.
const PROBE_BASE_MS: u64 = 100;
const PROBE_CAP_MS: u64 = 5_000;

/// Buckets of the rate window: its span cut in tenths.
const RATE_BUCKETS: usize = 10;

/// What every request handler and background task of a proxy shares.
pub(crate) struct Shared {
    placement: RwLock<Placement>,
    window: Mutex<RateWindow>,
    hot: Mutex<HotShards>,
    client: NodeClient,
    metrics: ProxyMetrics,
    health: Health,
    started: Instant,
    /// Where the next read starts among a shard's holders.
    next_read: AtomicUsize,
    max_value_bytes: usize,
    cancel: CancellationToken,
    tracker: Tasks,
}

/// A running proxy's state; [`Proxy::router`] serves it.
pub struct Proxy {
    shared: Arc<Shared>,
    registry: Option<Registry>,
}

impl Proxy {
    /// Returns a proxy over `config.nodes`, after probing each once (a node that does
    /// not answer starts down), with its hot-shard loop running.
    pub async fn start(config: ProxyConfig) -> Result<Self, PlacementError> {
        let placement = Placement::new(&config.nodes, config.shards, config.replicas)?;
        let bucket_ms = (config.rate_window.as_millis() as u64 / RATE_BUCKETS as u64).max(1);
        let metrics = ProxyMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        for node in &config.nodes {
            metrics.node_up.get_or_create(&node_label(node)).set(1);
        }
        let shared = Arc::new(Shared {
            placement: RwLock::new(placement),
            window: Mutex::new(RateWindow::new(config.shards, bucket_ms, RATE_BUCKETS)),
            hot: Mutex::new(HotShards::new(config.hot.clone())),
            client: match &config.node_tls {
                Some(trust) => NodeClient::over_tls(config.node_timeout, trust),
                None => NodeClient::new(config.node_timeout),
            },
            metrics,
            health: Health::new(),
            started: Instant::now(),
            next_read: AtomicUsize::new(0),
            max_value_bytes: config.max_value_bytes,
            cancel: CancellationToken::new(),
            tracker: Tasks::new(),
        });
        for node in &config.nodes {
            if !shared.client.healthy(node).await {
                shared.mark_down(node, "no answer at start");
            }
        }
        shared.update_readiness();
        let hot_loop = Arc::clone(&shared);
        shared
            .tracker
            .spawn(async move { hot_loop.run_hot_loop(config.hot_interval).await });
        Ok(Self {
            shared,
            registry: Some(registry),
        })
    }

    /// Returns the proxy's router: the cache API, `/v1/cache-admin/shards`, and
    /// `/metrics`, `/healthz`, `/readyz` (ready while a node is up). Call once.
    pub fn router(&mut self) -> Router {
        let registry = self.registry.take().unwrap_or_default();
        Router::new()
            .route(
                "/v1/cache/{*key}",
                get(routes::get_value)
                    .put(routes::put_value)
                    .delete(routes::delete_value),
            )
            .route("/v1/cache/", any(crate::node::empty_key))
            .route("/v1/cache", any(crate::node::empty_key))
            .route("/v1/cache-admin/shards", get(routes::shards_status))
            .layer(DefaultBodyLimit::max(crate::node::body_limit(
                self.shared.max_value_bytes,
            )))
            .with_state(Arc::clone(&self.shared))
            .merge(essaim_telemetry::router(
                registry,
                self.shared.health.clone(),
            ))
    }

    /// Stops the hot-shard loop and the probes, and waits for them and the repairs
    /// in flight.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tracker.wait().await;
    }
}

fn node_label(node: &str) -> NodeLabels {
    NodeLabels {
        node: node.to_owned(),
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn placement(&self) -> std::sync::RwLockReadGuard<'_, Placement> {
        // Placement methods leave it consistent before returning; a panic elsewhere
        // while holding the lock does not make it wrong.
        self.placement
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn placement_mut(&self) -> std::sync::RwLockWriteGuard<'_, Placement> {
        self.placement
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn record_request(&self, shard: u32) {
        let now = self.now_ms();
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(shard, now);
    }

    fn rates(&self) -> Vec<f64> {
        let now = self.now_ms();
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rates(now)
    }

    /// Marks `node` down (once) and starts probing it back.
    pub(crate) fn mark_down(self: &Arc<Self>, node: &str, reason: &str) {
        if !self.placement_mut().set_down(node, true) {
            return;
        }
        tracing::warn!(%node, %reason, "cache node marked down");
        self.metrics.node_up.get_or_create(&node_label(node)).set(0);
        self.update_readiness();
        let shared = Arc::clone(self);
        let node = node.to_owned();
        self.tracker
            .spawn(async move { shared.probe_until_up(node).await });
    }

    fn update_readiness(&self) {
        let placement = self.placement();
        if placement.nodes().iter().all(|node| placement.is_down(node)) {
            self.health.set_not_ready("no cache node is up");
        } else {
            self.health.set_ready();
        }
    }

    /// Probes `node`'s `/healthz` with backoff until it answers, then routes to it
    /// again (as a new holder: it trusts nothing it held before).
    async fn probe_until_up(self: Arc<Self>, node: String) {
        let mut rng = SeededRng::new(essaim_cache::hash::hash64(node.as_bytes()) ^ self.now_ms());
        let mut failures = 0u32;
        loop {
            failures = failures.saturating_add(1);
            let delay = full_jitter_delay(&mut rng, failures, PROBE_BASE_MS, PROBE_CAP_MS);
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(delay.max(20))) => {}
            }
            let labels = crate::metrics::NodeOpLabels {
                node: node.clone(),
                op: "probe".to_owned(),
            };
            self.metrics.node_requests.get_or_create(&labels).inc();
            if self.client.healthy(&node).await {
                self.placement_mut().set_down(&node, false);
                self.metrics
                    .node_up
                    .get_or_create(&node_label(&node))
                    .set(1);
                self.update_readiness();
                tracing::info!(%node, probes = failures, "cache node up again");
                return;
            }
            self.metrics.node_errors.get_or_create(&labels).inc();
        }
    }

    /// Runs the hot-shard policy every `interval` until shutdown.
    async fn run_hot_loop(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            self.apply_hot_policy();
        }
    }

    fn apply_hot_policy(&self) {
        let rates = self.rates();
        let now = self.now_ms();
        let changes = {
            let placement = self.placement();
            self.hot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .decide(&rates, &placement, now)
        };
        if changes.is_empty() {
            return;
        }
        let mut placement = self.placement_mut();
        for change in changes {
            match change {
                HotChange::Add { shard, node } => {
                    if placement.add_extra(shard, &node) {
                        self.metrics.hot_replicas_added.inc();
                        self.metrics.hot_replicas.inc();
                        let rate = rates[shard as usize];
                        tracing::info!(shard, %node, rate, "hot shard: extra replica added");
                    }
                }
                HotChange::Drop { shard, node } => {
                    if placement.drop_extra(shard, &node) {
                        self.metrics.hot_replicas_dropped.inc();
                        self.metrics.hot_replicas.dec();
                        let rate = rates[shard as usize];
                        tracing::info!(shard, %node, rate, "shard cooled: extra replica dropped");
                    }
                }
            }
        }
    }
}

/// The proxy's background tasks (probes, repairs, the hot-shard loop), so that
/// shutdown waits for every one of them.
///
/// A `JoinSet` behind a short lock rather than `tokio_util`'s `TaskTracker`: that one
/// needs tokio-util's `rt` feature, which would rebuild every crate of the workspace
/// that uses tokio-util for one small type.
pub(crate) struct Tasks {
    set: Mutex<Option<tokio::task::JoinSet<()>>>,
}

impl Tasks {
    fn new() -> Self {
        Self {
            set: Mutex::new(Some(tokio::task::JoinSet::new())),
        }
    }

    /// Spawns `task`, unless shutdown has begun; reaps the tasks already finished.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = set.as_mut() {
            while set.try_join_next().is_some() {}
            set.spawn(task);
        }
    }

    /// Waits for every task spawned; no task is spawned afterwards.
    async fn wait(&self) {
        let set = self
            .set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(set) = set {
            set.join_all().await;
        }
    }
}
