//! `essaim serve`, the model runner, as a real process reading the registry of a real
//! coordinator: predictions over the Open Inference Protocol v2; an alias moved while
//! a client sends requests without pause (none fails, answers switch from version 1
//! to version 2 and never back); bad input (malformed body, wrong shape, unknown
//! model); a full queue answered 429; the registry gone (still serving, degraded);
//! and rollout from a model file: a sticky A/B split, a shadow whose disagreements are
//! counted, a canary promoted and a canary rolled back, both in the audit log.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, Process, free_port, metric_sample, spawn_essaim,
};
use essaim_models::naive_bayes::model::NaiveBayes;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A model that calls texts with `spam_word` spam and texts with `ham_word` ham.
pub(crate) fn artifact(spam_word: &str, ham_word: &str) -> Vec<u8> {
    let documents = BTreeMap::from([("ham".to_string(), 5), ("spam".to_string(), 5)]);
    let occurrences = BTreeMap::from([
        (
            spam_word.to_string(),
            BTreeMap::from([("spam".to_string(), 20)]),
        ),
        (
            ham_word.to_string(),
            BTreeMap::from([("ham".to_string(), 20)]),
        ),
    ]);
    NaiveBayes::from_counts(1.0, &documents, &occurrences)
        .unwrap()
        .to_bytes()
}

/// Registers version after version of `model`: version 1 calls `win` spam, version 2
/// calls `win` ham (so the two disagree on it).
async fn register_two_versions(cluster: &Cluster, model: &str) {
    for (number, bytes) in [
        (1, artifact("win", "meeting")),
        (2, artifact("meeting", "win")),
    ] {
        let path = cluster.path(&format!("{model}-{number}.json"));
        std::fs::write(&path, bytes).unwrap();
        let registered = cluster
            .cli(&[
                "models",
                "register",
                model,
                "--artifact",
                path.to_str().unwrap(),
            ])
            .await;
        assert_eq!(registered.code, Some(0), "{registered:?}");
    }
}

pub(crate) async fn alias(cluster: &Cluster, model: &str, alias: &str, version: &str) {
    let moved = cluster
        .cli(&["models", "alias", model, alias, version])
        .await;
    assert_eq!(moved.code, Some(0), "{moved:?}");
}

pub(crate) fn start_runner(cluster: &Cluster, name: &str, port: u16, extra: &[&str]) -> Process {
    let mut args: Vec<String> = ["serve", "--coordinator", &cluster.url(), "--listen"]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
    args.push(format!("127.0.0.1:{port}"));
    args.extend(["--reload-interval".into(), "200ms".into()]);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    spawn_essaim(name, &args, &[], cluster.path(&format!("{name}.log")))
}

pub(crate) fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, body) =
        essaim_testkit::http::request(&format!("127.0.0.1:{port}"), method, path, None, body)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, json)
}

pub(crate) fn infer_body(texts: &[&str], key: Option<&str>) -> String {
    let mut body = json!({"inputs": [{"name": "text", "shape": [texts.len()], "datatype": "BYTES", "data": texts}]});
    if let Some(key) = key {
        body["parameters"] = json!({"key": key});
    }
    body.to_string()
}

/// Asks `model` about `texts`; returns the status, the answering version and labels.
fn infer(port: u16, model: &str, texts: &[&str], key: Option<&str>) -> (u16, String, Vec<String>) {
    let path = format!("/v2/models/{model}/infer");
    let (status, answer) = request(port, "POST", &path, Some(&infer_body(texts, key)));
    if status != 200 {
        return (status, answer.to_string(), vec![]);
    }
    let labels = answer["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|label| label.as_str().unwrap().to_string())
        .collect();
    (
        status,
        answer["model_version"].as_str().unwrap().to_string(),
        labels,
    )
}

pub(crate) async fn wait_ready(port: u16, runner: &Process) {
    let deadline = Deadline::after(
        EVENTUALLY,
        format!("the runner ready: {}", runner.log_text()),
    );
    while essaim_testkit::http::request(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/v2/health/ready",
        None,
        None,
    )
    .map(|(status, _)| status)
    .ok()
        != Some(200)
    {
        deadline.tick().await;
    }
}

fn metrics(port: u16) -> String {
    let (status, body) = request(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    body.as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_answers_follows_its_alias_without_a_failure_and_survives_the_registry() {
    let mut cluster = Cluster::start(0, 1).await;
    register_two_versions(&cluster, "spam-filter").await;
    alias(&cluster, "spam-filter", "production", "1").await;
    let port = free_port();
    let runner = start_runner(
        &cluster,
        "runner",
        port,
        &["--model", "spam-filter@production"],
    );
    wait_ready(port, &runner).await;

    let (status, ready) = request(port, "GET", "/v2/models/spam-filter/ready", None);
    assert_eq!((status, &ready["ready"]), (200, &json!(true)));
    let (_, metadata) = request(port, "GET", "/v2/models/spam-filter", None);
    assert_eq!(metadata["versions"], json!(["1"]));
    assert_eq!(metadata["inputs"][0]["datatype"], "BYTES");
    let (status, version, labels) =
        infer(port, "spam-filter", &["win money now", "the meeting"], None);
    assert_eq!((status, version.as_str()), (200, "1"));
    assert_eq!(labels, ["spam", "ham"]);

    // A client sends requests back to back while the alias moves to version 2.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let client = {
        let (stop, answered) = (stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (status, version, labels) = infer(port, "spam-filter", &["win"], None);
                answers.push((status, version, labels));
                answered.fetch_add(1, Ordering::SeqCst);
            }
            answers
        })
    };
    // Some answers before the move, so that the switch is seen from version 1.
    let deadline = Deadline::after(EVENTUALLY, "the client's first answers");
    while answered.load(Ordering::SeqCst) < 5 {
        deadline.tick().await;
    }
    alias(&cluster, "spam-filter", "production", "2").await;
    let deadline = Deadline::after(EVENTUALLY, "answers from version 2");
    while infer(port, "spam-filter", &["win"], None).1 != "2" {
        deadline.tick().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = client.join().unwrap();
    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    let versions: Vec<&str> = answers
        .iter()
        .map(|(_, version, _)| version.as_str())
        .collect();
    let switch = versions
        .iter()
        .position(|v| *v == "2")
        .expect("version 2 answered");
    assert!(switch > 0, "version 1 answered first: {versions:?}");
    assert!(versions[..switch].iter().all(|v| *v == "1"), "{versions:?}");
    assert!(
        versions[switch..].iter().all(|v| *v == "2"),
        "never back to 1: {versions:?}"
    );
    for (_, version, labels) in &answers {
        let expected = if version == "1" { "spam" } else { "ham" };
        assert_eq!(labels, &[expected], "version {version} answered {labels:?}");
    }
    let scraped = metrics(port);
    let reloads = metric_sample(
        &scraped,
        "essaim_runner_reloads_total{model=\"spam-filter\"}",
    );
    assert_eq!(reloads, Some(1.0), "{scraped}");

    // Bad input.
    let path = "/v2/models/spam-filter/infer";
    let (status, error) = request(port, "POST", path, Some("{not json"));
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("malformed"),
        "{error}"
    );
    let wrong_shape = r#"{"inputs":[{"name":"text","shape":[3],"datatype":"BYTES","data":["a"]}]}"#;
    let (status, error) = request(port, "POST", path, Some(wrong_shape));
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("shape [3]"),
        "{error}"
    );
    let (status, error) = request(
        port,
        "POST",
        "/v2/models/no-such-model/infer",
        Some(&infer_body(&["a"], None)),
    );
    assert_eq!(status, 404, "{error}");
    assert_eq!(
        request(port, "GET", "/v2/models/no-such-model/ready", None).0,
        404
    );

    // The registry goes away: the runner keeps answering and says it is degraded.
    cluster.kill_coordinator();
    let deadline = Deadline::after(EVENTUALLY, "the runner degraded");
    loop {
        let (status, health) = request(port, "GET", "/v2/health/ready", None);
        if health["degraded"] == json!(true) {
            assert_eq!(status, 200, "{health}");
            assert!(
                health["reason"].as_str().unwrap().contains("registry"),
                "{health}"
            );
            break;
        }
        deadline.tick().await;
    }
    assert_eq!(infer(port, "spam-filter", &["win"], None).0, 200);
    assert_eq!(
        metric_sample(&metrics(port), "essaim_runner_degraded"),
        Some(1.0)
    );
    cluster.restart_coordinator().await;
    let deadline = Deadline::after(EVENTUALLY, "the runner no longer degraded");
    while request(port, "GET", "/v2/health/ready", None).1["degraded"] != json!(false) {
        deadline.tick().await;
    }
    drop(runner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_at_once() {
    let cluster = Cluster::start(0, 1).await;
    register_two_versions(&cluster, "spam-filter").await;
    let port = free_port();
    // Two places, and a batch that waits long for company: two requests hold both.
    let extra = [
        "--model",
        "spam-filter@1",
        "--max-queue",
        "2",
        "--max-batch",
        "64",
        "--max-batch-delay",
        "3s",
    ];
    let runner = start_runner(&cluster, "runner", port, &extra);
    wait_ready(port, &runner).await;
    let waiting: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || infer(port, "spam-filter", &["win"], None)))
        .collect();
    let deadline = Deadline::after(EVENTUALLY, "two requests admitted");
    let admitted = "essaim_runner_queue_admitted_total{model=\"spam-filter\",version=\"1\"}";
    while metric_sample(&metrics(port), admitted) != Some(2.0) {
        deadline.tick().await;
    }
    let (status, error, _) = infer(port, "spam-filter", &["win"], None);
    assert_eq!(status, 429, "{error}");
    assert!(error.contains("queue is full"), "{error}");
    for request in waiting {
        let (status, version, _) = request.join().unwrap();
        assert_eq!((status, version.as_str()), (200, "1"));
    }
    drop(runner);
}

const MODEL_FILE: &str = r#"
version = 1

[[model]]
name = "ab"
primary = "spam-c@1"
rollout = { mode = "split", candidate = "spam-c@2", percent = 50 }

[[model]]
name = "shadowed"
primary = "spam-c@1"
rollout = { mode = "shadow", candidate = "spam-c@2" }

[[model]]
name = "good-canary"
primary = "spam-a@production"
rollout = { mode = "canary", candidate = "spam-a@staging", percent = 50, min_requests = 20, max_error_rate = 0.0, max_disagreement = 1.0 }

[[model]]
name = "bad-canary"
primary = "spam-b@production"
rollout = { mode = "canary", candidate = "spam-b@staging", percent = 50, min_requests = 20, max_error_rate = 0.0, max_disagreement = 0.1 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_splits_sticky_shadows_and_decides_canaries_in_the_audit_log() {
    let cluster = Cluster::start(0, 1).await;
    for model in ["spam-a", "spam-b", "spam-c"] {
        register_two_versions(&cluster, model).await;
    }
    for model in ["spam-a", "spam-b"] {
        alias(&cluster, model, "production", "1").await;
        alias(&cluster, model, "staging", "1").await;
        alias(&cluster, model, "staging", "2").await;
    }
    let file = cluster.path("models.toml");
    std::fs::write(&file, MODEL_FILE).unwrap();
    let port = free_port();
    let runner = start_runner(
        &cluster,
        "runner",
        port,
        &["--model-config", file.to_str().unwrap()],
    );
    wait_ready(port, &runner).await;
    let deadline = Deadline::after(EVENTUALLY, "every candidate loaded");
    while !request(port, "GET", "/v2/health/ready", None).1["models"]
        .as_object()
        .unwrap()
        .values()
        .all(|versions| versions.as_array().unwrap().len() == 2)
    {
        deadline.tick().await;
    }

    // A/B: a key always gets one version; keys spread over both.
    let mut seen = BTreeMap::new();
    for user in 0..40 {
        let key = format!("user-{user}");
        let first = infer(port, "ab", &["win"], Some(&key)).1;
        for _ in 0..3 {
            assert_eq!(infer(port, "ab", &["win"], Some(&key)).1, first, "{key}");
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both arms answer some keys: {seen:?}");

    // Shadow: the caller sees version 1 only; the candidate's disagreements are counted.
    for _ in 0..10 {
        let (status, version, labels) = infer(port, "shadowed", &["win", "meeting"], None);
        assert_eq!(
            (status, version.as_str(), labels),
            (200, "1", vec!["spam".into(), "ham".into()])
        );
    }
    let deadline = Deadline::after(EVENTUALLY, "the shadow's comparisons counted");
    let compared = "essaim_runner_compared_rows_total{model=\"shadowed\"}";
    while metric_sample(&metrics(port), compared) != Some(20.0) {
        deadline.tick().await;
    }
    let disagreeing = "essaim_runner_disagreeing_rows_total{model=\"shadowed\"}";
    assert_eq!(metric_sample(&metrics(port), disagreeing), Some(20.0));

    // Canaries: one within its thresholds is promoted, one that disagrees rolled back.
    let deadline = Deadline::after(EVENTUALLY, "both canaries decided");
    let mut requests = 0;
    loop {
        for model in ["good-canary", "bad-canary"] {
            let (status, answer, _) = infer(port, model, &["win"], None);
            assert_eq!(status, 200, "{model}: {answer}");
        }
        requests += 1;
        let scraped = metrics(port);
        let promoted =
            "essaim_runner_canary_decisions_total{model=\"good-canary\",decision=\"promote\"}";
        let rolled_back =
            "essaim_runner_canary_decisions_total{model=\"bad-canary\",decision=\"roll_back\"}";
        if metric_sample(&scraped, promoted) == Some(1.0)
            && metric_sample(&scraped, rolled_back) == Some(1.0)
        {
            break;
        }
        assert!(
            requests < 2000,
            "no decision after {requests} requests: {scraped}"
        );
        deadline.check();
    }
    let audit = |model: &'static str| {
        let cluster = &cluster;
        async move {
            let output = cluster
                .cli(&["models", "audit", model, "--output", "json"])
                .await;
            assert_eq!(output.code, Some(0), "{output:?}");
            let entries: Value = serde_json::from_str(&output.stdout).unwrap();
            entries.as_array().unwrap().last().unwrap().clone()
        }
    };
    let promotion = audit("spam-a").await;
    assert_eq!(
        (
            &promotion["action"],
            &promotion["alias"],
            &promotion["version"],
            &promotion["actor"]
        ),
        (
            &json!("promote"),
            &json!("production"),
            &json!(2),
            &json!("essaim-serve")
        )
    );
    let rollback = audit("spam-b").await;
    assert_eq!(
        (
            &rollback["action"],
            &rollback["alias"],
            &rollback["version"],
            &rollback["actor"]
        ),
        (
            &json!("rollback"),
            &json!("staging"),
            &json!(1),
            &json!("essaim-serve")
        )
    );
    // The runner follows its own decisions: the promoted canary answers from version 2.
    let deadline = Deadline::after(EVENTUALLY, "the promoted version serving");
    while infer(port, "good-canary", &["win"], None).1 != "2" {
        deadline.tick().await;
    }
    drop(runner);
}
