//! Coordinator high availability with real processes and a real etcd: two coordinators
//! elected through etcd, workers given both URLs. The leader is killed with SIGKILL, or
//! paused with SIGSTOP past its lease, in the middle of a job: the standby takes over
//! from the journal in etcd, every task is committed exactly once, what was committed
//! before stays as it was, and a paused leader that wakes up commits nothing and stands
//! by. Skipped with `ESSAIM_SKIP_ETCD=1`.

use crate::harness::{executions_by_task, job_spec, output_text, shell_task};
use essaim_testkit::deadline::{Deadline, EVENTUALLY};
use essaim_testkit::ha::{HaCluster, LEASE_SECS};
use essaim_testkit::process::http_status;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TASKS: u32 = 40;

/// Asks a coordinator's `/healthz` every 2 ms until stopped: a coordinator that changes
/// role keeps its port open all along (no connection refused) and answers within
/// [`SLOWEST_ANSWER`] (no server left draining while none accepts).
struct RefusalCounter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u32, Duration)>>,
}

/// Longest a coordinator changing role may leave a connection unanswered.
const SLOWEST_ANSWER: Duration = Duration::from_secs(2);

impl RefusalCounter {
    fn watch(url: &str) -> Self {
        let address: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .expect("a coordinator URL is http://IP:PORT");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut refused, mut slowest) = (0, Duration::ZERO);
            while !stopping.load(Ordering::Relaxed) {
                let asked = Instant::now();
                match TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                    Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                        refused += 1;
                    }
                    Ok(mut stream) => {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                        let _ = stream.write_all(
                            b"GET /healthz HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n",
                        );
                        let _ = stream.read(&mut [0; 64]);
                        slowest = slowest.max(asked.elapsed());
                    }
                    Err(_) => {}
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            eprintln!("{address}: slowest answer {slowest:?}");
            (refused, slowest)
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; returns the connections refused, after checking the slowest answer.
    fn refused(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("joined once");
        let (refused, slowest) = thread.join().expect("the prober does not panic");
        assert!(slowest < SLOWEST_ANSWER, "an answer took {slowest:?}");
        refused
    }
}

/// `essaim cluster status --output json` against every coordinator's URL.
async fn cluster_view(cluster: &HaCluster) -> serde_json::Value {
    let urls = cluster.urls();
    let args = [
        "cluster",
        "status",
        "--coordinator",
        &urls,
        "--output",
        "json",
    ];
    let status = essaim_testkit::cli::run(
        std::path::Path::new(env!("CARGO_BIN_EXE_essaim")),
        &args,
        &[],
    )
    .await;
    assert_eq!(status.code, Some(0), "{status:?}");
    serde_json::from_str(&status.stdout).expect("one JSON document")
}

async fn start() -> Option<HaCluster> {
    HaCluster::start(env!("CARGO_BIN_EXE_essaim"), 1, 2, 2, 2).await
}

/// Submits TASKS shell tasks that log each execution; waits until 10 are committed and
/// returns the job id and the commits so far (task → attempt).
async fn submit_and_commit_some(cluster: &HaCluster) -> (u64, BTreeMap<u32, u64>) {
    let side_file = cluster.path("executions.log");
    let script = "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> \"$SIDE_FILE\"; sleep 0.3; echo out-$ESSAIM_TASK_INDEX";
    let tasks = (0..TASKS)
        .map(|_| shell_task(script, &[("SIDE_FILE", &side_file)]))
        .collect();
    let job_id = cluster.submit(job_spec(tasks, 10)).await;
    cluster
        .wait_job_until(job_id, "10 tasks committed", |job| job.succeeded >= 10)
        .await;
    let committed = cluster
        .results(job_id)
        .await
        .iter()
        .map(|result| (result.task_index, result.attempt_id))
        .collect::<BTreeMap<_, _>>();
    assert!(
        committed.len() < TASKS as usize,
        "the job finished too early"
    );
    (job_id, committed)
}

/// Waits for the job to succeed under the current leader and checks the oracle: one
/// commit per task with the right output, commits from before the failover unchanged,
/// and tasks committed before it never run again.
async fn assert_finished_exactly_once(
    cluster: &HaCluster,
    job_id: u64,
    before: &BTreeMap<u32, u64>,
) {
    let job = cluster
        .wait_job_until(job_id, "finished", |job| job.state != "running")
        .await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let results = cluster.results(job_id).await;
    let committed: BTreeSet<u32> = results.iter().map(|result| result.task_index).collect();
    assert_eq!(results.len(), TASKS as usize, "one result per task");
    assert_eq!(committed, (0..TASKS).collect::<BTreeSet<_>>());
    for result in &results {
        assert_eq!(output_text(result), format!("out-{}\n", result.task_index));
        if let Some(attempt) = before.get(&result.task_index) {
            assert_eq!(
                result.attempt_id, *attempt,
                "task {}: its commit changed",
                result.task_index
            );
        }
    }
    let executions = executions_by_task(&cluster.path("executions.log"));
    for index in before.keys() {
        let runs = executions.get(index).map_or(0, Vec::len);
        assert_eq!(
            runs, 1,
            "task {index} was committed before the failover, yet ran {runs} times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_by_the_standby_and_no_commit_is_lost_or_repeated() {
    let Some(mut cluster) = start().await else {
        return;
    };
    let old = cluster.wait_leader().await;
    let (job_id, before) = submit_and_commit_some(&cluster).await;
    // The standby follows the journal as it is written: it is at most a few entries behind.
    let deadline = Deadline::after(EVENTUALLY, "the standby to follow the journal");
    loop {
        let view = cluster_view(&cluster).await;
        let lag = view["standbys"][0]["lag_entries"].as_u64();
        if lag.is_some_and(|lag| lag <= 20) && view["standbys"][0]["position"].as_u64() > Some(0) {
            break;
        }
        deadline.tick().await;
    }
    let standby = RefusalCounter::watch(&cluster.url(1 - old));
    let killed_at = Instant::now();
    cluster.kill_coordinator(old);
    let (new, took) = cluster.time_failover(old, killed_at).await;
    eprintln!("failover after SIGKILL: coordinator {new} leads {took:?} after the kill");
    assert_eq!(
        standby.refused(),
        0,
        "the standby's port closed while it became the leader"
    );
    assert!(
        took < Duration::from_secs(LEASE_SECS + 8),
        "failover took {took:?}"
    );
    assert_finished_exactly_once(&cluster, job_id, &before).await;
    let metrics = cluster.metrics(new).await;
    assert!(metrics.contains("essaim_coordinator_leader 1"), "{metrics}");

    // Any coordinator of the list tells where the leader is, with its epoch.
    let urls = cluster.urls();
    let args = [
        "cluster",
        "status",
        "--coordinator",
        &urls,
        "--output",
        "json",
    ];
    let status = essaim_testkit::cli::run(
        std::path::Path::new(env!("CARGO_BIN_EXE_essaim")),
        &args,
        &[],
    )
    .await;
    assert_eq!(status.code, Some(0), "{status:?}");
    let view: serde_json::Value = serde_json::from_str(&status.stdout).expect("one JSON document");
    assert_eq!(view["leader"], cluster.url(new).as_str(), "{view}");
    assert!(
        view["epoch"].as_u64().is_some_and(|epoch| epoch >= 2),
        "{view}"
    );
    assert_eq!(view["mode"], "etcd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_that_wakes_after_a_new_leader_was_elected_commits_nothing_and_stands_by() {
    let Some(mut cluster) = start().await else {
        return;
    };
    let old = cluster.wait_leader().await;
    let (job_id, before) = submit_and_commit_some(&cluster).await;
    cluster.signal_coordinator(old, Signal::SIGSTOP);
    let new = cluster.wait_leader_other_than(Some(old)).await;
    // The new leader commits work while the old one is frozen.
    let progressed = cluster.job(job_id).await.succeeded;
    cluster
        .wait_job_until(job_id, "progress under the new leader", |job| {
            job.succeeded > progressed || job.state != "running"
        })
        .await;
    cluster.signal_coordinator(old, Signal::SIGCONT);
    // The old leader finds its lease gone and stands by: not ready, and it says why.
    let deadline = Deadline::after(EVENTUALLY, "the woken leader to stand by");
    let old_port_status = || {
        http_status(
            cluster
                .url(old)
                .rsplit(':')
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0),
            "/readyz",
        )
    };
    loop {
        if old_port_status().await == Some(503) {
            break;
        }
        deadline.tick().await;
    }
    assert_eq!(
        cluster.wait_leader().await,
        new,
        "leadership stays with the new leader"
    );
    // Its metrics say so once its standby server is up (right after waking it may be
    // between its leader's server and its standby's).
    let deadline = Deadline::after(
        EVENTUALLY,
        "the woken leader's metrics to show the step-down",
    );
    loop {
        let metrics = cluster.metrics(old).await;
        if metrics.contains("essaim_coordinator_leader 0")
            && metrics.contains("essaim_coordinator_step_downs_total{")
        {
            break;
        }
        deadline.tick().await;
    }
    assert_finished_exactly_once(&cluster, job_id, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_etcd_member_of_three_keeps_the_cluster_working_and_losing_two_stops_it_until_quorum_returns()
 {
    let Some(cluster) = HaCluster::start(env!("CARGO_BIN_EXE_essaim"), 3, 2, 2, 2).await else {
        return;
    };
    cluster.wait_leader().await;
    let (job_id, before) = submit_and_commit_some(&cluster).await;
    cluster.etcd().kill_member(0);
    let progressed = cluster.job(job_id).await.succeeded;
    cluster
        .wait_job_until(job_id, "progress with two etcd members of three", |job| {
            job.succeeded > progressed || job.state != "running"
        })
        .await;
    // The cluster keeps working. (When the lost member was etcd's raft leader, etcd's
    // own election can outlast a refresh of the coordinator's 2 s lease, and a standby
    // may take over: what matters is that one coordinator leads and the job goes on.)
    cluster.wait_leader().await;

    cluster.etcd().kill_member(1);
    // No quorum: the leader cannot refresh its lease nor journal, so it stops serving
    // (no split brain: nobody can be elected either).
    let deadline = Deadline::after(
        EVENTUALLY,
        "every coordinator to stop leading without quorum",
    );
    while !cluster.ready().await.is_empty() {
        deadline.tick().await;
    }
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    assert!(
        cluster.ready().await.is_empty(),
        "a coordinator leads without an etcd quorum"
    );

    let etcd = cluster.etcd();
    tokio::task::block_in_place(|| etcd.start_members(&[0, 1]));
    cluster.wait_leader().await;
    assert_finished_exactly_once(&cluster, job_id, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_etcd_stops_leading_and_commits_nothing_after_its_successor_is_elected()
 {
    let Some(cluster) = HaCluster::start_with(env!("CARGO_BIN_EXE_essaim"), 1, 2, 2, 2, true).await
    else {
        return;
    };
    let (job_id, before) = submit_and_commit_some(&cluster).await;
    let probes = [0, 1].map(|index| RefusalCounter::watch(&cluster.url(index)));
    cluster.etcd_proxy().cut();
    let new = cluster.wait_leader_other_than(Some(0)).await;
    assert_eq!(new, 1);
    let progressed = cluster.job(job_id).await.succeeded;
    cluster
        .wait_job_until(job_id, "progress under the new leader", |job| {
            job.succeeded > progressed || job.state != "running"
        })
        .await;
    let deadline = Deadline::after(EVENTUALLY, "the cut-off leader to say it no longer leads");
    while !cluster
        .metrics(0)
        .await
        .contains("essaim_coordinator_leader 0")
    {
        deadline.tick().await;
    }
    // Reconnected, the old leader stays a standby.
    cluster.etcd_proxy().heal();
    tokio::time::sleep(Duration::from_secs(LEASE_SECS)).await;
    let refused = probes.map(RefusalCounter::refused);
    assert_eq!(
        refused,
        [0, 0],
        "connections refused by a coordinator changing role"
    );
    assert_eq!(cluster.wait_leader().await, new);
    assert_finished_exactly_once(&cluster, job_id, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_coordinator_one_by_one_lets_a_running_job_finish() {
    let Some(mut cluster) = start().await else {
        return;
    };
    let (job_id, before) = submit_and_commit_some(&cluster).await;
    for index in [0, 1] {
        cluster.stop_coordinator(index).await;
        cluster.wait_leader().await;
        cluster.start_coordinator(index);
        let progressed = cluster.job(job_id).await.succeeded;
        if progressed < TASKS {
            cluster
                .wait_job_until(job_id, "progress after a restart", |job| {
                    job.succeeded > progressed || job.state != "running"
                })
                .await;
        }
    }
    assert_finished_exactly_once(&cluster, job_id, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_started_before_etcd_waits_for_it_and_a_malformed_etcd_url_is_refused() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_essaim"));
    let malformed =
        essaim_testkit::cli::run(binary, &["coordinator", "--etcd", "etcd.example:2379"], &[])
            .await;
    assert_eq!(malformed.code, Some(2), "{malformed:?}");
    assert!(
        malformed
            .stderr
            .contains("invalid --etcd endpoint `etcd.example:2379`"),
        "{malformed:?}"
    );

    let _one = essaim_testkit::cluster::one_at_a_time().await;
    let etcd = tokio::task::spawn_blocking(|| essaim_testkit::etcd_cluster::EtcdCluster::start(1))
        .await
        .expect("no panic");
    let Some(etcd) = etcd else { return };
    etcd.kill_member(0);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = essaim_testkit::process::free_port();
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--etcd",
        &etcd.endpoints(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let mut coordinator = essaim_testkit::process::Process::spawn(
        binary,
        "coordinator",
        &args,
        &[],
        dir.path().join("log"),
    );
    let deadline = Deadline::after(EVENTUALLY, "the coordinator to serve /healthz without etcd");
    while http_status(port, "/healthz").await != Some(200) {
        assert!(
            coordinator.exit_status().is_none(),
            "{}",
            coordinator.log_text()
        );
        deadline.tick().await;
    }
    let deadline = Deadline::after(EVENTUALLY, "the coordinator to say etcd is unavailable");
    while !coordinator.log_text().contains("etcd unavailable") {
        assert!(
            coordinator.exit_status().is_none(),
            "an unreachable etcd is no crash: {}",
            coordinator.log_text()
        );
        deadline.tick().await;
    }
    assert_eq!(http_status(port, "/readyz").await, Some(503));
    tokio::task::block_in_place(|| etcd.start_members(&[0]));
    let deadline = Deadline::after(EVENTUALLY, "the coordinator to lead once etcd is up");
    while http_status(port, "/readyz").await != Some(200) {
        deadline.tick().await;
    }
}
