//! A cluster of real processes: a coordinator and its workers, children of the test,
//! running the built `essaim` binary on loopback, in one temporary directory.
//!
//! Every process writes its standard output and error to a log file in that directory.
//! When a test panics, [`Cluster`]'s `Drop` kills every process, prints the tail of
//! every log (dead processes included) and keeps the directory, so a failure shows what
//! each process saw. Without a panic, `Drop` kills every process with SIGKILL and
//! removes the directory: no test leaks a process.
//!
//! The helpers a fault-injection test needs are here: SIGKILL a worker or the
//! coordinator ([`Cluster::kill_worker`], [`Cluster::kill_coordinator`]), freeze and
//! thaw a worker ([`Process::pause`], [`Process::resume`] through [`Cluster::worker`]),
//! restart the coordinator on its journal ([`Cluster::restart_coordinator`]) and add
//! workers ([`Cluster::start_worker`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use essaim_proto::{CoordinatorClient, v1};
use tempfile::TempDir;

use crate::cli::{self, CliOutput};
use crate::deadline::{Deadline, EVENTUALLY, within};
use crate::process::{Process, free_port, log_tail};

mod launch;

use launch::{CoordinatorOptions, WorkerOptions, start_coordinator, start_worker};

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Serialises the clusters of one test process under `cargo test`, which runs tests on
/// threads of one process: each test starts several processes, and two clusters at once
/// on two slow cores would turn timing margins into flakiness. nextest runs one test per
/// process, so there the lock is always free. A tokio mutex, because its guard is held
/// across awaits.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the other tests of this process to finish with their cluster.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().await
}

/// What a cluster is made of.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `essaim` binary (`env!("CARGO_BIN_EXE_essaim")` in the binary's tests).
    pub binary: PathBuf,
    /// The token the coordinator requires and the workers present, if any.
    pub token: Option<String>,
    /// Flags added to the coordinator's command line, at every restart too.
    pub coordinator_args: Vec<String>,
    /// Workers started at once.
    pub workers: usize,
    /// Slots of each of them.
    pub slots: u32,
    /// Variables set for the workers and the command line (object-store credentials),
    /// on top of the test's environment.
    pub env: Vec<(String, String)>,
    /// Flags added to every worker's command line.
    pub worker_args: Vec<String>,
    /// The CA that signed the coordinator's certificate, when `coordinator_args` make it
    /// serve TLS: its URL is then `https://`, and the cluster's own client and readiness
    /// probe trust this CA (default `None`: plain HTTP).
    pub tls_ca: Option<PathBuf>,
    /// The client certificate and key the cluster's own client presents, when the
    /// coordinator requires one (`--tls-client-ca`; default `None`).
    pub tls_identity: Option<(PathBuf, PathBuf)>,
}

impl ClusterOptions {
    /// Returns the options of a cluster of `binary` without a token or extra flags, with
    /// `workers` workers of `slots` slots.
    pub fn new(binary: impl Into<PathBuf>, workers: usize, slots: u32) -> Self {
        Self {
            binary: binary.into(),
            token: None,
            coordinator_args: Vec::new(),
            workers,
            slots,
            env: Vec::new(),
            worker_args: Vec::new(),
            tls_ca: None,
            tls_identity: None,
        }
    }
}

/// A coordinator and its workers, as real processes, in one temporary directory.
pub struct Cluster {
    binary: PathBuf,
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
    /// Variables of the workers and the command line.
    env: Vec<(String, String)>,
    /// Flags added to every worker start.
    worker_args: Vec<String>,
    /// The roots the coordinator's certificate is verified with; `None`: plain HTTP.
    tls: Option<essaim_tls::ClientTrust>,
    client: Option<CoordinatorClient>,
    // Last, so that it is released after the processes are gone.
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts a coordinator and the workers of `options`, and waits until the workers
    /// are registered.
    pub async fn start(options: ClusterOptions) -> Self {
        let one_at_a_time = one_at_a_time().await;
        let tls = options.tls_ca.as_deref().map(|ca| {
            let trust = essaim_tls::ClientTrust::from_ca_file(ca).expect("the test CA can be read");
            match &options.tls_identity {
                Some((cert, key)) => trust
                    .with_identity(cert, key)
                    .expect("the test client certificate can be read"),
                None => trust,
            }
        });
        let dir = tempfile::Builder::new()
            .prefix("essaim-e2e-")
            .tempdir()
            .expect("a temporary directory");
        let mut cluster = Self {
            binary: options.binary,
            dir: Some(dir),
            port: free_port(),
            token: options.token,
            coordinator: None,
            workers: BTreeMap::new(),
            stopped: Vec::new(),
            processes_started: 0,
            coordinator_args: options.coordinator_args,
            env: options.env,
            worker_args: options.worker_args,
            tls,
            client: None,
            _one_at_a_time: one_at_a_time,
        };
        cluster.start_coordinator().await;
        for _ in 0..options.workers {
            cluster.start_worker(options.slots);
        }
        cluster.wait_for_workers(options.workers).await;
        cluster
    }

    /// Returns the `essaim` binary the cluster runs.
    pub fn binary(&self) -> &Path {
        &self.binary
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

    /// Returns the coordinator's URL (`https://` when it serves TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
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
        let coordinator = CoordinatorOptions {
            data_dir: &data_dir,
            port: self.port,
            token: self.token.as_deref(),
            extra_args: &self.coordinator_args,
            tls: self.tls.as_ref(),
        };
        let process = start_coordinator(&self.binary, &coordinator, &name, log).await;
        self.coordinator = Some(process);
        let url = self.url();
        let trust = self.tls.clone().unwrap_or_default();
        let client = essaim_proto::connect_trusting(
            &url,
            self.token.as_deref(),
            Duration::from_secs(5),
            &trust,
        );
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

    /// Sends `signal` to the running coordinator.
    pub fn signal_coordinator(&self, signal: nix::sys::signal::Signal) {
        self.coordinator
            .as_ref()
            .expect("a coordinator is running")
            .signal(signal);
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
        self.start_worker_with(slots, token, &[])
    }

    /// Starts a worker of `slots` slots with the cluster's token and `args` added to its
    /// command line after the cluster's worker flags (`--label gpu=yes`); returns its
    /// name.
    pub fn start_worker_with_args(&mut self, slots: u32, args: &[&str]) -> String {
        let token = self.token.clone();
        self.start_worker_with(slots, token.as_deref(), args)
    }

    fn start_worker_with(&mut self, slots: u32, token: Option<&str>, args: &[&str]) -> String {
        let extra_args: Vec<String> = self
            .worker_args
            .iter()
            .cloned()
            .chain(args.iter().map(|arg| arg.to_string()))
            .collect();
        let name = self.next_name("worker");
        let log = self.path(&format!("{name}.log"));
        let scratch = self.path(&format!("{name}-scratch"));
        let worker = WorkerOptions {
            url: &self.url(),
            slots,
            token,
            name: &name,
            scratch_dir: &scratch,
            env: &self.env,
            extra_args: &extra_args,
        };
        let process = start_worker(&self.binary, &worker, log);
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
        let results = within("GetResults", all_results(&mut self.client(), job_id)).await;
        results.expect("GetResults succeeds")
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
        env.extend(
            self.env
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        if let Some(token) = &self.token {
            env.push(("ESSAIM_TOKEN", token.as_str()));
        }
        cli::run(&self.binary, args, &env).await
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

/// Every committed result of a job, paging through GetResults.
pub(crate) async fn all_results(
    client: &mut CoordinatorClient,
    job_id: u64,
) -> Result<Vec<v1::TaskResult>, tonic::Status> {
    let mut all = Vec::new();
    let mut from_task = 0;
    loop {
        let request = v1::GetResultsRequest {
            job_id,
            from_task,
            limit: 64,
        };
        let page = client.get_results(request).await?.into_inner();
        let reached_end = page.results.is_empty() || page.next_task <= from_task;
        all.extend(page.results);
        if reached_end {
            return Ok(all);
        }
        from_task = page.next_task;
    }
}
