//! How the cluster's processes are started: the command lines of a coordinator and a
//! worker with the fast timings of the tests (heartbeats every 200 ms, a worker lost
//! after 1 s, no straggler copies), in one place.

use std::path::{Path, PathBuf};

use super::LOG_TAIL_LINES;
use crate::deadline::{Deadline, EVENTUALLY};
use crate::process::{Process, http_status, https_status, log_tail};

/// Starts a coordinator with the fast timings of the tests on `port`, its journal in
/// `data_dir`, and waits until `/readyz` answers 200 (over TLS verified with `tls` when
/// given). Starting it again with the same port and directory is a restart: it recovers
/// the journal.
pub(super) async fn start_coordinator(
    binary: &Path,
    coordinator: &CoordinatorOptions<'_>,
    name: &str,
    log: PathBuf,
) -> Process {
    let CoordinatorOptions {
        data_dir,
        port,
        token,
        extra_args,
        tls,
    } = *coordinator;
    let mut args: Vec<String> = [
        "coordinator",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &data_dir.display().to_string(),
        "--heartbeat-ms",
        "200",
        "--worker-timeout-ms",
        "1000",
        "--long-poll-ms",
        "2000",
        // Straggler copies would break the "exactly one execution" oracles.
        "--speculation-min-runtime-ms",
        "60000",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    if let Some(token) = token {
        args.extend(["--token".to_string(), token.to_string()]);
    }
    args.extend(extra_args.iter().cloned());
    let mut process = Process::spawn(binary, name, &args, &[], log);
    let deadline = Deadline::after(EVENTUALLY, format!("{name} to answer /readyz"));
    loop {
        if let Some(status) = process.exit_status() {
            panic!(
                "{name} exited with {status} before it was ready:\n{}",
                log_tail(&process.log, LOG_TAIL_LINES)
            );
        }
        let status = match tls {
            Some(trust) => https_status(port, "/readyz", trust).await,
            None => http_status(port, "/readyz").await,
        };
        if status == Some(200) {
            return process;
        }
        deadline.tick().await;
    }
}

/// The coordinator of a cluster.
#[derive(Clone, Copy)]
pub(super) struct CoordinatorOptions<'a> {
    pub(super) data_dir: &'a Path,
    pub(super) port: u16,
    pub(super) token: Option<&'a str>,
    /// Flags added to its command line.
    pub(super) extra_args: &'a [String],
    /// The roots its certificate is verified with, when it serves TLS.
    pub(super) tls: Option<&'a essaim_tls::ClientTrust>,
}

/// One worker of a cluster.
pub(super) struct WorkerOptions<'a> {
    /// The coordinator's URL.
    pub(super) url: &'a str,
    pub(super) slots: u32,
    pub(super) token: Option<&'a str>,
    pub(super) name: &'a str,
    pub(super) scratch_dir: &'a Path,
    /// Variables added to its environment.
    pub(super) env: &'a [(String, String)],
    /// Flags added to its command line.
    pub(super) extra_args: &'a [String],
}

/// Starts a worker that may run commands; it registers on its own.
pub(super) fn start_worker(binary: &Path, worker: &WorkerOptions<'_>, log: PathBuf) -> Process {
    std::fs::create_dir_all(worker.scratch_dir).expect("the scratch directory can be created");
    let mut args: Vec<String> = [
        "worker",
        "--coordinator",
        worker.url,
        "--slots",
        &worker.slots.to_string(),
        "--allow-commands",
        "--drain-grace-secs",
        "5",
        "--scratch-dir",
        &worker.scratch_dir.display().to_string(),
        "--name",
        worker.name,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    if let Some(token) = worker.token {
        args.extend(["--token".to_string(), token.to_string()]);
    }
    args.extend(worker.extra_args.iter().cloned());
    // The worker's debug logs say what became of each attempt (a line or two per
    // attempt, affordable at these job sizes): the partition test reads them, and a
    // failure report needs them.
    Process::spawn(
        binary,
        worker.name,
        &args,
        &[("RUST_LOG", "info,essaim_worker=debug")]
            .into_iter()
            .chain(
                worker
                    .env
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            )
            .collect::<Vec<_>>(),
        log,
    )
}
