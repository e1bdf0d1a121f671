//! `essaim index serve`: an index built by the `index` job, served interactively.
//!
//! The command cuts the index into N shards once (`_serve/shards-N/` in the index
//! directory, each file checksummed), checks every shard's checksum, starts the query
//! root on `--listen`, and submits one job `serve:<dir>` of N × R `serve.leaf` tasks.
//! The coordinator places and supervises the leaves like any long-running task (a
//! dead worker's leaves run again elsewhere and reload their shard); the leaves
//! register with the root, which answers `GET /query?q=…` (and `essaim query`). Ctrl-C
//! or SIGTERM cancels the job and stops the root; a job that ends on its own (a leaf
//! that cannot load its shard, say) stops the command with the job's reason.
//!
//! With `--cache HOST:PORT` (an `essaim cache proxy`), the root keeps complete answers
//! there, keyed by the shard set's identity (its manifest's hashes) and the normalised
//! query, so a re-served or re-cut index never answers from an older entry.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use essaim_proto::v1;
use essaim_serve::answer_key::IndexIdentity;
use essaim_serve::balance::BalanceRule;
use essaim_serve::hedge::HedgePolicy;
use essaim_serve::shard::Manifest;
use essaim_serve::shard::{MAX_SHARDS, prepare_shards, verify_shards};
use essaim_serve_runtime::LEAF_TASK_KIND;
use essaim_serve_runtime::root::cache::{DEFAULT_CACHE_LOOKUP_TIMEOUT, DEFAULT_CACHE_TTL};
use essaim_serve_runtime::root::{DEFAULT_DEADLINE, QueryCacheConfig, Root, RootConfig};
use essaim_serve_runtime::wire::{InjectedLatency, LeafSpec};
use tokio_util::sync::CancellationToken;

use crate::client::{ConnectArgs, usage};

/// `essaim index …`.
#[derive(Args, Debug)]
pub struct IndexArgs {
    #[command(subcommand)]
    command: IndexCommand,
}

#[derive(Subcommand, Debug)]
enum IndexCommand {
    /// Serves an index job's output: N shards in memory on R workers each, and a query
    /// root in front of them, until Ctrl-C.
    Serve(ServeArgs),
}

/// `essaim index serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The output directory of an `index` job (readable from every worker).
    #[arg(long)]
    index: PathBuf,
    /// Shards: the index's documents are cut into this many parts.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Replicas of each shard, on different workers.
    #[arg(long, default_value_t = 2)]
    replicas: u32,
    /// Address of the query root (`GET /query?q=…`).
    #[arg(long, default_value = "127.0.0.1:7480")]
    listen: SocketAddr,
    /// The root's URL as the workers reach it (default: http://LISTEN, or https://LISTEN
    /// with --tls-cert).
    #[arg(long)]
    advertise_url: Option<String>,
    /// How a shard's replica is chosen: least-outstanding, round-robin or key-affinity
    /// (by the query's `key`).
    #[arg(long, default_value = "least-outstanding")]
    balance: BalanceRule,
    /// Never hedge.
    #[arg(long)]
    no_hedge: bool,
    /// Most hedged requests, as a share of leaf requests.
    #[arg(long, default_value_t = essaim_serve::hedge::DEFAULT_BUDGET_SHARE)]
    hedge_budget: f64,
    /// Deadline of a query that names none (bare number: milliseconds).
    #[arg(
        long,
        alias = "deadline-ms",
        value_parser = crate::durations::millis,
        default_value = humantime::format_duration(DEFAULT_DEADLINE).to_string()
    )]
    deadline: Duration,
    /// The index was built with `-D lowercase=false`: queries keep their case.
    #[arg(long)]
    case_sensitive: bool,
    /// A cache proxy (`essaim cache proxy`, HOST:PORT) where complete answers are kept
    /// and reused; none by default.
    #[arg(long, value_name = "HOST:PORT")]
    cache: Option<String>,
    /// How long an answer stays in the cache (bare number: seconds).
    #[arg(
        long,
        value_parser = crate::durations::seconds,
        default_value = humantime::format_duration(DEFAULT_CACHE_TTL).to_string()
    )]
    cache_ttl: Duration,
    /// Longest wait for the cache before a query goes on to the shards (bare number:
    /// milliseconds).
    #[arg(
        long,
        value_parser = crate::durations::millis,
        default_value = humantime::format_duration(DEFAULT_CACHE_LOOKUP_TIMEOUT).to_string()
    )]
    cache_timeout: Duration,
    #[command(flatten)]
    bench: BenchLatencyArgs,
    /// The root's certificate: queries and the leaves' registrations then use
    /// `https://` (the leaves' calls trust the workers' --tls-ca).
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
    /// The coordinator, and the trust the root verifies `https://` leaves with
    /// (--tls-ca, and --tls-client-cert/--tls-client-key for leaves requiring one).
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Benchmarks only (`bench/serve_tail.sh`): latency injected into every leaf.
#[derive(Args, Debug)]
struct BenchLatencyArgs {
    /// Bench only: every search waits this many microseconds.
    #[arg(long, hide = true)]
    bench_base_us: Option<u64>,
    /// Bench only: a slow search waits this many microseconds instead.
    #[arg(long, hide = true, default_value_t = 0)]
    bench_slow_us: u64,
    /// Bench only: the chance that a search is slow.
    #[arg(long, hide = true, default_value_t = 0.0)]
    bench_slow_probability: f64,
    /// Bench only: seeds the leaves' draws.
    #[arg(long, hide = true, default_value_t = 1)]
    bench_seed: u64,
}

/// Runs `essaim index …`.
pub async fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        IndexCommand::Serve(args) => serve(args).await,
    }
}

fn check(args: &ServeArgs) -> anyhow::Result<()> {
    if args.shards == 0 || args.shards > MAX_SHARDS {
        return Err(usage(format!("--shards must be 1 to {MAX_SHARDS}")));
    }
    if args.replicas == 0 || args.replicas > 16 {
        return Err(usage("--replicas must be 1 to 16"));
    }
    if !(0.0..=1.0).contains(&args.hedge_budget) {
        return Err(usage("--hedge-budget must be between 0 and 1"));
    }
    if args.deadline < Duration::from_millis(1) {
        return Err(usage("--deadline must be at least 1ms"));
    }
    if args.cache_ttl < Duration::from_secs(1) {
        return Err(usage("--cache-ttl must be at least 1s"));
    }
    if args.cache_timeout < Duration::from_millis(1) || args.cache_timeout > args.deadline {
        return Err(usage(
            "--cache-timeout must be at least 1ms and at most --deadline",
        ));
    }
    if let Some(cache) = &args.cache {
        cache_address(cache)?;
    }
    let probability = args.bench.bench_slow_probability;
    if !(0.0..=1.0).contains(&probability) {
        return Err(usage("--bench-slow-probability must be between 0 and 1"));
    }
    Ok(())
}

/// Returns the cache proxy's `host:port` from `--cache` (an `http://` prefix allowed).
fn cache_address(text: &str) -> anyhow::Result<String> {
    let address = text
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').unwrap_or_default();
    let plain_host = !host.is_empty() && !host.contains('/');
    match port.parse::<u16>() {
        Ok(port) if port > 0 && plain_host => Ok(address.to_owned()),
        _ => Err(usage(format!(
            "--cache `{text}`: give the cache proxy as HOST:PORT (plain HTTP)"
        ))),
    }
}

/// Cuts the index into shards (once) and checks every shard's checksum; returns the
/// shard set's manifest.
async fn prepare(index_dir: PathBuf, shards: u32) -> anyhow::Result<Manifest> {
    tokio::task::spawn_blocking(move || {
        let manifest = prepare_shards(&index_dir, shards)?;
        verify_shards(&index_dir, &manifest)?;
        let documents: u64 = manifest.entries.iter().map(|entry| entry.documents).sum();
        eprintln!(
            "index `{}`: {documents} documents in {shards} shards",
            index_dir.display()
        );
        Ok::<_, essaim_serve::shard::ShardError>(manifest)
    })
    .await?
    .map_err(|error| usage(essaim_core::error_chain::error_chain(&error)))
}

fn build_job(
    args: &ServeArgs,
    index_dir: &std::path::Path,
    root_url: &str,
) -> anyhow::Result<v1::JobSpec> {
    let name = index_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".to_owned());
    let injected = args.bench.bench_base_us.map(|base_us| InjectedLatency {
        base_us,
        slow_us: args.bench.bench_slow_us,
        slow_probability: args.bench.bench_slow_probability,
        seed: args.bench.bench_seed,
    });
    let mut job = v1::JobSpec {
        name: format!("serve:{name}"),
        // A leaf that fails (a lost worker, a root out of reach) is placed again for a
        // long while; a corrupt shard fails permanently at once.
        max_attempts: 100,
        speculation_multiplier: -1.0,
        retry_backoff_base_ms: 200,
        retry_backoff_max_ms: 2_000,
        ..Default::default()
    };
    // Replica-major order: a worker that pulls several tasks at once gets different
    // shards before it gets a second replica of one.
    for replica in 0..args.replicas {
        for shard in 0..args.shards {
            let spec = LeafSpec {
                index_dir: index_dir.to_path_buf(),
                shards: args.shards,
                shard,
                replica,
                root_url: root_url.to_owned(),
                lowercase: !args.case_sensitive,
                injected_latency: injected,
            };
            job.tasks.push(v1::TaskSpec {
                kind: LEAF_TASK_KIND.to_owned(),
                payload: serde_json::to_vec(&spec)?,
                // A shard's replicas go to different workers: the coordinator places
                // them so, and keeps one waiting while no other worker is free of them.
                anti_affinity_group: format!("shard-{shard}"),
                ..Default::default()
            });
        }
    }
    Ok(job)
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    check(&args)?;
    let index_dir = std::path::absolute(&args.index)
        .map_err(|error| usage(format!("--index `{}`: {error}", args.index.display())))?;
    // Certificates first: a bad file is a usage error before anything starts.
    let tls = args.tls.load()?;
    let trust = args.connect.trust.load()?;
    let manifest = prepare(index_dir.clone(), args.shards).await?;
    let cache = match &args.cache {
        None => None,
        Some(cache) => Some(QueryCacheConfig {
            proxy: cache_address(cache)?,
            index: IndexIdentity::of_manifest(&manifest),
            ttl: args.cache_ttl,
            lookup_timeout: args.cache_timeout,
        }),
    };
    if let Some(cache) = &cache {
        eprintln!(
            "answers cached at {} for {} (index identity {})",
            cache.proxy,
            humantime::format_duration(cache.ttl),
            &cache.index.as_str()[..12]
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| usage(format!("cannot listen on {}: {error}", args.listen)))?;
    let local = listener.local_addr()?;
    let root_url = args
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("{}://{local}", essaim_tls::url_scheme(tls.as_ref())));
    let root = Root::new(RootConfig {
        shards: args.shards,
        replicas: args.replicas,
        balance: args.balance,
        hedge: HedgePolicy {
            enabled: !args.no_hedge,
            budget_share: args.hedge_budget,
            ..HedgePolicy::default()
        },
        default_deadline: args.deadline,
        limits: Default::default(),
        lowercase: !args.case_sensitive,
        trust,
        cache,
    });
    let stop = CancellationToken::new();
    let server = tokio::spawn(essaim_serve_runtime::root::http::serve(
        root,
        listener,
        tls,
        stop.clone(),
    ));
    let coordinator = args.connect.coordinator()?;
    let job = build_job(&args, &index_dir, &root_url)?;
    let job_id = coordinator.submit_job(job).await?;
    eprintln!(
        "serving `{}`: {} shards × {} replicas as job {job_id}; query root at {root_url}",
        index_dir.display(),
        args.shards,
        args.replicas
    );
    let ended = tokio::select! {
        () = super::shutdown_signal() => None,
        ended = super::serving_job_ended(&coordinator, job_id) => Some(ended?),
    };
    stop.cancel();
    let _ = server.await;
    match ended {
        None => {
            super::cancel_serving_job(&coordinator, job_id).await?;
            eprintln!("stopped: job {job_id} cancelled");
            Ok(ExitCode::SUCCESS)
        }
        Some(job) => anyhow::bail!(
            "the serving job {job_id} ended ({}): {}",
            job.state,
            job.reason
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_a_host_and_port() {
        for (given, address) in [
            ("127.0.0.1:7700", "127.0.0.1:7700"),
            ("http://cache.local:7700/", "cache.local:7700"),
            ("[::1]:7700", "[::1]:7700"),
        ] {
            assert_eq!(cache_address(given).unwrap(), address);
        }
        for bad in [
            "cache.local",
            "https://cache.local:7700",
            "host:0",
            "host:port",
            "",
        ] {
            assert!(cache_address(bad).is_err(), "{bad}");
        }
    }
}
