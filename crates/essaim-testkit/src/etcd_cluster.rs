//! An etcd cluster of several members on loopback, each started by `scripts/etcd.sh` in
//! a directory of its own (`ESSAIM_ETCD_NAME`, `ESSAIM_ETCD_PEER_PORT`, `ESSAIM_ETCD_INITIAL_CLUSTER`), for
//! the tests that kill etcd members under a highly available coordinator.
//!
//! Members are started all at once (a member answers only once a quorum runs), killed
//! with SIGKILL and started again on their store and ports. Every member is stopped when
//! the cluster is dropped; when the test is failing, each member's log tail is printed
//! and the directories are kept.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::process::{free_port, log_tail};
use crate::server::{ETCD, port_was_taken, script_path, skipped};

struct Member {
    dir: TempDir,
    env: Vec<(String, String)>,
    url: String,
}

/// A running etcd cluster of this test.
pub struct EtcdCluster {
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each answers healthy; `None` when
    /// `ESSAIM_SKIP_ETCD=1`. Ports are picked free, then bound by etcd: another process
    /// may take one in between, and that start is tried again on other ports.
    pub fn start(size: usize) -> Option<Self> {
        if skipped(ETCD) {
            return None;
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let cluster = Self::on_free_ports(size);
            match cluster.try_start_members(&(0..size).collect::<Vec<_>>()) {
                Ok(()) => return Some(cluster),
                Err(error) if tries < START_TRIES && port_was_taken(&error) => {
                    eprintln!("an etcd port was taken before etcd bound it; trying other ports");
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// The members of a cluster of `size` on ports free now, not started.
    fn on_free_ports(size: usize) -> Self {
        let client_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let peer_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let initial_cluster = peer_ports
            .iter()
            .enumerate()
            .map(|(index, port)| format!("member{index}=http://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = (0..size)
            .map(|index| Member {
                dir: tempfile::Builder::new()
                    .prefix(&format!("essaim-etcd{index}-"))
                    .tempdir()
                    .expect("a temporary directory"),
                env: vec![
                    ("ESSAIM_ETCD_NAME".into(), format!("member{index}")),
                    ("ETCD_PORT".into(), client_ports[index].to_string()),
                    (
                        "ESSAIM_ETCD_PEER_PORT".into(),
                        peer_ports[index].to_string(),
                    ),
                    (
                        "ESSAIM_ETCD_INITIAL_CLUSTER".into(),
                        initial_cluster.clone(),
                    ),
                ],
                url: format!("http://127.0.0.1:{}", client_ports[index]),
            })
            .collect();
        Self { members }
    }

    /// The members' client URLs.
    pub fn urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| member.url.clone())
            .collect()
    }

    /// The members' client URLs, comma-separated (`--etcd`).
    pub fn endpoints(&self) -> String {
        self.urls().join(",")
    }

    /// Starts (again) the given members at once, on their stores and ports, and waits
    /// until each answers healthy.
    pub fn start_members(&self, indexes: &[usize]) {
        if let Err(error) = self.try_start_members(indexes) {
            panic!("{error}");
        }
    }

    /// Like [`EtcdCluster::start_members`]; returns the first failure's message.
    fn try_start_members(&self, indexes: &[usize]) -> Result<(), String> {
        std::thread::scope(|scope| {
            let starts: Vec<_> = indexes
                .iter()
                .map(|&index| {
                    let member = &self.members[index];
                    scope.spawn(move || run(member.dir.path(), "start", &member.env))
                })
                .collect();
            starts.into_iter().try_for_each(|start| {
                start
                    .join()
                    .unwrap_or_else(|_| Err("a start panicked".into()))
            })
        })
    }

    /// SIGKILLs member `index`.
    pub fn kill_member(&self, index: usize) {
        let pid_file = self.members[index].dir.path().join("pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|error| panic!("no pid file {}: {error}", pid_file.display()));
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {pid} failed");
    }
}

/// Starts of a cluster tried before its failure is the test's.
const START_TRIES: u32 = 3;

/// Runs `scripts/etcd.sh ACTION DIR` with `env`; returns its errors if it failed.
fn run(dir: &Path, action: &str, env: &[(String, String)]) -> Result<(), String> {
    let output = Command::new(script_path(ETCD.file_name))
        .arg(action)
        .arg(dir)
        .envs(
            env.iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .output()
        .map_err(|error| format!("scripts/etcd.sh cannot run: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "scripts/etcd.sh {action} {} failed (set ESSAIM_SKIP_ETCD=1 to skip the tests that need etcd):\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    ))
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &self.members {
            let _ = Command::new(script_path(ETCD.file_name))
                .arg("stop")
                .arg(member.dir.path())
                .status();
        }
        if !std::thread::panicking() {
            return;
        }
        for member in self.members.drain(..) {
            let log = member.dir.path().join("log");
            eprintln!(
                "---------- etcd member of the failed test: tail of {} ----------\n{}\nkept: {}",
                log.display(),
                log_tail(&log, 30),
                member.dir.keep().display()
            );
        }
    }
}
