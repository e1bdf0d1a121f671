//! The connectors' circuit breakers, seen from outside: a two-stage pipeline reads
//! NATS JetStream and shuffles through it on a one-worker cluster; the NATS server is
//! stopped mid-stream, and the worker's `/metrics` must show a NATS breaker open
//! (`essaim_connector_breaker_state` 2, `essaim_connector_breaker_opened_total` counted);
//! once the server is back, every breaker closes, and the tables in PostgreSQL still
//! equal the oracles of `stream.rs` (nothing lost, nothing counted twice).

use std::time::{Duration, Instant};

use essaim_testkit::deadline::Deadline;

use crate::harness::{Cluster, metric_sample};
use crate::stream::{
    check_against_oracles, connect_postgres, nats_and_postgres, replayed_flights, source_progress,
    submitted_job_id,
};

/// The samples of `family` (`essaim_connector_breaker_state`, say) on the workers'
/// `/metrics`, as (series with its labels, value).
async fn samples(cluster: &Cluster, family: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for worker in cluster.workers().await {
        let output = tokio::process::Command::new("curl")
            .args(["-s", &format!("{}/metrics", worker.file_server_url)])
            .output()
            .await
            .expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        for line in text.lines() {
            let Some((series, _)) = line.rsplit_once(' ') else {
                continue;
            };
            if series.starts_with(&format!("{family}{{"))
                && let Some(value) = metric_sample(&text, series)
            {
                samples.push((series.to_owned(), value));
            }
        }
    }
    samples
}

/// Fails the test, showing `seen`, once `deadline` has passed.
fn give_up_after(deadline: Instant, what: &str, seen: &[(String, f64)]) {
    assert!(
        Instant::now() < deadline,
        "timed out waiting for {what}; the workers export {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_opens_the_breakers_in_metrics_and_the_output_still_equals_the_oracle() {
    let Some((nats, postgres)) = nats_and_postgres() else {
        return;
    };
    let cluster = Cluster::start(1, 8).await;
    let test_started = Instant::now();
    let replayed = replayed_flights(cluster.dir(), 3_000, "breakers.toml", nats.url()).await;
    let total = replayed.total();
    let (flights_csv, bad_lines, spec_path) = (replayed.csv, replayed.bad_lines, replayed.spec);

    let submitted = cluster
        .cli(&[
            "stream",
            "submit",
            spec_path.to_str().expect("utf-8 path"),
            "--nats",
            nats.url(),
            "--postgres",
            postgres.url(),
            "--exit-at-end",
            "--parallelism",
            "2",
            "--batch-max",
            "20",
        ])
        .await;
    assert_eq!(submitted.code, Some(0), "submit: {}", submitted.stderr);
    let job_id: u64 = submitted_job_id(&submitted.stderr)
        .unwrap_or_else(|| panic!("submit names its job: {}", submitted.stderr));

    eprintln!("submitted after {:?}", test_started.elapsed());
    let client = connect_postgres(postgres.url()).await;
    let started = Deadline::after(Duration::from_secs(30), "a tenth of the input committed");
    loop {
        let progress = source_progress(&client, "breakers").await;
        assert!(progress < total, "the pipeline finished before the outage");
        if progress >= total / 10 {
            break;
        }
        started.check();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Before the outage every breaker of the pipeline is exported, and closed.
    let before = samples(&cluster, "essaim_connector_breaker_state").await;
    assert!(
        before
            .iter()
            .any(|(series, _)| series.contains("connector=\"nats\"")),
        "the NATS breakers are exported: {before:?}"
    );
    assert!(
        before.iter().all(|(_, value)| *value == 0.0),
        "every breaker is closed before the outage: {before:?}"
    );
    let stopping_at = Instant::now();
    nats.stop();
    let stopped_at = Instant::now();
    eprintln!("nats stopped in {:?}", stopped_at - stopping_at);
    let deadline = stopped_at + Duration::from_secs(30);
    let open_series = loop {
        let states = samples(&cluster, "essaim_connector_breaker_state").await;
        let open: Vec<String> = states
            .iter()
            .filter(|(series, value)| series.contains("connector=\"nats\"") && *value == 2.0)
            .map(|(series, _)| series.clone())
            .collect();
        if !open.is_empty() {
            break open;
        }
        give_up_after(deadline, "a NATS breaker to open", &states);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "open {:?} after the stop: {open_series:?}",
        stopped_at.elapsed()
    );
    let opened = samples(&cluster, "essaim_connector_breaker_opened_total").await;
    for open in &open_series {
        let counter = open.replace("_breaker_state{", "_breaker_opened_total{");
        assert!(
            opened
                .iter()
                .any(|(series, value)| *series == counter && *value >= 1.0),
            "{counter} counts the opening: {opened:?}"
        );
    }

    nats.start_again();
    let restarted_at = Instant::now();
    let deadline = restarted_at + Duration::from_secs(30);
    loop {
        let states = samples(&cluster, "essaim_connector_breaker_state").await;
        let all_closed = open_series.iter().all(|open| {
            states
                .iter()
                .any(|(series, value)| series == open && *value == 0.0)
        });
        if all_closed {
            break;
        }
        give_up_after(deadline, "the open breakers to close", &states);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("closed {:?} after the restart", restarted_at.elapsed());

    let job = cluster.wait_job(job_id, Duration::from_secs(120)).await;
    eprintln!("finished after {:?}", test_started.elapsed());
    assert_eq!(job.state, "succeeded", "{job:?}");
    check_against_oracles(&client, &flights_csv, bad_lines).await;
}
