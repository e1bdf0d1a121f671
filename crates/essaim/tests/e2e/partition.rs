//! A worker cut off from the coordinator for longer than the worker timeout loses its
//! lease, and its task runs elsewhere. Whatever it reports afterwards must never be
//! committed on top of (or instead of) the newer attempt.
//!
//! Two fences stand in the way of such a late result: the coordinator rejects (and
//! counts) a result whose attempt no longer holds the lease, and the worker itself drops
//! the attempts of a session it learns is over. Which one catches a real worker frozen
//! with SIGSTOP depends on which of its loops runs first when it wakes up, so:
//! - `late_result_from_a_partitioned_worker_is_rejected` freezes a real worker and
//!   accepts either fence, checking that one of them did catch the result;
//! - `stale_report_after_lease_expiry_is_rejected_and_counted` plays the partitioned
//!   worker itself over gRPC, so that the late result reaches the coordinator for sure,
//!   and checks the coordinator's fence alone.

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, executions_by_task, job_spec, line_count, output_text,
    shell_task,
};
use essaim_proto::{CoordinatorClient, v1};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_result_from_a_partitioned_worker_is_rejected() {
    let mut cluster = Cluster::start(1, 1).await;
    let zombie = cluster.worker_names()[0].clone();
    let side_file = cluster.path("executions.log");
    let script = "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> \"$SIDE_FILE\"; sleep 3; echo done-$ESSAIM_TASK_INDEX";
    let job_id = cluster
        .submit(job_spec(
            vec![shell_task(script, &[("SIDE_FILE", &side_file)])],
            5,
        ))
        .await;

    let deadline = Deadline::after(EVENTUALLY, "the task to start");
    while line_count(&side_file) == 0 {
        deadline.tick().await;
    }
    let zombie_attempt = executions_by_task(&side_file)[&0][0].clone();
    // The command runs in a process group of its own, so it keeps running (and finishes)
    // while its worker is frozen: the worker has a result to report when it wakes up.
    cluster.worker(&zombie).pause();
    let job = cluster
        .wait_job_until(job_id, "the lease to expire", |job| {
            job.attempts_failed >= 1
        })
        .await;
    assert_eq!(job.state, "running", "{job:?}");

    let successor = cluster.start_worker(1);
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), 1);
    let winner = results[0].attempt_id;
    assert_ne!(
        format!("{winner:x}"),
        zombie_attempt,
        "the frozen attempt cannot have won"
    );

    cluster.worker(&zombie).resume();
    // The zombie wakes up, learns that its session is over and registers again; by then
    // its late result has met one of the two fences.
    let deadline = Deadline::after(EVENTUALLY, format!("{zombie} to register again"));
    while !cluster.worker(&zombie).log_text().contains("generation=2") {
        deadline.tick().await;
    }
    let deadline = Deadline::after(EVENTUALLY, "a fence to catch the zombie's result");
    let fence = loop {
        let job = cluster.job(job_id).await;
        if job.results_rejected >= 1 {
            break format!(
                "the coordinator rejected it ({} rejected)",
                job.results_rejected
            );
        }
        let log = cluster.worker(&zombie).log_text();
        let dropped_by_dispatcher = log.lines().any(|line| {
            line.contains("not reported") && line.contains(&format!("attempt={zombie_attempt}"))
        });
        if dropped_by_dispatcher || log.contains("dropping results") {
            break "the worker dropped it before reporting (results_rejected stays 0)".to_string();
        }
        deadline.tick().await;
    };
    eprintln!("the zombie's late result was fenced off: {fence}");
    let job = cluster.job(job_id).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(job.succeeded, 1, "{job:?}");
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), 1, "still exactly one result");
    assert_eq!(
        results[0].attempt_id, winner,
        "the late result did not replace the commit"
    );
    assert_eq!(output_text(&results[0]), "done-0\n");
    // The woken worker is a member again, next to its successor.
    cluster.wait_for_workers(2).await;
    let mut names: Vec<String> = cluster
        .workers()
        .await
        .into_iter()
        .map(|worker| worker.name)
        .collect();
    names.sort();
    let mut expected = vec![zombie, successor];
    expected.sort();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_report_after_lease_expiry_is_rejected_and_counted() {
    let mut cluster = Cluster::start(0, 1).await;
    // The test is the partitioned worker: it registers, takes the task, then goes silent.
    let mut zombie = cluster.client();
    let registration = v1::RegisterWorkerRequest {
        name: "zombie".into(),
        slots: 1,
        kinds: vec!["command".into()],
        ..Default::default()
    };
    let zombie_id = zombie
        .register_worker(registration)
        .await
        .expect("the zombie registers")
        .into_inner()
        .worker_id;
    let job_id = cluster
        .submit(job_spec(
            vec![shell_task("echo done-$ESSAIM_TASK_INDEX", &[])],
            5,
        ))
        .await;
    let deadline = Deadline::after(EVENTUALLY, "the zombie to get the task");
    let stale_attempt = loop {
        let pull = v1::PullTasksRequest {
            worker_id: zombie_id,
            max_tasks: 1,
            results: Vec::new(),
        };
        let reply = zombie
            .pull_tasks(pull)
            .await
            .expect("the zombie pulls")
            .into_inner();
        if let Some(assignment) = reply.assignments.first() {
            break assignment.attempt_id;
        }
        deadline.check();
    };
    let job = cluster
        .wait_job_until(job_id, "the zombie's lease to expire", |job| {
            job.attempts_failed >= 1
        })
        .await;
    assert_eq!(job.state, "running", "{job:?}");

    let stale_report = || v1::ReportResultsRequest {
        worker_id: zombie_id,
        results: vec![v1::AttemptResult {
            attempt_id: stale_attempt,
            outcome: Some(v1::attempt_result::Outcome::Success(v1::TaskOutput {
                inline: b"zombie\n".to_vec(),
                file: None,
                counters: Default::default(),
            })),
            duration_ms: 1,
        }],
    };
    // Before the task is committed again: the task is free, yet the stale attempt may
    // not take it.
    let reply = report_and_expect_rejection(&mut zombie, stale_report()).await;
    assert!(
        reply.reregister,
        "the zombie is told it was forgotten: {reply:?}"
    );
    let job = cluster.job(job_id).await;
    assert_eq!(
        (job.state.as_str(), job.succeeded, job.results_rejected),
        ("running", 0, 1),
        "{job:?}"
    );

    cluster.start_worker(1);
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), 1);
    let winner = results[0].attempt_id;
    assert_ne!(winner, stale_attempt);
    assert_eq!(output_text(&results[0]), "done-0\n");

    // After the new commit: rejected again, and the commit stands.
    report_and_expect_rejection(&mut zombie, stale_report()).await;
    let job = cluster.job(job_id).await;
    assert_eq!(job.results_rejected, 2, "{job:?}");
    assert_eq!(job.succeeded, 1, "{job:?}");
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), 1, "still exactly one result");
    assert_eq!(results[0].attempt_id, winner);
    assert_eq!(output_text(&results[0]), "done-0\n");
}

/// Sends a stale attempt's report and asserts the coordinator rejected its one result;
/// returns the reply.
async fn report_and_expect_rejection(
    zombie: &mut CoordinatorClient,
    report: v1::ReportResultsRequest,
) -> v1::ReportResultsResponse {
    let reply = zombie
        .report_results(report)
        .await
        .expect("the report is answered")
        .into_inner();
    assert_eq!(reply.rejected, 1, "{reply:?}");
    reply
}
