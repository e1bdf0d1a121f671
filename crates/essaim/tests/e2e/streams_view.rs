//! The coordinator's view of running pipelines: workers report their units' progress
//! in their heartbeats, `GET /api/v1/streams` shows each unit's worker, records and lag
//! with the workers the pipeline needs (also a metric), and the dashboard's Streams page
//! renders it in headless Chromium.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use essaim_testkit::http::request;
use essaim_testkit::server;
use serde_json::Value;

use crate::dashboard::{Browser, assert_has, find_chromium};
use crate::harness::{Cluster, Deadline};

const PIPELINE: &str = "watched";
const LINES_PER_PARTITION: usize = 500;

const SPEC: &str = r#"version = 1
[[source]]
name = "events"
time = "t"
key = "k"
connector = { kind = "files", dir = "in", partitions = 2 }
columns = [{ name = "t", type = "int" }, { name = "k", type = "string" }, { name = "v", type = "int" }]
[[sink]]
name = "rows"
input = "events"
connector = { kind = "postgres", table = "watched_rows", columns = { k = "text", v = "bigint" } }
"#;

/// Returns the pipeline's entry of `GET /api/v1/streams` once both units have read
/// every line, each on a named worker.
async fn wait_until_read(base: &str) -> Value {
    let deadline = Deadline::after(Duration::from_secs(90), "both units read every line");
    loop {
        let (status, body) = request(base, "GET", "/api/v1/streams", None, None).unwrap();
        assert_eq!(status, 200, "{body}");
        let pipelines: Value = serde_json::from_str(&body).unwrap();
        let done = pipelines.as_array().unwrap().iter().find(|pipeline| {
            pipeline["pipeline"] == PIPELINE
                && pipeline["units"].as_array().unwrap().len() == 2
                && pipeline["units"].as_array().unwrap().iter().all(|unit| {
                    unit["records_in"] == LINES_PER_PARTITION
                        && !unit["worker_name"].as_str().unwrap().is_empty()
                })
        });
        if let Some(pipeline) = done {
            return pipeline.clone();
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_units_are_shown_with_their_workers_records_and_needed_workers() {
    if server::skipped(server::POSTGRES) {
        return;
    }
    let Some(postgres) = server::postgres() else {
        return;
    };
    let cluster = Cluster::start(2, 1).await;
    for partition in 0..2 {
        let dir = cluster.path("in").join(partition.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let lines: Vec<String> = (0..LINES_PER_PARTITION)
            .map(|index| format!("{index},k{},{index}", index % 7))
            .collect();
        // No end marker: the pipeline keeps running, waiting for more.
        std::fs::write(dir.join("part-001.csv"), lines.join("\n") + "\n").unwrap();
    }
    let spec = cluster.path(&format!("{PIPELINE}.toml"));
    std::fs::write(&spec, SPEC).unwrap();
    let submitted = cluster
        .cli(&[
            "stream",
            "submit",
            spec.to_str().unwrap(),
            "--postgres",
            postgres.url(),
        ])
        .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");

    let base = cluster.url();
    let pipeline = wait_until_read(&base).await;
    assert_eq!(pipeline["lag"], 0, "{pipeline:#}");
    let workers = pipeline["workers"].as_u64().unwrap();
    assert!((1..=2).contains(&workers), "{pipeline:#}");
    assert_eq!(
        pipeline["recommended_workers"], workers,
        "no lag: no more workers"
    );
    let (_, metrics) = request(&base, "GET", "/metrics", None, None).unwrap();
    assert!(
        metrics.contains(&format!(
            "essaim_stream_recommended_workers{{pipeline=\"{PIPELINE}\"}} {workers}"
        )),
        "{metrics}"
    );

    let Some(binary) = find_chromium() else {
        return;
    };
    let browser = Browser::new(binary, cluster.path("chromium-profile"));
    let dom = browser
        .render(&format!("{base}/ui/#/streams"), "streams")
        .await;
    assert_has(&dom, &format!("data-pipeline=\"{PIPELINE}\""), "streams");
    assert_has(&dom, "data-unit=\"source/0\"", "streams");
    assert_has(&dom, "data-unit=\"source/1\"", "streams");
    let worker = pipeline["units"][0]["worker_name"].as_str().unwrap();
    assert_has(&dom, &format!("data-worker-name=\"{worker}\""), "streams");
}
