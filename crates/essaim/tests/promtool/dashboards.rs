//! The Grafana dashboards of `deploy/grafana/`: every panel's query parses, and names
//! only series that exist.
//!
//! Parsing: each query, its Grafana variables replaced by plain values, becomes a
//! recording rule of a temporary file that `promtool check rules` must accept (promtool
//! has no command that parses a bare expression).
//!
//! Existence: every metric name a query uses (the `essaim…` and `process_…` words) must be
//! a sample a live coordinator or worker serves (scraped while a job runs, so that the
//! per-job series exist), a stream metric (registered in-process from the stream
//! runtime's own `StreamMetrics` with one unit, since a worker serves them only while it
//! runs a pipeline), or a series that `alerts.yml` or `slo_rules.yml` records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::live::{LiveCluster, http_get};
use crate::{ESSAIM, EVENTUALLY, assert_promtool_succeeded, deploy_dir, promtool};

/// The dashboards' directory.
fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana")
}

/// One panel query.
struct Query {
    /// `file: panel title`.
    origin: String,
    expr: String,
}

/// Returns every query of every dashboard, and fails on a file that is not one.
fn dashboard_queries() -> Vec<Query> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(grafana_dir())
        .expect("deploy/grafana exists")
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|path| {
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        ["cluster.json", "job.json", "pipeline.json"],
        "the cluster, job and pipeline dashboards"
    );
    let mut queries = Vec::new();
    for (path, name) in files.iter().zip(&names) {
        let text = std::fs::read_to_string(path).expect("read a dashboard");
        let dashboard: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
        let panels = dashboard["panels"]
            .as_array()
            .expect("a dashboard has panels");
        assert!(!panels.is_empty(), "{name} has no panel");
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or_default();
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert!(!targets.is_empty(), "{name}: panel `{title}` has no query");
            for target in targets {
                let expr = target["expr"]
                    .as_str()
                    .expect("a Prometheus target has expr");
                queries.push(Query {
                    origin: format!("{name}: {title}"),
                    expr: expr.to_string(),
                });
            }
        }
        // Variables' own queries name metrics too.
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(query) = variable["definition"].as_str() {
                queries.push(Query {
                    origin: format!("{name}: variable {}", variable["name"]),
                    expr: query.to_string(),
                });
            }
        }
    }
    queries
}

/// Replaces Grafana's variables with values PromQL accepts.
fn with_variables_replaced(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$job_id", "1")
        .replace("$job", "essaim")
        .replace("$pipeline", "clicks")
}

/// Returns the metric names of an expression: the words that start with `essaim_`,
/// `essaim:` or `process_` (no label or function of ours does).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for character in expr.chars().chain(std::iter::once(' ')) {
        if character.is_ascii_alphanumeric() || character == '_' || character == ':' {
            word.push(character);
            continue;
        }
        let is_metric = word.starts_with("essaim_")
            || word.starts_with("essaim:")
            || word.starts_with("process_");
        // `label_values(metric, label)` names its metric; a quoted word is a value.
        if is_metric && character != '"' {
            names.insert(std::mem::take(&mut word));
        }
        word.clear();
    }
    names
}

#[test]
fn every_dashboard_query_parses() {
    let Some(mut promtool) = promtool() else {
        return;
    };
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (index, query) in dashboard_queries().iter().enumerate() {
        if query.expr.starts_with("label_values(") {
            continue; // Grafana's own function, checked for names only.
        }
        let expr = with_variables_replaced(&query.expr);
        // A literal block keeps quotes and braces as they are.
        rules.push_str(&format!(
            "      # {}\n      - record: dashboard:query:{index}\n        expr: |\n          {}\n",
            query.origin.replace('\n', " "),
            expr.replace('\n', "\n          ")
        ));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("dashboard_queries.yml");
    std::fs::write(&file, &rules).expect("write the rules");
    let output = promtool
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs");
    assert_promtool_succeeded(
        &format!("check rules of the dashboards' queries\n{rules}"),
        &output,
    );
}

#[test]
fn dashboards_name_only_series_that_exist() {
    let Some(_promtool) = promtool() else {
        return;
    };
    let mut exported = recorded_names();
    exported.extend(stream_metric_names());
    exported.extend(live_sample_names());

    let mut missing = Vec::new();
    for query in dashboard_queries() {
        for name in metric_names(&query.expr) {
            if !exported.contains(&name) {
                missing.push(format!("{}: {name}", query.origin));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "dashboard queries name series nothing exports:\n  {}",
        missing.join("\n  ")
    );
}

/// Returns the sample names of a scrape in the classic format.
fn sample_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Returns what a coordinator and a worker serve while a job runs.
fn live_sample_names() -> BTreeSet<String> {
    let cluster = LiveCluster::start();
    cluster.run_job(&["--kind", "sleep", "--payload", "5", "--count", "4"]);
    // A job that runs for a few seconds, not waited for: its queue series exist while
    // it runs.
    let submitted = std::process::Command::new(ESSAIM)
        .args(["submit", "--coordinator", &cluster.url()])
        .args(["--kind", "sleep", "--payload", "3000", "--count", "8"])
        .env_remove("ESSAIM_TOKEN")
        .output()
        .expect("essaim submit runs");
    assert!(submitted.status.success(), "{submitted:?}");
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let (_, coordinator) = http_get(cluster.coordinator_port, "/metrics", None);
        if coordinator.contains("essaim_coordinator_job_queue_backlog_tasks{") {
            let (_, worker) = http_get(cluster.worker_http_port, "/metrics", None);
            let mut names = sample_names(&coordinator);
            names.extend(sample_names(&worker));
            return names;
        }
        assert!(
            Instant::now() < deadline,
            "the running job's queue series never appeared:\n{coordinator}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Returns the sample names of the stream runtime's metrics, with one unit's series.
fn stream_metric_names() -> BTreeSet<String> {
    let mut registry = essaim_telemetry::prometheus_client::registry::Registry::default();
    let metrics = essaim_stream_runtime::metrics::StreamMetrics::new();
    metrics.register(&mut registry);
    let _unit = metrics.unit("clicks", "source", 0);
    let mut text = String::new();
    essaim_telemetry::prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("encodes");
    // OpenMetrics: a counter's samples are `_total`, as in the classic format.
    sample_names(&text)
}

/// Returns the series the rule files record.
fn recorded_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["alerts.yml", "slo_rules.yml"] {
        let text = std::fs::read_to_string(deploy_dir().join(file)).expect("read a rule file");
        for line in text.lines() {
            if let Some(name) = line.trim().strip_prefix("- record: ") {
                names.insert(name.trim().to_string());
            }
        }
    }
    assert!(names.contains("essaim_slo:error_ratio:rate1h"), "{names:?}");
    names
}

#[test]
fn metric_names_are_the_essaim_and_process_words() {
    let names = metric_names(
        "sum by (le) (rate(essaim_stream_end_to_end_latency_seconds_bucket{job=\"essaim\",slo=\"essaim_x\"}[5m])) \
         / process_max_fds + essaim:attempt_failure_ratio:rate5m",
    );
    let expected: BTreeSet<String> = [
        "essaim:attempt_failure_ratio:rate5m",
        "essaim_stream_end_to_end_latency_seconds_bucket",
        "process_max_fds",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
}
