//! Offline checks of the deployment files: `deploy/k8s/`, `deploy/compose/` and the
//! Dockerfile. No cluster, no Docker: this binary runs wherever the suite runs.
//!
//! - Schemas and cross-references (`manifests/check_deploy.py`, Python from
//!   `scripts/python-env.sh k8s`): every Kubernetes manifest strictly against the API
//!   schemas of pinned Kubernetes releases (kubernetes-validate ships them), the KEDA
//!   ScaledObject against a bundled schema, then what no schema sees: probes on the
//!   ports the processes listen on, autoscalers on the worker Deployment and the right
//!   metric, every `--flag` one the binary accepts, compose and Prometheus agreeing on
//!   ports and names; the prometheus-operator PodMonitor and PrometheusRules against
//!   bundled schemas, the rules equal to `deploy/prometheus/alerts.yml` and
//!   `slo_rules.yml` (`ESSAIM_REGENERATE=1` rewrites them). `ESSAIM_SKIP_PYTHON=1`
//!   skips this part and says so.
//! - The compose Prometheus configuration, with promtool (`ESSAIM_SKIP_PROMTOOL=1`
//!   skips it, as in `promtool/`).
//! - The metric the autoscalers follow is one a real coordinator serves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary under test.
const ESSAIM: &str = env!("CARGO_BIN_EXE_essaim");

/// The metric the HPA, the KEDA trigger and the prometheus-adapter rule name.
const AUTOSCALING_METRIC: &str = "essaim_coordinator_queue_recommended_workers";
/// The figure stream workers scale on (per running pipeline).
const STREAM_AUTOSCALING_METRIC: &str = "essaim_stream_recommended_workers";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn deployment_files_match_the_kubernetes_schemas_and_each_other() {
    let Some(python) = essaim_testkit::python::python_env("k8s") else {
        return;
    };
    let root = repository_root();
    let checks = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/check_deploy.py"))
        .arg(&root)
        .arg(ESSAIM)
        .output()
        .expect("check_deploy.py runs");
    let report = String::from_utf8_lossy(&checks.stdout);
    assert!(
        checks.status.success(),
        "deployment checks failed ({}):\n{report}{}",
        checks.status,
        String::from_utf8_lossy(&checks.stderr)
    );
    eprintln!("{}", report.lines().last().unwrap_or_default());
}

#[test]
fn compose_prometheus_configuration_passes_promtool() {
    let promtool_installed = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !promtool_installed {
        let skip = std::env::var("ESSAIM_SKIP_PROMTOOL").is_ok_and(|value| value == "1");
        assert!(
            skip,
            "promtool is not installed: run scripts/test.sh, which installs it, or set \
             ESSAIM_SKIP_PROMTOOL=1 to skip the promtool checks"
        );
        eprintln!("promtool is missing and ESSAIM_SKIP_PROMTOOL=1: skipped");
        return;
    }
    // In the container both files are in /etc/prometheus/: lay them out the same way,
    // so that promtool also loads the rule file the configuration names.
    let root = repository_root();
    let layout = tempfile::tempdir().expect("a temporary directory");
    for (from, to) in [
        ("deploy/compose/prometheus.yml", "prometheus.yml"),
        ("deploy/prometheus/alerts.yml", "alerts.yml"),
    ] {
        std::fs::copy(root.join(from), layout.path().join(to)).expect("copy a config file");
    }
    let output = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(layout.path())
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check config deploy/compose/prometheus.yml failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Kills the coordinator when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn autoscalers_follow_a_metric_the_coordinator_serves() {
    let root = repository_root();
    for file in [
        "deploy/k8s/hpa.yaml",
        "deploy/k8s/optional/keda-scaledobject.yaml",
        "deploy/k8s/optional/prometheus-adapter-config.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect("read a manifest");
        assert!(
            text.contains(AUTOSCALING_METRIC),
            "{file} does not name {AUTOSCALING_METRIC}"
        );
    }

    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let mut coordinator = KillOnDrop(
        Command::new(ESSAIM)
            .args(["coordinator", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a coordinator"),
    );
    // It prints `essaim coordinator: API http://ADDRESS …` once it serves.
    let stderr = coordinator.0.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut address = None;
    for line in lines.by_ref() {
        let line = line.expect("read the coordinator's stderr");
        if let Some((_, rest)) = line.split_once("API http://") {
            address = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let address = address.expect("the coordinator prints its address");
    // Keep reading: a closed pipe would make the coordinator's next log line fail.
    std::thread::spawn(move || lines.for_each(drop));

    let mut stream = TcpStream::connect(&address).expect("connect to the coordinator");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send");
    let mut metrics = String::new();
    stream.read_to_string(&mut metrics).expect("read /metrics");
    let served = metrics
        .lines()
        .any(|line| line.starts_with(&format!("{AUTOSCALING_METRIC} ")));
    assert!(
        served,
        "/metrics has no sample of {AUTOSCALING_METRIC}:\n{metrics}"
    );
    // Stream workers scale on the pipelines' own figure, which has a series only while
    // a pipeline runs (e2e/streams_view.rs reads it from a live one).
    let keda = std::fs::read_to_string(root.join("deploy/k8s/optional/keda-scaledobject.yaml"))
        .expect("read the KEDA manifest");
    assert!(keda.contains(STREAM_AUTOSCALING_METRIC));
}
