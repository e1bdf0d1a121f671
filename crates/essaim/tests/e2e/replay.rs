//! `essaim replay` against a real nats-server (`scripts/nats.sh`): the flights fixture
//! arrives on the subject line for line and in order, the summary is one JSON document,
//! and mistakes get a clear message. Fails if nats-server cannot be installed, unless
//! `ESSAIM_SKIP_NATS=1`.

use std::path::Path;
use std::time::Duration;

use essaim_connect_nats::broker;
use essaim_connect_nats::source::{ConsumerSpec, PullSource};
use serde_json::Value;

use crate::harness::essaim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_the_fixture_line_for_line_and_prints_a_json_summary() {
    let Some(server) = essaim_testkit::server::nats() else {
        return;
    };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../essaim-stream/tests/data/flights-sample.csv")
        .display()
        .to_string();
    let replayed = essaim(&[
        "replay",
        "--url",
        server.url(),
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

    let context = broker::connect(server.url(), Duration::from_secs(5))
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
        server.url(),
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
        server.url(),
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
