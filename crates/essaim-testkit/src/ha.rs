//! A highly available cluster of real processes: an etcd cluster of one or more members
//! ([`EtcdCluster`], started by `scripts/etcd.sh`), several coordinators elected through
//! it, and workers given every coordinator's URL — for the failover tests.
//!
//! Like [`crate::cluster::Cluster`], it kills every process when dropped and, when the
//! test is failing, prints the tail of every log and keeps its directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use essaim_proto::{CoordinatorClient, v1};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::clock::FakeClock;
use crate::cluster::{all_results, one_at_a_time};
use crate::deadline::{Deadline, EVENTUALLY};
use crate::etcd_cluster::EtcdCluster;
use crate::process::{Process, free_port, http_status, log_tail};
use crate::proxy::Proxy;
use crate::tmpfs::Tmpfs;
use std::collections::BTreeMap;

mod clocks;

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// The leader's lease in the tests, in seconds (the CLI's default).
pub const LEASE_SECS: u64 = 2;

/// Which wall clock a cluster's processes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClockChoice {
    True,
    Fake,
}

/// Coordinators elected through one etcd, and their workers.
pub struct HaCluster {
    binary: PathBuf,
    dir: Option<TempDir>,
    etcd: EtcdCluster,
    /// The proxy between coordinator 0 and etcd, if any.
    proxy: Option<Proxy>,
    ports: Vec<u16>,
    coordinators: Vec<Option<Process>>,
    workers: Vec<Process>,
    stopped: Vec<Process>,
    started: usize,
    /// Flags every coordinator gets after the cluster's own (a shared registry store).
    coordinator_args: Vec<String>,
    /// The size of the tmpfs each new worker's scratch directory gets, if any.
    scratch_tmpfs_bytes: Option<u64>,
    /// Those mounts, unmounted on drop once the workers are killed.
    scratch_mounts: Vec<Tmpfs>,
    /// The wall clocks of the processes started on fake clocks, by process name; `None`
    /// while processes start on the true clock.
    clocks: Option<BTreeMap<String, FakeClock>>,
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

impl HaCluster {
    /// Starts an etcd of `etcd_members` members, `coordinators` coordinators and
    /// `workers` workers of `slots` slots, and waits until one coordinator leads and the
    /// workers are registered. `None` when the etcd tests are skipped
    /// (`ESSAIM_SKIP_ETCD=1`).
    pub async fn start(
        binary: impl Into<PathBuf>,
        etcd_members: usize,
        coordinators: usize,
        workers: usize,
        slots: u32,
    ) -> Option<Self> {
        Self::start_with(binary, etcd_members, coordinators, workers, slots, false).await
    }

    /// Like [`HaCluster::start`]; with `proxied_leader`, coordinator 0 reaches etcd
    /// through a [`Proxy`] the test can cut ([`HaCluster::etcd_proxy`]). Coordinator 0
    /// is started first and leads; the others start once it does.
    pub async fn start_with(
        binary: impl Into<PathBuf>,
        etcd_members: usize,
        coordinators: usize,
        workers: usize,
        slots: u32,
        proxied_leader: bool,
    ) -> Option<Self> {
        Self::start_with_coordinator_args(
            binary,
            etcd_members,
            coordinators,
            workers,
            slots,
            proxied_leader,
            &[],
        )
        .await
    }

    /// Like [`HaCluster::start_with`], every coordinator started with
    /// `coordinator_args` after the cluster's own flags.
    pub async fn start_with_coordinator_args(
        binary: impl Into<PathBuf>,
        etcd_members: usize,
        coordinators: usize,
        workers: usize,
        slots: u32,
        proxied_leader: bool,
        coordinator_args: &[&str],
    ) -> Option<Self> {
        let clocks = ClockChoice::True;
        let shape = (etcd_members, coordinators, workers, slots);
        Self::launch(binary, shape, proxied_leader, coordinator_args, clocks).await
    }

    /// Like [`HaCluster::start_with`], every coordinator and worker on a wall clock of
    /// its own that the test can step ([`HaCluster::jump_coordinator_clock`]) when
    /// libfaketime is installed ([`HaCluster::on_fake_clocks`] tells).
    pub async fn start_on_fake_clocks(
        binary: impl Into<PathBuf>,
        etcd_members: usize,
        coordinators: usize,
        workers: usize,
        slots: u32,
        proxied_leader: bool,
    ) -> Option<Self> {
        let shape = (etcd_members, coordinators, workers, slots);
        Self::launch(binary, shape, proxied_leader, &[], ClockChoice::Fake).await
    }

    async fn launch(
        binary: impl Into<PathBuf>,
        (etcd_members, coordinators, workers, slots): (usize, usize, usize, u32),
        proxied_leader: bool,
        coordinator_args: &[&str],
        clocks: ClockChoice,
    ) -> Option<Self> {
        let guard = one_at_a_time().await;
        let etcd = tokio::task::spawn_blocking(move || EtcdCluster::start(etcd_members))
            .await
            .expect("etcd starts without panicking")?;
        let dir = tempfile::Builder::new()
            .prefix("essaim-ha-")
            .tempdir()
            .expect("a temporary directory");
        let mut cluster = Self {
            binary: binary.into(),
            dir: Some(dir),
            etcd,
            ports: (0..coordinators).map(|_| free_port()).collect(),
            coordinators: (0..coordinators).map(|_| None).collect(),
            workers: Vec::new(),
            stopped: Vec::new(),
            started: 0,
            coordinator_args: coordinator_args.iter().map(|arg| arg.to_string()).collect(),
            scratch_tmpfs_bytes: None,
            scratch_mounts: Vec::new(),
            clocks: None,
            proxy: None,
            _one_at_a_time: guard,
        };
        if proxied_leader {
            let first_member = cluster.etcd.urls()[0]
                .trim_start_matches("http://")
                .to_string();
            cluster.proxy = Some(Proxy::start(first_member).await);
        }
        if clocks == ClockChoice::Fake {
            cluster.put_processes_on_fake_clocks();
        }
        cluster.start_coordinator(0);
        assert_eq!(
            cluster.wait_leader().await,
            0,
            "the first coordinator leads"
        );
        for index in 1..coordinators {
            cluster.start_coordinator(index);
        }
        for _ in 0..workers {
            cluster.start_worker(slots);
        }
        cluster.wait_for_workers(workers).await;
        Some(cluster)
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("kept until drop").path()
    }

    /// A path in the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The etcd cluster.
    pub fn etcd(&self) -> &EtcdCluster {
        &self.etcd
    }

    /// The URL of coordinator `index`.
    pub fn url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[index])
    }

    /// Every coordinator's URL, comma-separated, as workers and clients take them.
    pub fn urls(&self) -> String {
        (0..self.ports.len())
            .map(|index| self.url(index))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn next_name(&mut self, role: &str) -> String {
        self.started += 1;
        format!("{role}-{}", self.started)
    }

    /// Starts coordinator `index` (again): it campaigns, and stands by if another leads.
    pub fn start_coordinator(&mut self, index: usize) {
        assert!(
            self.coordinators[index].is_none(),
            "coordinator {index} runs already"
        );
        let name = self.next_name(&format!("coordinator{index}"));
        let log = self.path(&format!("{name}.log"));
        let port = self.ports[index].to_string();
        let etcd = match (&self.proxy, index) {
            (Some(proxy), 0) => proxy.url("http"),
            _ => self.etcd.endpoints(),
        };
        let mut args: Vec<String> = [
            "coordinator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &self
                .path(&format!("unused-data-{index}"))
                .display()
                .to_string(),
            "--etcd",
            &etcd,
            "--cluster",
            "failover",
            "--leader-lease-secs",
            &LEASE_SECS.to_string(),
            "--heartbeat-ms",
            "200",
            "--worker-timeout-ms",
            "1000",
            "--long-poll-ms",
            "2000",
            "--speculation-min-runtime-ms",
            "60000",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.extend(self.coordinator_args.iter().cloned());
        let env = self.clock_env(&name);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.coordinators[index] = Some(Process::spawn(&self.binary, &name, &args, &env, log));
    }

    /// Starts a worker given every coordinator's URL.
    pub fn start_worker(&mut self, slots: u32) {
        let name = self.next_name("worker");
        let scratch = self.path(&format!("{name}-scratch"));
        std::fs::create_dir_all(&scratch).expect("the scratch directory can be created");
        if let Some(bytes) = self.scratch_tmpfs_bytes {
            let mount = Tmpfs::mount(&scratch, bytes).expect("the scratch tmpfs is mounted");
            self.scratch_mounts.push(mount);
        }
        let args: Vec<String> = [
            "worker",
            "--coordinator",
            &self.urls(),
            "--slots",
            &slots.to_string(),
            "--allow-commands",
            "--scratch-dir",
            &scratch.display().to_string(),
            "--name",
            &name,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        let log = self.path(&format!("{name}.log"));
        let mut env = self.clock_env(&name);
        env.push(("RUST_LOG".into(), "info,essaim_worker=debug".into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let process = Process::spawn(&self.binary, &name, &args, &env, log);
        self.workers.push(process);
    }

    /// Gives the scratch directory of every worker started from now on a tmpfs of its
    /// own of `bytes` (see [`Tmpfs`]: check [`Tmpfs::can_mount`] first), so that a test
    /// can fill one worker's disk ([`HaCluster::worker_scratch`]).
    pub fn put_worker_scratch_on_tmpfs(&mut self, bytes: u64) {
        self.scratch_tmpfs_bytes = Some(bytes);
    }

    /// The tmpfs of running worker `index`'s scratch directory, if it has one.
    pub fn worker_scratch(&self, index: usize) -> Option<&Tmpfs> {
        let scratch = self.path(&format!("{}-scratch", self.workers[index].name));
        self.scratch_mounts
            .iter()
            .find(|mount| mount.path() == scratch)
    }

    /// The number of running workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// SIGKILLs running worker `index` (of [`HaCluster::worker_count`]).
    pub fn kill_worker(&mut self, index: usize) {
        let mut process = self.workers.remove(index);
        process.kill();
        self.stopped.push(process);
    }

    /// Sends `signal` to running worker `index`.
    pub fn signal_worker(&mut self, index: usize, signal: Signal) {
        self.workers[index].signal(signal);
    }

    /// Whether coordinator `index` runs (it may be paused).
    pub fn coordinator_runs(&self, index: usize) -> bool {
        self.coordinators[index].is_some()
    }

    /// The proxy between coordinator 0 and etcd (see [`HaCluster::start_with`]).
    pub fn etcd_proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("started with a proxied leader")
    }

    /// Stops coordinator `index` with SIGTERM (as an upgrade would) and waits for it.
    pub async fn stop_coordinator(&mut self, index: usize) {
        let mut process = self.coordinators[index].take().expect("coordinator runs");
        process.signal(Signal::SIGTERM);
        process.wait_exit(EVENTUALLY).await;
        self.stopped.push(process);
    }

    /// The coordinator process `index`.
    pub fn coordinator(&mut self, index: usize) -> &mut Process {
        self.coordinators[index].as_mut().expect("coordinator runs")
    }

    /// SIGKILLs coordinator `index`.
    pub fn kill_coordinator(&mut self, index: usize) {
        let mut process = self.coordinators[index].take().expect("coordinator runs");
        process.kill();
        self.stopped.push(process);
    }

    /// Sends `signal` to coordinator `index`.
    pub fn signal_coordinator(&mut self, index: usize, signal: Signal) {
        self.coordinator(index).signal(signal);
    }

    /// The indexes of the coordinators whose `/readyz` answers 200 (the leader does).
    pub async fn ready(&self) -> Vec<usize> {
        let mut ready = Vec::new();
        for (index, port) in self.ports.iter().enumerate() {
            if self.coordinators[index].is_some()
                && http_status(*port, "/readyz").await == Some(200)
            {
                ready.push(index);
            }
        }
        ready
    }

    /// Waits until exactly one coordinator leads; returns its index.
    pub async fn wait_leader(&self) -> usize {
        self.wait_leader_other_than(None).await
    }

    /// Waits until exactly one coordinator other than `old` leads; returns its index.
    pub async fn wait_leader_other_than(&self, old: Option<usize>) -> usize {
        let deadline = Deadline::after(EVENTUALLY, "one coordinator to lead");
        loop {
            let ready = self.ready().await;
            if let [leader] = ready[..]
                && Some(leader) != old
            {
                return leader;
            }
            deadline.tick().await;
        }
    }

    /// Waits until a new leader other than `old` serves; returns it and how long it took.
    pub async fn time_failover(&self, old: usize, since: Instant) -> (usize, Duration) {
        let leader = self.wait_leader_other_than(Some(old)).await;
        (leader, since.elapsed())
    }

    /// A client of coordinator `index`.
    pub async fn client(&self, index: usize) -> CoordinatorClient {
        essaim_proto::connect(&self.url(index), None, Duration::from_secs(5))
            .await
            .expect("the coordinator accepts connections")
    }

    /// A client of the current leader.
    pub async fn leader_client(&self) -> CoordinatorClient {
        let leader = self.wait_leader().await;
        self.client(leader).await
    }

    /// Waits until `count` workers are registered with the leader.
    pub async fn wait_for_workers(&self, count: usize) {
        let deadline = Deadline::after(EVENTUALLY, format!("{count} workers to register"));
        loop {
            let mut client = self.leader_client().await;
            if let Ok(workers) = client.list_workers(v1::ListWorkersRequest {}).await
                && workers.into_inner().workers.len() >= count
            {
                return;
            }
            deadline.tick().await;
        }
    }

    /// Submits a job to the leader; returns its id.
    pub async fn submit(&self, spec: v1::JobSpec) -> u64 {
        let mut client = self.leader_client().await;
        let request = v1::SubmitJobRequest { spec: Some(spec) };
        let reply = client.submit_job(request).await;
        reply.expect("the job is accepted").into_inner().job_id
    }

    /// A job's status, as the leader of the moment says, retried across failovers.
    pub async fn job(&self, job_id: u64) -> v1::JobStatus {
        let deadline = Deadline::after(EVENTUALLY, format!("the status of job {job_id}"));
        loop {
            let mut client = self.leader_client().await;
            if let Ok(reply) = client.get_job(v1::GetJobRequest { job_id }).await {
                return reply.into_inner();
            }
            deadline.tick().await;
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

    /// Every committed result of a job, from the leader of the moment.
    pub async fn results(&self, job_id: u64) -> Vec<v1::TaskResult> {
        let deadline = Deadline::after(EVENTUALLY, format!("the results of job {job_id}"));
        loop {
            let mut client = self.leader_client().await;
            if let Ok(results) = all_results(&mut client, job_id).await {
                return results;
            }
            deadline.tick().await;
        }
    }

    /// The text of coordinator `index`'s `/metrics`.
    pub async fn metrics(&self, index: usize) -> String {
        crate::process::http_body(self.ports[index], "/metrics")
            .await
            .unwrap_or_default()
    }

    /// The logs of every coordinator, oldest first.
    pub fn coordinator_logs(&self) -> String {
        self.stopped
            .iter()
            .chain(self.coordinators.iter().flatten())
            .filter(|process| process.name.starts_with("coordinator"))
            .map(|process| format!("---- {} ----\n{}", process.name, process.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for process in self.coordinators.iter_mut().flatten() {
            process.resume();
            process.kill();
        }
        for worker in &mut self.workers {
            worker.kill();
        }
        self.scratch_mounts.clear();
        if !std::thread::panicking() {
            return;
        }
        let mut report =
            String::from("\n========== the test failed: tail of every process log ==========\n");
        let every = self
            .stopped
            .iter()
            .chain(self.coordinators.iter().flatten())
            .chain(self.workers.iter());
        for process in every {
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
