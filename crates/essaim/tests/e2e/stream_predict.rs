//! A pipeline with a `predict` operator on a real cluster: messages from a tailed
//! directory are labelled by the registry's `mail@production` (naive Bayes, loaded in
//! process by the stream task) and written to PostgreSQL (from `scripts/postgres.sh`).
//! The labels and probabilities must equal the model's own, computed here from the
//! same artifact; once the alias moves to version 2 the governance view lists the
//! pipeline under version 2 and every later message is labelled by version 2. A spec
//! naming an alias the registry does not have fails at start, naming it.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use essaim_models::naive_bayes::model::NaiveBayes;
use essaim_testkit::server;
use serde_json::Value;

use crate::harness::{Cluster, Deadline, EVENTUALLY};
use crate::model_governance::{register, served_by, wait_for_view};
use crate::model_runner::{alias, artifact};
use crate::stream::connect_postgres;

const PIPELINE: &str = "mail";

/// The spec: messages `t,id,text` from the files of `in/`, labelled by `model`.
fn spec(model: &str) -> String {
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
model = "{model}"
text_fields = ["text"]
label_field = "label"
score_field = "p"
version_field = "model_version"
[[sink]]
name = "rows"
input = "classify"
connector = {{ kind = "postgres", table = "labelled", columns = {{ id = "bigint", text = "text", label = "text", p = "double", model_version = "bigint" }} }}
"#
    )
}

/// Messages `first..first + count`, each of a few words among which the models'
/// discriminating ones.
fn messages(first: usize, count: usize) -> Vec<(usize, String)> {
    let words = ["win", "meeting", "free", "agenda", "prize", "notes"];
    (first..first + count)
        .map(|id| {
            let text = format!(
                "{} {} {}",
                words[id % 6],
                words[(id / 6) % 6],
                words[(id * 7 + 3) % 6]
            );
            (id, text)
        })
        .collect()
}

pub(crate) fn write_file(dir: &Path, name: &str, rows: &[(usize, String)]) {
    let lines: Vec<String> = rows
        .iter()
        .map(|(id, text)| format!("{id},{id},{text}"))
        .collect();
    // Written aside and renamed, as the source's contract asks of a producer.
    let aside = dir.join(format!("{name}.tmp"));
    std::fs::write(&aside, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&aside, dir.join(name)).unwrap();
}

/// The label and probability the model's artifact gives `text`, computed here.
pub(crate) fn expected(artifact: &[u8], text: &str) -> (String, f64) {
    let classifier = NaiveBayes::from_bytes(artifact).unwrap().classifier();
    let (best, probabilities) = classifier.probabilities(text.as_bytes());
    (classifier.classes()[best].clone(), probabilities[best])
}

/// Waits until the table holds `count` rows; returns them by id.
async fn rows(
    client: &tokio_postgres::Client,
    count: usize,
) -> Vec<(i64, String, String, f64, i64)> {
    let deadline = Deadline::after(EVENTUALLY, format!("{count} labelled rows"));
    loop {
        let found: Vec<(i64, String, String, f64, i64)> = client
            .query(
                "SELECT id, text, label, p, model_version FROM labelled ORDER BY id",
                &[],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
                    .collect()
            })
            .unwrap_or_default();
        if found.len() >= count {
            return found;
        }
        deadline.tick().await;
    }
}

/// Returns the pipelines the view lists under `model`'s `version`.
fn pipelines_using(view: &Value, model: &str, version: u64) -> Vec<String> {
    let versions = view["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["name"] == model)
        .flat_map(|row| row["versions"].as_array().unwrap().iter());
    versions
        .filter(|row| row["version"] == version)
        .flat_map(|row| row["used_by"].as_array().unwrap().iter())
        .filter(|used| used["kind"] == "pipeline")
        .map(|used| used["address"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_predicts_with_the_version_its_alias_names_and_is_listed_as_using_it() {
    if server::skipped(server::NATS) {
        eprintln!("ESSAIM_SKIP_NATS=1: skipping a test that needs PostgreSQL");
        return;
    }
    let Some(postgres) = server::postgres() else {
        return;
    };
    // A cluster with a token: the pipeline reaches the registry with its worker's.
    let cluster = Cluster::start_with_token(Some("predict-token"), 1, 1).await;
    register(&cluster, &cluster.url(), PIPELINE).await;
    alias(&cluster, PIPELINE, "production", "1").await;
    let work = cluster.path("predict");
    let input = work.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let spec_path = work.join("mail.toml");
    std::fs::write(&spec_path, spec("mail@production")).unwrap();

    // An alias the registry does not have: the task fails at start, naming it.
    let wrong_path = work.join("wrong.toml");
    std::fs::write(&wrong_path, spec("mail@nope")).unwrap();
    let wrong = cluster
        .cli(&[
            "stream",
            "submit",
            wrong_path.to_str().unwrap(),
            "--postgres",
            postgres.url(),
            "--wait",
        ])
        .await;
    assert_ne!(wrong.code, Some(0), "{wrong:?}");
    let dead = cluster.cli(&["dlq", "list", "--output", "json"]).await;
    assert!(
        dead.stdout
            .contains("model `mail@nope`: model `mail` has no alias `nope`"),
        "the task's failure names the reference: {}",
        dead.stdout
    );

    let submitted = cluster
        .cli(&[
            "stream",
            "submit",
            spec_path.to_str().unwrap(),
            "--postgres",
            postgres.url(),
            "--exit-at-end",
            "--batch-max",
            "20",
        ])
        .await;
    assert_eq!(submitted.code, Some(0), "submit: {}", submitted.stderr);

    let first = messages(0, 60);
    write_file(&input, "part-001.csv", &first);
    let client = connect_postgres(postgres.url()).await;
    let version_1 = artifact("win", "meeting");
    for (id, text, label, p, version) in rows(&client, first.len()).await {
        let (expected_label, expected_p) = expected(&version_1, &text);
        assert_eq!(
            (label, version),
            (expected_label, 1),
            "message {id}: {text}"
        );
        assert!(
            (p - expected_p).abs() < 1e-12,
            "message {id}: {p} ≠ {expected_p}"
        );
    }
    let view = wait_for_view(&cluster, "the pipeline using version 1", |view| {
        pipelines_using(view, PIPELINE, 1) == ["stream:mail"]
    })
    .await;
    assert!(
        served_by(&view, PIPELINE, 1)
            .iter()
            .all(|name| name.starts_with("pipeline:mail/"))
    );

    // The alias moves: the pipeline loads version 2 at its next poll and says so.
    alias(&cluster, PIPELINE, "production", "2").await;
    wait_for_view(&cluster, "the pipeline using version 2", |view| {
        pipelines_using(view, PIPELINE, 2) == ["stream:mail"]
            && pipelines_using(view, PIPELINE, 1).is_empty()
    })
    .await;
    let second = messages(first.len(), 60);
    write_file(&input, "part-002.csv", &second);
    std::fs::write(input.join("_END"), "").unwrap();
    let version_2 = artifact("meeting", "win");
    let all = rows(&client, first.len() + second.len()).await;
    let mut disagreements = 0;
    for (id, text, label, p, version) in all.into_iter().skip(first.len()) {
        let (expected_label, expected_p) = expected(&version_2, &text);
        assert_eq!(
            (&label, version),
            (&expected_label, 2),
            "message {id}: {text}"
        );
        assert!(
            (p - expected_p).abs() < 1e-12,
            "message {id}: {p} ≠ {expected_p}"
        );
        disagreements += usize::from(expected(&version_1, &text).0 != label);
    }
    assert!(
        disagreements > 0,
        "the two versions disagree on some messages"
    );
}
