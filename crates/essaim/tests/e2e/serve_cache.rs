//! Query answers in the cache: `essaim index serve --cache` in front of two cache nodes
//! and their proxy. A query answered by the shards is answered again from the cache
//! (another spelling of it too: same documents, `cached: true`, the hit counted); a
//! partial answer (a worker holding a shard frozen past the deadline) is not stored, so
//! the next query asks the shards again; with the cache's processes SIGKILLed, queries
//! are still answered whole by the shards and the failed lookups are counted (and the
//! cache left alone for a second after one).

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use essaim_serve_runtime::client::HttpClient;
use essaim_serve_runtime::wire::QueryAnswer;

use crate::cache::{CacheCluster, metric_sum};
use crate::harness::{Cluster, Deadline, EVENTUALLY, free_port};
use crate::serve::{
    ask, direct_answer, index_on_cluster, queries, start_serving, wait_all_ready, wait_root_ready,
    write_corpus,
};

const SHARDS: u32 = 2;

/// Returns the root's metric `name` (labels containing `labels`), summed.
fn root_metric(port: u16, name: &str, labels: &str) -> f64 {
    let (_, body) =
        essaim_testkit::http::request(&format!("127.0.0.1:{port}"), "GET", "/metrics", None, None)
            .unwrap();
    metric_sum(&body, name, labels)
}

/// Waits until the root has stored `count` answers in the cache.
async fn wait_stored(port: u16, count: f64) {
    let deadline = Deadline::after(EVENTUALLY, format!("{count} answers stored"));
    while root_metric(port, "essaim_serve_cache_stores_total", "") < count {
        deadline.tick().await;
    }
}

/// Asks `query` with a deadline of `deadline_ms`.
async fn ask_within(client: &HttpClient, port: u16, query: &str, deadline_ms: u64) -> QueryAnswer {
    let url = format!(
        "http://127.0.0.1:{port}/query?q={}&deadline_ms={deadline_ms}",
        essaim_serve_runtime::client::encode_query_value(query)
    );
    client.get_json(&url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_back_from_the_cache_but_never_partial_ones_nor_a_dead_cache() {
    let mut cluster = Cluster::start(2, 4).await;
    let corpus = cluster.path("corpus");
    let files = write_corpus(&corpus);
    let index = index_on_cluster(&cluster, &corpus).await;
    let cache_dir = cluster.path("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let mut cache = CacheCluster::start(&cache_dir, 2, 1 << 24, &[]).await;

    let port = free_port();
    let _serving = start_serving(
        &cluster,
        &index,
        port,
        (SHARDS, 1),
        &["--cache", &cache.proxy_address, "--cache-ttl", "60s"],
    );
    wait_root_ready(port).await;
    let client = HttpClient::new(&Default::default());
    let live = cluster.worker_names();
    let placed = wait_all_ready(&client, port, &live, SHARDS).await;

    // Answered by the shards, then from the cache, under another spelling too.
    let queries = queries(&files);
    let two_words = queries
        .iter()
        .find(|query| query.split(' ').count() == 2 && !query.contains("OR"))
        .unwrap();
    let expected = direct_answer(&files, two_words);
    assert!(!expected.is_empty(), "{two_words} matches documents");
    let first = ask(&client, port, two_words).await.unwrap();
    assert!(!first.cached && !first.partial, "{first:?}");
    assert_eq!(first.documents, expected);
    wait_stored(port, 1.0).await;
    let (left, right) = two_words.split_once(' ').unwrap();
    let respelled = format!("  {}   {left} ", right.to_uppercase());
    let again = ask(&client, port, &respelled).await.unwrap();
    assert!(again.cached, "{respelled:?}: {again:?}");
    assert_eq!(again.documents, expected);
    assert_eq!(root_metric(port, "essaim_serve_cache_hits_total", ""), 1.0);

    // A partial answer is not stored: the worker holding shard 0 frozen past the
    // deadline, then thawed; the next query asks the shards again.
    let union = queries.iter().find(|query| query.contains(" OR ")).unwrap();
    let holder = placed[&(0, 0)].clone();
    cluster.worker(&holder).pause();
    let partial = ask_within(&client, port, union, 300).await;
    cluster.worker(&holder).resume();
    assert!(partial.partial && !partial.cached, "{partial:?}");
    assert!(partial.missing_shards.contains(&0), "{partial:?}");
    wait_all_ready(&client, port, &live, SHARDS).await;
    let misses = root_metric(port, "essaim_serve_cache_misses_total", "");
    let whole = ask(&client, port, union).await.unwrap();
    assert!(!whole.partial && !whole.cached, "{whole:?}");
    assert_eq!(whole.documents, direct_answer(&files, union));
    assert_eq!(
        root_metric(port, "essaim_serve_cache_misses_total", ""),
        misses + 1.0
    );
    wait_stored(port, 2.0).await;
    assert!(ask(&client, port, union).await.unwrap().cached);

    // The cache gone: every query still answered whole, by the shards.
    cache.proxy.as_mut().unwrap().kill();
    for (_, node) in &mut cache.nodes {
        node.kill();
    }
    for query in [two_words, union] {
        let answer = ask(&client, port, query).await.unwrap();
        assert!(!answer.partial && !answer.cached, "{query}: {answer:?}");
        assert_eq!(answer.documents, direct_answer(&files, query));
        assert!(answer.elapsed_ms < 1_000.0, "{answer:?}");
    }
    // The first lookup failed; the next, within a second of it, was not attempted.
    let errors = root_metric(port, "essaim_serve_cache_errors_total", "op=\"lookup\"");
    let skipped = root_metric(port, "essaim_serve_cache_skipped_total", "");
    assert!(errors >= 1.0, "lookup errors counted");
    assert_eq!(errors + skipped, 2.0);
}
