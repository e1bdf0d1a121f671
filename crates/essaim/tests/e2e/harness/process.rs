//! Child processes of the harness: the `essaim` coordinator and workers with their log
//! files, and one-shot CLI invocations.
//!
//! A [`Process`] is killed with SIGKILL and reaped when dropped, so that a failing test
//! leaks nothing. The environment of every child is cleared of `ESSAIM_*` variables: only
//! the flags a test passes configure it.

use super::{Deadline, EVENTUALLY, LOG_TAIL_LINES};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The binary under test.
pub const ESSAIM: &str = env!("CARGO_BIN_EXE_essaim");

// ---------------------------------------------------------------- processes

/// One `essaim` child process whose output goes to a log file; killed on drop.
pub struct Process {
    /// Name used in log listings (`coordinator-1`, `worker-3`, …).
    pub name: String,
    /// Where its standard output and error go.
    pub log: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `essaim ARGS` with `env` set, without any `ESSAIM_*` variable inherited
    /// from the test's environment, so that only the flags given say how it is configured.
    pub fn spawn(name: &str, args: &[String], env: &[(&str, &str)], log: PathBuf) -> Self {
        let file = File::create(&log).expect("the log file can be created");
        let stdout = file.try_clone().expect("the log file handle can be cloned");
        let child = Command::new(ESSAIM)
            .args(args)
            .env_remove("ESSAIM_TOKEN")
            .env_remove("ESSAIM_COORDINATOR")
            .env_remove("ESSAIM_LOG_JSON")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(file)
            .spawn()
            .expect("the essaim binary starts");
        Self {
            name: name.to_string(),
            log,
            child,
            exit: None,
        }
    }

    /// Returns the process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("process ids fit in i32"))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(self.pid(), signal)
            .unwrap_or_else(|error| panic!("failed to send {signal} to {}: {error}", self.name));
    }

    /// Kills the process with SIGKILL (a no-op if it already exited) and reaps it.
    pub fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        // `Child::kill` sends SIGKILL; it fails only if the process was already reaped.
        let _already_reaped = self.child.kill();
        self.exit = self.child.wait().ok();
    }

    /// Returns the exit status if the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("the child can be polled");
        }
        self.exit
    }

    /// Waits until the process exits, failing the test after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Deadline::after(timeout, format!("{} to exit", self.name));
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            deadline.tick().await;
        }
    }

    /// Returns the whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Returns the last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| format!("(unreadable: {error})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Returns a port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback can bind");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// Returns the HTTP status of `GET path` on the loopback port, or `None` if nothing
/// answered properly. HTTP/1.0 so that the server closes the connection after answering.
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let status_line = String::from_utf8_lossy(&response)
            .lines()
            .next()?
            .to_string();
        status_line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .ok()
        .flatten()
}

/// A coordinator process with the fast timings of the tests.
pub struct Coordinator;

impl Coordinator {
    /// Starts a coordinator on `port` with its journal in `data_dir` and waits until
    /// `/readyz` answers 200. Starting it again with the same port and directory is a
    /// restart: it recovers the journal.
    pub async fn start(
        data_dir: &Path,
        port: u16,
        token: Option<&str>,
        extra_args: &[String],
        name: &str,
        log: PathBuf,
    ) -> Process {
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
        let mut process = Process::spawn(name, &args, &[], log);
        let deadline = Deadline::after(EVENTUALLY, format!("{name} to answer /readyz"));
        loop {
            if let Some(status) = process.exit_status() {
                panic!(
                    "{name} exited with {status} before it was ready:\n{}",
                    log_tail(&process.log, LOG_TAIL_LINES)
                );
            }
            if http_status(port, "/readyz").await == Some(200) {
                return process;
            }
            deadline.tick().await;
        }
    }
}

/// A worker process that may run commands.
pub struct Worker;

impl Worker {
    /// Starts a worker of `slots` slots pulling from `url`; it registers on its own.
    pub fn start(
        url: &str,
        slots: u32,
        token: Option<&str>,
        name: &str,
        scratch_dir: &Path,
        log: PathBuf,
    ) -> Process {
        std::fs::create_dir_all(scratch_dir).expect("the scratch directory can be created");
        let mut args: Vec<String> = [
            "worker",
            "--coordinator",
            url,
            "--slots",
            &slots.to_string(),
            "--allow-commands",
            "--drain-grace-secs",
            "5",
            "--scratch-dir",
            &scratch_dir.display().to_string(),
            "--name",
            name,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        if let Some(token) = token {
            args.extend(["--token".to_string(), token.to_string()]);
        }
        // The worker's debug logs say what became of each attempt (a line or two per
        // attempt, affordable at these job sizes): the partition test reads them, and a
        // failure report needs them.
        Process::spawn(
            name,
            &args,
            &[("RUST_LOG", "info,essaim_worker=debug")],
            log,
        )
    }
}

// ---------------------------------------------------------------- CLI

/// What a finished CLI invocation printed.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `essaim ARGS` to completion with `env` set and no other `ESSAIM_*` variable.
pub async fn essaim_with_env(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut command = tokio::process::Command::new(ESSAIM);
    command
        .args(args)
        .env_remove("ESSAIM_TOKEN")
        .env_remove("ESSAIM_COORDINATOR")
        .env_remove("ESSAIM_LOG_JSON")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let what = format!("`essaim {}`", args.join(" "));
    // EVENTUALLY rather than CALL_TIMEOUT: a demo runs a whole cluster.
    let output = match tokio::time::timeout(EVENTUALLY, command.output()).await {
        Ok(output) => output.expect("the essaim binary runs"),
        Err(_) => panic!("{what} did not finish within {EVENTUALLY:?}"),
    };
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `essaim ARGS` to completion with no `ESSAIM_*` variable set.
pub async fn essaim(args: &[&str]) -> CliOutput {
    essaim_with_env(args, &[]).await
}
