//! The demos, run as a user would: the fruit salad (its own cluster of crashing cooks,
//! and its own check that every fruit was committed exactly once) and the word count (a
//! worker killed mid-map, the output checked against the count made while writing).

use crate::harness::{essaim, one_at_a_time};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salad_demo_serves_every_fruit_exactly_once() {
    let _one_at_a_time = one_at_a_time().await;
    let demo = essaim(&[
        "demo",
        "salad",
        "--fruits",
        "12",
        "--cooks",
        "3",
        "--crash-percent",
        "20",
        "--min-prep-ms",
        "100",
        "--max-prep-ms",
        "300",
    ])
    .await;
    let shown = format!("stdout:\n{}\nstderr:\n{}", demo.stdout, demo.stderr);
    assert_eq!(demo.code, Some(0), "{shown}");
    assert!(demo.stdout.contains("Served!"), "{shown}");
    assert!(demo.stdout.contains("committed exactly once"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_demo_matches_its_own_count_with_a_worker_killed() {
    let _one_at_a_time = one_at_a_time().await;
    let demo = essaim(&["demo", "wordcount", "--megabytes", "24"]).await;
    let shown = format!("stdout:\n{}\nstderr:\n{}", demo.stdout, demo.stderr);
    assert_eq!(demo.code, Some(0), "{shown}");
    assert!(demo.stdout.contains("every count exact"), "{shown}");
    assert!(demo.stdout.contains("killed with SIGKILL"), "{shown}");
}

/// `essaim demo stream` starts its own NATS and PostgreSQL through the project's
/// scripts, kills a worker mid-stream and checks the tables against its oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_demo_equals_its_oracle_with_a_worker_killed() {
    if std::env::var("ESSAIM_SKIP_NATS").as_deref() == Ok("1") {
        eprintln!("ESSAIM_SKIP_NATS=1: skipping a demo that needs NATS and PostgreSQL");
        return;
    }
    let _one_at_a_time = one_at_a_time().await;
    let demo = essaim(&["demo", "stream", "--rows", "12000"]).await;
    let shown = format!("stdout:\n{}\nstderr:\n{}", demo.stdout, demo.stderr);
    assert_eq!(demo.code, Some(0), "{shown}");
    assert!(
        demo.stdout.contains("the tables equal the oracle"),
        "{shown}"
    );
    assert!(demo.stdout.contains("12000 flights"), "{shown}");
    assert!(demo.stderr.contains("killed with SIGKILL"), "{shown}");
}
