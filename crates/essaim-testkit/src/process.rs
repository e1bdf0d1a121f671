//! One child process of a test, with its output in a log file.
//!
//! A [`Process`] is killed with SIGKILL and reaped when dropped, so that a failing test
//! leaks nothing. The environment of every child is cleared of the `ESSAIM_*` variables
//! of the test's environment and reads no configuration file unless the test names one
//! ([`crate::cli::HERMETIC_VARIABLES`]): only the flags a test passes configure it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{HERMETIC_VARIABLES, inherited_essaim_variables};
use crate::deadline::Deadline;

/// One child process whose output goes to a log file; killed on drop.
pub struct Process {
    /// Name used in log listings (`coordinator-1`, `worker-3`, …).
    pub name: String,
    /// Where its standard output and error go.
    pub log: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `BINARY ARGS` with `env` set, without the `ESSAIM_*` variables of the
    /// test's environment, so that only the flags given say how it is configured.
    pub fn spawn(
        binary: &Path,
        name: &str,
        args: &[String],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> Self {
        let file = File::create(&log).expect("the log file can be created");
        let stdout = file.try_clone().expect("the log file handle can be cloned");
        let mut command = Command::new(binary);
        command.args(args);
        for variable in inherited_essaim_variables() {
            command.env_remove(variable);
        }
        let child = command
            .envs(HERMETIC_VARIABLES)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("{} does not start: {error}", binary.display()));
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

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing, as a
    /// machine cut off from the network would.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
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
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        status_of_get(stream, path).await
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .ok()
        .flatten()
}

/// Returns the HTTP status of `GET path` over TLS on the loopback port (its certificate
/// verified with `trust` for `127.0.0.1`), or `None` if nothing answered properly.
pub async fn https_status(port: u16, path: &str, trust: &essaim_tls::ClientTrust) -> Option<u16> {
    let io = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let stream = trust.connect(tcp, "127.0.0.1").await.ok()?;
        status_of_get(stream, path).await
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .ok()
        .flatten()
}

/// Sends `GET path` as HTTP/1.0 on `stream` and returns the answer's status.
async fn status_of_get(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    path: &str,
) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    // A TLS peer that closes without close_notify ends in an error after a whole answer:
    // the status line read before it still counts.
    let _ = stream.read_to_end(&mut response).await;
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()?
        .to_string();
    status_line.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the body of `GET path` on the loopback port, or `None` if nothing answered.
pub async fn http_body(port: u16, path: &str) -> Option<String> {
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        Some(
            text.split_once("\r\n\r\n")
                .map_or(text.clone(), |(_, body)| body.to_string()),
        )
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_of_a_log_is_its_last_lines() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("log");
        std::fs::write(&log, "one\ntwo\nthree\n").expect("write the log");
        assert_eq!(log_tail(&log, 2), "two\nthree");
        assert_eq!(log_tail(&log, 10), "one\ntwo\nthree");
        assert!(log_tail(&dir.path().join("missing"), 2).starts_with("(unreadable"));
    }

    #[tokio::test]
    async fn a_killed_process_is_reaped_and_its_log_kept() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let args = ["-c".to_string(), "echo started; sleep 60".to_string()];
        let mut process = Process::spawn(
            Path::new("sh"),
            "sleeper",
            &args,
            &[],
            dir.path().join("sleeper.log"),
        );
        let deadline = Deadline::after(Duration::from_secs(10), "the sleeper's first line");
        while process.log_text().is_empty() {
            deadline.tick().await;
        }
        assert!(process.exit_status().is_none(), "it is still sleeping");
        process.pause();
        process.resume();
        process.kill();
        let status = process.exit_status().expect("a killed process has exited");
        assert!(!status.success());
        assert_eq!(process.log_text(), "started\n");
    }
}
