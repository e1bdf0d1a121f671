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
    Root::new(RootConfig {
        shards,
        replicas,
        balance: BalanceRule::RoundRobin,
        hedge,
        default_deadline: DEFAULT_DEADLINE,
        limits: QueryLimits::default(),
        lowercase: true,
        trust: Default::default(),
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
