//! Every command that prints data prints exactly one JSON document on standard output
//! with `-o json` / `--output json` (`--format json` too), and nothing else there:
//! progress and notes go to standard error. Where `-o` named the output directory
//! (`run`, `submit JOB`, `gen`), the directory is `--output-dir`, and the old
//! `--output DIR --format json` still works.

use crate::harness::{CliOutput, Cluster, EVENTUALLY, job_spec, shell_task};
use serde_json::Value;

/// Asserts success and parses standard output as one JSON document.
fn parse(what: &str, output: &CliOutput) -> Value {
    assert_eq!(output.code, Some(0), "{what}: {output:?}");
    serde_json::from_str(&output.stdout).unwrap_or_else(|error| {
        panic!("{what}: stdout is not one JSON document ({error}): {output:?}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_data_command_prints_one_json_document() {
    let cluster = Cluster::start(1, 2).await;

    let submitted = cluster
        .cli(&[
            "submit", "--name", "json", "--count", "3", "--output", "json", "--", "echo", "hi",
        ])
        .await;
    let submitted = parse("submit", &submitted);
    let job_id = submitted["job_id"].as_u64().expect("submit names the job");
    assert_eq!(submitted["tasks"], 3);
    let id = job_id.to_string();

    let waited = parse(
        "wait",
        &cluster.cli(&["wait", &id, "--output", "json"]).await,
    );
    assert_eq!(waited["state"], "succeeded", "{waited:#}");
    let status = parse(
        "status",
        &cluster.cli(&["status", &id, "--output", "json"]).await,
    );
    assert_eq!(status["succeeded"], 3, "{status:#}");
    let jobs = parse("jobs", &cluster.cli(&["jobs", "--output", "json"]).await);
    let short = parse("jobs -o", &cluster.cli(&["jobs", "-o", "json"]).await);
    assert_eq!(short, jobs, "-o is --output");
    assert!(
        jobs.as_array().is_some_and(|jobs| !jobs.is_empty()),
        "{jobs:#}"
    );
    let old_spelling = parse(
        "jobs --format",
        &cluster.cli(&["jobs", "--format", "json"]).await,
    );
    assert_eq!(old_spelling, jobs, "--format is the same as --output");
    let results = parse(
        "results",
        &cluster.cli(&["results", &id, "--output", "json"]).await,
    );
    assert_eq!(results.as_array().map(Vec::len), Some(3), "{results:#}");
    let workers = parse(
        "workers",
        &cluster.cli(&["workers", "--output", "json"]).await,
    );
    assert_eq!(workers.as_array().map(Vec::len), Some(1), "{workers:#}");

    let waited_submit = cluster
        .cli(&[
            "submit", "--count", "2", "--wait", "--output", "json", "--", "true",
        ])
        .await;
    let waited_submit = parse("submit --wait", &waited_submit);
    assert_eq!(waited_submit["state"], "succeeded", "{waited_submit:#}");

    // The dead-letter queue.
    let poison = cluster
        .submit(job_spec(vec![shell_task("exit 3", &[])], 1))
        .await;
    cluster.wait_job(poison, EVENTUALLY).await;
    let poison_id = poison.to_string();
    let listed = parse(
        "dlq list",
        &cluster
            .cli(&["dlq", "list", "--job", &poison_id, "--output", "json"])
            .await,
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed:#}");
    let shown = parse(
        "dlq show",
        &cluster
            .cli(&["dlq", "show", &poison_id, "0", "--output", "json"])
            .await,
    );
    assert_eq!(shown["task_index"], 0, "{shown:#}");
    let requeued = parse(
        "dlq requeue",
        &cluster
            .cli(&["dlq", "requeue", &poison_id, "--output", "json"])
            .await,
    );
    assert_eq!(requeued["requeued"], 1, "{requeued:#}");
    cluster
        .wait_job_until(poison, "the requeued task to fail again", |job| {
            job.state != "running" && job.attempts_failed == 2
        })
        .await;
    let purged = parse(
        "dlq purge",
        &cluster
            .cli(&["dlq", "purge", &poison_id, "--output", "json"])
            .await,
    );
    assert_eq!(purged["purged"], 1, "{purged:#}");

    // The report prints the paths it wrote.
    let report_dir = cluster.path("report").display().to_string();
    let report = parse(
        "report",
        &cluster
            .cli(&["report", &id, "--output-dir", &report_dir, "-o", "json"])
            .await,
    );
    assert_eq!(
        report["files"].as_array().map(Vec::len),
        Some(6),
        "{report:#}"
    );

    // MapReduce: the old spelling, `--output DIR --format json`.
    let input = cluster.path("words.txt");
    std::fs::write(&input, "a b a\nc a\n").expect("the input can be written");
    let input = input.display().to_string();
    let output_dir = cluster.path("wordcount").display().to_string();
    let url = cluster.url();
    let run = cluster
        .cli(&[
            "run",
            "wordcount",
            "--input",
            &input,
            "--output",
            &output_dir,
            "--coordinator",
            &url,
            "--format",
            "json",
        ])
        .await;
    let run = parse("run", &run);
    assert_eq!(run["succeeded"], true, "{run:#}");
    let listed_jobs = parse(
        "run --list",
        &cluster.cli(&["run", "--list", "--format", "json"]).await,
    );
    assert!(
        listed_jobs
            .as_array()
            .is_some_and(|jobs| jobs.iter().any(|job| job["name"] == "wordcount")),
        "{listed_jobs:#}"
    );
    let detached_dir = cluster.path("wordcount-detached").display().to_string();
    let detached = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--input",
            &input,
            "--output-dir",
            &detached_dir,
            "--detach",
            "-o",
            "json",
        ])
        .await;
    let detached = parse("submit JOB --detach", &detached);
    let detached_id = detached["job_id"].as_u64().expect("the job id");
    cluster.wait_job(detached_id, EVENTUALLY).await;
    let generated_dir = cluster.path("sort-input").display().to_string();
    let generated = cluster
        .cli(&[
            "gen",
            "sort",
            "--output-dir",
            &generated_dir,
            "--rows",
            "100",
            "--files",
            "1",
            "-o",
            "json",
        ])
        .await;
    let generated = parse("gen sort", &generated);
    assert_eq!(generated["records"], 100, "{generated:#}");

    let cancelled_job = cluster
        .submit(job_spec(vec![shell_task("sleep 30", &[])], 1))
        .await;
    let cancelled = parse(
        "cancel",
        &cluster
            .cli(&["cancel", &cancelled_job.to_string(), "--output", "json"])
            .await,
    );
    assert_eq!(cancelled["job_id"], cancelled_job, "{cancelled:#}");
}
