//! The clusters the evaluation measures: a coordinator process and worker processes of
//! the essaim binary (the [`Host`]'s executable) on loopback, each started, signalled and stopped one by one.
//!
//! Why not the embedded local cluster (`local_cluster.rs`): it runs the coordinator
//! inside the calling process, gives every worker the same number of slots and has a
//! fixed set of workers. The evaluation needs the coordinator in a process of its own
//! (its CPU time is part of the cost, and must not include the evaluation's own polling),
//! workers with different slot counts, and workers added, frozen, killed and drained
//! while a job runs.
//!
//! Every process writes its logs to a file in the cluster's directory, and every child is
//! killed when its handle is dropped, so a failed scenario leaks no process. The cluster
//! has a token of its own: its workers run commands (the partition scenario needs them),
//! and nobody else on the machine should be able to submit some.

use crate::{Host, RestApi};
use essaim_coordinator::rest::{JobDetail, Overview, WorkerView};
use essaim_coordinator::streams::PipelineView;
use essaim_proto::{CoordinatorClient, v1};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

use crate::procstat;

/// Longest a process may take to start, register or stop before the scenario fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Period of the polling loops that wait for the cluster.
const POLL_PERIOD: Duration = Duration::from_millis(20);

/// How the coordinator of one cluster is configured.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `--worker-timeout-ms`.
    pub worker_timeout: Duration,
    /// `--heartbeat-ms`.
    pub heartbeat: Duration,
    /// `--drain-target-secs`, when not the coordinator's default.
    pub drain_target_secs: Option<f64>,
}

impl Default for ClusterOptions {
    /// The coordinator's defaults: 1 s heartbeats, 5 s worker timeout.
    fn default() -> Self {
        Self {
            worker_timeout: Duration::from_millis(5000),
            heartbeat: Duration::from_millis(1000),
            drain_target_secs: None,
        }
    }
}

/// CPU seconds used so far by the cluster's processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    /// The coordinator process.
    pub coordinator: f64,
    /// Every live worker process, with the commands it waited for.
    pub workers: f64,
}

struct WorkerProcess {
    name: String,
    slots: u32,
    child: Child,
    log: PathBuf,
}

/// A running cluster of child processes.
pub struct EvalCluster {
    dir: PathBuf,
    executable: PathBuf,
    token: String,
    /// The coordinator's URL (`http://127.0.0.1:PORT`).
    pub url: String,
    options: ClusterOptions,
    coordinator: Child,
    coordinator_restarts: usize,
    workers: Vec<WorkerProcess>,
    workers_started: usize,
    grpc: CoordinatorClient,
    rest: Box<dyn RestApi>,
}

impl EvalCluster {
    /// Starts a coordinator with `options` in `dir` (created), then one worker per entry
    /// of `worker_slots`, and waits until they have all registered.
    pub async fn start(
        host: &dyn Host,
        dir: &Path,
        options: &ClusterOptions,
        worker_slots: &[u32],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let executable = host.executable()?;
        let token = fresh_token();
        let log = dir.join("coordinator.log");
        let launch = CoordinatorLaunch {
            executable: &executable,
            token: &token,
            dir,
            options,
        };
        let mut command = launch.command("127.0.0.1:0", &log)?;
        let mut coordinator = command.spawn()?;
        let url = wait_for_address(&mut coordinator, &log).await?;
        let grpc = essaim_proto::connect(&url, Some(&token), Duration::from_secs(5)).await?;
        let rest = host.rest_client(&url, &token)?;
        let mut cluster = Self {
            dir: dir.to_path_buf(),
            executable,
            token,
            url,
            options: options.clone(),
            coordinator,
            coordinator_restarts: 0,
            workers: Vec::new(),
            workers_started: 0,
            grpc,
            rest,
        };
        for slots in worker_slots {
            cluster.add_worker(*slots, false)?;
        }
        cluster.wait_for_workers(worker_slots.len()).await?;
        Ok(cluster)
    }

    /// Starts one more worker with `slots` slots and returns its name (it registers on
    /// its own; see [`Self::wait_for_workers`]). A `verbose` worker logs its debug lines
    /// as JSON, for counting the results it drops itself.
    pub fn add_worker(&mut self, slots: u32, verbose: bool) -> anyhow::Result<String> {
        let name = format!("eval-{}", self.workers_started);
        self.workers_started += 1;
        let log = self.dir.join(format!("{name}.log"));
        let mut command = essaim_command(&self.executable, &self.token, &log)?;
        if verbose {
            command
                .arg("--log-json")
                .env("RUST_LOG", "warn,essaim_worker=debug");
        }
        command
            .arg("worker")
            .args(["--coordinator", &self.url])
            .args(["--slots", &slots.to_string()])
            .args(["--name", &name])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--scratch-dir")
            .arg(self.dir.join(&name))
            // One machine: every worker holds every input, as in the local cluster.
            .args(["--data-dir", "/"])
            .arg("--allow-commands");
        let child = command.spawn()?;
        self.workers.push(WorkerProcess {
            name: name.clone(),
            slots,
            child,
            log,
        });
        Ok(name)
    }

    /// Waits until exactly `count` workers are registered.
    pub async fn wait_for_workers(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let registered = self.workers_view().await?.len();
            if registered == count {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{registered} workers registered instead of {count} within {} s (logs in {})",
                    START_TIMEOUT.as_secs(),
                    self.dir.display()
                );
            }
            tokio::time::sleep(POLL_PERIOD).await;
        }
    }

    /// Returns the workers the coordinator counts as alive.
    pub async fn workers_view(&self) -> anyhow::Result<Vec<WorkerView>> {
        self.rest_get("/api/v1/workers").await
    }

    /// Kills the coordinator with SIGKILL and starts it again at once on the same port
    /// and data directory, as a supervisor would: it comes back from its journal, and
    /// the workers find it at the URL they know.
    pub async fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinator.start_kill()?;
        self.coordinator.wait().await?;
        self.coordinator_restarts += 1;
        let log = self.dir.join(format!(
            "coordinator-restart-{}.log",
            self.coordinator_restarts
        ));
        let launch = CoordinatorLaunch {
            executable: &self.executable,
            token: &self.token,
            dir: &self.dir,
            options: &self.options,
        };
        let listen = self.url.trim_start_matches("http://").to_owned();
        let mut coordinator = launch.command(&listen, &log)?.spawn()?;
        let url = wait_for_address(&mut coordinator, &log).await?;
        self.coordinator = coordinator;
        anyhow::ensure!(
            url == self.url,
            "the coordinator came back at {url}, not {}",
            self.url
        );
        Ok(())
    }

    /// Returns the running pipelines as the stream board shows them.
    pub async fn streams(&self) -> anyhow::Result<Vec<PipelineView>> {
        self.rest_get("/api/v1/streams").await
    }

    /// Returns the names of the workers started and not yet forgotten.
    pub fn worker_names(&self) -> Vec<String> {
        self.workers
            .iter()
            .map(|worker| worker.name.clone())
            .collect()
    }

    /// Returns the CPU time used so far by each live worker, by name.
    pub fn worker_cpu(&self) -> std::collections::BTreeMap<String, f64> {
        self.workers
            .iter()
            .filter_map(|worker| {
                let seconds = procstat::cpu_seconds(worker.child.id()?)?;
                Some((worker.name.clone(), seconds))
            })
            .collect()
    }

    /// Returns the cluster at a glance, with its per-second throughput.
    pub async fn overview(&self) -> anyhow::Result<Overview> {
        self.rest_get("/api/v1/overview").await
    }

    /// Returns a job with its history (per-worker shares, timeline) from the REST API.
    pub async fn job_detail(&self, job_id: u64) -> anyhow::Result<JobDetail> {
        self.rest_get(&format!("/api/v1/jobs/{job_id}")).await
    }

    /// GETs `path` of the REST API and decodes its JSON.
    async fn rest_get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.rest.get_bytes(path).await?;
        serde_json::from_slice(&body).map_err(|error| {
            anyhow::anyhow!(
                "the coordinator's answer to {path} is not what the evaluation expects: {error}"
            )
        })
    }

    /// Returns a gRPC client of the coordinator.
    pub fn client(&self) -> CoordinatorClient {
        self.grpc.clone()
    }

    /// Returns the slots of worker `name` as it was started.
    pub fn slots_of(&self, name: &str) -> Option<u32> {
        self.workers
            .iter()
            .find(|worker| worker.name == name)
            .map(|worker| worker.slots)
    }

    /// Returns the log file of worker `name`.
    pub fn worker_log(&self, name: &str) -> Option<&Path> {
        self.workers
            .iter()
            .find(|worker| worker.name == name)
            .map(|worker| worker.log.as_path())
    }

    /// Sends `signal` to worker `name`.
    pub fn signal_worker(&self, name: &str, signal: Signal) -> anyhow::Result<()> {
        let worker = self
            .workers
            .iter()
            .find(|worker| worker.name == name)
            .ok_or_else(|| anyhow::anyhow!("no worker named {name}"))?;
        let pid = worker
            .child
            .id()
            .ok_or_else(|| anyhow::anyhow!("worker {name} has already exited"))?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }

    /// Waits for worker `name` to exit (after SIGKILL, or a drain after SIGTERM) and
    /// forgets it.
    pub async fn wait_worker_exit(&mut self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let index = self
            .workers
            .iter()
            .position(|worker| worker.name == name)
            .ok_or_else(|| anyhow::anyhow!("no worker named {name}"))?;
        let mut worker = self.workers.remove(index);
        match tokio::time::timeout(timeout, worker.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_elapsed) => {
                worker.child.start_kill()?;
                anyhow::bail!("worker {name} did not exit within {timeout:?}")
            }
        }
    }

    /// Returns the CPU time used so far by the coordinator and the live workers.
    pub fn cpu(&self) -> CpuSample {
        let coordinator = self
            .coordinator
            .id()
            .and_then(procstat::cpu_seconds)
            .unwrap_or(0.0);
        let workers = self
            .workers
            .iter()
            .filter_map(|worker| worker.child.id())
            .filter_map(procstat::cpu_seconds)
            .sum();
        CpuSample {
            coordinator,
            workers,
        }
    }

    /// Drains the workers (SIGTERM), then stops the coordinator (SIGTERM); a process
    /// that does not stop in time is killed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for worker in &self.workers {
            if let Some(pid) = worker.child.id() {
                let _already_gone = kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGTERM);
            }
        }
        for worker in &mut self.workers {
            stop_child(&mut worker.child).await;
        }
        if let Some(pid) = self.coordinator.id() {
            let _already_gone = kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGTERM);
        }
        stop_child(&mut self.coordinator).await;
        Ok(())
    }
}

/// What starts a cluster's coordinator, the first time and after a kill.
struct CoordinatorLaunch<'a> {
    executable: &'a Path,
    token: &'a str,
    dir: &'a Path,
    options: &'a ClusterOptions,
}

impl CoordinatorLaunch<'_> {
    /// The coordinator's command, listening on `listen`, logging to `log`.
    fn command(&self, listen: &str, log: &Path) -> anyhow::Result<Command> {
        let options = self.options;
        let mut command = essaim_command(self.executable, self.token, log)?;
        command
            .arg("coordinator")
            .args(["--listen", listen])
            .arg("--data-dir")
            .arg(self.dir.join("coordinator"))
            .args(["--heartbeat-ms", &options.heartbeat.as_millis().to_string()])
            .args([
                "--worker-timeout-ms",
                &options.worker_timeout.as_millis().to_string(),
            ]);
        if let Some(seconds) = options.drain_target_secs {
            command.args(["--drain-target-secs", &seconds.to_string()]);
        }
        Ok(command)
    }
}

/// Waits up to 10 s for a signalled child to exit, then kills it.
async fn stop_child(child: &mut Child) {
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _already_gone = child.start_kill();
        let _status = child.wait().await;
    }
}

/// Returns a command running this binary with the cluster's token and no inherited
/// essaim configuration, logging to `log`, killed when its handle is dropped.
pub(crate) fn essaim_command(
    executable: &Path,
    token: &str,
    log: &Path,
) -> anyhow::Result<Command> {
    let file = std::fs::File::create(log)?;
    let mut command = Command::new(executable);
    command
        .env_remove("ESSAIM_COORDINATOR")
        .env_remove("ESSAIM_LOG_JSON")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        // The token in the environment, not on the command line where `ps` shows it.
        .env("ESSAIM_TOKEN", token)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true);
    Ok(command)
}

/// Waits for the coordinator to print its address in its log, and returns its URL.
async fn wait_for_address(coordinator: &mut Child, log: &Path) -> anyhow::Result<String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(url) = api_url(&text) {
            return Ok(url);
        }
        if let Some(status) = coordinator.try_wait()? {
            anyhow::bail!(
                "the coordinator exited ({status}) before listening: {}",
                text.trim()
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the coordinator did not listen within {} s (log {})",
                START_TIMEOUT.as_secs(),
                log.display()
            );
        }
        tokio::time::sleep(POLL_PERIOD).await;
    }
}

/// Finds `API http://HOST:PORT` in the coordinator's start-up line, once the URL is
/// whole: the log is read while the coordinator writes it, so a URL not yet followed
/// by white space may still be cut (`http://` alone, or half a port).
fn api_url(log_text: &str) -> Option<String> {
    let start = log_text.find("API http://")? + "API ".len();
    let rest = &log_text[start..];
    let end = rest.find(|character: char| character.is_whitespace())?;
    Some(rest[..end].to_string())
}

/// Returns a token that no other process on the machine can guess in advance.
pub(crate) fn fresh_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let mut rng = essaim_core::rng::SeededRng::new(nanos as u64 ^ u64::from(std::process::id()));
    format!("eval-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

// ------------------------------------------------------------------ jobs

/// Submits `spec` and returns the job id.
pub async fn submit(client: &mut CoordinatorClient, spec: v1::JobSpec) -> anyhow::Result<u64> {
    Ok(client
        .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
        .await?
        .into_inner()
        .job_id)
}

/// Long-polls until job `job_id` is no longer running, for at most `timeout`.
pub async fn wait_job(
    client: &mut CoordinatorClient,
    job_id: u64,
    timeout: Duration,
) -> anyhow::Result<v1::JobStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let job = client
            .wait_job(v1::WaitJobRequest {
                job_id,
                timeout_ms: 1000,
            })
            .await?
            .into_inner();
        if job.state != "running" {
            return Ok(job);
        }
        if Instant::now() > deadline {
            anyhow::bail!("job {job_id} still running after {timeout:?}: {job:?}");
        }
    }
}

/// Returns the job's status.
pub async fn job_status(
    client: &mut CoordinatorClient,
    job_id: u64,
) -> anyhow::Result<v1::JobStatus> {
    Ok(client
        .get_job(v1::GetJobRequest { job_id })
        .await?
        .into_inner())
}

/// Returns every committed result of a job.
pub async fn results(
    client: &mut CoordinatorClient,
    job_id: u64,
) -> anyhow::Result<Vec<v1::TaskResult>> {
    let mut all = Vec::new();
    let mut from_task = 0;
    loop {
        let page = client
            .get_results(v1::GetResultsRequest {
                job_id,
                from_task,
                limit: 256,
            })
            .await?
            .into_inner();
        let reached_end = page.results.is_empty() || page.next_task <= from_task;
        all.extend(page.results);
        if reached_end {
            return Ok(all);
        }
        from_task = page.next_task;
    }
}

/// Returns a job spec of `tasks` without speculative copies (every extra attempt then
/// comes from a failure, which the recovery figures count).
pub fn job_spec(name: &str, tasks: Vec<v1::TaskSpec>) -> v1::JobSpec {
    v1::JobSpec {
        name: name.into(),
        tasks,
        speculation_multiplier: -1.0,
        ..Default::default()
    }
}

/// Returns a `sleep` task of `millis` milliseconds.
pub fn sleep_task(millis: u64) -> v1::TaskSpec {
    v1::TaskSpec {
        kind: "sleep".into(),
        payload: millis.to_string().into_bytes(),
        ..Default::default()
    }
}

/// Returns the duration of a finished job on the coordinator's clock, in seconds.
pub fn job_seconds(detail: &JobDetail) -> Option<f64> {
    let finished = detail.job.finished_unix_ms?;
    let millis = finished.saturating_sub(detail.job.submitted_unix_ms);
    // A job faster than the clock's resolution still took some time.
    Some((millis.max(1)) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_start_up_line() {
        let log = "2026 WARN something\nessaim coordinator: API http://127.0.0.1:41234 (gRPC, REST under /api/v1), dashboard …\n";
        assert_eq!(api_url(log).as_deref(), Some("http://127.0.0.1:41234"));
        assert_eq!(api_url("starting…"), None);
        // Read while it was being written: not yet a whole URL.
        assert_eq!(api_url("listening; API http://"), None);
        assert_eq!(api_url("listening; API http://127.0.0.1:412"), None);
    }

    #[test]
    fn tokens_differ_and_are_printable() {
        let first = fresh_token();
        std::thread::sleep(Duration::from_millis(1));
        let second = fresh_token();
        assert_ne!(first, second);
        assert!(first.bytes().all(|byte| byte.is_ascii_graphic()));
    }
}
