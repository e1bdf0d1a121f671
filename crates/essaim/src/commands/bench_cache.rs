//! `essaim bench cache`: the load driver of `bench/cache.sh`, a cache-aside client.
//!
//! Each of `--concurrency` loops draws a key from a Zipf law over `--keys` keys (rank
//! r with weight 1/r^s; s = 0 is uniform), sends `GET` to one of `--targets` drawn at
//! random (several targets without a proxy are seed 000's unsharded caches behind a
//! load balancer; one proxy is the sharded cache), and on a miss writes the value back
//! as a front end would after asking the backend. The first `--warmup` requests fill
//! the caches; the next `--requests` are measured. `--protocol memcached` speaks
//! memcached's text protocol instead of HTTP, for the baseline.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use essaim_cache_runtime::client::NodeClient;
use essaim_core::rng::SeededRng;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Options of `essaim bench cache`.
#[derive(clap::Args, Debug)]
pub struct CacheLoadArgs {
    /// Where requests go, comma-separated `host:port`; one drawn per request.
    #[arg(long, value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// `http` (an essaim node or proxy) or `memcached`.
    #[arg(long, default_value = "http")]
    protocol: String,
    /// Distinct keys (the backend's data).
    #[arg(long, default_value_t = 20_000)]
    keys: u64,
    /// Bytes of each value.
    #[arg(long, default_value_t = 1000)]
    value_bytes: usize,
    /// Zipf exponent s (0: uniform).
    #[arg(long, default_value_t = 0.99)]
    zipf: f64,
    /// Requests before measuring.
    #[arg(long, default_value_t = 50_000)]
    warmup: u64,
    /// Requests measured.
    #[arg(long, default_value_t = 50_000)]
    requests: u64,
    /// Concurrent client loops.
    #[arg(long, default_value_t = 8)]
    concurrency: u64,
    /// Seed of the key draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The cumulative weights of a Zipf law over `keys` ranks.
fn zipf_cdf(keys: u64, exponent: f64) -> Vec<f64> {
    let mut total = 0.0;
    let mut cdf: Vec<f64> = (1..=keys)
        .map(|rank| {
            total += 1.0 / (rank as f64).powf(exponent);
            total
        })
        .collect();
    for weight in &mut cdf {
        *weight /= total;
    }
    cdf
}

/// A connection per target for memcached (its text protocol answers in order).
struct Memcached {
    streams: Vec<BufReader<TcpStream>>,
}

impl Memcached {
    async fn connect(targets: &[String]) -> anyhow::Result<Self> {
        let mut streams = Vec::new();
        for target in targets {
            let stream = TcpStream::connect(target).await?;
            stream.set_nodelay(true)?;
            streams.push(BufReader::new(stream));
        }
        Ok(Self { streams })
    }

    async fn get(&mut self, target: usize, key: &str) -> anyhow::Result<bool> {
        let stream = &mut self.streams[target];
        stream
            .get_mut()
            .write_all(format!("get {key}\r\n").as_bytes())
            .await?;
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        if line.starts_with("END") {
            return Ok(false);
        }
        let length: usize = line
            .split_whitespace()
            .nth(3)
            .and_then(|field| field.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("memcached answered `{line}`"))?;
        let mut value = vec![0; length + 2 + 5]; // the value, CRLF, END CRLF
        stream.read_exact(&mut value).await?;
        Ok(true)
    }

    async fn set(&mut self, target: usize, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let stream = &mut self.streams[target];
        let mut request = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        stream.get_mut().write_all(&request).await?;
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        anyhow::ensure!(line.starts_with("STORED"), "memcached answered `{line}`");
        Ok(())
    }
}

/// Counters shared by the loops.
#[derive(Default)]
struct Counts {
    issued: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Runs the load and prints METRIC lines.
pub async fn run(args: CacheLoadArgs) -> anyhow::Result<std::process::ExitCode> {
    let cdf = Arc::new(zipf_cdf(args.keys.max(1), args.zipf));
    let args = Arc::new(args);
    let counts = Arc::new(Counts::default());
    let started = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut loops = tokio::task::JoinSet::new();
    for index in 0..args.concurrency {
        let (args, cdf, counts, started) =
            (args.clone(), cdf.clone(), counts.clone(), started.clone());
        loops.spawn(async move { client_loop(index, &args, &cdf, &counts, &started).await });
    }
    let mut latencies: Vec<f64> = Vec::new();
    while let Some(joined) = loops.join_next().await {
        latencies.extend(joined??);
    }
    let seconds = started
        .lock()
        .expect("no loop panics holding it")
        .map_or(0.0, |at| at.elapsed().as_secs_f64());
    let hits = counts.hits.load(Ordering::Relaxed);
    let misses = counts.misses.load(Ordering::Relaxed);
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    crate::outln!("METRIC requests={}", hits + misses);
    crate::outln!(
        "METRIC hit_rate={:.4}",
        hits as f64 / (hits + misses).max(1) as f64
    );
    crate::outln!("METRIC gets_per_s={:.0}", (hits + misses) as f64 / seconds);
    crate::outln!("METRIC hits_per_s={:.0}", hits as f64 / seconds);
    if !latencies.is_empty() {
        crate::outln!("METRIC get_p50_us={:.0}", quantile(0.5));
        crate::outln!("METRIC get_p99_us={:.0}", quantile(0.99));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// One client loop; returns the latencies of its measured GETs in microseconds.
async fn client_loop(
    index: u64,
    args: &CacheLoadArgs,
    cdf: &[f64],
    counts: &Counts,
    started: &std::sync::Mutex<Option<Instant>>,
) -> anyhow::Result<Vec<f64>> {
    let mut rng = SeededRng::new(args.seed.wrapping_mul(1_000_003) + index);
    let http = NodeClient::new(Duration::from_secs(5));
    let mut memcached = match args.protocol.as_str() {
        "memcached" => Some(Memcached::connect(&args.targets).await?),
        "http" => None,
        other => anyhow::bail!("--protocol {other}: http or memcached"),
    };
    let value = Bytes::from(vec![b'v'; args.value_bytes]);
    let mut latencies = Vec::new();
    loop {
        let issued = counts.issued.fetch_add(1, Ordering::Relaxed);
        if issued >= args.warmup + args.requests {
            return Ok(latencies);
        }
        let measured = issued >= args.warmup;
        if issued == args.warmup {
            *started.lock().expect("no loop panics holding it") = Some(Instant::now());
        }
        let draw = rng.unit();
        let key = format!("k{}", cdf.partition_point(|weight| *weight < draw));
        let target = rng.below(args.targets.len() as u64) as usize;
        let timer = Instant::now();
        let hit = match &mut memcached {
            Some(memcached) => memcached.get(target, &key).await?,
            None => http.get(&args.targets[target], &key).await?.is_some(),
        };
        if measured {
            latencies.push(timer.elapsed().as_secs_f64() * 1e6);
            let counter = if hit { &counts.hits } else { &counts.misses };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if !hit {
            match &mut memcached {
                Some(memcached) => memcached.set(target, &key, &value).await?,
                None => {
                    let target = &args.targets[target];
                    http.put(target, &key, value.clone(), 0, None, None).await?;
                }
            }
        }
    }
}
