//! The flights pipeline on a 3-member NATS JetStream cluster (`scripts/nats.sh` with
//! routes): the streams essaim creates are replicated 3 ways without being told to, and
//! one member SIGKILLed mid-stream loses nothing — the tables equal both oracles. A
//! single server still gets streams of one replica (the other stream tests).

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use essaim_connect_nats::broker::{self, StreamSpec};
use essaim_testkit::server;

use crate::harness::{Deadline, EVENTUALLY};
use crate::stream::{check_against_oracles, connect_postgres, replayed_flights};

/// Waits until the cluster has elected its JetStream leader: a stream can be made.
async fn wait_for_jetstream(url: &str) {
    let deadline = Deadline::after(EVENTUALLY, "the JetStream cluster to answer");
    loop {
        if let Ok(context) = broker::connect(url, broker::DEFAULT_REQUEST_TIMEOUT).await
            && broker::ensure_stream(&context, &StreamSpec::new("PROBE", &["probe"]))
                .await
                .is_ok()
        {
            return;
        }
        deadline.tick().await;
    }
}

/// The replica count of `stream`.
async fn replicas(url: &str, stream: &str) -> usize {
    let context = broker::connect(url, broker::DEFAULT_REQUEST_TIMEOUT)
        .await
        .unwrap();
    let mut stream = context.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().config.num_replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_replicated_three_ways_and_a_lost_member_loses_nothing() {
    let Some(members) = server::nats_cluster(3) else {
        return;
    };
    let Some(postgres) = server::postgres() else {
        return;
    };
    let url = server::nats_cluster_url(&members);
    wait_for_jetstream(&url).await;
    assert_eq!(replicas(&url, "PROBE").await, 3);

    let work = tempfile::tempdir().unwrap();
    let replayed = replayed_flights(work.path(), 6000, "flights.toml", &url).await;
    assert_eq!(
        replicas(&url, "FLIGHTS").await,
        3,
        "the replayed stream is replicated as the cluster allows"
    );
    let client = connect_postgres(postgres.url()).await;
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_essaim"))
        .args([
            "stream",
            "run",
            replayed.spec.to_str().unwrap(),
            "--nats",
            &url,
            "--postgres",
            postgres.url(),
            "--exit-at-end",
            "--parallelism",
            "2",
            "--workers",
            "2",
            "--batch-max",
            "25",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Once units have committed, one member dies for good.
    let started = Instant::now();
    loop {
        let committed: i64 = client
            .query_opt("SELECT count(*) FROM essaim_offsets", &[])
            .await
            .ok()
            .flatten()
            .map_or(0, |row| row.get(0));
        if committed >= 2 {
            break;
        }
        assert!(started.elapsed() < EVENTUALLY, "no unit committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    members[1].kill_9();
    let output = tokio::time::timeout(Duration::from_secs(180), run.wait_with_output())
        .await
        .expect("the pipeline finishes within 3 minutes")
        .unwrap();
    assert!(
        output.status.success(),
        "essaim stream run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_against_oracles(&client, &replayed.csv, replayed.bad_lines).await;
    // The shuffle's stream too, though every unit ensured it at once when it started.
    assert_eq!(replicas(&url, "ESSAIM_SHUFFLE_flights").await, 3);
}
