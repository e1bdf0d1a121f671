//! `essaim serve --on-cluster`: the model runner as long-running `model.serve` tasks
//! on a real three-worker cluster, behind the front that `essaim serve` runs. Its
//! predictions equal a runner's on its own, byte for byte; the two replicas run on two
//! workers; a worker holding one is SIGKILLed under a steady load and no request fails
//! (the front retries on the other replica), and the replica is placed again on the
//! third worker, never beside the other (their anti-affinity group), until the front
//! counts two; with one worker carrying a required label, one replica runs and the
//! other waits, the job saying so, until a second such worker joins; the
//! governance view lists the replicas as users of the version; SIGTERM cancels the job;
//! a model the registry does not know ends the job and the command with the reason.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, Process, free_port, metric_sample, spawn_essaim,
};
use crate::model_governance::{register, served_by, wait_for_view};
use crate::model_runner::{alias, infer_body, request, start_runner, wait_ready};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MODEL: &str = "spam-filter";
const TEXTS: [&str; 5] = [
    "win money now",
    "the meeting",
    "win the meeting",
    "nothing the model knows",
    "meeting meeting win",
];

fn start_front(cluster: &Cluster, port: u16) -> Process {
    start_front_with(cluster, port, &[])
}

fn start_front_with(cluster: &Cluster, port: u16, extra: &[&str]) -> Process {
    let mut args: Vec<String> = [
        "serve",
        "--on-cluster",
        "--replicas",
        "2",
        "--model",
        "spam-filter@production",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--coordinator",
        &cluster.url(),
        "--reload-interval",
        "200ms",
        "--usage-interval",
        "500ms",
        "--name",
        "pooled",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    spawn_essaim("front", &args, &[], cluster.path("front.log"))
}

/// Returns the answer to `texts`, as JSON, with its status.
fn predict(port: u16, texts: &[&str]) -> (u16, Value) {
    let path = format!("/v2/models/{MODEL}/infer");
    request(port, "POST", &path, Some(&infer_body(texts, None)))
}

/// Returns the front's replicas: (replica, worker, ready).
fn replicas(port: u16) -> Vec<(u64, String, bool)> {
    let (status, view) = request(port, "GET", "/replicas", None);
    assert_eq!(status, 200, "{view}");
    view.as_array()
        .unwrap()
        .iter()
        .map(|replica| {
            (
                replica["replica"].as_u64().unwrap(),
                replica["worker"].as_str().unwrap().to_string(),
                replica["ready"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Returns the id of the job the front serves, from its first line about serving.
async fn serving_job(front: &Process) -> u64 {
    let deadline = Deadline::after(EVENTUALLY, format!("a job serving: {}", front.log_text()));
    loop {
        let log = front.log_text();
        let id = log.lines().find_map(|line| {
            let rest = line.split("job ").nth(1)?;
            let (id, after) = rest.split_once(' ')?;
            after.starts_with("serving").then(|| id.parse().ok())?
        });
        if let Some(id) = id {
            return id;
        }
        deadline.tick().await;
    }
}

/// Waits until both replicas are ready on workers other than `not_on`.
async fn wait_two_replicas(port: u16, front: &Process, not_on: Option<&str>) {
    let deadline = Deadline::after(
        EVENTUALLY,
        format!("two ready replicas off {not_on:?}: {}", front.log_text()),
    );
    loop {
        let placed = replicas(port);
        let good = placed.len() == 2
            && placed
                .iter()
                .all(|(_, worker, ready)| *ready && Some(worker.as_str()) != not_on);
        let (_, metrics) = request(port, "GET", "/metrics", None);
        let counted = metric_sample(metrics.as_str().unwrap(), "essaim_model_front_replicas");
        if good && counted == Some(2.0) {
            return;
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_workers_answer_as_a_runner_and_survive_a_killed_worker() {
    let mut cluster = Cluster::start(3, 2).await;
    register(&cluster, &cluster.url(), MODEL).await;
    alias(&cluster, MODEL, "production", "1").await;
    let alone_port = free_port();
    let alone = start_runner(
        &cluster,
        "alone",
        alone_port,
        &["--model", "spam-filter@production"],
    );
    wait_ready(alone_port, &alone).await;

    let port = free_port();
    let mut front = start_front(&cluster, port);
    wait_ready(port, &front).await;
    wait_two_replicas(port, &front, None).await;
    let placed = replicas(port);
    let workers: std::collections::BTreeSet<&str> = placed
        .iter()
        .map(|(_, worker, _)| worker.as_str())
        .collect();
    assert_eq!(workers.len(), 2, "one replica per worker: {placed:?}");
    assert!(front.log_text().contains("serving: model runner front on"));

    // The same answers as a runner on its own, one text at a time and all at once.
    let mut expected = Vec::new();
    for text in TEXTS {
        let alone_answer = predict(alone_port, &[text]);
        assert_eq!(alone_answer.0, 200, "{alone_answer:?}");
        assert_eq!(predict(port, &[text]), alone_answer, "{text}");
        expected.push(alone_answer.1);
    }
    assert_eq!(predict(port, &TEXTS), predict(alone_port, &TEXTS));
    let (status, metadata) = request(port, "GET", &format!("/v2/models/{MODEL}"), None);
    assert_eq!(
        (status, &metadata["versions"]),
        (200, &serde_json::json!(["1"]))
    );
    assert_eq!(
        request(port, "GET", &format!("/v2/models/{MODEL}/ready"), None).0,
        200
    );
    assert_eq!(
        request(port, "GET", "/v2/models/no-such-model/ready", None).0,
        404
    );

    // The governance view lists both replicas as users of version 1.
    wait_for_view(&cluster, "both replicas in the governance view", |view| {
        let users = served_by(view, MODEL, 1);
        ["pooled/replica-0", "pooled/replica-1"]
            .iter()
            .all(|name| users.iter().any(|user| user == name))
    })
    .await;

    // A steady load while the worker of replica 0 is SIGKILLed.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, answered, expected) = (stop.clone(), answered.clone(), expected.clone());
        std::thread::spawn(move || {
            let mut wrong = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for (text, expected) in TEXTS.iter().zip(&expected) {
                    let (status, answer) = predict(port, &[text]);
                    if status != 200 || &answer != expected {
                        wrong.push(format!("{text}: {status} {answer}"));
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            }
            wrong
        })
    };
    let victim = placed
        .iter()
        .find(|(replica, ..)| *replica == 0)
        .unwrap()
        .1
        .clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = answered.load(Ordering::SeqCst);
    let killed = Instant::now();
    cluster.kill_worker(&victim);
    wait_two_replicas(port, &front, Some(&victim)).await;
    eprintln!("replica placed again {:?} after the kill", killed.elapsed());
    let survivor = &placed.iter().find(|(replica, ..)| *replica == 1).unwrap().1;
    let replaced = replicas(port);
    let replaced_on = &replaced
        .iter()
        .find(|(replica, ..)| *replica == 0)
        .unwrap()
        .1;
    assert_ne!(
        replaced_on, survivor,
        "never beside the other replica: {replaced:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let wrong = load.join().unwrap();
    let total = answered.load(Ordering::SeqCst);
    assert!(total > before, "requests ran during the outage");
    assert!(
        wrong.is_empty(),
        "{} of {total} requests failed or differed, first: {:?}",
        wrong.len(),
        wrong.first()
    );
    let (_, metrics) = request(port, "GET", "/metrics", None);
    let metrics = metrics.as_str().unwrap().to_string();
    let sent_to = |replica: &str| {
        metric_sample(
            &metrics,
            &format!("essaim_model_front_requests_total{{replica=\"{replica}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(sent_to("0") > 0.0 && sent_to("1") > 0.0, "{metrics}");
    // The killed replica was asked before the front knew: those requests were retried.
    let retries = metric_sample(&metrics, "essaim_model_front_retries_total").unwrap();
    assert!(retries >= 1.0, "{metrics}");
    assert!(
        metric_sample(&metrics, "essaim_model_front_errors_total{replica=\"0\"}").unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sample(&metrics, "essaim_model_front_unanswered_total"),
        Some(0.0),
        "{metrics}"
    );

    // SIGTERM: the job is cancelled and the front stops.
    front.signal(Signal::SIGTERM);
    let status = front.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}: {}", front.log_text());
    assert!(front.log_text().contains("cancelled"));

    // A model the registry does not know fails the replicas for good, and the command
    // stops with the reason instead of placing them again and again.
    let args: Vec<String> = [
        "serve",
        "--on-cluster",
        "--replicas",
        "1",
        "--model",
        "no-such-model@production",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--coordinator",
        &cluster.url(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let mut unknown = spawn_essaim("unknown", &args, &[], cluster.path("unknown.log"));
    let status = unknown.wait_exit(Duration::from_secs(20)).await;
    let log = unknown.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("cannot load the models") && log.contains("no-such-model"),
        "{log}"
    );
    drop(alone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_require_a_label_run_only_on_workers_carrying_it() {
    let mut cluster = Cluster::start(1, 2).await;
    let gpu_worker = cluster.start_worker_with_args(2, &["--label", "gpu=yes"]);
    register(&cluster, &cluster.url(), MODEL).await;
    alias(&cluster, MODEL, "production", "1").await;
    let port = free_port();
    let front = start_front_with(&cluster, port, &["--require-label", "gpu=yes"]);
    wait_ready(port, &front).await;
    // One labelled worker: one replica runs there, the other waits (never two on one
    // worker), and the job says so.
    let job_id = serving_job(&front).await;
    let deadline = Deadline::after(EVENTUALLY, "one replica waiting for a worker");
    loop {
        let job = cluster.job(job_id).await;
        if job.waiting_for_anti_affinity && job.running == 1 {
            break;
        }
        deadline.tick().await;
    }
    let placed = replicas(port);
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0].1, gpu_worker);
    let status = cluster.cli(&["status", &job_id.to_string()]).await;
    assert!(
        status.stdout.contains("anti-affinity group"),
        "{}",
        status.stdout
    );
    // A second labelled worker joins: the waiting replica runs there.
    let second_gpu_worker = cluster.start_worker_with_args(2, &["--label", "gpu=yes"]);
    wait_two_replicas(port, &front, None).await;
    let placed = replicas(port);
    let workers: std::collections::BTreeSet<&str> = placed
        .iter()
        .map(|(_, worker, _)| worker.as_str())
        .collect();
    assert_eq!(
        workers,
        [gpu_worker.as_str(), second_gpu_worker.as_str()].into(),
        "{placed:?}"
    );
    assert!(!cluster.job(job_id).await.waiting_for_anti_affinity);
    let (status, _) = predict(port, &TEXTS[..2]);
    assert_eq!(status, 200);
    // A label without a value is refused before anything is submitted.
    let refused = crate::harness::essaim(&[
        "serve",
        "--on-cluster",
        "--model",
        "spam-filter@production",
        "--require-label",
        "gpu",
    ])
    .await;
    crate::harness::assert_refused(&refused, 2, "KEY=VALUE");
}
