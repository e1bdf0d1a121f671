//! `essaim coordinator`: runs the coordinator until Ctrl-C or SIGTERM.

use crate::client::usage;
use essaim_coordinator::role::{HighAvailability, run_highly_available};
use essaim_coordinator::{CoordinatorConfig, start_coordinator};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Options of `essaim coordinator`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address for gRPC and HTTP (/healthz, /readyz, /metrics), one port.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Directory of the journal; reuse it to resume after a restart.
    #[arg(long, default_value = "essaim-data")]
    data_dir: PathBuf,
    /// Cluster token required from workers and clients (also ESSAIM_TOKEN).
    #[arg(long, env = "ESSAIM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Accept unauthenticated callers on a non-loopback address.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Worker heartbeat period, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// A worker silent this long is dead and its tasks are re-queued, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    worker_timeout_ms: u64,
    /// Longest a worker's pull waits for work, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    long_poll_ms: u64,
    /// No task counts as a straggler before running this long, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    speculation_min_runtime_ms: u64,
    /// Finished jobs and their results are forgotten this many seconds after finishing.
    #[arg(long, default_value_t = 86_400)]
    retention_secs: u64,
    /// Compact the journal into a snapshot after this many new events.
    #[arg(long, default_value_t = 1_000_000)]
    compact_after_events: u64,
    /// The recommended number of workers aims to drain the backlog within this many
    /// seconds (see the queue statistics in ARCHITECTURE.md).
    #[arg(long, default_value_t = 300.0)]
    drain_target_secs: f64,
    /// The recommended number of workers aims to keep this share of slots busy (0.05–1).
    #[arg(long, default_value_t = 0.8)]
    target_utilisation: f64,
    /// Refuse new submissions (RESOURCE_EXHAUSTED) while the journal's file system has
    /// less free space than this many bytes; running jobs continue. 0 = never refuse
    /// (default: 268435456, 256 MiB).
    #[arg(long)]
    journal_reserve_bytes: Option<u64>,
    #[command(flatten)]
    high_availability: HighAvailabilityArgs,
}

/// Options of a highly available coordinator (leader election and journal in etcd).
#[derive(clap::Args, Debug)]
struct HighAvailabilityArgs {
    /// etcd client URLs, comma-separated (also ESSAIM_ETCD): run as one of several
    /// coordinators of a cluster, elected through etcd, with the journal in etcd. Without
    /// it, the journal is the embedded one in --data-dir.
    #[arg(long, env = "ESSAIM_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// The URL at which workers, clients and the other coordinators reach this one
    /// (default: http://<--listen>; required when listening on 0.0.0.0).
    #[arg(long, env = "ESSAIM_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// The cluster's name: coordinators with the same name and etcd form one cluster;
    /// other names on the same etcd are other clusters.
    #[arg(long, env = "ESSAIM_CLUSTER", default_value = "default")]
    cluster: String,
    /// The leader's etcd lease, in seconds: a dead leader is replaced about this long
    /// after it stopped refreshing it.
    #[arg(long, default_value_t = 2)]
    leader_lease_secs: u64,
    /// Longest an etcd call may take before it counts as failed, in seconds.
    #[arg(long, default_value_t = 5)]
    etcd_timeout_secs: u64,
}

impl HighAvailabilityArgs {
    /// The settings, or `None` without --etcd.
    fn settings(self, listen: SocketAddr) -> anyhow::Result<Option<HighAvailability>> {
        let endpoints: Vec<String> = self
            .etcd
            .into_iter()
            .map(|endpoint| endpoint.trim().to_string())
            .filter(|endpoint| !endpoint.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Ok(None);
        }
        for endpoint in &endpoints {
            let valid = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty() && endpoint.parse::<http::Uri>().is_ok());
            if !valid {
                return Err(usage(format!(
                    "invalid --etcd endpoint `{endpoint}`: expected a client URL such as http://127.0.0.1:2379"
                )));
            }
        }
        if self.leader_lease_secs < 2 {
            return Err(usage(
                "--leader-lease-secs must be at least 2 (etcd's shortest lease)",
            ));
        }
        let advertise_url = match self.advertise_url {
            Some(url) => url,
            None if listen.ip().is_unspecified() => {
                return Err(usage(format!(
                    "--advertise-url is required when listening on {listen}: the other coordinators, workers and clients need an address to reach this one"
                )));
            }
            None => format!("http://{listen}"),
        };
        Ok(Some(HighAvailability {
            etcd_endpoints: endpoints,
            cluster: self.cluster,
            advertise_url,
            lease_ttl: Duration::from_secs(self.leader_lease_secs),
            etcd_timeout: Duration::from_secs(self.etcd_timeout_secs.max(1)),
        }))
    }
}

/// Runs the coordinator.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.token.is_none() && !args.listen.ip().is_loopback() && !args.allow_unauthenticated {
        return Err(usage(format!(
            "refusing to listen on {} without a cluster token: pass --token (or ESSAIM_TOKEN), or --allow-unauthenticated",
            args.listen
        )));
    }
    if args.heartbeat_ms == 0 || args.worker_timeout_ms <= args.heartbeat_ms {
        return Err(usage(
            "--worker-timeout-ms must be larger than --heartbeat-ms, which must be positive",
        ));
    }
    if !(args.drain_target_secs.is_finite() && args.drain_target_secs > 0.0) {
        return Err(usage(
            "--drain-target-secs must be a positive number of seconds",
        ));
    }
    if !(0.05..=1.0).contains(&args.target_utilisation) {
        return Err(usage("--target-utilisation must be between 0.05 and 1"));
    }
    let high_availability = args.high_availability.settings(args.listen)?;
    let mut config = CoordinatorConfig::new(args.listen, args.data_dir);
    config.queue_targets = essaim_coordinator::queue::QueueTargets {
        drain_target_s: args.drain_target_secs,
        utilisation: args.target_utilisation,
    };
    config.token = args.token;
    config.planner = Some(crate::jobs::planner());
    if let Some(reserve) = args.journal_reserve_bytes {
        config.journal_reserve_bytes = reserve;
    }
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    config.worker_timeout = Duration::from_millis(args.worker_timeout_ms);
    config.long_poll = Duration::from_millis(args.long_poll_ms);
    config.speculation_min_runtime = Duration::from_millis(args.speculation_min_runtime_ms);
    config.retention = Duration::from_secs(args.retention_secs);
    config.compact_after_events = args.compact_after_events.max(1);
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        signal.cancel();
    });
    if let Some(high_availability) = high_availability {
        eprintln!(
            "essaim coordinator: cluster `{}` on etcd {}, reachable at {}; leader or standby as elected",
            high_availability.cluster,
            high_availability.etcd_endpoints.join(","),
            high_availability.advertise_url
        );
        run_highly_available(config, high_availability, shutdown).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let coordinator = start_coordinator(config, shutdown.clone()).await?;
    eprintln!(
        "essaim coordinator: API http://{0} (gRPC, REST under /api/v1), dashboard http://{0}/ui/, metrics http://{0}/metrics, health /healthz /readyz",
        coordinator.address
    );
    coordinator.wait().await?;
    Ok(ExitCode::SUCCESS)
}
