//! SIGTERM drains a worker: it pulls nothing more, lets its running task finish and
//! commit, leaves the cluster, and exits with status 0 within its grace period.

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, assert_job_commits_every_task_once, executions_by_task,
    job_spec, line_count, output_text, shell_task,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The `--drain-grace-secs` the harness gives every worker.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_drains_on_sigterm_finishing_its_running_task() {
    const TASKS: u32 = 3;
    let mut cluster = Cluster::start(1, 1).await;
    let drained = cluster.worker_names()[0].clone();
    let side_file = cluster.path("executions.log");
    let script = "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> \"$SIDE_FILE\"; sleep 1.5; echo out-$ESSAIM_TASK_INDEX";
    let tasks = (0..TASKS)
        .map(|_| shell_task(script, &[("SIDE_FILE", &side_file)]))
        .collect();
    let job_id = cluster.submit(job_spec(tasks, 4)).await;

    let deadline = Deadline::after(EVENTUALLY, "the first task to start");
    while line_count(&side_file) == 0 {
        deadline.tick().await;
    }
    let signalled = Instant::now();
    cluster.worker(&drained).signal(Signal::SIGTERM);
    let status = cluster
        .wait_worker_exit(&drained, DRAIN_GRACE + Duration::from_secs(10))
        .await;
    let drain_took = signalled.elapsed();
    assert!(status.success(), "the drained worker exited with {status}");
    assert!(
        drain_took < DRAIN_GRACE,
        "the drain took {drain_took:?}, more than the grace"
    );

    let executions = executions_by_task(&side_file);
    assert_eq!(
        executions.len(),
        1,
        "a draining worker starts nothing new: {executions:?}"
    );
    let (running_task, attempts) = executions.first_key_value().expect("one task ran");
    assert_eq!(attempts.len(), 1);
    let results = cluster.results(job_id).await;
    assert_eq!(
        results.len(),
        1,
        "the running task was committed during the drain"
    );
    assert_eq!(results[0].task_index, *running_task);
    assert_eq!(format!("{:x}", results[0].attempt_id), attempts[0]);
    assert_eq!(output_text(&results[0]), format!("out-{running_task}\n"));
    let listed = cluster.cli(&["workers", "--output", "json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let listed: Value = serde_json::from_str(&listed.stdout).expect("workers prints JSON");
    assert_eq!(
        listed,
        serde_json::json!([]),
        "the drained worker left the cluster"
    );

    let replacement = cluster.start_worker(1);
    assert_job_commits_every_task_once(&cluster, job_id, TASKS).await;
    let listed = cluster.cli(&["workers", "--output", "json"]).await;
    let listed: Value = serde_json::from_str(&listed.stdout).expect("workers prints JSON");
    let names: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [replacement.as_str()],
        "only the replacement is listed, not {drained}"
    );
}
