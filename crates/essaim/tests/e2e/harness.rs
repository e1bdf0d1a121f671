//! The end-to-end harness: the test kit's cluster of real processes
//! ([`essaim_testkit::cluster`]) bound to the `essaim` binary under test, and the job
//! helpers of these tests.
//!
//! The cluster prints the tail of every process log when a test fails and keeps its
//! directory; waits poll with a [`Deadline`] and fail naming what they were waiting
//! for (see the test kit's crate doc).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use essaim_proto::v1;
pub use essaim_testkit::cli::CliOutput;
pub use essaim_testkit::cluster::one_at_a_time;
use essaim_testkit::cluster::{self, ClusterOptions};
pub use essaim_testkit::deadline::{Deadline, EVENTUALLY, within};
pub use essaim_testkit::process::{Process, free_port};

/// The binary under test.
pub const ESSAIM: &str = env!("CARGO_BIN_EXE_essaim");

/// Runs `essaim ARGS` to completion with `env` set and no other `ESSAIM_*` variable.
pub async fn essaim_with_env(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    essaim_testkit::cli::run(Path::new(ESSAIM), args, env).await
}

/// Runs `essaim ARGS` to completion with no `ESSAIM_*` variable set.
pub async fn essaim(args: &[&str]) -> CliOutput {
    essaim_with_env(args, &[]).await
}

/// Spawns `essaim ARGS` as a child with its output in `log`, killed on drop.
pub fn spawn_essaim(name: &str, args: &[String], env: &[(&str, &str)], log: PathBuf) -> Process {
    Process::spawn(Path::new(ESSAIM), name, args, env, log)
}

// ---------------------------------------------------------------- jobs

/// Asserts a CLI run's exit code and a fragment of its standard error.
pub fn assert_refused(output: &CliOutput, code: i32, fragment: &str) {
    assert_eq!(output.code, Some(code), "{output:?}");
    assert!(
        output.stderr.contains(fragment),
        "stderr lacks `{fragment}`: {output:?}"
    );
}

/// Returns a `command` task running `sh -c SCRIPT` with extra environment variables.
pub fn shell_task(script: &str, env: &[(&str, &Path)]) -> v1::TaskSpec {
    let env: BTreeMap<&str, String> = env
        .iter()
        .map(|(name, path)| (*name, path.display().to_string()))
        .collect();
    let payload = serde_json::json!({"argv": ["sh", "-c", script], "env": env});
    v1::TaskSpec {
        kind: "command".into(),
        payload: payload.to_string().into_bytes(),
        ..Default::default()
    }
}

/// Returns a job of `tasks` without speculative copies (so every extra execution comes
/// from a failure) and with `max_attempts` attempts per task.
pub fn job_spec(tasks: Vec<v1::TaskSpec>, max_attempts: u32) -> v1::JobSpec {
    v1::JobSpec {
        name: "e2e".into(),
        tasks,
        max_attempts,
        speculation_multiplier: -1.0,
        ..Default::default()
    }
}

/// Returns a result's inline output as text.
pub fn output_text(result: &v1::TaskResult) -> String {
    let output = result.output.clone().unwrap_or_default();
    String::from_utf8(output.inline).expect("the outputs of these tests are text")
}

/// Reads a side file of `<task index> <rest>` lines, one per execution, and returns the
/// executions of each task (the rest of each line, e.g. the attempt id).
pub fn executions_by_task(side_file: &Path) -> BTreeMap<u32, Vec<String>> {
    let text = std::fs::read_to_string(side_file).unwrap_or_default();
    let mut executions: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let (index, rest) = line.split_once(' ').unwrap_or((line, ""));
        let index: u32 = index
            .parse()
            .unwrap_or_else(|_| panic!("bad side-file line `{line}`"));
        executions.entry(index).or_default().push(rest.to_string());
    }
    executions
}

/// Returns the number of lines of a file (0 if it does not exist yet).
pub fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// Waits until a job of `tasks` shell tasks succeeds and checks the oracle of these
/// tests: one committed result per task, whose output is `out-INDEX`. Returns the
/// results.
pub async fn assert_job_commits_every_task_once(
    cluster: &Cluster,
    job_id: u64,
    tasks: u32,
) -> Vec<v1::TaskResult> {
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let results = cluster.results(job_id).await;
    assert_eq!(
        results.len(),
        tasks as usize,
        "one committed result per task"
    );
    let committed: BTreeSet<u32> = results.iter().map(|result| result.task_index).collect();
    assert_eq!(
        committed,
        (0..tasks).collect::<BTreeSet<u32>>(),
        "every task committed exactly once"
    );
    for result in &results {
        assert_eq!(output_text(result), format!("out-{}\n", result.task_index));
    }
    results
}

// ---------------------------------------------------------------- the cluster

/// The test kit's cluster of the `essaim` binary under test.
pub struct Cluster(cluster::Cluster);

impl Cluster {
    /// Starts a coordinator without a token and `workers` workers of `slots` slots, and
    /// waits until they are registered.
    pub async fn start(workers: usize, slots: u32) -> Self {
        Self::start_with_token(None, workers, slots).await
    }

    /// Starts a coordinator requiring `token` (workers get it too) and `workers` workers
    /// of `slots` slots, and waits until they are registered.
    pub async fn start_with_token(token: Option<&str>, workers: usize, slots: u32) -> Self {
        Self::start_with_options(token, &[], workers, slots).await
    }

    /// Starts a coordinator requiring `token`, with `coordinator_args` added to its
    /// command line (at every restart too), and `workers` workers of `slots` slots.
    pub async fn start_with_options(
        token: Option<&str>,
        coordinator_args: &[&str],
        workers: usize,
        slots: u32,
    ) -> Self {
        let options = ClusterOptions {
            token: token.map(str::to_string),
            coordinator_args: coordinator_args.iter().map(|arg| arg.to_string()).collect(),
            ..ClusterOptions::new(ESSAIM, workers, slots)
        };
        Self(cluster::Cluster::start(options).await)
    }

    /// Starts a cluster of `options` (extra flags of the coordinator and the workers,
    /// their environment, TLS), and waits until its workers are registered.
    pub async fn start_with(options: ClusterOptions) -> Self {
        Self(cluster::Cluster::start(options).await)
    }

    /// Starts a coordinator without a token and `workers` workers of `slots` slots,
    /// the workers and the command line with `env` added to their environment.
    pub async fn start_with_env(workers: usize, slots: u32, env: &[(&str, &str)]) -> Self {
        let options = ClusterOptions {
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            ..ClusterOptions::new(ESSAIM, workers, slots)
        };
        Self(cluster::Cluster::start(options).await)
    }
}

impl Deref for Cluster {
    type Target = cluster::Cluster;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// GETs `path` from the coordinator at `base` (no token); returns the body of a 200.
pub fn http_get(base: &str, path: &str) -> String {
    let (status, body) = essaim_testkit::http::request(base, "GET", path, None, None)
        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Returns the value of the sample `name{labels}` (or `name` without labels) of a
/// Prometheus text exposition.
pub fn metric_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}
