//! `essaim local`: an embedded cluster on loopback until Ctrl-C.

use crate::local_cluster::{LocalCluster, LocalOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Options of `essaim local`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Slots per worker (default: the number of cores).
    #[arg(long)]
    slots: Option<u32>,
    /// Attempts each worker pulls ahead of its free slots (`auto`, `auto:MAX` or a number;
    /// see `essaim worker --help`).
    #[arg(long, default_value = "auto")]
    prefetch: essaim_worker::Prefetch,
    /// Coordinator address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Journal and scratch directory (default: a fresh temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    token: crate::client::TokenArgs,
}

/// Runs the local cluster until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let temporary;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => {
            temporary = tempfile::Builder::new().prefix("essaim-local-").tempdir()?;
            temporary.path().to_path_buf()
        }
    };
    let options = LocalOptions {
        workers: args.workers,
        slots: args.slots.unwrap_or_else(default_slots),
        prefetch: args.prefetch,
        listen: args.listen,
        data_dir: data_dir.clone(),
        token: args.token.resolve()?,
        restart_crashed: true,
        worker_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        heartbeat: Duration::from_secs(1),
        worker_timeout: Duration::from_secs(5),
        task_cache: Default::default(),
    };
    let cluster = LocalCluster::start(options.clone()).await?;
    eprintln!(
        "essaim local cluster is up: {} workers x {} slots",
        options.workers, options.slots
    );
    eprintln!(
        "  API      {} (gRPC; essaim submit/jobs/status use it by default)",
        cluster.url
    );
    eprintln!(
        "  metrics  {}/metrics   health {}/healthz {}/readyz",
        cluster.url, cluster.url, cluster.url
    );
    eprintln!("  data     {}", data_dir.display());
    eprintln!("Press Ctrl-C to stop.");
    super::shutdown_signal().await;
    eprintln!("stopping: draining workers…");
    cluster.stop(Duration::from_secs(30)).await?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Returns the number of cores, the default number of slots.
pub fn default_slots() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}
