//! `essaim cache node` and `essaim cache proxy`: the sharded, replicated cache.
//!
//! A node holds values in bounded memory; the proxy routes each key to the nodes holding
//! its shard, replicates, fails over and gives hot shards extra replicas (see the crate
//! `essaim-cache-runtime`). Both serve `GET`/`PUT`/`DELETE /v1/cache/{key}`,
//! `/metrics`, `/healthz` and `/readyz` until Ctrl-C or SIGTERM.
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use essaim_cache::hot::HotPolicy;
use essaim_cache::placement::DEFAULT_SHARDS;
use essaim_cache_runtime::node::{self, NodeConfig};
use essaim_cache_runtime::proxy::{Proxy, ProxyConfig};
use essaim_cache_runtime::wire::DEFAULT_MAX_VALUE_BYTES;

use crate::client::usage;

/// `essaim cache …`.
#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// A cache node: values in memory, bounded in bytes, LRU, with TTLs.
    Node(NodeArgs),
    /// The cache proxy: routes keys to the nodes holding their shard, R replicas each,
    /// with failover and hot-shard replication.
    Proxy(ProxyArgs),
}

/// `essaim cache node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7600")]
    listen: SocketAddr,
    /// Most bytes held (keys, values and 64 bytes of bookkeeping per entry); the least
    /// recently used entries are evicted beyond.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    max_bytes: u64,
    /// Largest value accepted; larger ones get 413.
    #[arg(long, default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    max_value_bytes: usize,
    /// The certificate the node serves TLS with.
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
}

/// `essaim cache proxy`.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// The cache nodes, as comma-separated `host:port`.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// Nodes holding each shard (at least 2 survives a node's loss).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Shards the keys are cut into.
    #[arg(long, default_value_t = DEFAULT_SHARDS)]
    shards: u32,
    /// Largest value accepted; larger ones get 413.
    #[arg(long, default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    max_value_bytes: usize,
    /// Longest a call to a node may take before the proxy fails over (e.g. 500ms).
    #[arg(long, default_value = "1s", value_parser = crate::durations::millis)]
    node_timeout: Duration,
    /// A shard is hot when its rate per holder exceeds this many times the median.
    #[arg(long, default_value_t = 4.0)]
    hot_factor: f64,
    /// Requests per second under which no shard is hot.
    #[arg(long, default_value_t = 20.0)]
    hot_min_rate: f64,
    /// Most extra replicas of a hot shard.
    #[arg(long, default_value_t = 2)]
    hot_max_extra: usize,
    /// Least time an extra replica is kept (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = crate::durations::seconds)]
    hot_hold: Duration,
    /// How often the hot-shard policy runs.
    #[arg(long, default_value = "1s", value_parser = crate::durations::seconds)]
    hot_interval: Duration,
    /// The span over which request rates are measured.
    #[arg(long, default_value = "5s", value_parser = crate::durations::seconds)]
    rate_window: Duration,
    /// The certificate the proxy serves TLS with; a proxy serving TLS reaches its
    /// nodes over TLS too (`https://`), verified with --tls-ca.
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
    /// The CA the nodes' certificates are verified with (and the certificate presented
    /// to nodes requiring one).
    #[command(flatten)]
    trust: crate::tls_args::TrustArgs,
}

/// Runs a node or a proxy until Ctrl-C or SIGTERM.
pub async fn run(args: CacheArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CacheCommand::Node(args) => run_node(args).await,
        CacheCommand::Proxy(args) => run_proxy(args).await,
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    if args.max_value_bytes as u64 > args.max_bytes {
        return Err(usage("--max-value-bytes is larger than --max-bytes"));
    }
    let router = node::router(NodeConfig {
        max_bytes: args.max_bytes,
        max_value_bytes: args.max_value_bytes,
    });
    let tls = args.tls.load()?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "cache node on {}://{}/v1/cache/{{key}}",
        essaim_tls::url_scheme(tls.as_ref()),
        listener.local_addr()?
    );
    essaim_tls::serve(listener, tls.as_ref(), router, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Checks a node address: `host:port`, no scheme, no path.
fn check_node(node: &str) -> anyhow::Result<String> {
    let node = node.trim();
    let authority: Option<http::uri::Authority> = node.parse().ok();
    match authority {
        Some(authority) if authority.port_u16().is_some() && !authority.host().is_empty() => {
            Ok(node.to_owned())
        }
        _ => Err(usage(format!(
            "--nodes: `{node}` is not a node address (host:port, e.g. 127.0.0.1:7600)"
        ))),
    }
}

async fn run_proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let nodes = args
        .nodes
        .iter()
        .map(|node| check_node(node))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.hot_factor.is_nan() || args.hot_factor <= 1.0 {
        return Err(usage("--hot-factor must be above 1"));
    }
    let tls = args.tls.load()?;
    let trust = args.trust.load()?;
    let config = ProxyConfig {
        nodes,
        replicas: args.replicas,
        shards: args.shards,
        max_value_bytes: args.max_value_bytes,
        node_timeout: args.node_timeout,
        hot: HotPolicy {
            hot_factor: args.hot_factor,
            min_rate: args.hot_min_rate,
            max_extra: args.hot_max_extra,
            hold_ms: args.hot_hold.as_millis() as u64,
            ..HotPolicy::default()
        },
        hot_interval: args.hot_interval.max(Duration::from_millis(10)),
        rate_window: args.rate_window.max(Duration::from_millis(100)),
        node_tls: tls.is_some().then_some(trust),
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let mut proxy = Proxy::start(config)
        .await
        .map_err(|error| usage(format!("--nodes/--replicas/--shards: {error}")))?;
    eprintln!(
        "cache proxy on {}://{}/v1/cache/{{key}}",
        essaim_tls::url_scheme(tls.as_ref()),
        listener.local_addr()?
    );
    let shutdown = super::shutdown_signal();
    let served = essaim_tls::serve(listener, tls.as_ref(), proxy.router(), shutdown).await;
    proxy.shutdown().await;
    served?;
    Ok(ExitCode::SUCCESS)
}
