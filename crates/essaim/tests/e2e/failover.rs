//! Clients and workers ride through a coordinator's restart, and find a live coordinator
//! in a list whose first entry is dead (issue 13: "Clients do not ride through a
//! coordinator restart"; issue 14: several coordinator URLs).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{
    Cluster, ESSAIM, EVENTUALLY, free_port, job_spec, output_text, shell_task, spawn_essaim,
};
use essaim_testkit::cli::{HERMETIC_VARIABLES, inherited_essaim_variables};

/// How long the coordinator stays down: longer than any single retry delay, so that the
/// clients must retry several times.
const DOWNTIME: Duration = Duration::from_millis(2500);

/// Starts `essaim ARGS` with its output captured, killed on drop.
fn spawn_cli(args: &[&str]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(Path::new(ESSAIM));
    command.args(args);
    for variable in inherited_essaim_variables() {
        command.env_remove(variable);
    }
    command
        .envs(HERMETIC_VARIABLES)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs")
}

/// Waits for a child started by [`spawn_cli`]; returns its exit code, stdout and stderr.
async fn finish(child: tokio::process::Child, what: &str) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(EVENTUALLY, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{what}` did not finish within {EVENTUALLY:?}"))
        .expect("the child can be waited for");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Returns a loopback URL where nothing listens.
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

// Regression test for issue 13: `essaim wait` exited with code 1 or 3 while a restarted
// coordinator was not yet listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_and_status_ride_through_a_coordinator_restart() {
    const TASKS: u32 = 8;
    let mut cluster = Cluster::start(1, 2).await;
    let worker_before = cluster.worker_names();
    let tasks = (0..TASKS)
        .map(|_| shell_task("sleep 0.5; echo done-$ESSAIM_TASK_INDEX", &[]))
        .collect();
    let job_id = cluster.submit(job_spec(tasks, 10)).await;
    let job = job_id.to_string();
    let url = cluster.url();
    let waiting = spawn_cli(&["wait", &job, "--coordinator", &url]);
    cluster
        .wait_job_until(job_id, "a first task committed", |job| job.succeeded >= 1)
        .await;

    cluster.kill_coordinator();
    let status = spawn_cli(&["status", &job, "--coordinator", &url, "--output", "json"]);
    tokio::time::sleep(DOWNTIME).await;
    cluster.restart_coordinator().await;

    let (code, stdout, stderr) = finish(waiting, "essaim wait").await;
    assert_eq!(code, Some(0), "wait: {stdout}\n{stderr}");
    assert!(stdout.contains("succeeded"), "wait: {stdout}");
    assert!(
        stderr.contains(&format!("coordinator {url} unreachable")) && stderr.contains("retrying"),
        "wait says what it waits for: {stderr}"
    );
    let (code, stdout, stderr) = finish(status, "essaim status").await;
    assert_eq!(code, Some(0), "status: {stdout}\n{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(shown["job_id"], serde_json::json!(job_id), "{shown}");

    // The same worker process finished the job: it found the coordinator again alone.
    assert_eq!(cluster.worker_names(), worker_before);
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), TASKS as usize);
    for result in &results {
        assert_eq!(output_text(result), format!("done-{}\n", result.task_index));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gives_up_at_its_connect_timeout_with_exit_code_3() {
    let dead = dead_url();
    let started = std::time::Instant::now();
    let listing = spawn_cli(&["jobs", "--coordinator", &dead, "--connect-timeout", "2"]);
    let (code, stdout, stderr) = finish(listing, "essaim jobs").await;
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("coordinator {dead} unreachable")),
        "{stderr}"
    );
    assert!(stderr.contains("cannot reach the coordinator"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_whose_first_coordinator_is_dead_serves_clients_and_workers() {
    let cluster = Cluster::start(0, 1).await;
    let list = format!("{},{}", dead_url(), cluster.url());
    let scratch = cluster.path("listed-worker-scratch");
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let worker_args: Vec<String> = [
        "worker",
        "--coordinator",
        &list,
        "--slots",
        "2",
        "--allow-commands",
        "--scratch-dir",
        &scratch.display().to_string(),
        "--name",
        "listed-worker",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let log = cluster.path("listed-worker.log");
    let _worker = spawn_essaim("listed-worker", &worker_args, &[], log);
    cluster.wait_for_workers(1).await;

    let submitted = spawn_cli(&[
        "submit",
        "--coordinator",
        &list,
        "--kind",
        "echo",
        "--payload",
        "hello",
        "--count",
        "2",
        "--wait",
    ]);
    let (code, stdout, stderr) = finish(submitted, "essaim submit --wait").await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("succeeded"), "{stdout}");
    let listing = spawn_cli(&["jobs", "--coordinator", &list, "--output", "json"]);
    let (code, stdout, stderr) = finish(listing, "essaim jobs").await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let jobs: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_entry_in_the_coordinator_list_is_refused_by_name() {
    let listing = spawn_cli(&["jobs", "--coordinator", "http://127.0.0.1:7070,c2:7070"]);
    let (code, stdout, stderr) = finish(listing, "essaim jobs").await;
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("invalid coordinator URL `c2:7070`"),
        "{stderr}"
    );
}
