//! `essaim replay` against a real nats-server (`scripts/nats.sh`): the flights fixture
//! arrives on the subject line for line and in order, the summary is one JSON document,
//! and mistakes get a clear message. Fails if nats-server cannot be installed, unless
//! `ESSAIM_SKIP_NATS=1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use essaim_connect_nats::broker;
use essaim_connect_nats::source::{ConsumerSpec, PullSource};
use serde_json::Value;

use crate::harness::essaim;

/// A nats-server in a directory of its own, stopped when dropped.
struct NatsServer {
    dir: tempfile::TempDir,
    url: String,
}

fn nats_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nats.sh")
}

impl NatsServer {
    fn start() -> Option<NatsServer> {
        if std::env::var("ESSAIM_SKIP_NATS").as_deref() == Ok("1") {
            eprintln!("ESSAIM_SKIP_NATS=1: skipping a test that needs nats-server");
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let output = std::process::Command::new(nats_script())
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("scripts/nats.sh runs");
        assert!(
            output.status.success(),
            "nats-server could not be installed or started (ESSAIM_SKIP_NATS=1 skips): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Some(NatsServer { dir, url })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(nats_script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_the_fixture_line_for_line_and_prints_a_json_summary() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../essaim-stream/tests/data/flights-sample.csv")
        .display()
        .to_string();
    let replayed = essaim(&[
        "replay",
        "--url",
        &server.url,
        "--stream",
        "flights",
        "--subject",
        "flights.raw",
        "--time-column",
        "date",
        "--as-fast-as-possible",
        "--output",
        "json",
        &fixture,
    ])
    .await;
    assert_eq!(replayed.code, Some(0), "{replayed:?}");
    let summary: Value = serde_json::from_str(&replayed.stdout).expect("one JSON document");
    let text = std::fs::read_to_string(&fixture).expect("the fixture");
    let data_lines: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(summary["lines"], data_lines.len(), "{summary:#}");
    assert!(
        summary["lines_per_second"].as_f64().is_some(),
        "{summary:#}"
    );

    let context = broker::connect(&server.url, Duration::from_secs(5))
        .await
        .expect("connects");
    let stream = context
        .get_stream("flights")
        .await
        .expect("the stream exists");
    let source = PullSource::ensure(
        context.clone(),
        &stream,
        ConsumerSpec::new("check", "dead.flights"),
    )
    .await
    .expect("a consumer");
    let mut payloads = Vec::new();
    loop {
        let batch = source
            .fetch(500, Duration::from_millis(300))
            .await
            .expect("fetches");
        if batch.is_empty() {
            break;
        }
        for delivery in batch {
            payloads.push(String::from_utf8(delivery.payload.to_vec()).expect("UTF-8"));
            delivery.ack().await.expect("acks");
        }
    }
    assert_eq!(
        payloads, data_lines,
        "every data line, in order, nothing else"
    );

    // Mistakes (exit code 2): pacing without the time column (clap), a column that is
    // not there.
    let no_column = essaim(&[
        "replay",
        "--url",
        &server.url,
        "--subject",
        "flights.raw",
        "--speedup",
        "10",
        &fixture,
    ])
    .await;
    assert_eq!(no_column.code, Some(2), "{no_column:?}");
    let wrong_column = essaim(&[
        "replay",
        "--url",
        &server.url,
        "--subject",
        "flights.raw",
        "--time-column",
        "when",
        "--speedup",
        "10",
        &fixture,
    ])
    .await;
    assert_eq!(wrong_column.code, Some(2), "{wrong_column:?}");
    assert!(
        wrong_column.stderr.contains("no column `when`"),
        "{wrong_column:?}"
    );
    // No server there: exit code 3, as for an unreachable coordinator.
    let unreachable = essaim(&[
        "replay",
        "--url",
        "nats://127.0.0.1:1",
        "--subject",
        "flights.raw",
        "--as-fast-as-possible",
        &fixture,
    ])
    .await;
    assert_eq!(unreachable.code, Some(3), "{unreachable:?}");
}
