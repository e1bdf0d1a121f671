//! `essaim coordinator`: runs the coordinator until Ctrl-C or SIGTERM.

use crate::client::usage;
use crate::durations;
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
    #[command(flatten)]
    auth: super::server_auth::ServerAuthArgs,
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
    /// Worker heartbeat period (`1s`; a bare number counts milliseconds, as the old
    /// --heartbeat-ms did).
    #[arg(long, alias = "heartbeat-ms", value_parser = durations::millis, default_value = "1s")]
    heartbeat: Duration,
    /// A worker silent this long is dead and its tasks are re-queued (bare number:
    /// milliseconds).
    #[arg(long, alias = "worker-timeout-ms", value_parser = durations::millis, default_value = "5s")]
    worker_timeout: Duration,
    /// Longest a worker's pull waits for work (bare number: milliseconds).
    #[arg(long, alias = "long-poll-ms", value_parser = durations::millis, default_value = "10s")]
    long_poll: Duration,
    /// No task counts as a straggler before running this long (bare number:
    /// milliseconds).
    #[arg(long, alias = "speculation-min-runtime-ms", value_parser = durations::millis, default_value = "1s")]
    speculation_min_runtime: Duration,
    /// Finished jobs and their results are forgotten this long after finishing (bare
    /// number: seconds).
    #[arg(long, alias = "retention-secs", value_parser = durations::seconds, default_value = "24h")]
    retention: Duration,
    /// Compact the journal into a snapshot after this many new events.
    #[arg(long, default_value_t = 1_000_000)]
    compact_after_events: u64,
    /// The recommended number of workers aims to drain the backlog within this long
    /// (bare number: seconds; see the queue statistics in ARCHITECTURE.md).
    #[arg(long, alias = "drain-target-secs", value_parser = durations::seconds, default_value = "5m")]
    drain_target: Duration,
    /// The recommended number of workers aims to keep this share of slots busy (0.05–1).
    #[arg(long, default_value_t = 0.8)]
    target_utilisation: f64,
    /// Refuse new submissions (RESOURCE_EXHAUSTED) while the journal's file system has
    /// less free space than this many bytes; running jobs continue. 0 = never refuse
    /// (default: 268435456, 256 MiB).
    #[arg(long)]
    journal_reserve_bytes: Option<u64>,
    /// Where the model registry served beside the API keeps models, versions, aliases
    /// and the audit log: a directory (the embedded store) or a PostgreSQL URL
    /// (`postgres://user@host/db`, `sslmode`/`sslrootcert` for TLS), which several
    /// coordinators, or `essaim registry` processes, can share. Default:
    /// `<--data-dir>/registry`. Masked when shown: a URL may hold a password.
    #[arg(long, value_name = "DIR|URL", hide_env_values = true)]
    registry_store: Option<String>,
    /// Where the registry's artifacts are: a directory, or `s3://bucket/prefix` (with
    /// the `AWS_*` environment). Default: `<--registry-store>/artifacts` for a
    /// directory; required with a PostgreSQL store (the same directory or bucket for
    /// every process sharing it).
    #[arg(long, value_name = "DIR|URL")]
    registry_artifacts: Option<String>,
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
    /// (default: http://<--listen>, https:// with --tls-cert; required when listening on
    /// 0.0.0.0).
    #[arg(long, env = "ESSAIM_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// The cluster's name: coordinators with the same name and etcd form one cluster;
    /// other names on the same etcd are other clusters.
    #[arg(long, env = "ESSAIM_CLUSTER", default_value = "default")]
    cluster: String,
    /// The leader's etcd lease (whole seconds, at least 2; a bare number counts
    /// seconds): a dead leader is replaced about this long after it stopped refreshing it.
    #[arg(long, alias = "leader-lease-secs", value_parser = durations::seconds, default_value = "2s")]
    leader_lease: Duration,
    /// Longest an etcd call may take before it counts as failed (bare number: seconds).
    #[arg(long, alias = "etcd-timeout-secs", value_parser = durations::seconds, default_value = "5s")]
    etcd_timeout: Duration,
}

impl HighAvailabilityArgs {
    /// The settings, or `None` without --etcd.
    fn settings(
        self,
        listen: SocketAddr,
        scheme: &str,
    ) -> anyhow::Result<Option<HighAvailability>> {
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
        if self.leader_lease < Duration::from_secs(2) {
            return Err(usage(
                "--leader-lease must be at least 2s (etcd's shortest lease)",
            ));
        }
        let advertise_url = match self.advertise_url {
            Some(url) => url,
            None if listen.ip().is_unspecified() => {
                return Err(usage(format!(
                    "--advertise-url is required when listening on {listen}: the other coordinators, workers and clients need an address to reach this one"
                )));
            }
            None => format!("{scheme}://{listen}"),
        };
        Ok(Some(HighAvailability {
            etcd_endpoints: endpoints,
            cluster: self.cluster,
            advertise_url,
            // etcd leases are whole seconds.
            lease_ttl: Duration::from_secs(self.leader_lease.as_secs()),
            etcd_timeout: self.etcd_timeout.max(Duration::from_secs(1)),
        }))
    }
}

/// Runs the coordinator.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let credentials = args.auth.resolve(args.listen)?;
    let tls = args.tls.load()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let verifies_client_certificates = tls.as_ref().is_some_and(|tls| tls.client_ca().is_some());
    let named_by_certificate = credentials
        .principals
        .iter()
        .filter(|principal| principal.certificate.is_some());
    for principal in named_by_certificate {
        if !verifies_client_certificates {
            tracing::warn!(
                principal = %principal.name,
                "this principal is named by a client certificate, but without --tls-client-ca no client presents one: only its token, if any, can name it"
            );
        }
    }
    if args.heartbeat.is_zero() || args.worker_timeout <= args.heartbeat {
        return Err(usage(
            "--worker-timeout must be longer than --heartbeat, which must be positive",
        ));
    }
    if args.drain_target.is_zero() {
        return Err(usage("--drain-target must be positive"));
    }
    if !(0.05..=1.0).contains(&args.target_utilisation) {
        return Err(usage("--target-utilisation must be between 0.05 and 1"));
    }
    let high_availability = args.high_availability.settings(args.listen, scheme)?;
    let registry_store = args.registry_store.clone().unwrap_or_else(|| {
        args.data_dir
            .join(essaim_coordinator::REGISTRY_DIR)
            .display()
            .to_string()
    });
    let registry =
        essaim_registry::RegistryPlace::decide(&registry_store, args.registry_artifacts.as_deref())
            .map_err(|error| usage(format!("--registry-store: {error}")))?;
    let mut config = CoordinatorConfig::new(args.listen, args.data_dir);
    config.registry = Some(registry);
    config.queue_targets = essaim_coordinator::queue::QueueTargets {
        drain_target_s: args.drain_target.as_secs_f64(),
        utilisation: args.target_utilisation,
    };
    config.token = credentials.token;
    config.principals = credentials.principals;
    config.principals_file = credentials.principals_file;
    config.planner = Some(crate::jobs::planner());
    config.tls = tls;
    if let Some(reserve) = args.journal_reserve_bytes {
        config.journal_reserve_bytes = reserve;
    }
    config.heartbeat_interval = args.heartbeat;
    config.worker_timeout = args.worker_timeout;
    config.long_poll = args.long_poll;
    config.speculation_min_runtime = args.speculation_min_runtime;
    config.retention = args.retention;
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
        "essaim coordinator: API {scheme}://{0} (gRPC, REST under /api/v1), dashboard {scheme}://{0}/ui/, metrics {scheme}://{0}/metrics, health /healthz /readyz",
        coordinator.address
    );
    coordinator.wait().await?;
    Ok(ExitCode::SUCCESS)
}
