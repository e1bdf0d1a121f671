//! The workers of `essaim local` die with it: a SIGKILL of the local cluster, which
//! gives it no chance to stop them, leaves no worker process behind (issue 13: they
//! used to retry their pulls against the dead coordinator forever).
//!
//! Worker processes are found through `/proc` as the children of the cluster process.

use crate::harness::{Deadline, EVENTUALLY, essaim, free_port, one_at_a_time, spawn_essaim};
use nix::sys::signal::Signal;
use std::time::Duration;

/// How long the workers may outlive their cluster: the lifeline is read at once, so a
/// few seconds is slack for a loaded machine.
const WORKERS_EXIT_WITHIN: Duration = Duration::from_secs(5);

const WORKERS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_local_cluster_with_a_running_job_kills_its_workers() {
    let _one_at_a_time = one_at_a_time().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url_port = free_port();
    let url = format!("http://127.0.0.1:{url_port}");
    let args: Vec<String> = [
        "local",
        "--workers",
        &WORKERS.to_string(),
        "--slots",
        "1",
        "--listen",
        &format!("127.0.0.1:{url_port}"),
        "--data-dir",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([dir.path().join("cluster").display().to_string()])
    .collect();
    let mut cluster = spawn_essaim("local", &args, &[], dir.path().join("local.log"));
    let parent = cluster.pid().as_raw() as u32;

    let deadline = Deadline::after(EVENTUALLY, format!("{WORKERS} workers of essaim local"));
    let workers = loop {
        let workers = worker_children_of(parent);
        if workers.len() == WORKERS {
            break workers;
        }
        assert!(
            cluster.exit_status().is_none(),
            "essaim local exited: {}",
            cluster.log_text()
        );
        deadline.tick().await;
    };
    // Busy workers: each holds a long task when its cluster dies.
    let submitted = essaim(&[
        "submit",
        "--coordinator",
        &url,
        "--kind",
        "sleep",
        "--payload",
        "600000",
        "--count",
        &WORKERS.to_string(),
    ])
    .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");

    cluster.signal(Signal::SIGKILL);
    cluster.wait_exit(EVENTUALLY).await;
    let give_up_at = std::time::Instant::now() + WORKERS_EXIT_WITHIN;
    loop {
        let survivors: Vec<u32> = workers
            .iter()
            .copied()
            .filter(|pid| is_alive(*pid))
            .collect();
        if survivors.is_empty() {
            return;
        }
        if std::time::Instant::now() > give_up_at {
            for pid in &survivors {
                // Leave nothing behind, then fail.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    Signal::SIGKILL,
                );
            }
            panic!("workers {survivors:?} outlived their killed cluster");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns the process ids of the `essaim worker` children of process `parent`.
fn worker_children_of(parent: u32) -> Vec<u32> {
    let mut workers = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return workers;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Some((_, parent_of_pid)) = state_and_parent(pid) else {
            continue;
        };
        let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_worker = command_line.split(|byte| *byte == 0).nth(1) == Some(b"worker");
        if parent_of_pid == parent && is_worker {
            workers.push(pid);
        }
    }
    workers
}

/// Returns whether process `pid` still runs (a zombie has exited: it only waits for a
/// parent to reap it, and an orphan's new parent may be slow to).
fn is_alive(pid: u32) -> bool {
    state_and_parent(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Returns the state letter and parent id of process `pid` from `/proc/PID/stat`.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}
