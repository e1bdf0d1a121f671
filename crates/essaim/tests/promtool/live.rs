//! A coordinator and a worker as real processes of the binary under test, and the
//! plain HTTP/1.0 requests the checks scrape them with.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ESSAIM, EVENTUALLY};

/// A coordinator and one worker as real processes, killed on drop. Their logs are
/// printed when the test fails.
pub(crate) struct LiveCluster {
    dir: tempfile::TempDir,
    pub(crate) coordinator_port: u16,
    pub(crate) worker_http_port: u16,
    processes: Vec<(String, Child)>,
}

impl LiveCluster {
    /// A directory for processes, none started yet.
    pub(crate) fn empty() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("essaim-promtool-")
            .tempdir()
            .expect("a temporary directory");
        Self {
            coordinator_port: free_port(),
            worker_http_port: free_port(),
            dir,
            processes: Vec::new(),
        }
    }

    pub(crate) fn start() -> Self {
        let mut cluster = Self::empty();
        let data_dir = cluster.path("coordinator-data");
        let listen = format!("127.0.0.1:{}", cluster.coordinator_port);
        cluster.spawn(
            "coordinator",
            &[
                "coordinator",
                "--listen",
                &listen,
                "--data-dir",
                &data_dir,
                "--heartbeat-ms",
                "200",
                "--worker-timeout-ms",
                "1000",
            ],
        );
        cluster.wait_ready("coordinator", cluster.coordinator_port);
        let coordinator_url = cluster.url();
        let http_listen = format!("127.0.0.1:{}", cluster.worker_http_port);
        let scratch = cluster.path("worker-scratch");
        cluster.spawn(
            "worker",
            &[
                "worker",
                "--coordinator",
                &coordinator_url,
                "--http-listen",
                &http_listen,
                "--slots",
                "2",
                "--scratch-dir",
                &scratch,
                "--name",
                "promtool-worker",
            ],
        );
        // A worker is ready once registered.
        cluster.wait_ready("worker", cluster.worker_http_port);
        cluster
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.coordinator_port)
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub(crate) fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).expect("a log file");
        let child = Command::new(ESSAIM)
            .args(args)
            .env_remove("ESSAIM_TOKEN")
            .env_remove("ESSAIM_COORDINATOR")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file handle can be cloned"))
            .stderr(log)
            .spawn()
            .expect("the essaim binary starts");
        self.processes.push((name.to_string(), child));
    }

    pub(crate) fn wait_ready(&mut self, name: &str, port: u16) {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let (_, child) = self
                .processes
                .iter_mut()
                .find(|(process, _)| process == name)
                .expect("the process was spawned");
            if let Some(status) = child.try_wait().expect("the child can be polled") {
                panic!("the {name} exited with {status} before it was ready");
            }
            if http_status(port, "/readyz") == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "the {name} never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Submits a job of `args` and waits for it; its outcome does not matter (the
    /// failing job is there to feed the failure counters).
    pub(crate) fn run_job(&self, args: &[&str]) {
        let output = Command::new(ESSAIM)
            .arg("submit")
            .args(["--coordinator", &self.url(), "--wait"])
            .args(args)
            .env_remove("ESSAIM_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("essaim submit runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "essaim submit {args:?} failed to run ({}): {stderr}",
            output.status
        );
    }
}

impl Drop for LiveCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.processes {
            // Fails only if the child was already reaped.
            let _already_reaped = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            return;
        }
        for (name, _) in &self.processes {
            let log = std::fs::read_to_string(self.path(&format!("{name}.log")))
                .unwrap_or_else(|error| format!("(unreadable: {error})"));
            eprintln!("---------- {name} log ----------\n{log}");
        }
    }
}

/// Returns a port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback can bind");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// Sends `GET path` over HTTP/1.0 (the server closes the connection after answering)
/// and returns the raw response, or `None` if nothing answered.
pub(crate) fn http_request(port: u16, path: &str, accept: Option<&str>) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let accept = accept
        .map(|accept| format!("Accept: {accept}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Returns the HTTP status of `GET path`, or `None` if nothing answered properly.
pub(crate) fn http_status(port: u16, path: &str) -> Option<u16> {
    let response = http_request(port, path, None)?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the content type and body of a successful `GET path`.
pub(crate) fn http_get(port: u16, path: &str, accept: Option<&str>) -> (String, String) {
    let response =
        http_request(port, path, accept).unwrap_or_else(|| panic!("GET {path} on :{port}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in:\n{response}"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (content_type, body.to_string())
}
