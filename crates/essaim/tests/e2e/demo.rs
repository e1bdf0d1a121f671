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
