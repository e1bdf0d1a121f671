//! Hot shards: four cache nodes behind a proxy (R = 2). One key suddenly takes 80% of
//! the reads; within seconds the proxy gives its shard extra replicas (visible on
//! `/v1/cache-admin/shards` and in its metrics), the busiest node's share of the reads
//! falls, the extras stay while the heat lasts, and they are dropped once it passes.
//! No read returns a value other than the one written.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use essaim_cache_runtime::client::NodeClient;
use essaim_core::rng::SeededRng;
use tokio_util::sync::CancellationToken;

use crate::cache::{CacheCluster, load, value_of};
use crate::harness::{Deadline, EVENTUALLY};

const KEYS: u32 = 500;
const HOT_KEY: &str = "key-7";

/// Wrong answers and failed requests of the readers.
#[derive(Default)]
struct Faults {
    wrong: AtomicU64,
    errors: AtomicU64,
    reads: AtomicU64,
}

/// Reads through the proxy until stopped: the hot key 4 times in 5 while `hot` is set,
/// otherwise keys drawn uniformly; a miss is refilled.
fn spawn_reader(
    proxy: String,
    hot: Arc<AtomicBool>,
    faults: Arc<Faults>,
    stop: CancellationToken,
    seed: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = NodeClient::new(Duration::from_secs(5));
        let mut rng = SeededRng::new(seed);
        while !stop.is_cancelled() {
            let key = if hot.load(Ordering::Relaxed) && rng.chance(4, 5) {
                HOT_KEY.to_string()
            } else {
                format!("key-{}", rng.below(u64::from(KEYS)))
            };
            let expected = value_of(&key, 1);
            faults.reads.fetch_add(1, Ordering::Relaxed);
            match client.get(&proxy, &key).await {
                Ok(Some(found)) if found.value == expected => {}
                Ok(Some(_)) => {
                    faults.wrong.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => {
                    let _refilled = client.put(&proxy, &key, expected, 0, None, None).await;
                }
                Err(_) => {
                    faults.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}

/// Returns the reads each node has received from the proxy so far.
fn node_reads(cache: &CacheCluster) -> BTreeMap<String, f64> {
    cache
        .nodes
        .iter()
        .map(|(node, _)| {
            let labels = format!("node=\"{node}\",op=\"get\"");
            let reads = cache.metric("essaim_cache_proxy_node_requests_total", &labels);
            (node.clone(), reads)
        })
        .collect()
}

/// Returns the largest share of the reads between two snapshots that one node took.
fn busiest_share(from: &BTreeMap<String, f64>, to: &BTreeMap<String, f64>) -> f64 {
    let deltas: Vec<f64> = to.iter().map(|(node, reads)| reads - from[node]).collect();
    let total: f64 = deltas.iter().sum();
    deltas
        .iter()
        .fold(0.0, |max, delta| f64::max(max, delta / total))
}

/// Waits until `reads` more reads are done.
async fn reads_pass(faults: &Faults, reads: u64) {
    let target = faults.reads.load(Ordering::Relaxed) + reads;
    let deadline = Deadline::after(EVENTUALLY, format!("{reads} reads"));
    while faults.reads.load(Ordering::Relaxed) < target {
        deadline.tick().await;
    }
}

/// Returns the shards holding extra replicas, with their extras.
fn extras(cache: &CacheCluster) -> BTreeMap<u32, Vec<String>> {
    cache
        .status()
        .shards
        .into_iter()
        .filter(|shard| !shard.extra.is_empty())
        .map(|shard| (shard.shard, shard.extra))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_gets_extra_replicas_within_seconds_and_loses_them_when_it_cools() {
    let _one = crate::harness::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = CacheCluster::start(
        dir.path(),
        4,
        64 << 20,
        &[
            "--replicas",
            "2",
            "--hot-interval",
            "250ms",
            "--rate-window",
            "2s",
            "--hot-hold",
            "2s",
            "--hot-max-extra",
            "2",
        ],
    )
    .await;
    let proxy = cache.proxy_address.clone();
    load(&proxy, KEYS, 1).await;
    let hot = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Faults::default());
    let stop = CancellationToken::new();
    let readers: Vec<_> = (0..4)
        .map(|seed| {
            spawn_reader(
                proxy.clone(),
                hot.clone(),
                faults.clone(),
                stop.clone(),
                seed,
            )
        })
        .collect();
    reads_pass(&faults, 1_000).await;
    assert!(
        extras(&cache).is_empty(),
        "uniform traffic has no hot shard"
    );

    let before = node_reads(&cache);
    hot.store(true, Ordering::Relaxed);
    let heated = Instant::now();
    let deadline = Deadline::after(Duration::from_secs(15), "an extra replica of the hot shard");
    while extras(&cache).is_empty() {
        deadline.tick().await;
    }
    let first_extra_after = heated.elapsed();
    let at_first_extra = node_reads(&cache);
    let deadline = Deadline::after(Duration::from_secs(15), "two extra replicas");
    let hot_shard = loop {
        let extras = extras(&cache);
        if let Some((shard, _)) = extras.iter().find(|(_, nodes)| nodes.len() == 2) {
            break *shard;
        }
        deadline.tick().await;
    };
    let status = cache.status();
    let hottest = status
        .shards
        .iter()
        .max_by(|a, b| a.rate.total_cmp(&b.rate))
        .unwrap();
    assert_eq!(hottest.shard, hot_shard, "the extras went to the hot shard");
    assert_eq!(hottest.holders.len(), 4, "{hottest:?}");
    assert_eq!(extras(&cache).len(), 1, "only the hot shard has extras");

    let dropped = cache.metric("essaim_cache_proxy_hot_replicas_dropped_total", "");
    let spread_from = node_reads(&cache);
    reads_pass(&faults, 3_000).await;
    let spread_to = node_reads(&cache);
    let share_before = busiest_share(&before, &at_first_extra);
    let share_after = busiest_share(&spread_from, &spread_to);
    eprintln!(
        "first extra after {first_extra_after:?}; busiest node's share of reads \
         {share_before:.2} before, {share_after:.2} with the extras"
    );
    assert!(
        share_after < share_before - 0.08,
        "the busiest node's load falls: {share_before:.2} -> {share_after:.2}"
    );
    assert_eq!(
        cache.metric("essaim_cache_proxy_hot_replicas_dropped_total", ""),
        dropped,
        "no extra dropped while the heat lasts"
    );
    assert!(cache.metric("essaim_cache_proxy_hot_replicas_added_total", "") >= 2.0);

    hot.store(false, Ordering::Relaxed);
    let deadline = Deadline::after(EVENTUALLY, "the extras to be dropped once cooled");
    while !extras(&cache).is_empty() {
        deadline.tick().await;
    }
    assert!(cache.metric("essaim_cache_proxy_hot_replicas_dropped_total", "") >= 2.0);
    assert_eq!(cache.metric("essaim_cache_proxy_hot_replicas", ""), 0.0);
    stop.cancel();
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(faults.wrong.load(Ordering::Relaxed), 0, "no wrong answer");
    assert_eq!(
        faults.errors.load(Ordering::Relaxed),
        0,
        "the proxy kept answering"
    );
}
