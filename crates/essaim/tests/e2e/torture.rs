//! The torture suite: seeded schedules of faults against a real highly available
//! cluster (3 etcd members, 2 coordinators, 3 workers), each checked against an oracle.
//!
//! A schedule is drawn from its seed alone: a job of shell tasks whose outputs are known
//! in advance, then 3 to 6 faults at random moments — SIGKILL of the leader (restarted
//! later as a standby), SIGSTOP of the leader past its lease then SIGCONT, coordinator 0
//! cut off from etcd by its proxy then healed, SIGKILL of a worker (a new one joins),
//! SIGSTOP of a worker past its timeout then SIGCONT, SIGKILL of one etcd member
//! (restarted later). Between faults the commits seen so far are read from the leader of
//! the moment. The invariants, checked after every schedule:
//!
//! - the job succeeds (the cluster recovers from every fault);
//! - nothing acknowledged is lost: every commit seen during the schedule is still there
//!   at the end, with the same attempt;
//! - no task is committed twice, and every output is the oracle's.
//!
//! The default suite runs 2 schedules. The long profile is a documented command
//! (`bench/torture.sh`): `ESSAIM_TORTURE_SCHEDULES=N` schedules from
//! `ESSAIM_TORTURE_SEED` (default 1) on; a failing schedule prints its seed, and
//! `ESSAIM_TORTURE_SCHEDULES=1 ESSAIM_TORTURE_SEED=<seed>` replays exactly that
//! schedule (the moments of the faults relative to the job's progress vary with the
//! machine's speed, the faults and their order do not). Skipped with
//! `ESSAIM_SKIP_ETCD=1`.

use crate::harness::{job_spec, output_text, shell_task};
use essaim_testkit::SeededRng;
use essaim_testkit::ha::{HaCluster, LEASE_SECS};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TASKS: u32 = 300;
const WORKERS: usize = 3;
const SLOTS: u32 = 2;
/// Longest the job may take to finish once the faults are over.
const RECOVERY: Duration = Duration::from_secs(120);

/// One fault of a schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    PauseLeader(Duration),
    CutCoordinator0(Duration),
    KillWorker(usize),
    PauseWorker(usize, Duration),
    KillEtcdMember(usize),
}

/// A schedule: (pause before, fault) pairs.
fn schedule(seed: u64) -> Vec<(Duration, Fault)> {
    let mut rng = SeededRng::new(seed);
    let lease_ms = LEASE_SECS * 1000;
    (0..3 + rng.below(4))
        .map(|_| {
            let before = Duration::from_millis(200 + rng.below(1500));
            let held = |rng: &mut SeededRng| Duration::from_millis(lease_ms + rng.below(2000));
            let fault = match rng.below(6) {
                0 => Fault::KillLeader,
                1 => Fault::PauseLeader(held(&mut rng)),
                2 => Fault::CutCoordinator0(held(&mut rng)),
                3 => Fault::KillWorker(rng.below(WORKERS as u64) as usize),
                4 => Fault::PauseWorker(rng.below(WORKERS as u64) as usize, held(&mut rng)),
                _ => Fault::KillEtcdMember(rng.below(3) as usize),
            };
            (before, fault)
        })
        .collect()
}

/// Commits seen so far (task → attempt); panics if one changed or vanished.
fn merge_commits(seen: &mut BTreeMap<u32, u64>, results: &[essaim_proto::v1::TaskResult]) {
    let now: BTreeMap<u32, u64> = results
        .iter()
        .map(|result| (result.task_index, result.attempt_id))
        .collect();
    assert_eq!(now.len(), results.len(), "a task was committed twice");
    for (task, attempt) in seen.iter() {
        assert_eq!(
            now.get(task),
            Some(attempt),
            "task {task}: its acknowledged commit changed or vanished"
        );
    }
    seen.extend(now);
}

/// The leader of the moment, or coordinator 0 when none answers yet.
async fn leader_or_first(cluster: &HaCluster) -> usize {
    cluster.ready().await.first().copied().unwrap_or(0)
}

async fn inject(cluster: &mut HaCluster, fault: Fault) {
    match fault {
        Fault::KillLeader => {
            let leader = leader_or_first(cluster).await;
            if cluster.coordinator_runs(leader) {
                cluster.kill_coordinator(leader);
                tokio::time::sleep(Duration::from_millis(500)).await;
                cluster.start_coordinator(leader);
            }
        }
        Fault::PauseLeader(held) => {
            let leader = leader_or_first(cluster).await;
            if cluster.coordinator_runs(leader) {
                cluster.signal_coordinator(leader, Signal::SIGSTOP);
                tokio::time::sleep(held).await;
                cluster.signal_coordinator(leader, Signal::SIGCONT);
            }
        }
        Fault::CutCoordinator0(held) => {
            cluster.etcd_proxy().cut();
            tokio::time::sleep(held).await;
            cluster.etcd_proxy().heal();
        }
        Fault::KillWorker(index) => {
            cluster.kill_worker(index % cluster.worker_count());
            cluster.start_worker(SLOTS);
        }
        Fault::PauseWorker(index, held) => {
            let index = index % cluster.worker_count();
            cluster.signal_worker(index, Signal::SIGSTOP);
            tokio::time::sleep(held).await;
            cluster.signal_worker(index, Signal::SIGCONT);
        }
        Fault::KillEtcdMember(member) => {
            cluster.etcd().kill_member(member);
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokio::task::block_in_place(|| cluster.etcd().start_members(&[member]));
        }
    }
}

/// Runs the schedule of `seed` on a fresh cluster and checks the invariants.
async fn run_schedule(seed: u64) -> Option<Duration> {
    let faults = schedule(seed);
    eprintln!("torture seed {seed}: {faults:?}");
    let mut cluster =
        HaCluster::start_with(env!("CARGO_BIN_EXE_essaim"), 3, 2, WORKERS, SLOTS, true).await?;
    let started = Instant::now();
    cluster.wait_leader().await;
    cluster.wait_for_workers(WORKERS).await;
    let script = format!("sleep 0.05; echo seed-{seed} task-$ESSAIM_TASK_INDEX");
    let tasks = (0..TASKS).map(|_| shell_task(&script, &[])).collect();
    let job_id = cluster.submit(job_spec(tasks, 20)).await;
    let mut seen = BTreeMap::new();
    for (before, fault) in faults {
        tokio::time::sleep(before).await;
        inject(&mut cluster, fault).await;
        merge_commits(&mut seen, &cluster.results(job_id).await);
    }
    let job = tokio::time::timeout(
        RECOVERY,
        cluster.wait_job_until(job_id, "finished", |job| job.state != "running"),
    )
    .await
    .unwrap_or_else(|_| panic!("torture seed {seed}: the job did not finish"));
    assert_eq!(job.state, "succeeded", "torture seed {seed}: {job:?}");
    let results = cluster.results(job_id).await;
    merge_commits(&mut seen, &results);
    assert_eq!(results.len(), TASKS as usize, "torture seed {seed}");
    for result in &results {
        let expected = format!("seed-{seed} task-{}\n", result.task_index);
        assert_eq!(output_text(result), expected, "torture seed {seed}");
    }
    Some(started.elapsed())
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| value.parse().unwrap_or_else(|_| panic!("{name}={value}")))
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_schedules_lose_nothing_acknowledged_and_commit_every_task_once() {
    let schedules = env_number("ESSAIM_TORTURE_SCHEDULES", 2);
    let first = env_number("ESSAIM_TORTURE_SEED", 1);
    let mut faults = BTreeMap::<String, usize>::new();
    for seed in first..first + schedules {
        for (_, fault) in schedule(seed) {
            let name = format!("{fault:?}");
            let kind = name.split('(').next().unwrap_or_default().to_string();
            *faults.entry(kind).or_default() += 1;
        }
        let Some(took) = run_schedule(seed).await else {
            return;
        };
        eprintln!("torture seed {seed}: passed in {took:?}");
    }
    eprintln!("TORTURE schedules={schedules} first_seed={first} violations=0 faults={faults:?}");
}
