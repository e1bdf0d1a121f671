//! The sharded, replicated cache: three `essaim cache node` processes behind an
//! `essaim cache proxy` with two replicas per shard. Under a steady read load with
//! cache-aside refills, a node is SIGKILLed: every hit still returns the value written,
//! the hit rate dips by at most about 1/N (not at all with R = 2; about the lost
//! node's share with R = 1) and recovers, and the proxy keeps answering;
//! a node frozen (SIGSTOP) while every key is overwritten comes back without ever
//! serving an old value. Bad input: a value over the limit (413), an empty key, a bad
//! TTL, unknown or malformed nodes.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use essaim_cache_runtime::client::NodeClient;
use essaim_cache_runtime::wire::ShardsStatus;
use essaim_core::rng::SeededRng;
use essaim_testkit::process::http_status;
use tokio_util::sync::CancellationToken;

use crate::harness::{
    Deadline, EVENTUALLY, Process, assert_refused, essaim, free_port, spawn_essaim,
};

/// Cache nodes and their proxy, as child processes; their logs are printed on failure.
pub struct CacheCluster {
    pub nodes: Vec<(String, Process)>,
    pub proxy: Option<Process>,
    pub proxy_address: String,
}

impl CacheCluster {
    /// Starts `count` nodes of `max_bytes` each and a proxy over them with `proxy_args`.
    pub async fn start(dir: &Path, count: usize, max_bytes: u64, proxy_args: &[&str]) -> Self {
        let mut nodes = Vec::new();
        for index in 0..count {
            let address = format!("127.0.0.1:{}", free_port());
            let process = start_node(dir, index, &address, max_bytes).await;
            nodes.push((address, process));
        }
        let proxy_address = format!("127.0.0.1:{}", free_port());
        let mut cluster = Self {
            nodes,
            proxy: None,
            proxy_address,
        };
        let node_list: Vec<String> = cluster.nodes.iter().map(|(a, _)| a.clone()).collect();
        let mut args: Vec<String> = ["cache", "proxy", "--listen", &cluster.proxy_address]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
        args.extend(["--nodes".to_string(), node_list.join(",")]);
        args.extend(proxy_args.iter().map(|arg| arg.to_string()));
        let proxy = spawn_essaim("cache-proxy", &args, &[], dir.join("proxy.log"));
        wait_ready(&cluster.proxy_address, "/readyz").await;
        cluster.proxy = Some(proxy);
        cluster
    }

    /// Returns the proxy's view of shards and nodes.
    pub fn status(&self) -> ShardsStatus {
        let (code, body) = essaim_testkit::http::request(
            &self.proxy_address,
            "GET",
            "/v1/cache-admin/shards",
            None,
            None,
        )
        .unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Returns the value of the proxy's metric `name` with `labels` (a fragment of its
    /// label set), summed over the matching series.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, body) =
            essaim_testkit::http::request(&self.proxy_address, "GET", "/metrics", None, None)
                .unwrap();
        metric_sum(&body, name, labels)
    }
}

impl Drop for CacheCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut processes: Vec<&Process> = self.nodes.iter().map(|(_, p)| p).collect();
            processes.extend(self.proxy.as_ref());
            for process in processes {
                let tail = essaim_testkit::process::log_tail(&process.log, 30);
                eprintln!("---- {} ({})\n{tail}", process.name, process.log.display());
            }
        }
    }
}

/// Sums the series of `name` whose labels contain `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Starts node `index` on `address` and waits until it answers.
pub async fn start_node(dir: &Path, index: usize, address: &str, max_bytes: u64) -> Process {
    let args: Vec<String> = [
        "cache",
        "node",
        "--listen",
        address,
        "--max-bytes",
        &max_bytes.to_string(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let log = dir.join(format!("node-{index}-{}.log", free_port()));
    let process = spawn_essaim(&format!("cache-node-{index}"), &args, &[], log);
    wait_ready(address, "/healthz").await;
    process
}

async fn wait_ready(address: &str, path: &str) {
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Deadline::after(EVENTUALLY, format!("{address}{path} to answer 200"));
    while http_status(port, path).await != Some(200) {
        deadline.tick().await;
    }
}

/// The value of `key` at `version`: what every hit must return.
pub fn value_of(key: &str, version: u32) -> Bytes {
    Bytes::from(format!("{key}:v{version}:{}", "x".repeat(100)))
}

/// Counts of one phase of a load.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub wrong: u64,
}

impl Tally {
    pub fn hit_rate(&self) -> f64 {
        self.hits as f64 / (self.hits + self.misses).max(1) as f64
    }
}

/// A cache-aside reader: GETs random keys of `keys` through the proxy, PUTs the value
/// back on a miss, and counts into the current tally until cancelled.
pub fn spawn_reader(
    proxy: String,
    keys: u32,
    version: u32,
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
    seed: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = NodeClient::new(std::time::Duration::from_secs(5));
        let mut rng = SeededRng::new(seed);
        while !stop.is_cancelled() {
            let key = format!("key-{}", rng.below(u64::from(keys)));
            let expected = value_of(&key, version);
            let outcome = client.get(&proxy, &key).await;
            let refill = {
                let mut tally = tally.lock().unwrap();
                match outcome {
                    Ok(Some(found)) if found.value == expected => {
                        tally.hits += 1;
                        false
                    }
                    Ok(Some(found)) => {
                        tally.wrong += 1;
                        eprintln!("wrong answer for {key}: {:?}", found.value);
                        false
                    }
                    Ok(None) => {
                        tally.misses += 1;
                        true
                    }
                    Err(error) => {
                        tally.errors += 1;
                        eprintln!("the proxy failed: {error}");
                        false
                    }
                }
            };
            if refill {
                let _refilled = client.put(&proxy, &key, expected, 0, None, None).await;
            }
        }
    })
}

/// Takes the tally so far and starts a new one.
fn take(tally: &Arc<Mutex<Tally>>) -> Tally {
    std::mem::take(&mut *tally.lock().unwrap())
}

/// Lets the readers run until `requests` more have been answered.
async fn run_for(tally: &Arc<Mutex<Tally>>, requests: u64, what: &str) {
    let deadline = Deadline::after(EVENTUALLY, what);
    loop {
        let seen = {
            let tally = tally.lock().unwrap();
            tally.hits + tally.misses + tally.errors + tally.wrong
        };
        if seen >= requests {
            return;
        }
        deadline.tick().await;
    }
}

/// PUTs every key at `version` through the proxy.
pub async fn load(proxy: &str, keys: u32, version: u32) {
    let client = NodeClient::new(std::time::Duration::from_secs(5));
    for key in 0..keys {
        let key = format!("key-{key}");
        client
            .put(proxy, &key, value_of(&key, version), 0, None, None)
            .await
            .unwrap_or_else(|error| panic!("PUT {key}: {error}"));
    }
}

const KEYS: u32 = 600;

/// Runs a cache-aside load on 3 nodes with `replicas`, SIGKILLs a node, and returns the
/// tallies before the kill, right after it, and once refilled.
async fn kill_a_node_under_load(replicas: &str) -> [Tally; 3] {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = CacheCluster::start(
        dir.path(),
        3,
        64 << 20,
        &["--replicas", replicas, "--node-timeout", "500ms"],
    )
    .await;
    let proxy = cache.proxy_address.clone();
    load(&proxy, KEYS, 1).await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = CancellationToken::new();
    let readers: Vec<_> = (0..4)
        .map(|seed| spawn_reader(proxy.clone(), KEYS, 1, tally.clone(), stop.clone(), seed))
        .collect();
    run_for(&tally, 1_500, "1500 reads before the kill").await;
    let before = take(&tally);

    cache.nodes[1].1.kill();
    run_for(&tally, 1_500, "1500 reads after the kill").await;
    let after_kill = take(&tally);
    let down = &cache.nodes[1].0;
    assert!(
        cache
            .status()
            .nodes
            .iter()
            .any(|n| &n.node == down && !n.up),
        "the proxy marked the killed node down"
    );
    run_for(&tally, 3_000, "3000 reads of recovery").await;
    let recovered = take(&tally);
    stop.cancel();
    for reader in readers {
        reader.await.unwrap();
    }
    eprintln!(
        "R = {replicas}: before {before:?}\nafter the kill {after_kill:?}\nrecovered {recovered:?}"
    );
    for phase in [before, after_kill, recovered] {
        assert_eq!(phase.wrong, 0, "every hit returns the value written");
        assert_eq!(phase.errors, 0, "the proxy keeps answering");
    }
    assert!(before.hit_rate() > 0.99, "{before:?}");
    let one_in_n = 1.0 / 3.0;
    assert!(
        after_kill.hit_rate() >= before.hit_rate() - one_in_n - 0.02,
        "the dip is at most about 1/N: {after_kill:?}"
    );
    assert!(recovered.hit_rate() > 0.97, "refilled: {recovered:?}");
    [before, after_kill, recovered]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_cache_node_costs_no_wrong_answer_and_the_hit_rate_recovers() {
    let _one = crate::harness::one_at_a_time().await;
    let [_, after_kill, _] = kill_a_node_under_load("2").await;
    assert!(
        after_kill.hit_rate() > 0.97,
        "with two replicas the other one answers: {after_kill:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_replica_a_sigkilled_node_costs_about_its_share_until_refilled() {
    let _one = crate::harness::one_at_a_time().await;
    let [_, after_kill, _] = kill_a_node_under_load("1").await;
    // Its keys (about 1/3) miss once each, then live on the ring's next node.
    assert!(
        after_kill.misses > 0,
        "the lost share misses: {after_kill:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_while_keys_change_never_serves_an_old_value() {
    let _one = crate::harness::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = CacheCluster::start(
        dir.path(),
        3,
        64 << 20,
        &["--replicas", "2", "--node-timeout", "300ms"],
    )
    .await;
    let proxy = cache.proxy_address.clone();
    load(&proxy, KEYS, 1).await;
    let frozen = cache.nodes[2].0.clone();
    cache.nodes[2].1.pause();
    // Its writes time out once, then it is skipped: version 2 lives on the others.
    load(&proxy, KEYS, 2).await;
    assert!(
        cache
            .status()
            .nodes
            .iter()
            .any(|n| n.node == frozen && !n.up)
    );
    cache.nodes[2].1.resume();
    let deadline = Deadline::after(EVENTUALLY, "the frozen node to be probed back up");
    while !cache.status().nodes.iter().all(|n| n.up) {
        deadline.tick().await;
    }
    // It still holds version 1 of a third of the keys, under tags older than its
    // return: every read must answer version 2.
    let client = NodeClient::new(std::time::Duration::from_secs(5));
    for round in 0..2 {
        for key in 0..KEYS {
            let key = format!("key-{key}");
            let found = client.get(&proxy, &key).await.unwrap();
            let found = found.unwrap_or_else(|| panic!("round {round}: {key} missing"));
            assert_eq!(found.value, value_of(&key, 2), "round {round}: {key}");
        }
    }
    assert!(cache.metric("essaim_cache_proxy_repairs_total", "") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cache_input_is_refused() {
    let _one = crate::harness::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let unknown = format!("127.0.0.1:{}", free_port());
    let mut cache = CacheCluster::start(
        dir.path(),
        2,
        1 << 20,
        &["--max-value-bytes", "1000", "--node-timeout", "300ms"],
    )
    .await;
    let proxy = cache.proxy_address.clone();
    let request = |method: &str, path: &str, body: Option<&str>| {
        essaim_testkit::http::request(&proxy, method, path, None, body).unwrap()
    };
    let big = "b".repeat(1001);
    assert_eq!(request("PUT", "/v1/cache/big", Some(&big)).0, 413);
    assert_eq!(request("PUT", "/v1/cache/fits", Some(&big[..1000])).0, 204);
    assert_eq!(
        request("GET", "/v1/cache/fits", None),
        (200, big[..1000].to_string())
    );
    assert_eq!(request("GET", "/v1/cache/", None).0, 400);
    assert_eq!(request("PUT", "/v1/cache", Some("v")).0, 400);
    assert_eq!(request("PUT", "/v1/cache/k?ttl=soon", Some("v")).0, 400);
    assert_eq!(request("GET", "/v1/cache/never-written", None).0, 404);
    // A TTL runs out.
    assert_eq!(request("PUT", "/v1/cache/brief?ttl=0.3", Some("v")).0, 204);
    assert_eq!(request("GET", "/v1/cache/brief", None).0, 200);
    let deadline = Deadline::after(EVENTUALLY, "the TTL to run out");
    while request("GET", "/v1/cache/brief", None).0 != 404 {
        deadline.tick().await;
    }
    // A node's own limit.
    let node = cache.nodes[0].0.clone();
    let node_request = essaim_testkit::http::request(
        &node,
        "PUT",
        "/v1/cache/k",
        None,
        Some(&"n".repeat((1 << 20) + 1)),
    );
    assert_eq!(node_request.unwrap().0, 413);

    let malformed = essaim(&["cache", "proxy", "--nodes", "127.0.0.1:1,not a node"]).await;
    assert_refused(&malformed, 2, "`not a node` is not a node address");
    let too_few = essaim(&[
        "cache",
        "proxy",
        "--nodes",
        "127.0.0.1:1",
        "--replicas",
        "2",
    ])
    .await;
    assert_refused(&too_few, 2, "2 replicas need between 1 and 1 nodes");

    // A proxy with a node nothing listens at starts, marks it down and serves.
    let listen = format!("127.0.0.1:{}", free_port());
    let nodes = format!("{},{},{unknown}", cache.nodes[0].0, cache.nodes[1].0);
    let args: Vec<String> = ["cache", "proxy", "--listen", &listen, "--nodes", &nodes]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
    cache.proxy = Some(spawn_essaim(
        "cache-proxy-2",
        &args,
        &[],
        dir.path().join("proxy-2.log"),
    ));
    wait_ready(&listen, "/readyz").await;
    cache.proxy_address = listen.clone();
    let status = cache.status();
    assert!(
        status.nodes.iter().any(|n| n.node == unknown && !n.up),
        "{status:?}"
    );
    let client = NodeClient::new(std::time::Duration::from_secs(5));
    for key in 0..50 {
        let key = format!("key-{key}");
        client
            .put(&listen, &key, value_of(&key, 1), 0, None, None)
            .await
            .unwrap();
        let found = client.get(&listen, &key).await.unwrap().unwrap();
        assert_eq!(found.value, value_of(&key, 1));
    }
}
