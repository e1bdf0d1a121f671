//! The streaming stack of `deploy/compose/docker-compose.stream.yml`: 3 NATS JetStream
//! members, PostgreSQL, a coordinator, workers and Prometheus. The compose file's `demo`
//! service runs `essaim demo stream` inside the network (the shipped flights replayed,
//! the flights pipeline submitted to the coordinator, the tables compared with the
//! pipeline run in the demo's own process); once units have committed, the member that
//! leads the stream FLIGHTS is SIGKILLed. The demo must still find the tables equal to
//! its oracle, and every stream essaim made must be replicated 3 ways.

use super::{Cluster, EVENTUALLY, get_json, phase, prometheus_targets_up, start};
use essaim_testkit::docker::succeeded;
use serde_json::Value;
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Containers of the stack: 3 NATS members, PostgreSQL, the coordinator, 3 workers and
/// Prometheus.
const CONTAINERS: usize = 3 + 1 + 1 + 3 + 1;

/// The published ports of the file, all chosen by Docker.
const PORTS: &[&str] = &[
    "ESSAIM_PORT",
    "ESSAIM_PROMETHEUS_PORT",
    "ESSAIM_POSTGRES_PORT",
    "ESSAIM_NATS_PORT_1",
    "ESSAIM_NATS_PORT_2",
    "ESSAIM_NATS_PORT_3",
    "ESSAIM_NATS_MONITOR_PORT_1",
    "ESSAIM_NATS_MONITOR_PORT_2",
    "ESSAIM_NATS_MONITOR_PORT_3",
];

/// How long the demo may take, from its start to its verdict.
const DEMO_TIMEOUT: Duration = Duration::from_secs(300);

/// The container of a compose service: `docker` on it is quicker than Compose v1.
fn container(cluster: &Cluster, service: &str) -> String {
    cluster.run(&["ps", "-q", service]).trim().to_string()
}

/// Rows of `essaim_offsets` (units that have committed), 0 before the table exists.
fn committed_units(postgres: &str) -> i64 {
    let sql = "SELECT count(*) FROM essaim_offsets";
    let output = Command::new("docker")
        .args(["exec", postgres, "psql", "-U", "essaim", "-tAc", sql])
        .stdin(Stdio::null())
        .output();
    output
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// The streams of the JetStream cluster as the member at `monitor` sees them (`/jsz`).
fn streams(monitor: &str) -> Vec<Value> {
    let jsz = get_json(monitor, "/jsz?accounts=true&streams=true&config=true", None);
    let accounts = jsz["account_details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    accounts
        .iter()
        .flat_map(|account| {
            account["stream_detail"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// It once found windows missing after the kill (a partition reader taking a delivery
/// past one lost with the consumer's leader; see `GUARANTEES.md`).
#[test]
fn compose_stream_stack_runs_the_demo_to_its_oracle_with_a_nats_member_killed() {
    let Some((cluster, started)) = start("docker-compose.stream.yml", PORTS, CONTAINERS) else {
        return;
    };
    let monitors: Vec<String> = ["nats1", "nats2", "nats3"]
        .iter()
        .map(|member| cluster.compose.published(member, "8222"))
        .collect();
    let postgres = container(&cluster, "postgres");
    let members: Vec<String> = ["nats1", "nats2", "nats3"]
        .iter()
        .map(|member| container(&cluster, member))
        .collect();
    phase(started, "stack up and healthy");

    let logs = tempfile::tempdir().expect("a temporary directory");
    let (stdout_path, stderr_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut demo = cluster
        .compose
        .command(&["run", "--rm", "-T", "demo"])
        .stdout(File::create(&stdout_path).expect("the demo's stdout"))
        .stderr(File::create(&stderr_path).expect("the demo's stderr"))
        .spawn()
        .expect("docker compose run demo starts");
    let demo_started = Instant::now();
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();

    // Once units have committed, the member leading FLIGHTS dies for good.
    while committed_units(&postgres) < 2 {
        let ended = demo.try_wait().expect("the demo's status");
        assert!(
            ended.is_none() && demo_started.elapsed() < DEMO_TIMEOUT,
            "no unit committed (demo {ended:?}): {}",
            read(&stderr_path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = streams(&monitors[0]);
    let flights = before
        .iter()
        .find(|stream| stream["name"] == "FLIGHTS")
        .unwrap_or_else(|| panic!("no stream FLIGHTS: {before:?}"));
    let leader = flights["cluster"]["leader"]
        .as_str()
        .expect("FLIGHTS has a leader")
        .to_string();
    // Replicated before the kill, or a lost member takes a stream with it.
    let replicas: Vec<(&Value, &Value)> = before
        .iter()
        .map(|stream| (&stream["name"], &stream["config"]["num_replicas"]))
        .collect();
    assert!(
        before.len() >= 2 && replicas.iter().all(|(_, count)| **count == 3),
        "FLIGHTS and the shuffle's stream, each of 3 replicas: {replicas:?}"
    );
    let index = ["nats1", "nats2", "nats3"]
        .iter()
        .position(|member| *member == leader)
        .unwrap_or_else(|| panic!("FLIGHTS' leader {leader} is no member"));
    succeeded(
        "docker kill",
        Command::new("docker")
            .args(["kill", "--signal", "KILL", &members[index]])
            .output(),
    );
    let still_running = demo.try_wait().expect("the demo's status").is_none();
    assert!(
        still_running,
        "the pipeline ended before {leader} was killed"
    );
    phase(
        started,
        &format!("{leader}, FLIGHTS' leader, killed mid-stream"),
    );

    let outcome = loop {
        if let Some(status) = demo.try_wait().expect("the demo's status") {
            break status;
        }
        if demo_started.elapsed() > DEMO_TIMEOUT {
            let _ = demo.kill();
            panic!("the demo ran past {DEMO_TIMEOUT:?}: {}", read(&stderr_path));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let verdict = read(&stdout_path);
    eprintln!("{verdict}");
    assert!(
        outcome.success() && verdict.contains("the tables equal the oracle"),
        "the demo failed ({outcome}): {verdict}\n{}",
        read(&stderr_path)
    );
    phase(started, "the demo's tables equal its oracle");

    // Every stream essaim made (FLIGHTS, the shuffle's) has 3 replicas, as a surviving
    // member sees them after the run.
    let survivor = ["nats1", "nats2", "nats3"]
        .iter()
        .position(|member| *member != leader)
        .expect("a surviving member");
    let after = streams(&monitors[survivor]);
    assert!(after.len() >= 2, "FLIGHTS and a shuffle stream: {after:?}");
    for stream in &after {
        assert_eq!(stream["config"]["num_replicas"], 3, "{stream:#}");
    }

    // Prometheus scrapes the coordinator and every worker.
    let prometheus = cluster.compose.published("prometheus", "9090");
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let up = prometheus_targets_up(&prometheus);
        if up.get("essaim-coordinator") == Some(&1) && up.get("essaim-worker") == Some(&3) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus targets up: {up:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    phase(
        started,
        "streams replicated 3 ways; Prometheus scrapes every process",
    );
}
