//! A job submitted with a supersede key replaces the running jobs submitted with the same
//! key (seed 000: drop the requests a newer one has made pointless): they are cancelled,
//! their reason names the new job, and the cancellation survives a coordinator restart.

use crate::harness::{CliOutput, Cluster};
use serde_json::Value;

fn parse(what: &str, output: &CliOutput) -> Value {
    assert_eq!(output.code, Some(0), "{what}: {output:?}");
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|error| panic!("{what}: {error}: {output:?}"))
}

async fn submit(cluster: &Cluster, key: &str) -> String {
    let args = [
        "submit",
        "--kind",
        "sleep",
        "--payload",
        "60000",
        "--count",
        "2",
        "--supersede-key",
        key,
        "--output",
        "json",
    ];
    let submitted = parse("submit", &cluster.cli(&args).await);
    submitted["job_id"].as_u64().expect("a job id").to_string()
}

async fn status(cluster: &Cluster, job: &str) -> Value {
    parse(
        "status",
        &cluster.cli(&["status", job, "--output", "json"]).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_supersede_key_cancels_the_older_one_and_it_stays_cancelled() {
    let mut cluster = Cluster::start(1, 2).await;
    let nightly = submit(&cluster, "nightly-report").await;
    let other = submit(&cluster, "other-report").await;
    let newer = submit(&cluster, "nightly-report").await;

    let old = status(&cluster, &nightly).await;
    assert_eq!(old["state"], "cancelled", "{old:#}");
    let reason = old["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("superseded by job {newer}")) && reason.contains("nightly-report"),
        "{old:#}"
    );
    for job in [&other, &newer] {
        assert_eq!(status(&cluster, job).await["state"], "running");
    }

    cluster.kill_coordinator();
    cluster.restart_coordinator().await;
    assert_eq!(status(&cluster, &nightly).await["state"], "cancelled");
    // The key of the running job was journaled: a third submission supersedes it.
    let third = submit(&cluster, "nightly-report").await;
    let replaced = status(&cluster, &newer).await;
    assert_eq!(replaced["state"], "cancelled", "{replaced:#}");
    assert!(
        replaced["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&third)
    );
    assert_eq!(status(&cluster, &other).await["state"], "running");
}
