//! A coordinator with a cluster token refuses clients and workers without it, and says
//! why: a missing token and a wrong one are told apart.

use crate::harness::{Cluster, Deadline, EVENTUALLY, essaim};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_callers_are_refused() {
    let mut cluster = Cluster::start_with_token(Some(TOKEN), 0, 1).await;
    let url = cluster.url();

    let without = essaim(&["jobs", "--coordinator", &url]).await;
    assert_eq!(without.code, Some(3), "{without:?}");
    assert!(
        without.stderr.contains("missing cluster token"),
        "{without:?}"
    );
    let wrong = essaim(&["jobs", "--coordinator", &url, "--token", "wrong"]).await;
    assert_eq!(wrong.code, Some(3), "{wrong:?}");
    assert!(wrong.stderr.contains("wrong cluster token"), "{wrong:?}");
    let right = essaim(&["jobs", "--coordinator", &url, "--token", TOKEN]).await;
    assert_eq!(right.code, Some(0), "{right:?}");

    let intruder = cluster.start_worker_with_token(1, None);
    let deadline = Deadline::after(EVENTUALLY, format!("{intruder} to log the refusal"));
    while !cluster
        .worker(&intruder)
        .log_text()
        .contains("missing cluster token")
    {
        deadline.tick().await;
    }
    // The refusal is logged; for a while longer, make sure it never got in.
    let window_end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < window_end {
        let workers = cluster.workers().await;
        assert!(
            workers.is_empty(),
            "a worker without the token registered: {workers:?}"
        );
        // The window is the point of this pause: nothing must happen during it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let member = cluster.start_worker(1);
    cluster.wait_for_workers(1).await;
    let workers = cluster.workers().await;
    assert_eq!(workers[0].name, member, "{workers:?}");
}
