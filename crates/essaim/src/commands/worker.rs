//! `essaim worker`: pulls and runs tasks until SIGTERM, then drains.

use essaim_worker::{ExecutorRegistry, WorkerConfig, start_worker};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Options of `essaim worker`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Coordinator URL, or several separated by commas (`http://c1:7070,http://c2:7070`):
    /// the worker follows the leader among them and keeps retrying while none answers.
    #[arg(
        long,
        env = "ESSAIM_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    coordinator: String,
    #[command(flatten)]
    token: crate::client::TokenArgs,
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
    #[command(flatten)]
    trust: crate::tls_args::TrustArgs,
    /// Attempts run at once (default: the number of cores).
    #[arg(long)]
    slots: Option<u32>,
    /// Attempts pulled ahead of free slots and queued locally: `auto` (enough to cover a
    /// coordinator round trip at the recent task duration, at most 256; long tasks get
    /// none), `auto:MAX`, or a fixed number (0 = pure pull).
    #[arg(long, default_value = "auto")]
    prefetch: essaim_worker::Prefetch,
    /// Display name (default: host name and process id).
    #[arg(long)]
    name: Option<String>,
    /// Address of this worker's HTTP server (/healthz, /readyz, /metrics, result files).
    #[arg(long, default_value = "127.0.0.1:0")]
    http_listen: SocketAddr,
    /// Host name other machines use to fetch this worker's files (default: the bound
    /// address, or when listening on a wildcard the address that reaches the coordinator).
    #[arg(long, env = "ESSAIM_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// Scratch directory for attempt outputs (default: a temporary directory).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
    /// Take no new task while the scratch directory's file system has less free space
    /// than this many bytes (running tasks go on); 0 = never hold back (default:
    /// 268435456, 256 MiB).
    #[arg(long, default_value_t = essaim_worker::DEFAULT_SCRATCH_RESERVE_BYTES)]
    scratch_reserve_bytes: u64,
    /// How long running tasks may take to finish after SIGTERM (bare number: seconds).
    #[arg(long, alias = "drain-grace-secs", value_parser = crate::durations::seconds, default_value = "30s")]
    drain_grace: Duration,
    /// Run external commands (the `command` task kind). Off by default: only allow it
    /// where every holder of the cluster token may run programs on this machine.
    #[arg(long)]
    allow_commands: bool,
    /// Data directories this worker holds locally.
    #[arg(long = "data-dir")]
    data_dirs: Vec<String>,
    /// A label of this worker, `KEY=VALUE` (repeatable, or comma-separated): jobs that
    /// require labels (`essaim submit --require-label gpu=yes`) run only on workers
    /// carrying them. Keys hold letters, digits, `.`, `_`, `/` and `-`.
    #[arg(
        long = "labels",
        visible_alias = "label",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = essaim_core::labels::parse_label
    )]
    labels: Vec<(String, String)>,
    #[command(flatten)]
    task_cache: super::task_cache::TaskCacheArgs,
    /// Exit when this process dies (set by the local cluster on the workers it starts;
    /// standard input is then its lifeline pipe).
    #[arg(long = "lifeline-parent", hide = true)]
    lifeline_parent: Option<u32>,
}

/// Runs the worker.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(parent) = args.lifeline_parent {
        crate::lifeline::watch_parent(parent)?;
    }
    let temporary;
    let scratch_dir = match args.scratch_dir {
        Some(dir) => dir,
        None => {
            temporary = tempfile::Builder::new()
                .prefix("essaim-worker-")
                .tempdir()?;
            temporary.path().to_path_buf()
        }
    };
    // Certificates first: a bad file is a usage error before anything starts.
    let tls = args.tls.load()?;
    let trust = args.trust.load()?;
    let slots = args.slots.unwrap_or_else(super::local::default_slots);
    if slots == 0 {
        return Err(crate::client::usage("--slots must be at least 1"));
    }
    let name = args
        .name
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let config = WorkerConfig {
        coordinator_url: args.coordinator,
        token: args.token.resolve()?,
        name,
        slots,
        prefetch: args.prefetch,
        http_listen: args.http_listen,
        advertised_host: args.advertised_host,
        scratch_dir,
        scratch_reserve_bytes: args.scratch_reserve_bytes,
        drain_grace: args.drain_grace,
        allow_commands: args.allow_commands,
        data_dirs: args.data_dirs,
        labels: essaim_core::labels::collect(args.labels).map_err(crate::client::usage)?,
        tls,
        trust: trust.clone(),
    };
    let drain = CancellationToken::new();
    // Listen for SIGTERM before registering: a worker told to stop while it still waits
    // for the coordinator must stop cleanly, not die.
    let drain_on_signal = drain.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("draining: no more pulls, finishing running tasks");
        drain_on_signal.cancel();
    });
    let task_cache = args.task_cache.open()?;
    let mut executors = ExecutorRegistry::with_builtins(config.allow_commands);
    let shuffle = essaim_mapreduce::shuffle::ShuffleSettings {
        trust,
        ..Default::default()
    };
    essaim_mapreduce::executor::register_mapreduce_executors_caching(
        &mut executors,
        crate::jobs::registry(),
        shuffle,
        task_cache,
    );
    executors.register(
        essaim_stream_runtime::STREAM_TASK_KIND,
        std::sync::Arc::new(
            essaim_stream_runtime::StreamExecutor::new().with_registry_token(config.token.clone()),
        ),
    );
    executors.register(
        essaim_serve_runtime::LEAF_TASK_KIND,
        std::sync::Arc::new(essaim_serve_runtime::LeafExecutor::new()),
    );
    executors.register(
        essaim_runner_cluster::MODEL_SERVE_TASK_KIND,
        std::sync::Arc::new(
            essaim_runner_cluster::ModelServeExecutor::new()
                .with_registry_token(config.token.clone()),
        ),
    );
    let worker = start_worker(config, executors, drain).await?;
    tracing::info!(http = %worker.http_addr, "worker serving health, metrics and files");
    worker.wait().await?;
    Ok(ExitCode::SUCCESS)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}
