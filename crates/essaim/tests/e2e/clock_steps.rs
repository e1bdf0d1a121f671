//! A step of the coordinator's wall clock (NTP, a resumed virtual machine) moves no
//! deadline: with the coordinator on a clock of its own (libfaketime, see
//! `essaim_testkit::clock`), tasks of 4 s each run while its wall clock jumps 10 minutes
//! forward: every task runs once (no lease ran out at the jump). Then 20 minutes back:
//! a task whose workers are killed runs again once their timeout passes (time did not
//! stand still). Skipped without libfaketime or etcd.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use essaim_testkit::ha::HaCluster;

use crate::harness::{Deadline, EVENTUALLY, executions_by_task, job_spec, line_count, shell_task};

/// Records each execution, then works for 4 s.
const TASK: &str = "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> \"$SIDE_FILE\"; sleep 4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_of_the_coordinators_wall_clock_moves_no_lease() {
    let Some(mut cluster) =
        HaCluster::start_on_fake_clocks(env!("CARGO_BIN_EXE_essaim"), 1, 1, 2, 2, false).await
    else {
        return;
    };
    if !cluster.on_fake_clocks() {
        eprintln!("libfaketime is not installed: skipping");
        return;
    }
    let side_file = cluster.path("executions");
    let tasks = (0..4)
        .map(|_| shell_task(TASK, &[("SIDE_FILE", &side_file)]))
        .collect();
    let job = cluster.submit(job_spec(tasks, 4)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(cluster.jump_coordinator_clock(0, 600));
    let status = cluster
        .wait_job_until(job, "finished", |job| job.state != "running")
        .await;
    assert_eq!(status.state, "succeeded", "{status:?}");
    let executions = executions_by_task(&side_file);
    assert_eq!(executions.len(), 4, "{executions:?}");
    assert!(
        executions.values().all(|runs| runs.len() == 1),
        "a task ran again after the clock jumped forward: {executions:?}"
    );

    // Back by 20 minutes (10 before the true time): the workers running a task are
    // killed, and the task still runs again once their timeout passes (time did not
    // stand still for 20 minutes).
    assert!(cluster.jump_coordinator_clock(0, -1200));
    let slow_file = cluster.path("slow-executions");
    let slow = shell_task(
        "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> \"$SIDE_FILE\"; sleep 60",
        &[("SIDE_FILE", &slow_file)],
    );
    cluster.submit(job_spec(vec![slow], 4)).await;
    let runs = |count: usize| {
        let slow_file = slow_file.clone();
        move || line_count(&slow_file) >= count
    };
    wait_for(runs(1), "the slow task running").await;
    cluster.kill_worker(0);
    cluster.kill_worker(0);
    cluster.start_worker(2);
    wait_for(
        runs(2),
        "the slow task run again after its workers' timeout",
    )
    .await;
}

/// Waits until `condition` holds, failing the test after [`EVENTUALLY`].
async fn wait_for(condition: impl Fn() -> bool, what: &str) {
    let deadline = Deadline::after(EVENTUALLY, what.to_string());
    while !condition() {
        deadline.tick().await;
    }
}
