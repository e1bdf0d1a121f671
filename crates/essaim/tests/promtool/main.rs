//! promtool checks of everything essaim shows Prometheus: the alerting rules and their
//! unit tests, the example scrape configuration, and the `/metrics` of a real running
//! coordinator, worker and HTTP ingest.
//!
//! A separate test binary from `e2e` because it needs an outside tool: `promtool`, from
//! the Debian package `prometheus`, which `scripts/test.sh` installs. Without promtool
//! these tests fail (a skipped check would look like a passed one) unless
//! `ESSAIM_SKIP_PROMTOOL=1` says to skip them on purpose.
//!
//! The live scrapes must also carry the standard `process_*` metrics and
//! `essaim_build_info` naming this build.
//!
//! The live check matters because `promtool check metrics` lints what a scrape really
//! returns: names (`_total` on counters only, base units, no type in the name), help
//! texts, and the exposition format itself.
//!
//! | file | checks |
//! |---|---|
//! | `main.rs` | `alerts.yml` and its tests, the scrape configuration, the live scrapes |
//! | `slo.rs` | `slo_rules.yml` is what `essaim slo rules slo.toml` prints, is valid and passes `slo_rules_test.yml` |
//! | `dashboards.rs` | every query of `deploy/grafana/` parses and names only series the processes export or the rules record |
//! | `live.rs` | the coordinator and worker processes, and the HTTP requests to them |

mod dashboards;
mod live;
mod slo;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use live::{LiveCluster, free_port, http_get};

/// The binary under test.
const ESSAIM: &str = env!("CARGO_BIN_EXE_essaim");

/// How long the cluster may take to start, register and run the job.
const EVENTUALLY: Duration = Duration::from_secs(60);

/// Returns `deploy/prometheus/` of the repository.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

/// Returns a promtool command, or `None` when promtool is missing and
/// `ESSAIM_SKIP_PROMTOOL=1` allows skipping. Panics when it is missing otherwise.
fn promtool() -> Option<Command> {
    let installed = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if installed {
        return Some(Command::new("promtool"));
    }
    let skip = std::env::var("ESSAIM_SKIP_PROMTOOL").is_ok_and(|value| value == "1");
    assert!(
        skip,
        "promtool is not installed: run scripts/test.sh, which installs it (Debian package \
         `prometheus`), or set ESSAIM_SKIP_PROMTOOL=1 to skip the promtool checks"
    );
    eprintln!("promtool is missing and ESSAIM_SKIP_PROMTOOL=1: skipped");
    None
}

/// Panics with promtool's output unless it succeeded.
fn assert_promtool_succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "promtool {what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `promtool ARGS` in `deploy/prometheus/` and checks that it succeeded.
fn run_promtool_in_deploy_dir(args: &[&str]) {
    let Some(mut promtool) = promtool() else {
        return;
    };
    let output = promtool
        .args(args)
        .current_dir(deploy_dir())
        .output()
        .expect("promtool runs");
    assert_promtool_succeeded(&args.join(" "), &output);
}

#[test]
fn alerting_rules_are_valid() {
    run_promtool_in_deploy_dir(&["check", "rules", "alerts.yml"]);
}

#[test]
fn alerting_rules_pass_their_unit_tests() {
    run_promtool_in_deploy_dir(&["test", "rules", "alerts_test.yml"]);
}

#[test]
fn scrape_configuration_is_valid() {
    run_promtool_in_deploy_dir(&["check", "config", "prometheus.yml"]);
}

#[test]
fn live_metrics_of_a_coordinator_and_a_worker_pass_promtool_lint() {
    let Some(_promtool) = promtool() else {
        return;
    };
    let cluster = LiveCluster::start();
    cluster.run_job(&["--kind", "sleep", "--payload", "5", "--count", "20"]);
    cluster.run_job(&["--kind", "fail", "--count", "2", "--max-attempts", "1"]);

    for (name, port) in [
        ("coordinator", cluster.coordinator_port),
        ("worker", cluster.worker_http_port),
    ] {
        let (content_type, body) = http_get(port, "/metrics", None);
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{name} served {content_type} to a scraper without an Accept header"
        );
        // The jobs are in the histograms, so their buckets are linted with data.
        let histogram_count = match name {
            "coordinator" => "essaim_coordinator_journal_commit_seconds_count ",
            _ => "essaim_worker_task_duration_seconds_count ",
        };
        let has_data = body
            .lines()
            .filter_map(|line| line.strip_prefix(histogram_count))
            .any(|count| count.trim() != "0");
        assert!(has_data, "{name} has no {histogram_count}yet:\n{body}");

        assert_process_metrics_and_build_info(name, &body);
        assert_promtool_lint_is_clean(name, &body);
    }

    // Prometheus asks for OpenMetrics and gets it.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,\
                             text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, body) = http_get(
        cluster.coordinator_port,
        "/metrics",
        Some(prometheus_accept),
    );
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
}

/// `essaim ingest` exports metrics too (issue 13): lint them after requests stored and
/// refused, so that every series has data.
#[test]
fn live_metrics_of_the_http_ingest_pass_promtool_lint() {
    let Some(_promtool) = promtool() else {
        return;
    };
    let Some(nats) = essaim_testkit::server::nats() else {
        return;
    };
    let mut cluster = LiveCluster::empty();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    cluster.spawn(
        "ingest",
        &[
            "ingest",
            "--listen",
            &listen,
            "--nats",
            nats.url(),
            "--source",
            "logs:2",
        ],
    );
    cluster.wait_ready("ingest", port);
    for (path, body) in [("/ingest/logs", "a\nb\n"), ("/ingest/nowhere", "c\n")] {
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("ingest answers");
        stream
            .write_all(request.as_bytes())
            .expect("the request is sent");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("the answer is read");
    }
    let (content_type, body) = http_get(port, "/metrics", None);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        body.contains("essaim_ingest_records_accepted_total 2"),
        "{body}"
    );
    assert_process_metrics_and_build_info("ingest", &body);
    assert_promtool_lint_is_clean("ingest", &body);
}

/// Asserts that a scrape `body` carries the standard process metrics, with values a
/// running process must have, and `essaim_build_info` naming this build.
fn assert_process_metrics_and_build_info(name: &str, body: &str) {
    let value = |metric: &str| -> f64 {
        let prefix = format!("{metric} ");
        let line = body
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("the {name} serves no {metric}:\n{body}"));
        line[prefix.len()..]
            .parse()
            .unwrap_or_else(|error| panic!("{line}: {error}"))
    };
    // A process just started may have used less than one clock tick (10 ms).
    assert!(value("process_cpu_seconds_total") >= 0.0, "{name}");
    assert!(value("process_resident_memory_bytes") > 1e6, "{name}");
    assert!(value("process_virtual_memory_bytes") > 1e6, "{name}");
    assert!(value("process_open_fds") >= 3.0, "{name}");
    assert!(
        value("process_max_fds") >= value("process_open_fds"),
        "{name}"
    );
    assert!(value("process_start_time_seconds") > 1.5e9, "{name}");
    assert!(
        body.contains("# TYPE process_cpu_seconds_total counter\n"),
        "{name}"
    );

    let build_info = body
        .lines()
        .find(|line| line.starts_with("essaim_build_info{"))
        .unwrap_or_else(|| panic!("the {name} serves no essaim_build_info:\n{body}"));
    assert!(build_info.ends_with("} 1"), "{build_info}");
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(build_info.contains(&version), "{build_info}");
    assert!(build_info.contains("rustc=\"rustc "), "{build_info}");
    // Built from this checkout: the revision label is its HEAD commit.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    if let Some(head) = head {
        let revision = build_info
            .split("revision=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        assert!(
            revision.len() >= 7 && head.starts_with(revision),
            "{build_info} does not name HEAD {head}"
        );
    }
}

/// Runs `promtool check metrics` on the scrape `body` of `name` and fails on any
/// complaint.
fn assert_promtool_lint_is_clean(name: &str, body: &str) {
    let mut check = promtool()
        .expect("promtool was found")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(body.as_bytes())
        .expect("promtool reads the metrics");
    let output = check.wait_with_output().expect("promtool finishes");
    assert_promtool_succeeded(&format!("check metrics of the {name}"), &output);
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        complaints.trim().is_empty(),
        "promtool lint of the {name}:\n{complaints}"
    );
}
