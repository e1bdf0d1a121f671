//! Versions kept apart (SPEC §10): every job carries its processing version — what the
//! submitter named, the job definition and build that planned it, or else the
//! coordinator's build — every worker advertises its build, and the job's history shows
//! both, across a coordinator restart.

use crate::harness::{CliOutput, Cluster, assert_refused, http_get};
use serde_json::Value;

fn parse(what: &str, output: &CliOutput) -> Value {
    assert_eq!(output.code, Some(0), "{what}: {output:?}");
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|error| panic!("{what}: {error}: {output:?}"))
}

async fn submit(cluster: &Cluster, extra: &[&str]) -> CliOutput {
    let mut args = vec![
        "submit",
        "--kind",
        "sleep",
        "--payload",
        "10",
        "--count",
        "4",
        "--wait",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    cluster.cli(&args).await
}

fn job_detail(cluster: &Cluster, job: u64) -> Value {
    let body = http_get(&cluster.url(), &format!("/api/v1/jobs/{job}"));
    serde_json::from_str(&body).expect("a JSON job detail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_carry_their_processing_version_and_their_history_the_workers_builds() {
    let mut cluster = Cluster::start(1, 2).await;
    let build_prefix = format!("{} (", env!("CARGO_PKG_VERSION"));
    let workers = parse(
        "workers",
        &cluster.cli(&["workers", "--output", "json"]).await,
    );
    let worker_build = workers[0]["build"].as_str().unwrap_or_default().to_string();
    assert!(worker_build.starts_with(&build_prefix), "{workers:#}");

    let named = parse(
        "submit",
        &submit(&cluster, &["--processing-version", "etl-orders v3"]).await,
    );
    let named_id = named["job_id"].as_u64().expect("a job id");
    assert_eq!(named["processing_version"], "etl-orders v3", "{named:#}");
    let unnamed = parse("submit", &submit(&cluster, &[]).await);
    let unnamed_id = unnamed["job_id"].as_u64().expect("a job id");
    let default = unnamed["processing_version"].as_str().unwrap_or_default();
    assert!(
        default.starts_with(&format!("essaim {build_prefix}")),
        "{unnamed:#}"
    );

    let detail = job_detail(&cluster, named_id);
    assert_eq!(detail["job"]["processing_version"], "etl-orders v3");
    assert_eq!(
        detail["history"]["workers"][0]["build"],
        worker_build.as_str(),
        "{detail:#}"
    );

    // Journaled: the versions survive a restart of the coordinator.
    cluster.kill_coordinator();
    cluster.restart_coordinator().await;
    for (job, version) in [(named_id, "etl-orders v3"), (unnamed_id, default)] {
        let status = parse(
            "status",
            &cluster
                .cli(&["status", &job.to_string(), "--output", "json"])
                .await,
        );
        assert_eq!(status["processing_version"], version, "{status:#}");
    }
    let text = cluster.cli(&["status", &named_id.to_string()]).await;
    assert!(
        text.stdout.contains("processing version: etl-orders v3"),
        "{text:?}"
    );

    let refused = submit(&cluster, &["--processing-version", "two\nlines"]).await;
    assert_refused(&refused, 2, "processing_version");
}
