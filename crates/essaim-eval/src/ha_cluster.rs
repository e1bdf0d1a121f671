//! The cluster of the failover scenario: three etcd members, coordinators elected
//! through them (one leader, the others hot standbys) and workers given every
//! coordinator's URL, all processes on loopback in the scenario's directory.
//!
//! etcd is not part of essaim: it is found as `$ETCD` or as `etcd` on the `PATH` (Debian's
//! `etcd-server` package installs one), and the scenario is skipped without it. Every
//! port is chosen before the processes start, so that a coordinator restarted after a
//! kill comes back at the URL the workers know.

use crate::cluster::essaim_command;
use crate::{Host, RestApi};
use essaim_coordinator::cluster::ClusterView;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Members of the etcd cluster: one may be lost without losing the quorum.
const ETCD_MEMBERS: usize = 3;
/// The coordinators' leader lease, s (`--leader-lease-secs`).
pub const LEADER_LEASE_SECS: u64 = 2;
/// Longest the cluster may take to elect a leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one view of one coordinator may take: a paused one does not answer.
const VIEW_TIMEOUT: Duration = Duration::from_millis(300);

/// Returns the etcd executable to use, if there is one.
pub fn find_etcd() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ETCD") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// A coordinator of the cluster, running or not.
struct CoordinatorProcess {
    port: u16,
    child: Option<Child>,
    rest: Box<dyn RestApi>,
    restarts: usize,
}

/// Three etcd members, several coordinators and some workers.
pub struct HaEvalCluster {
    dir: PathBuf,
    executable: PathBuf,
    token: String,
    etcd_endpoints: String,
    etcd: Vec<Child>,
    coordinators: Vec<CoordinatorProcess>,
    workers: Vec<Child>,
}

impl HaEvalCluster {
    /// Starts etcd, `coordinators` coordinators and one worker per entry of
    /// `worker_slots` in `dir` (created), and waits for a leader.
    pub async fn start(
        host: &dyn Host,
        etcd: &Path,
        dir: &Path,
        coordinators: usize,
        worker_slots: &[u32],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (etcd, etcd_endpoints) = start_etcd(etcd, dir)?;
        let token = crate::cluster::fresh_token();
        let mut cluster = Self {
            dir: dir.to_path_buf(),
            executable: host.executable()?,
            etcd_endpoints,
            etcd,
            coordinators: Vec::new(),
            workers: Vec::new(),
            token,
        };
        for _ in 0..coordinators {
            let port = free_port()?;
            let rest = host.rest_client(&format!("http://127.0.0.1:{port}"), &cluster.token)?;
            cluster.coordinators.push(CoordinatorProcess {
                port,
                child: None,
                rest,
                restarts: 0,
            });
        }
        for index in 0..coordinators {
            cluster.start_coordinator(index)?;
        }
        cluster.leader().await?;
        for (index, slots) in worker_slots.iter().enumerate() {
            cluster.start_worker(index, *slots)?;
        }
        Ok(cluster)
    }

    /// Every coordinator's URL, comma-separated, as workers and clients take them.
    pub fn urls(&self) -> String {
        (0..self.coordinators.len())
            .map(|index| self.url(index))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Coordinator `index`'s URL.
    pub fn url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.coordinators[index].port)
    }

    /// The cluster's token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// (Re)starts coordinator `index` on its port.
    pub fn start_coordinator(&mut self, index: usize) -> anyhow::Result<()> {
        let url = self.url(index);
        let coordinator = &mut self.coordinators[index];
        let name = format!("coordinator{index}-{}", coordinator.restarts);
        coordinator.restarts += 1;
        let log = self.dir.join(format!("{name}.log"));
        let mut command = essaim_command(&self.executable, &self.token, &log)?;
        command
            .arg("coordinator")
            .args(["--listen", &format!("127.0.0.1:{}", coordinator.port)])
            .args(["--advertise-url", &url])
            .arg("--data-dir")
            .arg(self.dir.join(format!("unused-{name}")))
            .args(["--etcd", &self.etcd_endpoints])
            .args(["--cluster", "eval"])
            .args(["--leader-lease-secs", &LEADER_LEASE_SECS.to_string()])
            .args(["--heartbeat-ms", "200", "--worker-timeout-ms", "1000"]);
        coordinator.child = Some(command.spawn()?);
        Ok(())
    }

    fn start_worker(&mut self, index: usize, slots: u32) -> anyhow::Result<()> {
        let log = self.dir.join(format!("worker{index}.log"));
        let mut command = essaim_command(&self.executable, &self.token, &log)?;
        command
            .arg("worker")
            .args(["--coordinator", &self.urls()])
            .args(["--name", &format!("eval-{index}")])
            .args(["--slots", &slots.to_string()])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--scratch-dir")
            .arg(self.dir.join(format!("worker{index}-scratch")));
        self.workers.push(command.spawn()?);
        Ok(())
    }

    /// Sends `signal` to coordinator `index`.
    pub fn signal_coordinator(&self, index: usize, signal: Signal) -> anyhow::Result<()> {
        let child = self.coordinators[index].child.as_ref();
        let pid = child
            .and_then(Child::id)
            .ok_or_else(|| anyhow::anyhow!("coordinator {index} is not running"))?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }

    /// Waits for killed coordinator `index` to be gone.
    pub async fn reap_coordinator(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.coordinators[index].child.take() {
            child.wait().await?;
        }
        Ok(())
    }

    /// What coordinator `index` says of the cluster, if it answers in time.
    pub async fn view(&self, index: usize) -> Option<ClusterView> {
        let rest = &self.coordinators[index].rest;
        let answer = tokio::time::timeout(VIEW_TIMEOUT, rest.get_bytes("/api/v1/cluster"));
        let bytes = answer.await.ok()?.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// GETs `path` from coordinator `index`, if it answers in time.
    pub async fn get(&self, index: usize, path: &str) -> Option<Vec<u8>> {
        let rest = &self.coordinators[index].rest;
        let answer = tokio::time::timeout(VIEW_TIMEOUT, rest.get_bytes(path));
        answer.await.ok()?.ok()
    }

    /// The index of the coordinator that says it leads (asking each in turn), waiting
    /// for one.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        self.leader_other_than(None).await
    }

    /// The index of a leader other than `old`, waiting for one.
    pub async fn leader_other_than(&self, old: Option<usize>) -> anyhow::Result<usize> {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        loop {
            if let Some(index) = self.leading(old).await {
                return Ok(index);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "no coordinator led within {} s (logs in {})",
                    ELECTION_TIMEOUT.as_secs(),
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The index of a coordinator other than `except` that says it leads now.
    pub async fn leading(&self, except: Option<usize>) -> Option<usize> {
        for index in (0..self.coordinators.len()).filter(|index| Some(*index) != except) {
            if self
                .view(index)
                .await
                .is_some_and(|view| view.role == "leader")
            {
                return Some(index);
            }
        }
        None
    }

    /// Kills every process (SIGCONT first, for paused ones).
    pub async fn stop(mut self) {
        let coordinators = self
            .coordinators
            .iter_mut()
            .filter_map(|c| c.child.as_mut());
        for child in self.workers.iter_mut().chain(coordinators) {
            if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                let _already_gone = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
            let _already_gone = child.start_kill();
            let _status = child.wait().await;
        }
        for child in &mut self.etcd {
            let _already_gone = child.start_kill();
            let _status = child.wait().await;
        }
    }
}

/// Starts the etcd members in `dir`; returns them and their client URLs.
fn start_etcd(etcd: &Path, dir: &Path) -> anyhow::Result<(Vec<Child>, String)> {
    let clients = (0..ETCD_MEMBERS)
        .map(|_| free_port())
        .collect::<Result<Vec<_>, _>>()?;
    let peers = (0..ETCD_MEMBERS)
        .map(|_| free_port())
        .collect::<Result<Vec<_>, _>>()?;
    let initial_cluster = peers
        .iter()
        .enumerate()
        .map(|(index, port)| format!("m{index}=http://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for (index, (client, peer)) in clients.iter().zip(&peers).enumerate() {
        let log = std::fs::File::create(dir.join(format!("etcd{index}.log")))?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut command = Command::new(etcd);
        // etcd reads its settings from ETCD_* variables too: only the flags count here.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--name", &format!("m{index}")])
            .arg("--data-dir")
            .arg(dir.join(format!("etcd{index}")))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", "essaim-eval"])
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        members.push(
            command.spawn().map_err(|error| {
                anyhow::anyhow!("cannot start etcd `{}`: {error}", etcd.display())
            })?,
        );
    }
    let endpoints = clients
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok((members, endpoints))
}

/// A port nothing listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
