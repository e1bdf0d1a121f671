//! Worker labels and label-constrained placement, on real processes: a task farm
//! submitted with `--require-label gpu=yes` (or over REST with `required_labels`) runs
//! every task on the labelled worker while an unlabelled one sits idle; a job requiring a label no worker carries waits, queued
//! and not failed, and says so, until a worker carrying it joins, then finishes there.
//! Malformed labels are refused with exit code 2.

use std::collections::BTreeSet;
use std::time::Duration;

use essaim_testkit::http;
use serde_json::Value;

use crate::harness::{Cluster, EVENTUALLY, assert_refused, essaim, http_get, within};

/// The worker ids of the listed workers carrying `key=value`.
async fn workers_with(cluster: &Cluster, key: &str, value: &str) -> BTreeSet<u64> {
    cluster
        .workers()
        .await
        .into_iter()
        .filter(|worker| worker.labels.get(key).map(String::as_str) == Some(value))
        .map(|worker| worker.worker_id)
        .collect()
}

/// Submits `essaim submit ARGS` and returns the job id it prints.
async fn submit(cluster: &Cluster, args: &[&str]) -> u64 {
    let output = cluster.cli(args).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    output
        .stdout
        .trim()
        .parse()
        .expect("submit prints the job id")
}

/// The workers that committed the results of `job_id`.
async fn committed_by(cluster: &Cluster, job_id: u64, tasks: usize) -> BTreeSet<u64> {
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), tasks, "{results:?}");
    results.iter().map(|result| result.worker_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_jobs_run_only_on_workers_carrying_their_labels() {
    let mut cluster = Cluster::start(1, 4).await;
    cluster.start_worker_with_args(2, &["--label", "gpu=yes", "--label", "zone=a"]);
    cluster.wait_for_workers(2).await;
    let gpu = workers_with(&cluster, "gpu", "yes").await;
    assert_eq!(gpu.len(), 1, "{:?}", cluster.workers().await);
    let listed = cluster.cli(&["workers"]).await;
    assert!(listed.stdout.contains("gpu=yes,zone=a"), "{listed:?}");

    // Eight tasks of 300 ms: with four idle slots beside it, the unlabelled worker would
    // take some of them if labels were not heeded.
    let job = submit(
        &cluster,
        &[
            "submit",
            "--count",
            "8",
            "--require-label",
            "gpu=yes",
            "--",
            "sh",
            "-c",
            "sleep 0.3; echo ok",
        ],
    )
    .await;
    assert_eq!(committed_by(&cluster, job, 8).await, gpu);
    let status = cluster.cli(&["status", &job.to_string()]).await;
    assert!(
        status.stdout.contains("runs on workers with: gpu=yes"),
        "{status:?}"
    );

    // The same over REST: `required_labels` of a submission, labels in the views.
    let base = cluster.url();
    let body = serde_json::json!({
        "kind": "tasks", "name": "rest-gpu", "required_labels": {"gpu": "yes"},
        "tasks": (0..6).map(|_| serde_json::json!({"kind": "command",
            "payload": {"argv": ["sh", "-c", "sleep 0.3; echo ok"]}})).collect::<Vec<_>>(),
    });
    let (code, answer) =
        http::request(&base, "POST", "/api/v1/jobs", None, Some(&body.to_string())).unwrap();
    assert_eq!(code, 201, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let rest_job = answer["job_id"].as_u64().expect("a job id");
    assert_eq!(committed_by(&cluster, rest_job, 6).await, gpu);
    let detail: Value =
        serde_json::from_str(&http_get(&base, &format!("/api/v1/jobs/{rest_job}"))).unwrap();
    assert_eq!(
        detail["job"]["required_labels"],
        serde_json::json!({"gpu": "yes"})
    );
    let workers: Value = serde_json::from_str(&http_get(&base, "/api/v1/workers")).unwrap();
    let labelled = workers
        .as_array()
        .unwrap()
        .iter()
        .filter(|worker| worker["labels"] == serde_json::json!({"gpu": "yes", "zone": "a"}));
    assert_eq!(labelled.count(), 1, "{workers}");

    // A MapReduce job: its map and reduce tasks too.
    let input = cluster.path("words.txt");
    std::fs::write(&input, "gpu cpu gpu\n".repeat(50)).unwrap();
    let output = cluster.path("counts");
    let wordcount = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--input",
            input.to_str().unwrap(),
            "--output-dir",
            output.to_str().unwrap(),
            "--reducers",
            "2",
            "--require-label",
            "gpu=yes",
            "--detach",
        ])
        .await;
    assert_eq!(wordcount.code, Some(0), "{wordcount:?}");
    let job: u64 = wordcount
        .stdout
        .trim()
        .parse()
        .expect("a detached submit prints the job id");
    let tasks = cluster.job(job).await.total as usize;
    assert_eq!(committed_by(&cluster, job, tasks).await, gpu);

    // No worker carries accel=tpu: the job waits, its tasks pending, and says why.
    let waiting = submit(
        &cluster,
        &[
            "submit",
            "--count",
            "3",
            "--require-label",
            "accel=tpu",
            "--",
            "sh",
            "-c",
            "echo ok",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let job = cluster.job(waiting).await;
    assert_eq!((job.state.as_str(), job.pending), ("running", 3), "{job:?}");
    assert!(job.waiting_for_labels, "{job:?}");
    let status = cluster.cli(&["status", &waiting.to_string()]).await;
    assert!(
        status
            .stdout
            .contains("waiting for a worker with labels accel=tpu"),
        "{status:?}"
    );

    // A worker carrying it joins (labels comma-separated this time): the job finishes
    // there.
    cluster.start_worker_with_args(1, &["--labels", "accel=tpu,gpu=no"]);
    cluster.wait_for_workers(3).await;
    let tpu = workers_with(&cluster, "accel", "tpu").await;
    assert_eq!(tpu.len(), 1);
    assert_eq!(committed_by(&cluster, waiting, 3).await, tpu);
    assert!(!cluster.job(waiting).await.waiting_for_labels);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_labels_are_refused_with_exit_code_two() {
    let cases: [(&[&str], &str); 4] = [
        (&["worker", "--label", "gpu"], "KEY=VALUE"),
        (&["worker", "--label", "g pu=yes"], "letters, digits"),
        (
            &[
                "submit",
                "--require-label",
                "gpu=",
                "--count",
                "1",
                "--",
                "true",
            ],
            "empty value",
        ),
        (
            &[
                "submit",
                "--require-label",
                "gpu=yes",
                "--require-label",
                "gpu=no",
                "--count",
                "1",
                "--",
                "true",
            ],
            "given twice",
        ),
    ];
    for (args, fragment) in cases {
        let output = within("a refused command line", essaim(args)).await;
        assert_refused(&output, 2, fragment);
    }
}
