//! The coordinator dies with SIGKILL mid-job and is restarted on the same port and
//! journal: it resumes the job, the workers find it again on their own, and no task whose
//! result was committed before the crash runs again.

use crate::harness::{Cluster, EVENTUALLY, executions_by_task, job_spec, output_text, shell_task};
use std::collections::{BTreeMap, BTreeSet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_sigkill_mid_job_resumes_without_rerunning_finished_tasks() {
    const TASKS: u32 = 60;
    let mut cluster = Cluster::start(2, 2).await;
    let side_file = cluster.path("executions.log");
    let script = "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> \"$SIDE_FILE\"; sleep 0.2; echo out-$ESSAIM_TASK_INDEX";
    let tasks = (0..TASKS)
        .map(|_| shell_task(script, &[("SIDE_FILE", &side_file)]))
        .collect();
    let job_id = cluster.submit(job_spec(tasks, 10)).await;

    cluster
        .wait_job_until(job_id, "15 tasks committed", |job| job.succeeded >= 15)
        .await;
    // Read back what is committed: these commits are durable, so they must survive.
    let committed_before: BTreeMap<u32, u64> = cluster
        .results(job_id)
        .await
        .iter()
        .map(|result| (result.task_index, result.attempt_id))
        .collect();
    assert!(committed_before.len() >= 15, "{committed_before:?}");
    assert!(
        committed_before.len() < TASKS as usize,
        "the job finished before the crash"
    );
    cluster.kill_coordinator();
    cluster.restart_coordinator().await;

    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    cluster.wait_for_workers(2).await;
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), TASKS as usize);
    let committed: BTreeSet<u32> = results.iter().map(|result| result.task_index).collect();
    assert_eq!(committed, (0..TASKS).collect::<BTreeSet<u32>>());
    for result in &results {
        let index = result.task_index;
        assert_eq!(output_text(result), format!("out-{index}\n"));
        if let Some(attempt_before) = committed_before.get(&index) {
            assert_eq!(
                result.attempt_id, *attempt_before,
                "task {index}: the commit changed across the restart"
            );
        }
    }

    let executions = executions_by_task(&side_file);
    for index in committed_before.keys() {
        let runs = executions.get(index).map_or(0, Vec::len);
        assert_eq!(
            runs, 1,
            "task {index} was committed before the crash, yet ran {runs} times: {:?}",
            executions[index]
        );
    }
    let execution_count: usize = executions.values().map(Vec::len).sum();
    eprintln!(
        "{} tasks committed before the crash; {execution_count} executions for {TASKS} tasks; {} attempts failed",
        committed_before.len(),
        job.attempts_failed
    );
    assert!(execution_count >= TASKS as usize);
}
