//! The compose cluster of `deploy/compose/`, for real: image built, cluster up, jobs
//! submitted from the host, Prometheus checked, everything removed.
//!
//! One test, in a binary of its own because it needs Docker. Without a Docker engine it
//! fails (a skipped check would look like a passed one) unless `ESSAIM_SKIP_DOCKER=1`
//! says to skip it on purpose.
//!
//! The image packages the binary cargo built for this test run, with its debug info
//! stripped (`ESSAIM_BINARY=path` packages another one, e.g. `target/release/essaim`):
//! the suite then compiles nothing more than it already does, and the image holds the
//! code under test. `deploy/docker/build-image.sh` makes the rest (the base image from
//! Debian packages the first time, the Prometheus image), and Docker's cache makes that
//! quick afterwards. Each run is a compose project of its own (`essaim-test-PID`), with
//! its host ports chosen by Docker, so runs never collide with each other or with a
//! cluster of the user's; `down -v` removes its containers, network and volumes
//! whatever happens.

use essaim_testkit::docker::{
    binary_to_package, docker_is_usable, http_get, repository_root, succeeded,
};
use essaim_testkit::oracle::word_counts;

/// The binary under test.
const ESSAIM: &str = env!("CARGO_BIN_EXE_essaim");
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tag of the image under test; not `essaim:dev`, which is the user's.
const IMAGE: &str = "essaim:test";

/// The number of worker replicas the compose file starts.
const WORKERS: usize = 3;

/// How long containers may take to become healthy, and Prometheus to scrape them all.
const EVENTUALLY: Duration = Duration::from_secs(120);

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

/// One compose project, taken down with its volumes when dropped, even on panic.
struct Cluster {
    compose: Vec<String>,
    file: PathBuf,
    project: String,
    environment: BTreeMap<&'static str, String>,
    token: String,
}

impl Cluster {
    fn command(&self, args: &[&str]) -> Command {
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

    fn run(&self, args: &[&str]) -> String {
        succeeded(
            &format!("compose {}", args.join(" ")),
            self.command(args).output(),
        )
    }

    /// Returns the host address Docker published a container port on.
    fn published(&self, service: &str, port: &str) -> String {
        let address = self.run(&["port", service, port]);
        address.trim().to_string()
    }

    fn container_ids(&self) -> Vec<String> {
        let ids = self.run(&["ps", "-q"]);
        ids.lines().map(str::to_string).collect()
    }

    /// Waits until every container reports `healthy`.
    fn wait_until_healthy(&self, expected_containers: usize) {
        let deadline = Instant::now() + EVENTUALLY;
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
                "containers not healthy after {EVENTUALLY:?}: {} of {expected_containers} \
                 running; not healthy: {unhealthy:?}",
                ids.len()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Runs the host's essaim against the cluster's coordinator.
    fn essaim(&self, coordinator: &str, args: &[&str]) -> String {
        let mut command = Command::new(ESSAIM);
        command
            .args(args)
            .arg("--coordinator")
            .arg(format!("http://{coordinator}"))
            .arg("--token")
            .arg(&self.token)
            .stdin(Stdio::null());
        succeeded(&format!("essaim {}", args.join(" ")), command.output())
    }
}

impl Drop for Cluster {
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

fn get_json(address: &str, path: &str, token: Option<&str>) -> Value {
    let (status, body) = http_get(address, path, token)
        .unwrap_or_else(|error| panic!("GET {path} from {address}: {error}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}"))
}

/// Returns, per Prometheus scrape job, how many targets are up.
fn prometheus_targets_up(prometheus: &str) -> BTreeMap<String, usize> {
    let targets = get_json(prometheus, "/api/v1/targets?state=active", None);
    let mut up = BTreeMap::new();
    let active = targets["data"]["activeTargets"].as_array().cloned();
    for target in active.unwrap_or_default() {
        let job = target["labels"]["job"].as_str().unwrap_or("").to_string();
        let healthy = target["health"] == "up";
        *up.entry(job).or_insert(0) += usize::from(healthy);
    }
    up
}

fn phase(started: Instant, what: &str) {
    eprintln!("[{:>5.1} s] {what}", started.elapsed().as_secs_f64());
}

#[test]
fn compose_cluster_runs_jobs_from_the_host_on_every_worker_and_prometheus_scrapes_them_all() {
    if !docker_is_usable("the container test") {
        return;
    }
    let started = Instant::now();
    let root = repository_root();

    let (binary, stripped_here) = binary_to_package(
        Path::new(ESSAIM),
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "essaim-for-image",
    );
    succeeded(
        "deploy/docker/build-image.sh",
        Command::new(root.join("deploy/docker/build-image.sh"))
            .env("ESSAIM_BINARY", &binary)
            .env("ESSAIM_IMAGE", IMAGE)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output(),
    );
    if stripped_here {
        let _already_gone = std::fs::remove_file(&binary);
    }
    phase(started, "images built");

    let token = format!("test-token-{}", std::process::id());
    let cluster = Cluster {
        compose: compose_program(),
        file: root.join("deploy/compose/docker-compose.yml"),
        project: format!("essaim-test-{}", std::process::id()),
        environment: BTreeMap::from([
            ("ESSAIM_IMAGE", IMAGE.to_string()),
            ("ESSAIM_TOKEN", token.clone()),
            // 0: Docker picks free host ports, read back with `compose port`.
            ("ESSAIM_PORT", "0".to_string()),
            ("ESSAIM_PROMETHEUS_PORT", "0".to_string()),
        ]),
        token,
    };
    cluster.run(&["up", "--detach", "--no-build"]);
    cluster.wait_until_healthy(1 + WORKERS + 1);
    let coordinator = cluster.published("coordinator", "7070");
    let prometheus = cluster.published("prometheus", "9090");
    phase(started, "cluster up and healthy");

    // A task-farm job from the host, as the README shows it.
    let submit = "submit --kind sleep --payload 100 --count 50 --wait --output json";
    let submit: Vec<&str> = submit.split(' ').collect();
    let status = cluster.essaim(&coordinator, &submit);
    let status: Value = serde_json::from_str(&status).expect("submit --output json is JSON");
    assert_eq!(status["state"], "succeeded", "{status:#}");
    assert_eq!(status["succeeded"], 50, "{status:#}");
    let job_id = status["job_id"].as_u64().expect("a job id");
    phase(started, "task-farm job succeeded");

    // Every worker took part: 50 tasks of 100 ms on 3 × 4 slots cannot all land on one.
    let job = get_json(
        &coordinator,
        &format!("/api/v1/jobs/{job_id}"),
        Some(&cluster.token),
    );
    let workers = job["history"]["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let committed_per_worker: BTreeMap<String, u64> = workers
        .iter()
        .map(|worker| {
            (
                worker["name"].as_str().unwrap_or("").to_string(),
                worker["committed"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        committed_per_worker.len(),
        WORKERS,
        "the job's commits by worker: {committed_per_worker:?}"
    );
    assert!(
        committed_per_worker
            .values()
            .all(|&committed| committed > 0),
        "a worker committed nothing: {committed_per_worker:?}"
    );
    assert_eq!(committed_per_worker.values().sum::<u64>(), 50);

    // A MapReduce job, submitted where its input is visible (the shared /data volume),
    // its shuffle crossing containers at the addresses the workers advertise.
    let input = tempfile::tempdir().expect("a temporary directory");
    let mut texts = Vec::new();
    for file_index in 0..4 {
        let mut text = String::new();
        for line in 0..2000 {
            let words = [
                "essaim",
                "swarm",
                &format!("file{file_index}"),
                &format!("w{}", line % 7),
            ];
            text.push_str(&words.join(" "));
            text.push('\n');
        }
        std::fs::write(input.path().join(format!("part{file_index}.txt")), &text)
            .expect("write the input");
        texts.push(text);
    }
    let expected_counts = word_counts(texts.iter().map(String::as_bytes));
    // The temporary directory is private to its owner; the containers' user (10001)
    // must read what `docker cp` copies, owner and mode included.
    std::fs::set_permissions(input.path(), std::fs::Permissions::from_mode(0o755))
        .expect("open the input directory to the containers' user");
    let coordinator_container = cluster.run(&["ps", "-q", "coordinator"]);
    succeeded(
        "docker cp",
        Command::new("docker")
            .arg("cp")
            .arg(input.path())
            .arg(format!("{}:/data/books", coordinator_container.trim()))
            .output(),
    );
    cluster.run(&[
        "exec",
        "-T",
        "coordinator",
        "essaim",
        "submit",
        "wordcount",
        "--input",
        "/data/books",
        "--output",
        "/data/counts",
        "--reducers",
        "3",
        "--split-size",
        "32KiB",
    ]);
    let output = cluster.run(&[
        "exec",
        "-T",
        "--index=2",
        "worker",
        "sh",
        "-c",
        "test -f /data/counts/_SUCCESS && cat /data/counts/part-*",
    ]);
    let mut counted: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for line in output.lines() {
        let (word, count) = line.split_once('\t').expect("key<TAB>value lines");
        counted.insert(word.as_bytes().to_vec(), count.parse().expect("a count"));
    }
    assert_eq!(counted, expected_counts, "wordcount output");
    phase(started, "MapReduce job succeeded");

    // Prometheus finds the coordinator and every worker replica (DNS discovery).
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let up = prometheus_targets_up(&prometheus);
        let coordinators_up = up.get("essaim-coordinator").copied().unwrap_or(0);
        let workers_up = up.get("essaim-worker").copied().unwrap_or(0);
        if coordinators_up == 1 && workers_up == WORKERS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus targets up after {EVENTUALLY:?}: {up:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // And the alerting rules of deploy/prometheus/alerts.yml are loaded.
    let rules = get_json(&prometheus, "/api/v1/rules", None);
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        groups.iter().any(|group| group["name"] == "essaim-alerts"),
        "rule groups loaded: {rules}"
    );
    phase(
        started,
        "Prometheus scrapes the coordinator and every worker",
    );

    drop(cluster);
    phase(started, "cluster removed");
}
