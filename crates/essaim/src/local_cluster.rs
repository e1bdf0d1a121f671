//! The embedded local cluster: a coordinator in this process and N worker processes on
//! loopback, talking over the same gRPC and HTTP paths as a real cluster.
//!
//! Workers are real child processes (this same binary, `essaim worker`), so they can crash
//! for real — the fruit-salad demo relies on that — and a supervisor restarts crashed ones
//! after a short delay, as a container orchestrator would. Each worker holds a lifeline
//! to this process (`lifeline.rs`), so none outlives it, even after a SIGKILL.

use crate::lifeline::{self, Lifeline};
use essaim_coordinator::{CoordinatorConfig, RunningCoordinator, start_coordinator};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The OTLP collector of this process (`--otlp-endpoint`), handed on to the worker
/// processes it starts.
pub(crate) static OTLP_ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Worker processes.
    pub workers: usize,
    /// Slots per worker.
    pub slots: u32,
    /// Extra attempts each worker pulls ahead.
    pub prefetch: essaim_worker::Prefetch,
    /// Coordinator address (port 0 = any).
    pub listen: SocketAddr,
    /// Journal and scratch space.
    pub data_dir: PathBuf,
    /// Cluster token.
    pub token: Option<String>,
    /// Restart workers that exit unexpectedly.
    pub restart_crashed: bool,
    /// Log filter for worker processes.
    pub worker_log: String,
    /// Worker heartbeat period.
    pub heartbeat: Duration,
    /// Silence after which a worker is declared dead.
    pub worker_timeout: Duration,
    /// The workers' task cache (incremental re-runs; off by default).
    pub task_cache: crate::commands::task_cache::TaskCacheArgs,
}

impl LocalOptions {
    /// Options of the demos: `workers` one-slot workers on any loopback port, no token,
    /// crashed workers restarted, and fast failure detection (a crashed worker is
    /// noticed within 1.5 s) so that a demo stays short.
    pub fn for_demo(workers: usize, data_dir: PathBuf) -> Self {
        Self {
            workers,
            slots: 1,
            prefetch: essaim_worker::Prefetch::Fixed(0),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            token: None,
            restart_crashed: true,
            worker_log: "error".into(),
            heartbeat: Duration::from_millis(250),
            worker_timeout: Duration::from_millis(1500),
            task_cache: Default::default(),
        }
    }
}

/// A running local cluster.
pub struct LocalCluster {
    /// The coordinator URL.
    pub url: String,
    coordinator: Option<RunningCoordinator>,
    coordinator_stop: CancellationToken,
    workers_stop: CancellationToken,
    supervisors: JoinSet<()>,
    children: Arc<Mutex<Vec<Option<u32>>>>,
    crashes: Arc<AtomicU64>,
}

impl LocalCluster {
    /// Starts the coordinator, then the workers, and waits until every worker registered.
    pub async fn start(options: LocalOptions) -> anyhow::Result<Self> {
        let mut config =
            CoordinatorConfig::new(options.listen, options.data_dir.join("coordinator"));
        config.token = options.token.clone();
        config.planner = Some(crate::jobs::planner());
        config.heartbeat_interval = options.heartbeat;
        config.worker_timeout = options.worker_timeout;
        let coordinator_stop = CancellationToken::new();
        let coordinator = start_coordinator(config, coordinator_stop.clone()).await?;
        let url = format!("http://{}", coordinator.address);
        let workers_stop = CancellationToken::new();
        let children = Arc::new(Mutex::new(vec![None; options.workers]));
        let crashes = Arc::new(AtomicU64::new(0));
        let mut supervisors = JoinSet::new();
        let executable = std::env::current_exe()?;
        for index in 0..options.workers {
            let supervisor = Supervisor {
                index,
                executable: executable.clone(),
                url: url.clone(),
                options: options.clone(),
                stop: workers_stop.clone(),
                children: Arc::clone(&children),
                crashes: Arc::clone(&crashes),
            };
            supervisors.spawn(supervisor.run());
        }
        let cluster = Self {
            url,
            coordinator: Some(coordinator),
            coordinator_stop,
            workers_stop,
            supervisors,
            children,
            crashes,
        };
        cluster
            .wait_for_workers(options.workers, options.token.as_deref())
            .await?;
        Ok(cluster)
    }

    async fn wait_for_workers(&self, expected: usize, token: Option<&str>) -> anyhow::Result<()> {
        let mut client = essaim_proto::connect(&self.url, token, Duration::from_secs(5)).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let workers = client
                .list_workers(essaim_proto::v1::ListWorkersRequest {})
                .await?
                .into_inner()
                .workers;
            if workers.len() >= expected {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "only {} of {expected} workers registered within 30 s",
                    workers.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` to worker process `index`; returns false when it is not running.
    pub async fn signal_worker(&self, index: usize, signal: Signal) -> bool {
        let pid = self.children.lock().await.get(index).copied().flatten();
        match pid {
            Some(pid) => kill(Pid::from_raw(pid as i32), signal).is_ok(),
            None => false,
        }
    }

    /// Returns how many worker processes exited unexpectedly.
    pub fn crashes(&self) -> u64 {
        self.crashes.load(Ordering::Relaxed)
    }

    /// Drains the workers (SIGTERM, then SIGKILL after `grace`), then stops the coordinator.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        self.workers_stop.cancel();
        for pid in self.children.lock().await.iter().flatten() {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
        let all_exited = tokio::time::timeout(grace, async {
            while self.supervisors.join_next().await.is_some() {}
        })
        .await;
        if all_exited.is_err() {
            warn!("workers did not drain in time; killing them");
            for pid in self.children.lock().await.iter().flatten() {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
            while self.supervisors.join_next().await.is_some() {}
        }
        self.coordinator_stop.cancel();
        if let Some(coordinator) = self.coordinator.take() {
            coordinator.wait().await?;
        }
        Ok(())
    }
}

struct Supervisor {
    index: usize,
    executable: PathBuf,
    url: String,
    options: LocalOptions,
    stop: CancellationToken,
    children: Arc<Mutex<Vec<Option<u32>>>>,
    crashes: Arc<AtomicU64>,
}

impl Supervisor {
    async fn run(self) {
        loop {
            // Held until the child exits: the worker lives while this end is open.
            let (mut child, _lifeline) = match self.spawn() {
                Ok(child) => child,
                Err(error) => {
                    warn!(worker = self.index, error = %error, "failed to start a worker process");
                    return;
                }
            };
            self.children.lock().await[self.index] = child.id();
            let status = child.wait().await;
            self.children.lock().await[self.index] = None;
            if self.stop.is_cancelled() {
                return;
            }
            self.crashes.fetch_add(1, Ordering::Relaxed);
            let exit_code = status
                .as_ref()
                .ok()
                .and_then(std::process::ExitStatus::code);
            warn!(worker = self.index, exit_code = ?exit_code, "worker process exited unexpectedly");
            if !self.options.restart_crashed {
                return;
            }
            // Like an orchestrator's restart back-off: a crash loop must not spin.
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
            info!(worker = self.index, "restarting worker process");
        }
    }

    /// Starts worker process `index`, tied to this process by a lifeline.
    fn spawn(&self) -> std::io::Result<(Child, Option<Lifeline>)> {
        let scratch = self.options.data_dir.join(format!("worker-{}", self.index));
        let mut command = Command::new(&self.executable);
        command
            .arg("worker")
            .args(["--coordinator", &self.url])
            .args(["--slots", &self.options.slots.to_string()])
            .args(["--prefetch", &self.options.prefetch.to_string()])
            .args(["--name", &format!("local-{}", self.index)])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--scratch-dir")
            .arg(&scratch)
            .arg("--allow-commands")
            // One machine: every worker holds every input (data locality is moot).
            .args(["--data-dir", "/"])
            .args(self.options.task_cache.worker_args())
            // The configuration file this process read, or none ('') if it read none,
            // so that a worker never finds another one on its search path.
            .arg("--config")
            .arg(
                crate::config::loaded_path()
                    .map_or_else(Default::default, |path| path.as_os_str().to_owned()),
            )
            .env("RUST_LOG", &self.options.worker_log)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = &self.options.token {
            command.env("ESSAIM_TOKEN", token);
        }
        if let Some(endpoint) = OTLP_ENDPOINT.get() {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
        }
        lifeline::arm(&mut command);
        let mut child = command.spawn()?;
        let lifeline = Lifeline::take(&mut child);
        Ok((child, lifeline))
    }
}
