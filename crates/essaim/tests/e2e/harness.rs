//! The end-to-end harness: a cluster of real `essaim` processes on loopback.
//!
//! Every process writes its standard output and error to a log file in the test's
//! temporary directory. When a test panics, [`Cluster`]'s `Drop` kills every process,
//! prints the tail of every log (dead processes included) and keeps the directory, so a
//! failure shows what each process saw. Without a panic, `Drop` kills every process with
//! SIGKILL and removes the directory: no test leaks a process.
//!
//! Nothing here sleeps to wait for a condition: waits poll with a [`Deadline`] and fail
//! naming what they were waiting for. The only fixed pauses are the ones a test chooses
//! on purpose (chaos pacing, or a window in which nothing must happen).

mod process;

pub use process::{CliOutput, Process, essaim, essaim_with_env};

use essaim_proto::{CoordinatorClient, v1};
use process::{Coordinator, Worker, free_port, log_tail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long an "eventually" condition may take on a slow, loaded machine.
pub const EVENTUALLY: Duration = Duration::from_secs(60);

/// Period of every polling loop.
const POLL_PERIOD: Duration = Duration::from_millis(50);

/// Longest a single RPC or CLI invocation may take before the test gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Serialises the tests of this binary under `cargo test`, which runs tests on threads of
/// one process: each test starts several processes, and two clusters at once on two slow
/// cores would turn timing margins into flakiness. nextest runs one test per process, so
/// there the lock is always free. A tokio mutex, because its guard is held across awaits.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the other tests of this process to finish with their cluster.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().await
}

// ---------------------------------------------------------------- deadlines

/// A point in time by which a named condition must hold.
pub struct Deadline {
    what: String,
    at: Instant,
}

impl Deadline {
    /// Returns a deadline `timeout` from now for the condition `what`.
    pub fn after(timeout: Duration, what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            at: Instant::now() + timeout,
        }
    }

    /// Panics if the deadline has passed.
    pub fn check(&self) {
        assert!(
            Instant::now() < self.at,
            "timed out waiting for {}",
            self.what
        );
    }

    /// Panics if the deadline has passed, else waits one polling period.
    pub async fn tick(&self) {
        self.check();
        tokio::time::sleep(POLL_PERIOD).await;
    }
}

/// Runs one future (an RPC) with a generous timeout, so a hung call fails the test with a
/// name instead of hanging it.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not answer within {CALL_TIMEOUT:?}"),
    }
}

// ---------------------------------------------------------------- jobs

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

// ---------------------------------------------------------------- the cluster

/// A coordinator and its workers, as real processes, in one temporary directory.
pub struct Cluster {
    dir: Option<TempDir>,
    port: u16,
    token: Option<String>,
    coordinator: Option<Process>,
    /// Live workers, by name.
    workers: BTreeMap<String, Process>,
    /// Processes that were killed or exited, kept for their logs.
    stopped: Vec<Process>,
    processes_started: usize,
    /// Flags added to every coordinator start.
    coordinator_args: Vec<String>,
    client: Option<CoordinatorClient>,
    // Last, so that it is released after the processes are gone.
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

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
        let one_at_a_time = one_at_a_time().await;
        let dir = tempfile::Builder::new()
            .prefix("essaim-e2e-")
            .tempdir()
            .expect("a temporary directory");
        let mut cluster = Self {
            dir: Some(dir),
            port: free_port(),
            token: token.map(str::to_string),
            coordinator: None,
            workers: BTreeMap::new(),
            stopped: Vec::new(),
            processes_started: 0,
            coordinator_args: coordinator_args.iter().map(|arg| arg.to_string()).collect(),
            client: None,
            _one_at_a_time: one_at_a_time,
        };
        cluster.start_coordinator().await;
        for _ in 0..workers {
            cluster.start_worker(slots);
        }
        cluster.wait_for_workers(workers).await;
        cluster
    }

    /// Returns the test's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the directory is kept until drop")
            .path()
    }

    /// Returns a path in the test's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Returns the coordinator's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn next_name(&mut self, role: &str) -> String {
        self.processes_started += 1;
        format!("{role}-{}", self.processes_started)
    }

    async fn start_coordinator(&mut self) {
        assert!(
            self.coordinator.is_none(),
            "a coordinator is already running"
        );
        let name = self.next_name("coordinator");
        let log = self.path(&format!("{name}.log"));
        let data_dir = self.path("coordinator-data");
        let process = Coordinator::start(
            &data_dir,
            self.port,
            self.token.as_deref(),
            &self.coordinator_args,
            &name,
            log,
        )
        .await;
        self.coordinator = Some(process);
        let url = self.url();
        let client = essaim_proto::connect(&url, self.token.as_deref(), Duration::from_secs(5));
        self.client = Some(
            within("connect", client)
                .await
                .expect("the coordinator accepts connections"),
        );
    }

    /// Returns the logs of every coordinator this cluster started, oldest first.
    pub fn coordinator_log(&self) -> String {
        let stopped = self
            .stopped
            .iter()
            .filter(|p| p.name.starts_with("coordinator"));
        stopped
            .chain(self.coordinator.iter())
            .map(Process::log_text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills the coordinator with SIGKILL.
    pub fn kill_coordinator(&mut self) {
        let mut process = self.coordinator.take().expect("a coordinator is running");
        process.kill();
        self.client = None;
        self.stopped.push(process);
    }

    /// Starts the coordinator again on the same port and journal, and waits until it is
    /// ready.
    pub async fn restart_coordinator(&mut self) {
        self.start_coordinator().await;
    }

    /// Starts a worker of `slots` slots with the cluster's token; returns its name.
    pub fn start_worker(&mut self, slots: u32) -> String {
        let token = self.token.clone();
        self.start_worker_with_token(slots, token.as_deref())
    }

    /// Starts a worker of `slots` slots with `token`; returns its name.
    pub fn start_worker_with_token(&mut self, slots: u32, token: Option<&str>) -> String {
        let name = self.next_name("worker");
        let log = self.path(&format!("{name}.log"));
        let scratch = self.path(&format!("{name}-scratch"));
        let process = Worker::start(&self.url(), slots, token, &name, &scratch, log);
        self.workers.insert(name.clone(), process);
        name
    }

    /// Returns the names of the live workers.
    pub fn worker_names(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// Returns a live worker.
    pub fn worker(&mut self, name: &str) -> &mut Process {
        self.workers
            .get_mut(name)
            .unwrap_or_else(|| panic!("no live worker {name}"))
    }

    /// Kills a worker with SIGKILL.
    pub fn kill_worker(&mut self, name: &str) {
        let mut process = self
            .workers
            .remove(name)
            .unwrap_or_else(|| panic!("no live worker {name}"));
        process.kill();
        self.stopped.push(process);
    }

    /// Waits until a worker exits on its own; returns its exit status.
    pub async fn wait_worker_exit(&mut self, name: &str, timeout: Duration) -> ExitStatus {
        let status = self.worker(name).wait_exit(timeout).await;
        let process = self
            .workers
            .remove(name)
            .expect("the worker was just found");
        self.stopped.push(process);
        status
    }

    /// Returns a client of the coordinator, with the cluster's token.
    pub fn client(&self) -> CoordinatorClient {
        self.client.clone().expect("the coordinator is running")
    }

    /// Returns the workers the coordinator considers alive.
    pub async fn workers(&self) -> Vec<v1::WorkerStatus> {
        let reply = within(
            "ListWorkers",
            self.client().list_workers(v1::ListWorkersRequest {}),
        )
        .await;
        reply.expect("ListWorkers succeeds").into_inner().workers
    }

    /// Waits until exactly `count` workers are registered.
    pub async fn wait_for_workers(&self, count: usize) {
        let deadline = Deadline::after(EVENTUALLY, format!("{count} registered workers"));
        while self.workers().await.len() != count {
            deadline.tick().await;
        }
    }

    /// Submits a job; returns its id.
    pub async fn submit(&self, spec: v1::JobSpec) -> u64 {
        let reply = within(
            "SubmitJob",
            self.client()
                .submit_job(v1::SubmitJobRequest { spec: Some(spec) }),
        )
        .await;
        reply.expect("the job is accepted").into_inner().job_id
    }

    /// Returns a job's status.
    pub async fn job(&self, job_id: u64) -> v1::JobStatus {
        let reply = within(
            "GetJob",
            self.client().get_job(v1::GetJobRequest { job_id }),
        )
        .await;
        reply.expect("GetJob succeeds").into_inner()
    }

    /// Waits until a job is no longer running; returns its final status.
    pub async fn wait_job(&self, job_id: u64, timeout: Duration) -> v1::JobStatus {
        let deadline = Deadline::after(timeout, format!("job {job_id} to finish"));
        loop {
            let request = v1::WaitJobRequest {
                job_id,
                timeout_ms: 1000,
            };
            let reply = within("WaitJob", self.client().wait_job(request)).await;
            let job = reply.expect("WaitJob succeeds").into_inner();
            if job.state != "running" {
                return job;
            }
            deadline.check();
        }
    }

    /// Waits until `condition` holds for a job's status; returns that status.
    pub async fn wait_job_until(
        &self,
        job_id: u64,
        what: &str,
        condition: impl Fn(&v1::JobStatus) -> bool,
    ) -> v1::JobStatus {
        let deadline = Deadline::after(EVENTUALLY, format!("job {job_id}: {what}"));
        loop {
            let job = self.job(job_id).await;
            if condition(&job) {
                return job;
            }
            deadline.tick().await;
        }
    }

    /// Returns every committed result of a job, paging through GetResults.
    pub async fn results(&self, job_id: u64) -> Vec<v1::TaskResult> {
        let mut all = Vec::new();
        let mut from_task = 0;
        loop {
            let request = v1::GetResultsRequest {
                job_id,
                from_task,
                limit: 64,
            };
            let reply = within("GetResults", self.client().get_results(request)).await;
            let page = reply.expect("GetResults succeeds").into_inner();
            let reached_end = page.results.is_empty() || page.next_task <= from_task;
            all.extend(page.results);
            if reached_end {
                return all;
            }
            from_task = page.next_task;
        }
    }

    /// Returns the dead letters of a job.
    pub async fn dead_letters(&self, job_id: u64) -> Vec<v1::DeadLetter> {
        let request = v1::ListDeadLettersRequest { job_id };
        let reply = within("ListDeadLetters", self.client().list_dead_letters(request)).await;
        reply
            .expect("ListDeadLetters succeeds")
            .into_inner()
            .dead_letters
    }

    /// Runs `essaim ARGS` against this cluster (its URL and token in the environment).
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let url = self.url();
        let mut env = vec![("ESSAIM_COORDINATOR", url.as_str())];
        if let Some(token) = &self.token {
            env.push(("ESSAIM_TOKEN", token.as_str()));
        }
        essaim_with_env(args, &env).await
    }

    fn every_process(&self) -> impl Iterator<Item = &Process> {
        self.coordinator
            .iter()
            .chain(self.workers.values())
            .chain(self.stopped.iter())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(coordinator) = &mut self.coordinator {
            coordinator.kill();
        }
        for worker in self.workers.values_mut() {
            worker.kill();
        }
        if !std::thread::panicking() {
            return;
        }
        let mut report =
            String::from("\n========== the test failed: tail of every process log ==========\n");
        for process in self.every_process() {
            report.push_str(&format!(
                "---------- {} ({}) ----------\n",
                process.name,
                process.log.display()
            ));
            report.push_str(&log_tail(&process.log, LOG_TAIL_LINES));
            report.push('\n');
        }
        if let Some(dir) = self.dir.take() {
            report.push_str(&format!(
                "the test directory is kept: {}\n",
                dir.keep().display()
            ));
        }
        eprintln!("{report}");
    }
}
