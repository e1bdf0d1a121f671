//! Failover of the coordinator (seed 002's "survives hardware failures", for the one
//! process a cluster cannot do without): two coordinators elected through a 3-member
//! etcd, two workers given both URLs, a job of short sleep tasks. Mid-job the leader is
//! killed with SIGKILL (then restarted: it comes back as a standby), or paused with
//! SIGSTOP for longer than its lease (then resumed: it must find itself deposed, commit
//! nothing and stand by, its refused writes counted).
//!
//! Each fault is timed from the signal, polling the job every 10 ms on the other
//! coordinator: when it leads, and when it commits for the first time; and from the old
//! leader's last commit seen before the fault to the new leader's first. Then the job
//! must finish with every task committed exactly once.

use crate::cluster::{job_spec, results, sleep_task, wait_job};
use crate::ha_cluster::{HaEvalCluster, LEADER_LEASE_SECS, find_etcd};
use crate::stats::{median, min_max};
use crate::{Host, Plan, say};
use essaim_proto::{CoordinatorUrls, Coordinators, Idempotence, v1};
use nix::sys::signal::Signal;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Workers × slots, and the job's tasks: about 10 s of work at full speed.
const WORKERS: usize = 2;
const SLOTS: u32 = 4;
const TASK_MS: u64 = 20;
const TASKS: u32 = 4000;
/// Commits the job makes before the fault.
const COMMITS_BEFORE_FAULT: u64 = 200;
/// Period of the polls that time the failover.
const POLL_PERIOD: Duration = Duration::from_millis(10);
/// Longest a failover may take before the scenario fails.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// One fault of the leader.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverRun {
    /// Fault → another coordinator leads, s.
    pub to_new_leader_s: f64,
    /// Fault → the new leader's first commit, s.
    pub to_first_commit_s: f64,
    /// The old leader's last commit seen → the new leader's first, s.
    pub last_to_first_commit_s: Option<f64>,
    /// Writes the paused leader tried once resumed, refused by etcd (SIGSTOP only).
    pub refused_writes: Option<u64>,
    /// Whether the paused leader stood by once resumed (SIGSTOP only).
    pub stood_by: Option<bool>,
    /// Whether the job then succeeded with exactly one result per task.
    pub every_task_committed_once: bool,
}

/// The runs of one kind of fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultCase {
    /// `SIGKILL` or `SIGSTOP`.
    pub fault: &'static str,
    /// Every run.
    pub runs: Vec<FailoverRun>,
    /// Median of `to_first_commit_s`.
    pub median_to_first_commit_s: f64,
    /// Smallest and largest `to_first_commit_s`.
    pub to_first_commit_range_s: (f64, f64),
}

/// The scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    /// Why it did not run (no etcd), if it did not.
    pub skipped: Option<String>,
    /// `--leader-lease-secs` of the coordinators.
    pub lease_secs: u64,
    /// SIGKILL of the leader.
    pub kill: Option<FaultCase>,
    /// SIGSTOP of the leader past its lease.
    pub stop: Option<FaultCase>,
}

/// Runs the scenario; `required` makes a missing etcd an error rather than a skip.
pub async fn failover(
    host: &dyn Host,
    plan: &Plan,
    workdir: &Path,
    required: bool,
) -> anyhow::Result<Failover> {
    let Some(etcd) = find_etcd() else {
        let reason = "no etcd: set $ETCD or put `etcd` on the PATH (Debian: etcd-server)";
        anyhow::ensure!(!required, "the failover scenario needs {reason}");
        say(&format!("failover skipped: {reason}"));
        return Ok(Failover {
            skipped: Some(reason.into()),
            lease_secs: LEADER_LEASE_SECS,
            kill: None,
            stop: None,
        });
    };
    let dir = workdir.join("failover");
    let mut cluster = HaEvalCluster::start(host, &etcd, &dir, 2, &[SLOTS; WORKERS]).await?;
    let outcome = fault_cases(&mut cluster, plan).await;
    cluster.stop().await;
    let (kill, stop) = outcome?;
    Ok(Failover {
        skipped: None,
        lease_secs: LEADER_LEASE_SECS,
        kill: Some(kill),
        stop: Some(stop),
    })
}

async fn fault_cases(
    cluster: &mut HaEvalCluster,
    plan: &Plan,
) -> anyhow::Result<(FaultCase, FaultCase)> {
    let mut cases = Vec::new();
    for (fault, repeats) in [
        (Signal::SIGKILL, plan.failover_kills),
        (Signal::SIGSTOP, plan.failover_stops),
    ] {
        let mut runs = Vec::new();
        for repeat in 0..repeats {
            let run = fault_run(cluster, fault).await?;
            say(&format!(
                "failover after {}, run {}/{repeats}: new leader after {:.2} s, first commit after {:.2} s; every task committed once: {}",
                fault.as_str(),
                repeat + 1,
                run.to_new_leader_s,
                run.to_first_commit_s,
                run.every_task_committed_once
            ));
            runs.push(run);
        }
        let first: Vec<f64> = runs.iter().map(|run| run.to_first_commit_s).collect();
        cases.push(FaultCase {
            fault: fault.as_str(),
            median_to_first_commit_s: median(&first).unwrap_or(f64::NAN),
            to_first_commit_range_s: min_max(&first).unwrap_or((f64::NAN, f64::NAN)),
            runs,
        });
    }
    let stop = cases.pop().expect("two cases");
    let kill = cases.pop().expect("two cases");
    Ok((kill, stop))
}

/// Submits a job, faults the leader mid-job, times the failover and checks the job.
async fn fault_run(cluster: &mut HaEvalCluster, fault: Signal) -> anyhow::Result<FailoverRun> {
    let (old, job_id) = submit_to_leader(cluster).await?;
    let last_old_commit = wait_for_commits(cluster, old, job_id).await?;
    cluster.signal_coordinator(old, fault)?;
    let fault_at = Instant::now();

    let (new, first_commit_at) = first_commit_elsewhere(cluster, old, job_id).await?;
    let to_new_leader_s = new.1.duration_since(fault_at).as_secs_f64();
    let (refused_writes, stood_by) = if fault == Signal::SIGKILL {
        cluster.reap_coordinator(old).await?;
        cluster.start_coordinator(old)?;
        (None, None)
    } else {
        cluster.signal_coordinator(old, Signal::SIGCONT)?;
        let stood_by = stands_by(cluster, old).await;
        (Some(refused_writes(cluster, old).await), Some(stood_by))
    };
    // As any client would: through whichever coordinator leads by then.
    let coordinators = Coordinators::new(
        CoordinatorUrls::parse(&cluster.urls())?,
        Some(cluster.token().to_string()),
        job_id,
    );
    let deadline = Some(tokio::time::Instant::now() + FAILOVER_TIMEOUT * 2);
    let job = finished_job(&coordinators, job_id, deadline).await?;
    let committed = coordinators
        .call(deadline, Idempotence::Idempotent, |mut client| async move {
            let all = results(&mut client, job_id).await;
            all.map(tonic::Response::new)
                .map_err(|error| tonic::Status::unavailable(error.to_string()))
        })
        .await?;
    let distinct: BTreeSet<u32> = committed.iter().map(|result| result.task_index).collect();
    Ok(FailoverRun {
        to_new_leader_s,
        to_first_commit_s: first_commit_at.duration_since(fault_at).as_secs_f64(),
        last_to_first_commit_s: last_old_commit
            .map(|at| first_commit_at.duration_since(at).as_secs_f64()),
        refused_writes,
        stood_by,
        every_task_committed_once: job.state == "succeeded"
            && committed.len() == TASKS as usize
            && distinct.len() == TASKS as usize,
    })
}

/// Submits the scenario's job to the leader; returns the leader and the job's id. A
/// leader that steps down by itself (a lease not refreshed in time on a loaded machine)
/// refuses the submission: it is made again to the next leader.
async fn submit_to_leader(cluster: &HaEvalCluster) -> anyhow::Result<(usize, u64)> {
    const TRIES: u32 = 3;
    let mut tries = 0;
    loop {
        tries += 1;
        let leader = cluster.leader().await?;
        let mut client = essaim_proto::connect(
            &cluster.url(leader),
            Some(cluster.token()),
            Duration::from_secs(5),
        )
        .await?;
        let spec = job_spec(
            "failover",
            (0..TASKS).map(|_| sleep_task(TASK_MS)).collect(),
        );
        match client
            .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
            .await
        {
            Ok(response) => return Ok((leader, response.into_inner().job_id)),
            Err(status) if status.code() == tonic::Code::Unavailable && tries < TRIES => {
                say(&format!(
                    "failover: the leader refused the job ({}); submitting again",
                    status.message()
                ));
                tokio::time::sleep(Duration::from_secs(LEADER_LEASE_SECS)).await;
            }
            Err(status) => return Err(status.into()),
        }
    }
}

/// Waits for job `job_id` to finish, following the leader through failovers.
async fn finished_job(
    coordinators: &Coordinators,
    job_id: u64,
    deadline: Option<tokio::time::Instant>,
) -> anyhow::Result<essaim_proto::v1::JobStatus> {
    let wait = |mut client: essaim_proto::CoordinatorClient| async move {
        let timeout = FAILOVER_TIMEOUT * 2;
        let job = wait_job(&mut client, job_id, timeout).await;
        job.map(tonic::Response::new)
            .map_err(|error| tonic::Status::unavailable(error.to_string()))
    };
    Ok(coordinators
        .call(deadline, Idempotence::Idempotent, wait)
        .await?)
}

/// The job's committed tasks as coordinator `index` sees them, if it answers.
async fn succeeded(cluster: &HaEvalCluster, index: usize, job_id: u64) -> Option<u64> {
    let bytes = cluster
        .get(index, &format!("/api/v1/jobs/{job_id}"))
        .await?;
    let detail: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    detail["job"]["tasks"]["succeeded"].as_u64()
}

/// Polls the leader until the job has [`COMMITS_BEFORE_FAULT`] commits; returns when
/// the last increase was seen.
async fn wait_for_commits(
    cluster: &HaEvalCluster,
    leader: usize,
    job_id: u64,
) -> anyhow::Result<Option<Instant>> {
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    let (mut seen, mut seen_at) = (0, None);
    while Instant::now() < deadline {
        if let Some(count) = succeeded(cluster, leader, job_id).await {
            if count > seen {
                (seen, seen_at) = (count, Some(Instant::now()));
            }
            if count >= COMMITS_BEFORE_FAULT {
                return Ok(seen_at);
            }
        }
        tokio::time::sleep(POLL_PERIOD).await;
    }
    anyhow::bail!("job {job_id} made {seen} commits in {FAILOVER_TIMEOUT:?}")
}

/// Polls the coordinators other than `old` until one leads and commits a task of the
/// job; returns (its index, when it led) and when it committed.
async fn first_commit_elsewhere(
    cluster: &HaEvalCluster,
    old: usize,
    job_id: u64,
) -> anyhow::Result<((usize, Instant), Instant)> {
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    let new = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no new leader in {FAILOVER_TIMEOUT:?}"
        );
        if let Some(index) = cluster.leading(Some(old)).await {
            break (index, Instant::now());
        }
        tokio::time::sleep(POLL_PERIOD).await;
    };
    let mut first_seen = None;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the new leader committed nothing in {FAILOVER_TIMEOUT:?}"
        );
        if let Some(count) = succeeded(cluster, new.0, job_id).await {
            match first_seen {
                None => first_seen = Some(count),
                Some(first) if count > first => return Ok((new, Instant::now())),
                Some(_) => {}
            }
        }
        tokio::time::sleep(POLL_PERIOD).await;
    }
}

/// Whether resumed coordinator `index` says it stands by within a few leases.
async fn stands_by(cluster: &HaEvalCluster, index: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(LEADER_LEASE_SECS * 5);
    while Instant::now() < deadline {
        if cluster
            .view(index)
            .await
            .is_some_and(|view| view.role == "standby")
        {
            return true;
        }
        tokio::time::sleep(POLL_PERIOD).await;
    }
    false
}

/// `essaim_coordinator_fenced_writes_total` of coordinator `index`.
async fn refused_writes(cluster: &HaEvalCluster, index: usize) -> u64 {
    let metrics = cluster.get(index, "/metrics").await.unwrap_or_default();
    String::from_utf8_lossy(&metrics)
        .lines()
        .find_map(|line| line.strip_prefix("essaim_coordinator_fenced_writes_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}
