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
//!
//! The streaming stack's test is in `containers/stream.rs`, a module of this binary.

// Beside this file rather than `tests/stream.rs`, which cargo would build as a test
// binary of its own.
#[path = "containers/stream.rs"]
mod stream;

use essaim_testkit::compose::ComposeProject;
use essaim_testkit::docker::{
    binary_to_package, docker_is_usable, http_get, repository_root, succeeded,
};
use essaim_testkit::oracle::word_counts;

/// The binary under test.
const ESSAIM: &str = env!("CARGO_BIN_EXE_essaim");
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tag of the image under test; not `essaim:dev`, which is the user's.
const IMAGE: &str = "essaim:test";

/// The number of worker replicas the compose file starts.
const WORKERS: usize = 3;

/// How long containers may take to become healthy, and Prometheus to scrape them all.
const EVENTUALLY: Duration = Duration::from_secs(120);

/// The compose project under test and the token of its cluster.
struct Cluster {
    compose: ComposeProject,
    token: String,
}

impl Cluster {
    /// A project of `deploy/compose/FILE`, named after this process, with `ports` (the
    /// variables of its published ports) set to 0: Docker picks free host ports.
    fn new(file: &str, ports: &[&'static str]) -> Self {
        let token = format!("test-token-{}", std::process::id());
        let mut environment = BTreeMap::from([
            ("ESSAIM_IMAGE", IMAGE.to_string()),
            ("ESSAIM_TOKEN", token.clone()),
        ]);
        environment.extend(ports.iter().map(|port| (*port, "0".to_string())));
        let compose = ComposeProject::new(
            repository_root().join("deploy/compose").join(file),
            format!("essaim-test-{}", std::process::id()),
            environment,
        );
        Self { compose, token }
    }

    fn run(&self, args: &[&str]) -> String {
        self.compose.run(args)
    }

    /// Runs the host's essaim against the cluster's coordinators (comma-separated
    /// `host:port`s).
    fn essaim(&self, coordinators: &str, args: &[&str]) -> String {
        succeeded(
            &format!("essaim {}", args.join(" ")),
            self.essaim_command(coordinators, args).output(),
        )
    }

    fn essaim_command(&self, coordinators: &str, args: &[&str]) -> Command {
        let urls: Vec<String> = coordinators
            .split(',')
            .map(|address| format!("http://{address}"))
            .collect();
        let mut command = Command::new(ESSAIM);
        command
            .args(args)
            .arg("--coordinator")
            .arg(urls.join(","))
            .arg("--token")
            .arg(&self.token)
            .stdin(Stdio::null());
        command
    }
}

/// Builds the images, starts the cluster of `deploy/compose/FILE` and waits until its
/// `containers` are healthy; `None` when there is no Docker and skipping is allowed.
fn start(file: &str, ports: &[&'static str], containers: usize) -> Option<(Cluster, Instant)> {
    if !docker_is_usable("the container test") {
        return None;
    }
    let started = Instant::now();
    build_images();
    phase(started, "images built");
    let cluster = Cluster::new(file, ports);
    cluster.run(&["up", "--detach", "--no-build"]);
    cluster.compose.wait_until_healthy(containers, EVENTUALLY);
    Some((cluster, started))
}

/// Builds the images under test (the binary of this test run packaged).
fn build_images() {
    let (binary, stripped_here) = binary_to_package(
        Path::new(ESSAIM),
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "essaim-for-image",
    );
    succeeded(
        "deploy/docker/build-image.sh",
        Command::new(repository_root().join("deploy/docker/build-image.sh"))
            .env("ESSAIM_BINARY", &binary)
            .env("ESSAIM_IMAGE", IMAGE)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output(),
    );
    if stripped_here {
        let _already_gone = std::fs::remove_file(&binary);
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
    let Some((cluster, started)) = start(
        "docker-compose.yml",
        &["ESSAIM_PORT", "ESSAIM_PROMETHEUS_PORT"],
        1 + WORKERS + 1,
    ) else {
        return;
    };
    let coordinator = cluster.compose.published("coordinator", "7070");
    let prometheus = cluster.compose.published("prometheus", "9090");
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

/// The compose service of a coordinator's advertised URL (`http://coordinator2:7070`).
fn service_of(url: &str) -> String {
    let host = url.trim_start_matches("http://");
    host.split(':').next().unwrap_or(host).to_string()
}

/// `essaim cluster status --output json` from the host, once a leader is elected.
fn cluster_status(cluster: &Cluster, coordinators: &str) -> Value {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let output = cluster
            .essaim_command(coordinators, &["cluster", "status", "--output", "json"])
            .output()
            .expect("essaim runs");
        if output.status.success() {
            let status: Value =
                serde_json::from_slice(&output.stdout).expect("cluster status --output json");
            if status["leader"].is_string() {
                return status;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader after {EVENTUALLY:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn compose_ha_cluster_survives_its_leader_killed_mid_job() {
    let Some((cluster, started)) = start(
        "docker-compose.ha.yml",
        &["ESSAIM_PORT_1", "ESSAIM_PORT_2", "ESSAIM_PORT_3"],
        3 + 3 + 2,
    ) else {
        return;
    };
    let coordinators = ["coordinator1", "coordinator2", "coordinator3"]
        .map(|service| cluster.compose.published(service, "7070"))
        .join(",");
    let status = cluster_status(&cluster, &coordinators);
    let leader = service_of(status["leader"].as_str().expect("a leader"));
    let epoch = status["epoch"].as_u64().expect("an epoch");
    phase(
        started,
        &format!("cluster up, {leader} leads (epoch {epoch})"),
    );

    // A job of 1,200 tasks of 50 ms on 2 workers × 4 slots: about 8 s of work.
    let tasks = 1200;
    let submit = format!("submit --kind sleep --payload 50 --count {tasks} --output json");
    let submitted: Value = serde_json::from_str(
        &cluster.essaim(&coordinators, &submit.split(' ').collect::<Vec<_>>()),
    )
    .expect("submit --output json is JSON");
    let job = submitted["job_id"].as_u64().expect("a job id").to_string();
    std::thread::sleep(Duration::from_secs(2));
    cluster.run(&["kill", "-s", "SIGKILL", &leader]);
    phase(started, &format!("{leader} killed mid-job"));

    // The client rides through the failover; every task is committed once.
    let waited: Value = serde_json::from_str(&cluster.essaim(
        &coordinators,
        &["wait", &job, "--timeout-secs", "120", "--output", "json"],
    ))
    .expect("wait --output json is JSON");
    assert_eq!(waited["state"], "succeeded", "{waited:#}");
    assert_eq!(waited["succeeded"], tasks, "{waited:#}");
    let results = cluster.essaim(&coordinators, &["results", &job, "--output", "json"]);
    let results: Value = serde_json::from_str(&results).expect("results --output json");
    let indexes: std::collections::BTreeSet<u64> = results
        .as_array()
        .or_else(|| results["results"].as_array())
        .expect("a list of results")
        .iter()
        .map(|result| result["task_index"].as_u64().expect("a task index"))
        .collect();
    assert_eq!(indexes.len(), tasks, "one result per task");
    let after = cluster_status(&cluster, &coordinators);
    let new_leader = service_of(after["leader"].as_str().expect("a leader"));
    assert_ne!(new_leader, leader, "{after:#}");
    assert!(after["epoch"].as_u64() > Some(epoch), "{after:#}");
    phase(started, &format!("job succeeded; {new_leader} leads"));

    // The killed coordinator comes back as a standby.
    cluster.run(&["start", &leader]);
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let status = cluster_status(&cluster, &coordinators);
        let standbys = status["standbys"].as_array().map_or(0, Vec::len);
        if standbys == 2 {
            assert_eq!(
                service_of(status["leader"].as_str().unwrap_or("")),
                new_leader
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{leader} did not stand by: {status:#}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    phase(started, &format!("{leader} restarted as a standby"));
}
