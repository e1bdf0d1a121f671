//! A pipeline whose `predict` operators ask a runner (`runner = URL`) instead of loading
//! the model in process: the central-runners topology. Two operators ask the same
//! runner (`essaim serve`, a real process): `classify` reads the source directly (its
//! texts are asked for once per batch, before the batch runs), `reclassify` reads a
//! `map` that changed the text (each record asked for alone). Both must give the labels,
//! probabilities and version the model's own artifact gives, computed here. Then the
//! runner is killed with SIGKILL while messages keep coming and started again 2 s later
//! on the same port: every message is labelled once, none lost to the `error` port (the
//! unit waits for the runner, and past its deadline is placed again and replays its
//! batch).

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use essaim_testkit::server;

use crate::harness::{Cluster, Deadline, EVENTUALLY, free_port, metric_sample};
use crate::model_governance::register;
use crate::model_runner::{alias, artifact, start_runner, wait_ready};
use crate::stream::connect_postgres;
use crate::stream_predict::{expected, write_file};

const MODEL: &str = "mail";

/// The spec: messages `t,id,text` from `in/`, labelled by the runner at `runner`
/// directly, and again after a `map` that appends a word to the text.
fn spec(runner: &str) -> String {
    format!(
        r#"
version = 1
[[source]]
name = "messages"
time = "t"
id = "id"
connector = {{ kind = "files", dir = "in", partitions = 1 }}
columns = [{{ name = "t", type = "int" }}, {{ name = "id", type = "int" }}, {{ name = "text", type = "string" }}]
[[operator]]
name = "classify"
kind = "predict"
input = "messages"
model = "{MODEL}@production"
runner = "{runner}"
text_fields = ["text"]
label_field = "label"
score_field = "p"
version_field = "model_version"
[[operator]]
name = "reword"
kind = "map"
input = "classify"
set = {{ text2 = "text + ' win'" }}
[[operator]]
name = "reclassify"
kind = "predict"
input = "reword"
model = "{MODEL}@production"
runner = "{runner}"
text_fields = ["text2"]
label_field = "label2"
[[sink]]
name = "rows"
input = "reclassify"
connector = {{ kind = "postgres", table = "labelled_by_runner", columns = {{ id = "bigint", text = "text", label = "text", p = "double", model_version = "bigint", label2 = "text" }} }}
"#
    )
}

/// Messages `first..first + count` of a few words each.
fn messages(first: usize, count: usize) -> Vec<(usize, String)> {
    let words = ["win", "meeting", "free", "agenda", "prize", "notes"];
    (first..first + count)
        .map(|id| {
            let text = format!("{} {}", words[id % 6], words[(id / 6 + 1) % 6]);
            (id, text)
        })
        .collect()
}

type Row = (i64, String, String, f64, i64, String);

/// Waits until the table holds `count` rows; returns them by id.
async fn rows(client: &tokio_postgres::Client, count: usize) -> Vec<Row> {
    let deadline = Deadline::after(EVENTUALLY, format!("{count} labelled rows"));
    loop {
        let found: Vec<Row> = client
            .query(
                "SELECT id, text, label, p, model_version, label2 FROM labelled_by_runner ORDER BY id",
                &[],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                    .collect()
            })
            .unwrap_or_default();
        if found.len() >= count {
            return found;
        }
        deadline.tick().await;
    }
}

fn check(rows: &[Row]) {
    let version_1 = artifact("win", "meeting");
    let mut ids = BTreeMap::new();
    for (id, text, label, p, version, label2) in rows {
        let (expected_label, expected_p) = expected(&version_1, text);
        assert_eq!(
            (label, *version),
            (&expected_label, 1),
            "message {id}: {text}"
        );
        assert!(
            (p - expected_p).abs() < 1e-12,
            "message {id}: {p} ≠ {expected_p}"
        );
        let reworded = format!("{text} win");
        assert_eq!(
            label2,
            &expected(&version_1, &reworded).0,
            "message {id}: {reworded}"
        );
        *ids.entry(*id).or_insert(0) += 1;
    }
    assert!(
        ids.values().all(|count| *count == 1),
        "each message once: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_asks_a_runner_in_batches_and_waits_for_it_through_a_restart() {
    if server::skipped(server::NATS) {
        eprintln!("ESSAIM_SKIP_NATS=1: skipping a test that needs PostgreSQL");
        return;
    }
    let Some(postgres) = server::postgres() else {
        return;
    };
    let cluster = Cluster::start(1, 1).await;
    register(&cluster, &cluster.url(), MODEL).await;
    alias(&cluster, MODEL, "production", "1").await;
    let port = free_port();
    let model = format!("{MODEL}@production");
    let mut runner = start_runner(&cluster, "runner", port, &["--model", &model]);
    wait_ready(port, &runner).await;

    let work = cluster.path("predict-runner");
    let input = work.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let spec_path = work.join("mail.toml");
    std::fs::write(&spec_path, spec(&format!("http://127.0.0.1:{port}"))).unwrap();
    let submitted = cluster
        .cli(&[
            "stream",
            "submit",
            spec_path.to_str().unwrap(),
            "--postgres",
            postgres.url(),
            "--exit-at-end",
            "--batch-max",
            "25",
        ])
        .await;
    assert_eq!(submitted.code, Some(0), "submit: {}", submitted.stderr);

    let first = messages(0, 100);
    write_file(&input, "part-001.csv", &first);
    let client = connect_postgres(postgres.url()).await;
    check(&rows(&client, first.len()).await);
    // `reclassify` asks for each of its 100 records alone; `classify` asks for a whole
    // batch (at most 25 records) at once: 4 or a few more requests, not 100.
    let series = format!("essaim_runner_requests_total{{model=\"{MODEL}\",outcome=\"answered\"}}");
    let answered = metric_sample(&runner_metrics(port), &series).unwrap_or(0.0);
    assert!(
        (104.0..=120.0).contains(&answered),
        "{answered} requests answered for 2 × 100 records"
    );

    // The runner dies; messages keep coming; it is back 2 s later on the same port.
    runner.kill();
    let second = messages(first.len(), 100);
    write_file(&input, "part-002.csv", &second);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runner = start_runner(&cluster, "runner-again", port, &["--model", &model]);
    wait_ready(port, &runner).await;
    std::fs::write(input.join("_END"), "").unwrap();
    let all = rows(&client, first.len() + second.len()).await;
    assert_eq!(all.len(), first.len() + second.len());
    check(&all);
}

fn runner_metrics(port: u16) -> String {
    let (status, body) =
        essaim_testkit::http::request(&format!("127.0.0.1:{port}"), "GET", "/metrics", None, None)
            .unwrap();
    assert_eq!(status, 200);
    body
}
