//! A compose project of the container tests: `docker compose` (or Compose v1's
//! `docker-compose`) run on one of the files of `deploy/compose/` under a project name
//! of the test's own, its host ports chosen by Docker, taken down with its volumes when
//! dropped — even on panic, after printing what the containers said.

use crate::docker::succeeded;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Returns the Compose command: the `docker compose` plugin, else `docker-compose`.
fn compose_program() -> Vec<String> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if plugin {
        return vec!["docker".into(), "compose".into()];
    }
    vec!["docker-compose".into()]
}

/// One compose project.
pub struct ComposeProject {
    compose: Vec<String>,
    file: PathBuf,
    /// The project's name (`--project-name`).
    pub project: String,
    environment: BTreeMap<&'static str, String>,
}

impl ComposeProject {
    /// A project of `file` named `project`, its variables taken from `environment`;
    /// nothing is started yet.
    pub fn new(
        file: PathBuf,
        project: String,
        environment: BTreeMap<&'static str, String>,
    ) -> Self {
        Self {
            compose: compose_program(),
            file,
            project,
            environment,
        }
    }

    /// A compose command of this project with `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.compose[0]);
        command
            .args(&self.compose[1..])
            .arg("--project-name")
            .arg(&self.project)
            .arg("--file")
            .arg(&self.file)
            .args(args)
            .envs(&self.environment)
            .stdin(Stdio::null());
        command
    }

    /// Runs a compose command that must succeed; returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        succeeded(
            &format!("compose {}", args.join(" ")),
            self.command(args).output(),
        )
    }

    /// Returns the host address Docker published a container port of `service` on.
    pub fn published(&self, service: &str, port: &str) -> String {
        let address = self.run(&["port", service, port]);
        address.trim().to_string()
    }

    /// The ids of the project's running containers.
    pub fn container_ids(&self) -> Vec<String> {
        let ids = self.run(&["ps", "-q"]);
        ids.lines().map(str::to_string).collect()
    }

    /// Waits until `expected_containers` run and every one reports `healthy`.
    pub fn wait_until_healthy(&self, expected_containers: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ids = self.container_ids();
            let mut inspect = Command::new("docker");
            inspect
                .args(["inspect", "--format", "{{.Name}} {{.State.Health.Status}}"])
                .args(&ids);
            let states = succeeded("docker inspect", inspect.output());
            let unhealthy: Vec<&str> = states
                .lines()
                .filter(|line| !line.ends_with(" healthy"))
                .collect();
            if ids.len() == expected_containers && unhealthy.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containers not healthy after {timeout:?}: {} of {expected_containers} \
                 running; not healthy: {unhealthy:?}",
                ids.len()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the containers said is what explains a failure here.
            if let Ok(logs) = self.command(&["logs", "--no-color", "--tail=40"]).output() {
                eprintln!(
                    "--- compose logs (last 40 lines per container) ---\n{}",
                    String::from_utf8_lossy(&logs.stdout)
                );
            }
        }
        let down = self
            .command(&["down", "--volumes", "--remove-orphans", "--timeout", "10"])
            .output();
        match down {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "compose down failed for project {}: {}",
                self.project,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!("compose down could not run: {error}"),
        }
    }
}
