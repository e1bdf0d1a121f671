//! A poison task fails every attempt and lands in the dead-letter queue with each error,
//! without holding up the rest of its job; the queue can then be requeued and purged
//! from the CLI.

use crate::harness::{Cluster, EVENTUALLY, job_spec, output_text, shell_task};
use serde_json::Value;

/// Returns the dead letters of `job_id` from `essaim dlq list --output json`.
async fn dead_letters_from_cli(cluster: &Cluster, job_id: u64) -> Vec<Value> {
    let listed = cluster.cli(&["dlq", "list", "--output", "json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let letters: Value = serde_json::from_str(&listed.stdout).expect("dlq list prints JSON");
    let letters = letters
        .as_array()
        .expect("dlq list prints an array")
        .clone();
    letters
        .into_iter()
        .filter(|letter| letter["job_id"] == job_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_task_reaches_the_dead_letter_queue_after_n_attempts_while_the_rest_completes() {
    const TASKS: u32 = 30;
    const POISON: u32 = 17;
    const MAX_ATTEMPTS: u64 = 3;
    let cluster = Cluster::start(2, 2).await;
    let tasks = (0..TASKS)
        .map(|index| match index {
            POISON => shell_task("echo boom >&2; exit 3", &[]),
            _ => shell_task("echo out-$ESSAIM_TASK_INDEX", &[]),
        })
        .collect();
    let job_id = cluster.submit(job_spec(tasks, MAX_ATTEMPTS as u32)).await;

    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "failed", "{job:?}");
    assert!(
        job.reason.contains("dead-letter queue"),
        "reason: {}",
        job.reason
    );
    assert_eq!(job.succeeded, TASKS - 1, "{job:?}");
    assert_eq!(job.dead_lettered, 1, "{job:?}");
    assert_eq!(job.attempts_failed, MAX_ATTEMPTS, "{job:?}");
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), TASKS as usize - 1);
    for result in &results {
        assert_ne!(result.task_index, POISON, "the poison task has no result");
        assert_eq!(output_text(result), format!("out-{}\n", result.task_index));
    }

    let letters = dead_letters_from_cli(&cluster, job_id).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(letter["task_index"], POISON, "{letter:#}");
    assert_eq!(letter["kind"], "command", "{letter:#}");
    assert_eq!(letter["attempts"], MAX_ATTEMPTS, "{letter:#}");
    let errors = letter["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), MAX_ATTEMPTS as usize, "{letter:#}");
    for error in errors {
        let failure = &error["failure"];
        assert_eq!(failure["exit_code"], 3, "{error:#}");
        assert_eq!(failure["retryable"], true, "{error:#}");
        let stderr_tail = failure["stderr_tail"]
            .as_str()
            .expect("stderr_tail is text");
        assert!(stderr_tail.contains("boom"), "{error:#}");
    }

    let requeued = cluster.cli(&["dlq", "requeue", &job_id.to_string()]).await;
    assert_eq!(requeued.code, Some(0), "{requeued:?}");
    assert!(
        requeued.stdout.contains("requeued 1 dead letters"),
        "{requeued:?}"
    );
    // The requeued task gets fresh attempts, fails them all, and comes back.
    let job = cluster
        .wait_job_until(job_id, "the requeued task to fail again", |job| {
            job.state != "running" && job.attempts_failed == 2 * MAX_ATTEMPTS
        })
        .await;
    assert_eq!(job.state, "failed", "{job:?}");
    assert_eq!(job.succeeded, TASKS - 1, "{job:?}");
    assert_eq!(job.dead_lettered, 1, "{job:?}");
    let letters = dead_letters_from_cli(&cluster, job_id).await;
    assert_eq!(
        letters.len(),
        1,
        "the task is back in the queue: {letters:#?}"
    );
    assert_eq!(letters[0]["task_index"], POISON);

    let purged = cluster.cli(&["dlq", "purge", &job_id.to_string()]).await;
    assert_eq!(purged.code, Some(0), "{purged:?}");
    assert!(
        purged.stdout.contains("purged 1 dead letters"),
        "{purged:?}"
    );
    let letters = dead_letters_from_cli(&cluster, job_id).await;
    assert!(letters.is_empty(), "purged letters are gone: {letters:#?}");
    let job = cluster.job(job_id).await;
    assert_eq!(
        job.state, "failed",
        "purging does not make the job succeed: {job:?}"
    );
}
