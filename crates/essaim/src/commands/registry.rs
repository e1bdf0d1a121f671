//! `essaim registry`: the model registry as a process of its own, without a
//! coordinator — one per project or per team, or several sharing one PostgreSQL
//! database. It serves the same `/registry/v1` API (models, versions, aliases, the
//! audit log, artifacts, usage and governance) as a coordinator does beside its own, so
//! every `essaim models` verb and `essaim serve` reach it
//! with `--coordinator URL`. Callers are checked as by the coordinator: the same
//! flags, the same authenticator and role table (reads `read-only`, changes `submit`,
//! runners' heartbeats `worker`).

use super::server_auth::ServerAuthArgs;
use crate::client::usage;
use essaim_registry::RegistryPlace;
use essaim_telemetry::Health;
use essaim_telemetry::prometheus_client::registry::Registry as Metrics;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Options of `essaim registry`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address of the registry's HTTP API (/registry/v1) and of /healthz, /readyz and
    /// /metrics.
    #[arg(long, default_value = "127.0.0.1:7072")]
    listen: SocketAddr,
    /// Where models, versions, aliases and the audit log are kept: a directory (the
    /// embedded store, nothing to install) or a PostgreSQL URL
    /// (`postgres://user@host/db`, `sslmode`/`sslrootcert` for TLS), which several
    /// registry processes, and coordinators, can share. Masked when shown: a URL may
    /// hold a password.
    #[arg(
        long,
        value_name = "DIR|URL",
        default_value = "essaim-registry",
        hide_env_values = true
    )]
    store: String,
    /// Where the artifacts are: a directory, or `s3://bucket/prefix` in an
    /// S3-compatible store (credentials and `AWS_ENDPOINT`, `AWS_REGION`,
    /// `AWS_ALLOW_HTTP` from the environment). Default: `<--store>/artifacts` for a
    /// directory; required with a PostgreSQL store (the same directory, on a shared file
    /// system, or the same bucket, for every process sharing the database).
    #[arg(long, value_name = "DIR|URL")]
    artifacts: Option<String>,
    /// Largest artifact accepted, in bytes (default 4294967296, 4 GiB).
    #[arg(long)]
    max_artifact_bytes: Option<u64>,
    #[command(flatten)]
    auth: ServerAuthArgs,
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
}

/// Runs the registry until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let credentials = args.auth.resolve(args.listen)?;
    let tls = args.tls.load()?;
    let place = RegistryPlace::decide(&args.store, args.artifacts.as_deref())
        .map_err(|error| usage(format!("--store: {error}")))?;
    let max_artifact_bytes = args
        .max_artifact_bytes
        .unwrap_or(essaim_registry::DEFAULT_MAX_ARTIFACT_BYTES);
    let registry = Arc::new(place.open(max_artifact_bytes).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| anyhow::anyhow!("failed to listen on {}: {error}", args.listen))?;
    let address = listener.local_addr()?;

    let shutdown = CancellationToken::new();
    let mut metrics = Metrics::default();
    let (authenticator, principals_watch) =
        credentials.rest_authenticator(&mut metrics, shutdown.child_token());
    let health = Health::new();
    let api = essaim_coordinator::rest::with_auth(
        essaim_registry::http::router(Arc::clone(&registry)),
        authenticator,
    );
    let router = essaim_telemetry::trace_context::trace_requests(
        api.merge(essaim_telemetry::router(metrics, health.clone())),
    );
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        signal.cancel();
    });
    health.set_ready();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        address = %address,
        store = registry.store.backend(),
        location = %place.store.describe(),
        artifacts = %place.artifacts,
        "registry serving"
    );
    eprintln!(
        "essaim registry: API {scheme}://{address}/registry/v1, store {} ({}), artifacts {}, metrics {scheme}://{address}/metrics",
        place.store.describe(),
        registry.store.backend(),
        place.artifacts
    );
    essaim_tls::serve(
        listener,
        tls.as_ref(),
        router,
        shutdown.clone().cancelled_owned(),
    )
    .await?;
    shutdown.cancel();
    if let Some(watch) = principals_watch {
        watch.await?;
    }
    Ok(ExitCode::SUCCESS)
}
