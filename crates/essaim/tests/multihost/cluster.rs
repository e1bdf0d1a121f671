//! A cluster whose every node is a container with an address of its own on a private
//! Docker network, driven with plain `docker` commands so that a test can kill, cut off,
//! reconnect, add and stop one node at a time.
//!
//! The coordinator's port is published on a free port of 127.0.0.1: the test, on the
//! host, reads the REST API and `/metrics` there and submits with the host's binary.
//! Workers reach the coordinator by its container name, and advertise their own
//! container name, which Docker's DNS keeps resolving after a disconnect and reconnect.
//!
//! Each cluster has names of its own (`essaim-mh-PID-SCENARIO-…`) and the label
//! `essaim.test=multihost` (for a manual clean-up after a test process was killed);
//! dropping it removes its containers, their volumes and its network, even on panic.
//!
//! The Docker helpers at the top are copied from `tests/containers.rs` (a few lines,
//! kept apart so that each container test stays one file a reader can follow alone).

use essaim_testkit::docker::{binary_to_package, http_get, repository_root};
pub use essaim_testkit::docker::{docker_is_usable, succeeded};

/// The binary under test.
const ESSAIM: &str = env!("CARGO_BIN_EXE_essaim");
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The image under test, the one `tests/containers.rs` builds from the same binary.
const IMAGE: &str = "essaim:test";

/// The coordinator's `--worker-timeout-ms`: short, so that recovery takes seconds. The
/// heartbeat stays at its default of one second.
pub const WORKER_TIMEOUT: Duration = Duration::from_millis(3000);

/// Slots per worker: few, so that a job of a few dozen tasks keeps every worker busy
/// for several seconds.
const SLOTS: &str = "2";

/// How long containers may take to start, and jobs to finish.
pub const EVENTUALLY: Duration = Duration::from_secs(90);

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(100);

/// Runs `docker ARGS`, panicking with its output unless it succeeded.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output();
    succeeded(&format!("docker {}", args.join(" ")), output)
}

/// Builds the image once per test process. `deploy/docker/build-image.sh` finds the
/// base image that `scripts/test.sh` made, and Docker's cache finds the layers of the
/// same binary packaged by `tests/containers.rs`: after the first run this takes
/// seconds.
pub fn build_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (binary, stripped_here) = binary_to_package(
            Path::new(ESSAIM),
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            &format!("essaim-for-multihost-image-{}", std::process::id()),
        );
        let built = Command::new(repository_root().join("deploy/docker/build-image.sh"))
            .env("ESSAIM_BINARY", &binary)
            .env("ESSAIM_IMAGE", IMAGE)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output();
        if stripped_here {
            let _already_gone = std::fs::remove_file(&binary);
        }
        succeeded("deploy/docker/build-image.sh", built);
    });
}

/// Polls `probe` until it returns a value, failing after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    essaim_testkit::deadline::poll_blocking(what, timeout, POLL, probe)
}

/// A coordinator and workers, each a container on the cluster's own network.
pub struct Cluster {
    /// The prefix of every name: `essaim-mh-PID-SCENARIO`.
    prefix: String,
    /// The private bridge network.
    network: String,
    /// Every container created, coordinator first: for the logs and the removal.
    containers: Vec<String>,
    /// The coordinator's published address on the host, `127.0.0.1:PORT`.
    address: String,
    /// The cluster token.
    token: String,
}

impl Cluster {
    /// Starts a coordinator and `workers` workers (numbered from 1), and waits until
    /// every worker has registered.
    pub fn start(scenario: &str, workers: usize) -> Self {
        let prefix = format!("essaim-mh-{}-{scenario}", std::process::id());
        let network = format!("{prefix}-net");
        docker(&[
            "network",
            "create",
            "--label",
            "essaim.test=multihost",
            &network,
        ]);
        let mut cluster = Self {
            token: format!("{prefix}-token"),
            prefix,
            network,
            containers: Vec::new(),
            address: String::new(),
        };
        cluster.start_coordinator();
        for number in 1..=workers {
            cluster.start_worker(number);
        }
        for number in 1..=workers {
            cluster.wait_for_worker(&cluster.worker_container(number));
        }
        cluster
    }

    fn coordinator_container(&self) -> String {
        format!("{}-coordinator", self.prefix)
    }

    /// Returns the container name of worker `number`, which is also its worker name
    /// and the host it advertises.
    pub fn worker_container(&self, number: usize) -> String {
        format!("{}-worker-{number}", self.prefix)
    }

    /// Runs a container of the image on the cluster's network, detached.
    fn run_container(&mut self, name: &str, docker_options: &[&str], essaim_args: &[&str]) {
        // Recorded before it runs, so that a failed start is still cleaned up.
        self.containers.push(name.to_string());
        let token = format!("ESSAIM_TOKEN={}", self.token);
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            &self.network,
            "--label",
            "essaim.test=multihost",
            "--env",
            &token,
            "--env",
            "RUST_LOG=info",
        ];
        args.extend_from_slice(docker_options);
        args.push(IMAGE);
        args.extend_from_slice(essaim_args);
        docker(&args);
    }

    fn start_coordinator(&mut self) {
        let name = self.coordinator_container();
        let worker_timeout_ms = WORKER_TIMEOUT.as_millis().to_string();
        self.run_container(
            &name,
            // Port 0 of loopback: a free port, read back with `docker port`.
            &["--publish", "127.0.0.1::7070"],
            &[
                "coordinator",
                "--listen=0.0.0.0:7070",
                "--data-dir=/var/lib/essaim/journal",
                "--worker-timeout-ms",
                &worker_timeout_ms,
            ],
        );
        let published = docker(&["port", &name, "7070/tcp"]);
        self.address = published
            .lines()
            .next()
            .unwrap_or_else(|| panic!("`docker port {name} 7070` printed nothing"))
            .trim()
            .to_string();
        // docker-proxy accepts connections before the coordinator listens, so ask for
        // a real answer.
        eventually("the coordinator to be ready", EVENTUALLY, || {
            let ready = http_get(&self.address, "/readyz", Some(&self.token));
            ready.is_ok_and(|(status, _)| status == 200).then_some(())
        });
    }

    /// Starts worker `number` (it registers on its own); returns its container name.
    pub fn start_worker(&mut self, number: usize) -> String {
        let name = self.worker_container(number);
        let coordinator = format!("http://{}:7070", self.coordinator_container());
        self.run_container(
            &name,
            // The image's health probe asks this port.
            &["--env", "ESSAIM_HEALTH_PORT=7071"],
            &[
                "worker",
                "--coordinator",
                &coordinator,
                "--name",
                &name,
                "--advertised-host",
                &name,
                "--http-listen=0.0.0.0:7071",
                "--slots",
                SLOTS,
                // A worker then holds only the attempts it runs, so that what it was
                // running when it is killed, cut off or stopped is all it held.
                "--prefetch=0",
                "--allow-commands",
                "--scratch-dir=/var/lib/essaim/scratch",
            ],
        );
        name
    }

    /// Returns the live workers: name → worker id (hex).
    pub fn live_workers(&self) -> BTreeMap<String, String> {
        let workers = self.get_json("/api/v1/workers");
        let mut by_name = BTreeMap::new();
        for worker in workers.as_array().cloned().unwrap_or_default() {
            let name = worker["name"].as_str().unwrap_or_default().to_string();
            let id = worker["id"].as_str().unwrap_or_default().to_string();
            by_name.insert(name, id);
        }
        by_name
    }

    /// Waits until a worker of that name is registered; returns its id.
    pub fn wait_for_worker(&self, name: &str) -> String {
        eventually(&format!("{name} to register"), EVENTUALLY, || {
            self.live_workers().remove(name)
        })
    }

    /// Returns a REST document (`/api/v1/…`), panicking on any other status than 200.
    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.address, path, Some(&self.token))
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}"))
    }

    /// Returns the value of an unlabelled coordinator metric (`/metrics`, which is the
    /// classic text format for a client that does not ask for OpenMetrics).
    pub fn metric(&self, name: &str) -> f64 {
        let (status, body) = http_get(&self.address, "/metrics", Some(&self.token))
            .unwrap_or_else(|error| panic!("GET /metrics: {error}"));
        assert_eq!(status, 200, "GET /metrics: {body}");
        let value = body.lines().find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok())?
        });
        value.unwrap_or_else(|| panic!("no sample of {name} in /metrics"))
    }

    /// Runs the host's `essaim ARGS` against the coordinator; returns its stdout.
    pub fn essaim(&self, args: &[&str]) -> String {
        let mut command = Command::new(ESSAIM);
        command
            .args(args)
            // The environment rather than flags: flags after a command's `--` would be
            // the command's.
            .env("ESSAIM_COORDINATOR", format!("http://{}", self.address))
            .env("ESSAIM_TOKEN", &self.token)
            .stdin(Stdio::null());
        succeeded(&format!("essaim {}", args.join(" ")), command.output())
    }

    /// Cuts a container off the cluster's network: it keeps running, but reaches
    /// nobody and nobody reaches it.
    pub fn disconnect(&self, container: &str) {
        docker(&["network", "disconnect", &self.network, container]);
    }

    /// Connects a container back to the cluster's network, where Docker's DNS finds it
    /// by its name again.
    pub fn reconnect(&self, container: &str) {
        docker(&["network", "connect", &self.network, container]);
    }

    /// Returns a file of a container, running or not, or "" when it does not exist.
    pub fn read_file(&self, container: &str, path: &str) -> String {
        let destination = tempfile::tempdir().expect("a temporary directory");
        let copied = Command::new("docker")
            .arg("cp")
            .arg(format!("{container}:{path}"))
            .arg(destination.path())
            .stdin(Stdio::null())
            .output()
            .expect("run docker cp");
        if !copied.status.success() {
            let error = String::from_utf8_lossy(&copied.stderr);
            assert!(
                error.contains("No such file") || error.contains("Could not find"),
                "docker cp {container}:{path}: {error}"
            );
            return String::new();
        }
        let file_name = Path::new(path).file_name().expect("a file path");
        std::fs::read_to_string(destination.path().join(file_name)).expect("read the copied file")
    }

    /// Returns what a container wrote on standard output and error.
    pub fn logs(&self, container: &str) -> String {
        let output = Command::new("docker")
            .args(["logs", container])
            .stdin(Stdio::null())
            .output()
            .expect("run docker logs");
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the containers said is what explains a failure here.
            for container in &self.containers {
                let logs = self.logs(container);
                let tail: Vec<&str> = logs.lines().rev().take(30).collect();
                eprintln!("--- {container} (last 30 lines) ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        // Containers first: a network with containers attached cannot be removed. `-v`
        // removes the anonymous volume the image declares.
        let containers = Command::new("docker")
            .args(["rm", "--force", "--volumes"])
            .args(&self.containers)
            .output();
        let network = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        let removed = [containers, network];
        for output in removed {
            match output {
                Ok(output) if output.status.success() => {}
                Ok(output) => eprintln!(
                    "clean-up of {} failed: {}",
                    self.prefix,
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(error) => eprintln!("clean-up of {} could not run: {error}", self.prefix),
            }
        }
    }
}
