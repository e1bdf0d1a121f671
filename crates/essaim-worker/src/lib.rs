//! The essaim worker: registers with a coordinator, pulls attempts over gRPC, runs them
//! with the executor of their kind, reports their results, and serves their large
//! outputs over HTTP.
//!
//! Workers pull rather than being pushed to, so a worker takes exactly as much work as
//! it has room for, and the coordinator never needs to reach a worker's address. Four
//! independent loops talk to the coordinator, so that none waits on another: a parked
//! long-poll never delays a heartbeat or a result.
//!
//! ```text
//!              PullTasks                ReportResults (batched)
//!  coordinator ─────────▶ pull ──┐   ┌──▶ reporter ──────────▶ coordinator
//!                                ▼   │
//!                             dispatcher ◀── cancel ── heartbeat ◀──▶ coordinator
//!                      (queue, slots, attempts)            Heartbeat
//! ```
//!
//! | file | concept |
//! |---|---|
//! | `lib.rs` | [`start_worker`] and [`RunningWorker`]: binding, start-up, waiting |
//! | `config.rs` | [`WorkerConfig`] and its validation; the file server URL |
//! | `error.rs` | [`WorkerError`] |
//! | `executor.rs` | [`Executor`] and [`AttemptContext`], what an executor is given |
//! | `registry.rs` | [`ExecutorRegistry`] and the built-in kinds it registers |
//! | `builtin.rs` | the built-in kinds `noop`, `sleep`, `echo`, `fail`, `salad` |
//! | `command/mod.rs` | the `command` kind: external programs, killed with their group |
//! | `command/capture.rs` | bounded capture of a program's stdout and stderr |
//! | `attempt.rs` | what runs around every executor: span, timeout, attempt directory |
//! | `dispatch/mod.rs` | the owner of held attempts: local queue, slots, cancellation |
//! | `dispatch/handle.rs` | the messages other tasks send the dispatcher |
//! | `session.rs` | registration, re-registration, and the session every loop reads |
//! | `pull.rs` | the pull loop |
//! | `epoch.rs` | the epoch fence: no grant from a deposed coordinator |
//! | `heartbeat.rs` | the heartbeat loop |
//! | `report.rs` | the reporter |
//! | `runtime.rs` | the worker's life and the drain |
//! | `files.rs` | the `/files` HTTP endpoint |
//! | `front_registration.rs` | how a long-running serving task stays known to its front |
//! | `job_files/` | files a job brings (`--files`): fetched by hash, cached, linked into an attempt |
//! | `backoff.rs` | retry delays with jitter |
#![warn(missing_docs)]

mod attempt;
mod backoff;
pub mod builtin;
pub mod command;
mod config;
mod dispatch;
mod epoch;
mod error;
mod executor;
pub mod file_access;
pub mod file_ranges;
mod files;
pub mod front_registration;
mod heartbeat;
mod inputs_watch;
pub mod job_files;
mod pull;
mod registry;
mod report;
mod runtime;
mod scratch_guard;
pub mod serving;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use essaim_proto::Coordinators;
use essaim_telemetry::prometheus_client::registry::Registry;
use essaim_telemetry::{AuthMetrics, AuthSurface, Health, WorkerMetrics};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    COORDINATION_ROUND_TRIP, DEFAULT_MAX_PREFETCH, DEFAULT_SCRATCH_RESERVE_BYTES, Prefetch,
    WorkerConfig,
};
pub use error::WorkerError;
pub use essaim_core::kinds::BUILTIN_KINDS;
pub use executor::{AttemptContext, ExecutionFuture, Executor};
pub use files::{file_server_router, file_server_router_with};
pub use inputs_watch::{InputsSource, InputsWatch, InputsWatchError, WatchAnswer, WatchFuture};
pub use registry::ExecutorRegistry;

use crate::attempt::AttemptSettings;
use crate::job_files::JobFileCache;
use crate::session::{Registrar, RegistrationDetails, SessionState};

/// A worker that has registered (or was asked to drain before it could) and runs until
/// its drain completes.
#[derive(Debug)]
pub struct RunningWorker {
    /// Where `/healthz`, `/readyz`, `/metrics` and `/files` are served.
    pub http_addr: SocketAddr,
    /// The base URL of file results, as told to the coordinator.
    pub file_server_url: String,
    /// `None` when the runtime already ended inside [`start_worker`].
    runtime: Option<JoinHandle<Result<(), WorkerError>>>,
}

impl RunningWorker {
    /// Waits until the worker has drained (after the drain token fired) and stopped, or
    /// stopped on an error no retry can fix.
    pub async fn wait(self) -> Result<(), WorkerError> {
        let Some(runtime) = self.runtime else {
            return Ok(());
        };
        runtime.await.map_err(|source| WorkerError::TaskPanicked {
            task: "runtime",
            source,
        })?
    }
}

/// Starts the worker: binds HTTP, then registers (retrying while the coordinator is
/// unreachable, with capped exponential backoff and full jitter, logging each failure),
/// then runs until `drain` fires and the drain completes (see [`RunningWorker::wait`]).
///
/// Returns an error when the configuration is unusable, the HTTP address cannot be
/// bound, or the coordinator refuses the registration for good (e.g. a wrong token). If
/// `drain` fires before the registration succeeds, returns a worker that is already
/// stopping.
pub async fn start_worker(
    config: WorkerConfig,
    executors: ExecutorRegistry,
    drain: CancellationToken,
) -> Result<RunningWorker, WorkerError> {
    config.validate()?;
    let coordinator_urls = config.coordinator_urls()?;
    // Job files come from the coordinators' artifact stores, on the same addresses.
    let job_files = Arc::new(JobFileCache::new(
        &config.scratch_dir,
        coordinator_urls.as_slice(),
        config.token.as_deref(),
        &config.trust,
    ));
    tokio::fs::create_dir_all(&config.scratch_dir)
        .await
        .map_err(|source| WorkerError::ScratchDir {
            path: config.scratch_dir.clone(),
            source,
        })?;
    let bind_error = |source| WorkerError::BindHttp {
        address: config.http_listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(bind_error)?;
    let http_addr = listener.local_addr().map_err(bind_error)?;
    let (_, bound_to_wildcard) = config::default_advertised_ip(http_addr);
    let mut advertised_host = config.advertised_host.clone();
    if advertised_host.is_none() && bound_to_wildcard {
        // Listening everywhere: advertise the address this host reaches the coordinator
        // from, which is the one the coordinator and the other workers can reach it at
        // in the common case (one network, as in a container network or a LAN).
        match config::outbound_ip_towards(coordinator_urls.first()) {
            Some(ip) => advertised_host = Some(ip.to_string()),
            None => tracing::warn!(
                http = %http_addr,
                "the HTTP server listens on a wildcard address, no advertised host is set \
                 and no route to the coordinator was found; file URLs name the loopback \
                 address, which only this host can reach"
            ),
        }
    }
    let worker_tls = serving::WorkerTls {
        server: config.tls.clone(),
        trust: config.trust.clone(),
    };
    let file_server_url =
        config::file_server_url(worker_tls.scheme(), advertised_host.as_deref(), http_addr);

    let mut registry = Registry::default();
    let metrics = WorkerMetrics::register(&mut registry);
    executors.register_metrics(&mut registry);
    metrics.slots.set(i64::from(config.slots));
    let health = Health::new();
    health.set_not_ready("not registered");
    let capability_key = file_access::CapabilityKeyCell::default();
    let file_access = file_access::FileAccess::new(
        config.token.as_deref(),
        capability_key.clone(),
        AuthMetrics::register(&mut registry, &[AuthSurface::Files]),
    );
    let router = essaim_telemetry::router(registry, health.clone()).merge(
        files::file_server_router_with(config.scratch_dir.clone(), file_access),
    );
    // A shuffle fetch's span on this side joins the fetching reducer's trace.
    let router = essaim_telemetry::trace_context::trace_requests(router);
    let http_stop = CancellationToken::new();
    let tls = config.tls.clone();
    let http_stop_requested = http_stop.clone().cancelled_owned();
    let http_server = tokio::spawn(async move {
        essaim_tls::serve(listener, tls.as_ref(), router, http_stop_requested).await
    });

    let mut executors = executors;
    // `allow_commands` is the operator's decision; it holds whatever registry the
    // caller built, since `command` lets any client run programs on this host.
    if !config.allow_commands && executors.unregister("command") {
        tracing::warn!("the `command` kind is not advertised: external commands are not allowed");
    }
    let kinds = executors.kinds();
    tracing::info!(
        name = %config.name,
        coordinator = %coordinator_urls,
        http = %http_addr,
        file_server_url = %file_server_url,
        slots = config.slots,
        prefetch = %config.prefetch,
        kinds = ?kinds,
        "worker starting"
    );
    let coordinators = Coordinators::new(
        coordinator_urls,
        config.token.clone(),
        backoff::fresh_seed(5),
    )
    .with_trust(config.trust.clone());
    let (session_tx, mut session_rx) = watch::channel(SessionState::Registering);
    let inputs_source = Arc::new(inputs_watch::CoordinatorInputs {
        coordinators: coordinators.clone(),
        session_rx: session_tx.subscribe(),
    });
    let registrar = Registrar::new(
        coordinators,
        RegistrationDetails {
            name: config.name.clone(),
            slots: config.slots,
            kinds,
            file_server_url: file_server_url.clone(),
            labels: config.labels.clone().into_iter().collect(),
            data_dirs: config.data_dirs.clone(),
            long_running_kinds: executors.long_running_kinds(),
        },
        capability_key.clone(),
        backoff::fresh_seed(0),
    );
    let runtime = runtime::Runtime {
        registrar,
        executors: Arc::new(executors),
        attempt_settings: AttemptSettings {
            scratch_root: config.scratch_dir.clone(),
            file_server_url: file_server_url.clone(),
            worker_name: config.name.clone(),
            file_credentials: file_access::FileCredentials {
                token: config.token.clone(),
                capability_key,
            },
            job_files,
            inputs_source,
            tls: worker_tls,
        },
        slots: config.slots,
        scratch_reserve_bytes: config.scratch_reserve_bytes,
        prefetch: config.prefetch,
        drain_grace: config.drain_grace,
        metrics,
        health,
        session_tx,
        drain: drain.child_token(),
        http_stop,
        http_server,
    };
    let runtime = tokio::spawn(runtime.run());

    // The runtime publishes the first session once registered, or `Closed` if drained
    // first; it drops the sender without either only when it failed.
    let settled = session_rx
        .wait_for(|state| !matches!(state, SessionState::Registering))
        .await
        .is_ok();
    if settled {
        return Ok(RunningWorker {
            http_addr,
            file_server_url,
            runtime: Some(runtime),
        });
    }
    runtime.await.map_err(|source| WorkerError::TaskPanicked {
        task: "runtime",
        source,
    })??;
    Ok(RunningWorker {
        http_addr,
        file_server_url,
        runtime: None,
    })
}
