//! The essaim coordinator: the I/O shell around the scheduling core.
//!
//! It recovers the scheduler from the journal, runs the [`actor`] that owns both, and
//! serves the gRPC API and the HTTP endpoints (`/healthz`, `/readyz`, `/metrics`) on ONE
//! port: gRPC requests are told apart by their content type, so a user needs one address.
//!
//! | module | concept |
//! |---|---|
//! | [`admission`] | new submissions refused while the journal's disk is under its reserve |
//! | [`actor`] | the single owner of scheduler + journal; group commit; long-polls |
//! | [`auth`] | principals and roles: who may call which gRPC method and REST route |
//! | [`service`] | gRPC handlers |
//! | `job_traces` | the trace each job was submitted in, handed on with its grants (every request gets a span parented by its `traceparent`) |
//! | [`views`] | scheduler state → wire read models |
//! | [`masking`] | passwords of URLs masked out of the dead-letter views |
//! | [`history`] | bounded aggregates of what happened: timelines, worker shares, durations |
//! | [`queue`] | queue statistics and the recommended number of workers |
//! | [`streams`] | running pipelines' units as workers report them, and the stream workers they need |
//! | [`rest`] | the REST/JSON API and its OpenAPI document |
//! | [`planning`] | what a submission over REST looks like; the planner the binary installs |
//! | `submission` | plan, then submit: the one path of REST's and gRPC's planned submissions |
//! | (`essaim-registry`) | the model registry's API under `/registry/v1`, behind the same token |
//! | [`dashboard`] | the web dashboard's files |
//! | [`observatory`] | history + queue statistics inside the actor, published as gauges |
//! | [`role`] | high availability: campaign through etcd, lead on the etcd journal, step down |
//! | `standing_by` | a standby's background work: announcing itself, watching who leads, following the journal |
//! | `standby` | what a standby serves: probes, metrics, and "the leader is there" to every call |
#![warn(missing_docs)]

pub mod actor;
pub mod admission;
pub mod auth;
pub mod cluster;
pub mod dashboard;
pub mod history;
mod inputs_watch;
mod job_traces;
pub mod masking;
pub mod observatory;
pub mod planning;
pub mod queue;
pub mod rest;
pub mod role;
pub mod service;
mod socket;
mod standby;
mod standing_by;
pub mod streams;
mod submission;
pub mod views;

use actor::Actor;
use admission::Admission;
use essaim_core::{Scheduler, SchedulerConfig};
use essaim_proto::v1::coordinator_server::CoordinatorServer;
use essaim_store::{Journal, Recovered, RedbJournal, SharedResults};
use essaim_telemetry::prometheus_client::registry::Registry;
use essaim_telemetry::{
    AdmissionMetrics, AuthMetrics, AuthSurface, CoordinatorMetrics, Health, PrincipalsMetrics,
    StreamBoardMetrics,
};
use service::{CoordinatorService, WorkerTiming};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Task kinds accepted at submission even before a worker advertises them (see
/// [`essaim_core::kinds`]).
pub use essaim_core::kinds::BUILTIN_KINDS;
pub use socket::ListenSocket;

/// The model registry's directory inside the data directory (its default place).
pub const REGISTRY_DIR: &str = "registry";

/// How to run a coordinator; every field has a documented default in the CLI.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Address for gRPC and HTTP (one port).
    pub listen: SocketAddr,
    /// Where the journal lives.
    pub data_dir: PathBuf,
    /// Cluster token, accepted from every caller with every role; with no principals
    /// either, `None` accepts anyone (local use only).
    pub token: Option<String>,
    /// The principals of the principals file, with their roles (see [`auth`]; default
    /// none).
    pub principals: Vec<auth::PrincipalSpec>,
    /// The file `principals` came from, read again on `SIGHUP` or when its content
    /// changes (`None`: the principals never change).
    pub principals_file: Option<PathBuf>,
    /// Worker heartbeat period (default 1 s).
    pub heartbeat_interval: Duration,
    /// Silence after which a worker is declared dead and its leases expire (default 5 s).
    pub worker_timeout: Duration,
    /// Longest a pull waits for work (default 10 s).
    pub long_poll: Duration,
    /// Period of lease, deadline and retry checks (default 100 ms).
    pub tick: Duration,
    /// Straggler floor: no task is copied before running this long (default 1 s).
    pub speculation_min_runtime: Duration,
    /// Finished jobs and their results are forgotten this long after finishing (default 24 h).
    pub retention: Duration,
    /// The journal is compacted into a snapshot after this many new events (default 1,000,000).
    pub compact_after_events: u64,
    /// What the recommended number of workers aims for.
    pub queue_targets: queue::QueueTargets,
    /// The leadership metrics of a highly available coordinator, exported beside the
    /// others (`None` for a single coordinator).
    pub leadership: Option<essaim_telemetry::LeadershipMetrics>,
    /// What `/api/v1/cluster` describes (`None`: this one coordinator).
    pub cluster: Option<cluster::ClusterSource>,
    /// New submissions are refused while the journal's file system has less free space
    /// than this; 0 turns admission control off (default 256 MiB).
    pub journal_reserve_bytes: u64,
    /// Where the model registry served beside the API keeps its store and artifacts
    /// (default: the embedded store in `<data dir>/`[`REGISTRY_DIR`], its artifacts
    /// beside it; a PostgreSQL store is shared by every coordinator using it; `None`
    /// serves no registry).
    pub registry: Option<essaim_registry::RegistryPlace>,
    /// Plans the MapReduce jobs and pipelines submitted over REST (`None`: task farms
    /// only; the `essaim` binary installs its planner).
    pub planner: Option<Arc<dyn planning::JobPlanner>>,
    /// The certificate and key the port serves TLS with (`None`, the default: plain
    /// HTTP and gRPC).
    pub tls: Option<essaim_tls::ServerTls>,
}

impl CoordinatorConfig {
    /// Returns the defaults for a coordinator listening on `listen` with data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            token: None,
            principals: Vec::new(),
            principals_file: None,
            heartbeat_interval: Duration::from_secs(1),
            worker_timeout: Duration::from_secs(5),
            long_poll: Duration::from_secs(10),
            tick: Duration::from_millis(100),
            speculation_min_runtime: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            compact_after_events: 1_000_000,
            queue_targets: queue::QueueTargets::default(),
            leadership: None,
            cluster: None,
            journal_reserve_bytes: 256 * 1024 * 1024,
            registry: Some(essaim_registry::RegistryPlace {
                store: essaim_registry::store::StoreLocation::Directory(
                    data_dir.join(REGISTRY_DIR),
                ),
                artifacts: essaim_registry::artifacts::ArtifactLocation::Dir(
                    data_dir.join(REGISTRY_DIR).join("artifacts"),
                ),
            }),
            planner: None,
            tls: None,
            data_dir,
        }
    }
}

/// Why the coordinator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] essaim_store::StoreError),
    /// The listen address is unusable.
    #[error("failed to listen on {address}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The model registry could not be opened.
    #[error("failed to open the model registry")]
    Registry(#[from] essaim_registry::RegistryError),
    /// The HTTP server failed.
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
    /// etcd refused a request that retrying will not fix (a bad endpoint, a permission).
    #[error(transparent)]
    Etcd(#[from] essaim_etcd::EtcdError),
    /// The operating system's random generator failed.
    #[error("failed to draw the file capability key")]
    Random(#[source] std::io::Error),
    /// The high-availability settings are unusable.
    #[error("{0}")]
    HighAvailability(String),
}

/// A coordinator that is serving.
pub struct RunningCoordinator {
    /// The bound address (useful with port 0).
    pub address: SocketAddr,
    /// This incarnation's epoch.
    pub epoch: u64,
    /// Its readiness (`/readyz`): a leader stepping down turns it off at once.
    pub health: Health,
    actor: JoinHandle<Result<(), essaim_store::StoreError>>,
    server: JoinHandle<Result<(), std::io::Error>>,
    disk_sampler: JoinHandle<()>,
    stop: CancellationToken,
}

impl RunningCoordinator {
    /// Waits until the coordinator stops (shutdown requested or journal failure).
    pub async fn wait(self) -> Result<(), CoordinatorError> {
        let actor_result = self.actor.await.expect("the actor does not panic");
        // Whatever stopped the actor, stop serving too.
        self.stop.cancel();
        let server_result = self.server.await.expect("the server does not panic");
        self.disk_sampler
            .await
            .expect("the disk sampler does not panic");
        actor_result?;
        server_result.map_err(CoordinatorError::Serve)
    }
}

/// A journal opened by whoever chose it, with what it held and where its committed
/// results are read.
pub struct OpenedJournal {
    /// The journal the actor appends to.
    pub journal: Box<dyn Journal>,
    /// What it held when opened.
    pub recovered: Recovered,
    /// The committed results it stores.
    pub results: SharedResults,
}

/// Opens the embedded journal in the data directory, recovers from it and starts
/// serving; stops when `shutdown` fires.
pub async fn start_coordinator(
    config: CoordinatorConfig,
    shutdown: CancellationToken,
) -> Result<RunningCoordinator, CoordinatorError> {
    let data_dir = config.data_dir.clone();
    let (journal, recovered) = tokio::task::spawn_blocking(move || RedbJournal::open(&data_dir))
        .await
        .expect("journal open does not panic")?;
    let results: SharedResults = Arc::new(journal.result_reader());
    let opened = OpenedJournal {
        journal: Box::new(journal),
        recovered,
        results,
    };
    let socket = ListenSocket::bind(config.listen).await?;
    start_with_journal(config, opened, &socket, shutdown).await
}

/// Opens the model registry served beside the API, if there is one.
async fn open_registry(
    place: Option<&essaim_registry::RegistryPlace>,
) -> Result<Option<Arc<essaim_registry::Registry>>, CoordinatorError> {
    let Some(place) = place else {
        return Ok(None);
    };
    let registry = place
        .open(essaim_registry::DEFAULT_MAX_ARTIFACT_BYTES)
        .await?;
    info!(store = registry.store.backend(), location = %place.store.describe(), artifacts = %place.artifacts, "model registry open");
    Ok(Some(Arc::new(registry)))
}

/// Recovers from an opened journal and starts serving on `socket`; stops when
/// `shutdown` fires.
pub async fn start_with_journal(
    config: CoordinatorConfig,
    opened: OpenedJournal,
    socket: &ListenSocket,
    shutdown: CancellationToken,
) -> Result<RunningCoordinator, CoordinatorError> {
    let OpenedJournal {
        journal,
        recovered,
        results,
    } = opened;
    let scheduler_config = SchedulerConfig {
        worker_timeout_ms: config.worker_timeout.as_millis() as u64,
        lease_ms: config.worker_timeout.as_millis() as u64,
        speculation_min_runtime_ms: config.speculation_min_runtime.as_millis() as u64,
        epoch: recovered.epoch,
        seed: actor::wall_clock_ms(),
        ..SchedulerConfig::default()
    };
    let event_count = recovered.events.len();
    let recovered_epoch = recovered.epoch;
    let mut observatory = observatory::Observatory::new(config.queue_targets);
    let no_workers_yet = Scheduler::new(SchedulerConfig::default(), &[]);
    for event in &recovered.events {
        observatory.record(event, &no_workers_yet);
    }
    let scheduler = Scheduler::recover(scheduler_config, BUILTIN_KINDS, recovered.events);
    info!(
        epoch = recovered.epoch,
        events = event_count,
        jobs = scheduler.jobs().count(),
        "journal recovered"
    );

    let mut registry = Registry::default();
    let metrics = CoordinatorMetrics::register(&mut registry);
    if let Some(leadership) = &config.leadership {
        leadership.register(&mut registry);
    }
    let authenticator = auth::Authenticator::new(
        config.token.as_deref(),
        config.principals.clone(),
        AuthMetrics::register(&mut registry, &[AuthSurface::Grpc, AuthSurface::Rest]),
    );
    if let Some(path) = &config.principals_file {
        let metrics = PrincipalsMetrics::register(&mut registry);
        metrics.set_in_force(config.principals.len());
        tokio::spawn(auth::watch_principals_file(
            authenticator.clone(),
            path.clone(),
            metrics,
            shutdown.child_token(),
        ));
    }
    let streams = streams::StreamBoard::new(
        config.worker_timeout,
        Duration::from_secs_f64(config.queue_targets.drain_target_s),
        StreamBoardMetrics::register(&mut registry),
    );
    let capability_key = auth::draw_capability_key().map_err(CoordinatorError::Random)?;
    let admission = Admission::new(
        config.journal_reserve_bytes,
        AdmissionMetrics::register(&mut registry),
    );
    // A first sample before serving: the first submission is judged on a real one.
    admission.sample(&config.data_dir).await;
    let health = Health::new();
    let stop = shutdown.child_token();

    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(65_536);
    let retention = actor::Retention {
        keep_finished_jobs: config.retention,
        compact_after_events: config.compact_after_events,
        // Look for expired jobs often enough to honour short retentions, at most every 30 s.
        check_every: Duration::from_secs(30).min(config.retention.max(config.tick)),
    };
    let actor = Actor::new(
        scheduler,
        journal,
        metrics.clone(),
        health.clone(),
        config.tick,
        retention,
        observatory,
    );
    let actor = tokio::spawn(actor.run(commands_rx, stop.clone()));
    let disk_sampler = tokio::spawn(
        admission
            .clone()
            .sample_until_stopped(config.data_dir.clone(), stop.clone()),
    );

    let timing = WorkerTiming {
        heartbeat_interval: config.heartbeat_interval,
        worker_timeout: config.worker_timeout,
        long_poll: config.long_poll,
    };
    let submitter = submission::Submitter {
        commands_tx: commands_tx.clone(),
        admission: admission.clone(),
        planner: config.planner.clone(),
        authenticator: authenticator.clone(),
    };
    let rest = rest::router(rest::RestState {
        commands_tx: commands_tx.clone(),
        results: results.clone(),
        authenticator: authenticator.clone(),
        submitter: submitter.clone(),
        streams: streams.clone(),
        capability_key: capability_key.clone(),
    });
    let service = CoordinatorService {
        commands_tx,
        results,
        timing,
        metrics,
        admission,
        submitter,
        epoch: recovered_epoch,
        job_traces: job_traces::JobTraces::default(),
        capability_key,
        streams,
    };
    let grpc = CoordinatorServer::new(service)
        .max_decoding_message_size(essaim_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(essaim_proto::MAX_MESSAGE_BYTES);
    let grpc = tonic::service::Routes::new(grpc);
    let listener = socket.listener()?;
    let address = socket.local_addr();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let cluster = config
        .cluster
        .clone()
        .unwrap_or(cluster::ClusterSource::Single {
            url: format!("{scheme}://{address}"),
            epoch: recovered_epoch,
        });
    let models = open_registry(config.registry.as_ref()).await?;
    // Every gRPC call passes the role check of its method first (see `auth`).
    let grpc = grpc
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            authenticator.clone(),
            auth::check_grpc,
        ));
    let router = grpc
        .merge(essaim_telemetry::router(registry, health.clone()))
        .merge(cluster::router(cluster))
        .merge(rest)
        .merge(models.map_or_else(axum::Router::new, |models| {
            rest::with_auth(essaim_registry::http::router(models), authenticator.clone())
        }))
        .merge(dashboard::router());
    // Last, so that every route above gets its request span.
    let router = essaim_telemetry::trace_context::trace_requests(router);

    let server_stop = stop.clone();
    let tls = config.tls.clone();
    let server = tokio::spawn(async move {
        // TCP_NODELAY on every connection: small RPCs must not wait for Nagle.
        essaim_tls::serve(
            listener,
            tls.as_ref(),
            router,
            server_stop.cancelled_owned(),
        )
        .await
    });
    health.set_ready();
    info!(address = %address, epoch = recovered_epoch, tls = config.tls.is_some(), "coordinator serving gRPC and HTTP");
    Ok(RunningCoordinator {
        address,
        epoch: recovered.epoch,
        health,
        actor,
        server,
        disk_sampler,
        stop,
    })
}
