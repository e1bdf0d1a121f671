//! The root against real leaves on loopback sockets.
use std::collections::BTreeMap;

use essaim_serve::shard::ShardIndex;
use essaim_telemetry::Health;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::leaf::{LeafState, router};
use crate::wire::InjectedLatency;

/// Starts a leaf holding `documents` under the term `cat`, `delay_ms` slow on every
/// search; returns its URL.
async fn leaf(documents: &[&str], delay_ms: u64, stop: &CancellationToken) -> String {
    let mut postings = BTreeMap::new();
    postings.insert(
        "cat".to_owned(),
        documents.iter().map(|d| d.to_string()).collect(),
    );
    let injected = (delay_ms > 0).then_some(InjectedLatency {
        base_us: delay_ms * 1000,
        slow_us: delay_ms * 1000,
        slow_probability: 0.0,
        seed: 0,
    });
    let state = Arc::new(LeafState::new(
        ShardIndex::from_postings(postings),
        true,
        injected,
        0,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let health = Health::new();
    health.set_ready();
    tokio::spawn(essaim_telemetry::serve_http(
        listener,
        router(state, health),
        stop.clone().cancelled_owned(),
    ));
    url
}

fn root(shards: u32, replicas: u32, hedge: HedgePolicy) -> Arc<Root> {
    root_with_cache(shards, replicas, hedge, None)
}

fn root_with_cache(
    shards: u32,
    replicas: u32,
    hedge: HedgePolicy,
    cache: Option<QueryCacheConfig>,
) -> Arc<Root> {
    Root::new(RootConfig {
        shards,
        replicas,
        balance: BalanceRule::RoundRobin,
        hedge,
        default_deadline: DEFAULT_DEADLINE,
        limits: QueryLimits::default(),
        lowercase: true,
        trust: Default::default(),
        cache,
    })
}

fn register(root: &Root, shard: u32, replica: u32, url: &str) {
    root.register(&Registration {
        shard,
        replica,
        url: url.to_owned(),
        worker: format!("worker-{replica}"),
        attempt: 1,
    })
    .unwrap();
}

/// Hedges at once and always has budget, so that one query shows the behaviour.
fn eager_hedging() -> HedgePolicy {
    HedgePolicy {
        default_delay: Duration::from_millis(20),
        max_burst: 10.0,
        budget_share: 1.0,
        ..HedgePolicy::default()
    }
}

#[tokio::test]
async fn answers_from_every_shard_are_merged() {
    let stop = CancellationToken::new();
    let root = root(2, 1, HedgePolicy::default());
    register(&root, 0, 0, &leaf(&["/b", "/a"], 0, &stop).await);
    register(&root, 1, 0, &leaf(&["/c"], 0, &stop).await);
    let answer = root
        .query("cat", Duration::from_secs(5), None)
        .await
        .unwrap();
    assert_eq!(answer.documents, ["/a", "/b", "/c"]);
    assert!(!answer.partial);
    assert_eq!(answer.shards, 2);
    stop.cancel();
}

#[tokio::test]
async fn a_shard_past_the_deadline_is_left_out_and_named() {
    let stop = CancellationToken::new();
    let root = root(2, 1, HedgePolicy::default());
    register(&root, 0, 0, &leaf(&["/a"], 0, &stop).await);
    register(&root, 1, 0, &leaf(&["/c"], 5_000, &stop).await);
    let started = Instant::now();
    let answer = root
        .query("cat", Duration::from_millis(200), None)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the deadline was kept"
    );
    assert_eq!(answer.documents, ["/a"]);
    assert!(answer.partial);
    assert_eq!(answer.missing_shards, [1]);
    assert_eq!(root.metrics().partial_answers.get(), 1);
    stop.cancel();
}

#[tokio::test]
async fn a_hedge_to_a_fast_replica_wins_over_a_slow_one() {
    let stop = CancellationToken::new();
    let root = root(1, 2, eager_hedging());
    register(&root, 0, 0, &leaf(&["/a"], 5_000, &stop).await);
    register(&root, 0, 1, &leaf(&["/a"], 0, &stop).await);
    for _ in 0..2 {
        let started = Instant::now();
        let answer = root
            .query("cat", Duration::from_secs(3), None)
            .await
            .unwrap();
        assert_eq!(answer.documents, ["/a"]);
        assert!(!answer.partial);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // The round-robin cursor also advances for the hedge, so both queries start on
    // the slow replica: both hedge, and both hedges win.
    assert_eq!(root.metrics().hedges_sent.get(), 2);
    assert_eq!(root.metrics().hedges_won.get(), 2);
    stop.cancel();
}

#[tokio::test]
async fn hedges_stay_within_the_budget() {
    let stop = CancellationToken::new();
    let policy = HedgePolicy {
        budget_share: 0.0,
        ..eager_hedging()
    };
    let root = root(1, 2, policy);
    register(&root, 0, 0, &leaf(&["/a"], 300, &stop).await);
    register(&root, 0, 1, &leaf(&["/a"], 300, &stop).await);
    let answer = root
        .query("cat", Duration::from_secs(3), None)
        .await
        .unwrap();
    assert_eq!(answer.hedges, 0);
    assert_eq!(root.metrics().hedges_refused_by_budget.get(), 1);
    stop.cancel();
}

#[tokio::test]
async fn a_dead_replica_is_skipped_and_the_answer_stays_complete() {
    let stop = CancellationToken::new();
    let root = root(1, 2, HedgePolicy::default());
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
        // The listener is dropped: connections are refused.
    };
    register(&root, 0, 0, &dead);
    register(&root, 0, 1, &leaf(&["/a"], 0, &stop).await);
    for _ in 0..3 {
        let answer = root
            .query("cat", Duration::from_secs(3), None)
            .await
            .unwrap();
        assert_eq!(answer.documents, ["/a"]);
        assert!(!answer.partial);
    }
    assert!(!root.replicas()[0].ready, "the dead replica left the pool");
    stop.cancel();
}

#[tokio::test]
async fn empty_and_oversized_queries_are_refused_before_any_leaf_is_asked() {
    let root = root(1, 1, HedgePolicy::default());
    assert_eq!(
        root.query("  ", DEFAULT_DEADLINE, None).await,
        Err(QueryError::Empty)
    );
    let long = "word ".repeat(1000);
    assert!(matches!(
        root.query(&long, DEFAULT_DEADLINE, None).await,
        Err(QueryError::TooLong { .. })
    ));
    assert_eq!(root.metrics().refused_queries.get(), 2);
}

/// Starts a real cache node (a client cannot tell it from the proxy); returns its
/// address.
async fn cache_node(stop: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let config = essaim_cache_runtime::node::NodeConfig {
        max_bytes: 1 << 20,
        max_value_bytes: 1 << 16,
    };
    tokio::spawn(essaim_telemetry::serve_http(
        listener,
        essaim_cache_runtime::node::router(config),
        stop.clone().cancelled_owned(),
    ));
    address
}

fn cache_at(address: &str) -> QueryCacheConfig {
    QueryCacheConfig {
        proxy: address.to_owned(),
        index: essaim_serve::answer_key::IndexIdentity::of_manifest(
            &essaim_serve::shard::Manifest {
                version: essaim_serve::shard::MANIFEST_VERSION,
                shards: 2,
                entries: Vec::new(),
            },
        ),
        ttl: Duration::from_secs(60),
        lookup_timeout: Duration::from_millis(100),
    }
}

/// Waits until the root's background stores have ended (as many as `stores`).
async fn wait_stores(root: &Root, stores: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while root.metrics().cache_stores.get() < stores {
        assert!(Instant::now() < deadline, "the answer was stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_complete_answer_is_answered_again_from_the_cache() {
    let stop = CancellationToken::new();
    let cache = cache_at(&cache_node(&stop).await);
    let root = root_with_cache(2, 1, HedgePolicy::default(), Some(cache));
    register(&root, 0, 0, &leaf(&["/b", "/a"], 0, &stop).await);
    register(&root, 1, 0, &leaf(&["/c"], 0, &stop).await);
    let first = root.query("cat", DEFAULT_DEADLINE, None).await.unwrap();
    assert!(!first.cached && !first.partial);
    wait_stores(&root, 1).await;
    // Another spelling of the same query.
    let again = root
        .query(" CAT,  cat ", DEFAULT_DEADLINE, None)
        .await
        .unwrap();
    assert!(again.cached, "{again:?}");
    assert_eq!(again.documents, first.documents);
    assert_eq!(again.documents, ["/a", "/b", "/c"]);
    assert_eq!(root.metrics().cache_hits.get(), 1);
    assert_eq!(root.metrics().cache_misses.get(), 1);
    stop.cancel();
}

#[tokio::test]
async fn a_partial_answer_is_never_cached() {
    let stop = CancellationToken::new();
    let cache = cache_at(&cache_node(&stop).await);
    let root = root_with_cache(2, 1, HedgePolicy::default(), Some(cache));
    register(&root, 0, 0, &leaf(&["/a"], 0, &stop).await);
    register(&root, 1, 0, &leaf(&["/c"], 300, &stop).await);
    let partial = root
        .query("cat", Duration::from_millis(100), None)
        .await
        .unwrap();
    assert!(partial.partial && !partial.cached);
    // Any store the partial answer started has ended.
    root.finish_cache_stores().await;
    assert_eq!(root.metrics().cache_stores.get(), 0);
    // Given time, the next query is whole: a miss, not the partial answer.
    let whole = root.query("cat", DEFAULT_DEADLINE, None).await.unwrap();
    assert!(!whole.partial && !whole.cached, "{whole:?}");
    assert_eq!(whole.documents, ["/a", "/c"]);
    assert_eq!(root.metrics().cache_misses.get(), 2);
    wait_stores(&root, 1).await;
    let cached = root.query("cat", DEFAULT_DEADLINE, None).await.unwrap();
    assert!(cached.cached);
    assert_eq!(cached.documents, ["/a", "/c"]);
    stop.cancel();
}

#[tokio::test]
async fn a_dead_or_stalled_cache_fails_no_query_and_delays_it_boundedly() {
    let stop = CancellationToken::new();
    let refused = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
        // Dropped: connections are refused.
    };
    // Accepts connections (the kernel does) and never answers: a frozen proxy.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_address = stalled.local_addr().unwrap().to_string();
    for address in [refused, stalled_address] {
        let root = root_with_cache(1, 1, HedgePolicy::default(), Some(cache_at(&address)));
        register(&root, 0, 0, &leaf(&["/a"], 0, &stop).await);
        for _ in 0..2 {
            let started = Instant::now();
            let answer = root.query("cat", DEFAULT_DEADLINE, None).await.unwrap();
            assert_eq!(answer.documents, ["/a"], "{address}");
            assert!(!answer.partial && !answer.cached);
            // The lookup's timeout is 100 ms.
            assert!(started.elapsed() < Duration::from_millis(600), "{address}");
        }
        let errors = root
            .metrics()
            .cache_errors
            .get_or_create(&crate::metrics::CacheOpLabels {
                op: "lookup".to_owned(),
            });
        // The first lookup fails; the second, right after, is not attempted.
        assert_eq!(errors.get(), 1, "{address}");
        assert_eq!(root.metrics().cache_skipped.get(), 1, "{address}");
        assert_eq!(root.metrics().cache_hits.get(), 0);
        // A failed lookup is not followed by a store.
        root.finish_cache_stores().await;
        assert_eq!(root.metrics().cache_stores.get(), 0);
    }
    drop(stalled);
    stop.cancel();
}

#[tokio::test]
async fn a_short_deadline_cuts_the_lookup_and_leaves_the_shards_time() {
    let stop = CancellationToken::new();
    // A frozen proxy: connections accepted, nothing answered.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cache = cache_at(&stalled.local_addr().unwrap().to_string());
    let root = root_with_cache(1, 1, HedgePolicy::default(), Some(cache));
    register(&root, 0, 0, &leaf(&["/a"], 0, &stop).await);
    for _ in 0..2 {
        // The lookup may take half of 60 ms, not its own 100 ms.
        let answer = root
            .query("cat", Duration::from_millis(60), None)
            .await
            .unwrap();
        assert!(!answer.partial, "{answer:?}");
        assert_eq!(answer.documents, ["/a"]);
    }
    // Cut by the queries' deadlines, not the cache's timeout: both lookups were tried.
    let errors = root
        .metrics()
        .cache_errors
        .get_or_create(&crate::metrics::CacheOpLabels {
            op: "lookup".to_owned(),
        });
    assert_eq!(errors.get(), 2);
    assert_eq!(root.metrics().cache_skipped.get(), 0);
    drop(stalled);
    stop.cancel();
}
