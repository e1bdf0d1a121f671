//! Retention and journal compaction: the coordinator rewrites its journal as a snapshot
//! while a job runs and forgets finished jobs, yet a SIGKILL and restart still resumes the
//! running job with every commit intact, and no job id is ever handed out twice.

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, assert_job_commits_every_task_once, job_spec, shell_task,
};
use essaim_proto::v1;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_mid_job_and_a_coordinator_crash_lose_no_commit() {
    const TASKS: u32 = 80;
    // Compact after every 10 events; forget finished jobs one second after they end.
    let mut cluster = Cluster::start_with_options(
        None,
        &["--compact-after-events", "10", "--retention-secs", "1"],
        2,
        2,
    )
    .await;

    // A first job that finishes and is then forgotten, results and all.
    let first = cluster
        .submit(job_spec(vec![shell_task("echo first", &[])], 3))
        .await;
    assert_eq!(cluster.wait_job(first, EVENTUALLY).await.state, "succeeded");
    let deadline = Deadline::after(EVENTUALLY, "the finished job to be forgotten");
    loop {
        let mut client = cluster.client();
        let status = client.get_job(v1::GetJobRequest { job_id: first }).await;
        if matches!(&status, Err(error) if error.code() == tonic::Code::NotFound) {
            break;
        }
        deadline.tick().await;
    }

    // A running job across many compactions and a crash.
    let script = "sleep 0.05; echo out-$ESSAIM_TASK_INDEX";
    let tasks = (0..TASKS).map(|_| shell_task(script, &[])).collect();
    let job_id = cluster.submit(job_spec(tasks, 10)).await;
    assert!(
        job_id > first,
        "job id {job_id} reused after job {first} was forgotten"
    );
    cluster
        .wait_job_until(job_id, "20 tasks committed", |job| job.succeeded >= 20)
        .await;
    let committed_before: BTreeSet<u32> = cluster
        .results(job_id)
        .await
        .iter()
        .map(|r| r.task_index)
        .collect();
    cluster.kill_coordinator();
    cluster.restart_coordinator().await;

    let results = assert_job_commits_every_task_once(&cluster, job_id, TASKS).await;
    let committed: BTreeSet<u32> = results.iter().map(|r| r.task_index).collect();
    assert!(committed_before.is_subset(&committed));

    // Ids keep growing after a restart from a compacted journal that forgot jobs.
    let next = cluster
        .submit(job_spec(vec![shell_task("true", &[])], 3))
        .await;
    assert!(next > job_id, "job id {next} reused after restart");
    let coordinator_log = cluster.coordinator_log();
    assert!(
        coordinator_log.contains("journal compacted"),
        "no compaction happened:\n{coordinator_log}"
    );
}
