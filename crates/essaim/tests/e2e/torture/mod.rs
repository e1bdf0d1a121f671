//! The torture suite: seeded schedules of faults against a real highly available
//! cluster (3 etcd members, 2 coordinators, 3 workers), each checked against an oracle.
//!
//! A schedule is drawn from its seed alone: the workload (by the seed modulo 3: a task
//! farm of shell tasks whose outputs are known in advance, a streaming word count whose
//! output coreutils computes, or the flights pipeline from NATS JetStream into
//! PostgreSQL, whose tables are compared with the same spec run in one process and with
//! plain SQL over the rows — see [`workload`]), then 3 to 6 faults at random moments — SIGKILL of
//! the leader (restarted later as a standby), SIGSTOP of the leader past its lease then
//! SIGCONT, coordinator 0 cut off from etcd by its proxy then healed, SIGKILL of a
//! worker (a new one joins), SIGSTOP of a worker past its timeout then SIGCONT, SIGKILL
//! of one etcd member (restarted later), a worker's scratch disk filled to the last byte
//! then freed (each worker's scratch directory is a small tmpfs of its own; where the
//! test may not mount one, that fault is skipped and counted as such), the wall clock
//! of the leader or of a worker stepped forward or back by up to 10 minutes then back
//! (every process runs on a clock of its own through libfaketime; without it, skipped
//! and counted). Between faults
//! the commits seen so far are read from the leader of the moment. The invariants,
//! checked after every schedule:
//!
//! - the job succeeds (the cluster recovers from every fault);
//! - nothing acknowledged is lost: every commit of the job's final stage seen during the
//!   schedule is still there at the end, with the same attempt (a map output lost with
//!   its worker is re-run by design: it was never a result);
//! - no task is committed twice, and the output is the oracle's: every task's for the
//!   task farm, the word counts byte for byte for MapReduce, the tables for the stream
//!   (every window, every dead letter once).
//!
//! The default suite runs 3 schedules (one of each workload). The long profile is a
//! documented command (`bench/torture.sh`): `ESSAIM_TORTURE_SCHEDULES=N` schedules from
//! `ESSAIM_TORTURE_SEED` (default 1) on; a failing schedule prints its seed, and
//! `ESSAIM_TORTURE_SCHEDULES=1 ESSAIM_TORTURE_SEED=<seed>` replays exactly that
//! schedule (the moments of the faults relative to the job's progress vary with the
//! machine's speed, the faults and their order do not). Skipped with
//! `ESSAIM_SKIP_ETCD=1`.

mod workload;

use essaim_proto::v1;
use essaim_testkit::SeededRng;
use essaim_testkit::ha::{HaCluster, LEASE_SECS};
use essaim_testkit::tmpfs::Tmpfs;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use workload::{Submitted, Workload};

const WORKERS: usize = 3;
const SLOTS: u32 = 2;
/// Longest the job may take to finish once the faults are over.
const RECOVERY: Duration = Duration::from_secs(120);
/// The size of each worker's scratch tmpfs: the worker's default reserve (256 MiB) and
/// room for every map output of the word count many times over; filled in a moment.
const SCRATCH_BYTES: u64 = 320 << 20;

/// One fault of a schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    PauseLeader(Duration),
    CutCoordinator0(Duration),
    KillWorker(usize),
    PauseWorker(usize, Duration),
    KillEtcdMember(usize),
    FillWorkerDisk(usize, Duration),
    /// The leader's wall clock stepped by that many seconds, then back.
    JumpLeaderClock(i64, Duration),
    /// A worker's wall clock stepped by that many seconds, then back.
    JumpWorkerClock(usize, i64, Duration),
}

impl Fault {
    /// The fault's kind, as the summary counts it.
    fn kind(&self) -> String {
        let name = format!("{self:?}");
        name.split('(').next().unwrap_or_default().to_string()
    }
}

/// A schedule: (pause before, fault) pairs.
fn schedule(seed: u64) -> Vec<(Duration, Fault)> {
    let mut rng = SeededRng::new(seed);
    let lease_ms = LEASE_SECS * 1000;
    (0..3 + rng.below(4))
        .map(|_| {
            let before = Duration::from_millis(200 + rng.below(1500));
            let held = |rng: &mut SeededRng| Duration::from_millis(lease_ms + rng.below(2000));
            // A step of the wall clock, as NTP makes: up to 10 minutes either way.
            let step = |rng: &mut SeededRng| {
                let seconds = 30 + rng.below(571) as i64;
                if rng.below(2) == 0 { seconds } else { -seconds }
            };
            let fault = match rng.below(9) {
                0 => Fault::KillLeader,
                1 => Fault::PauseLeader(held(&mut rng)),
                2 => Fault::CutCoordinator0(held(&mut rng)),
                3 => Fault::KillWorker(rng.below(WORKERS as u64) as usize),
                4 => Fault::PauseWorker(rng.below(WORKERS as u64) as usize, held(&mut rng)),
                5 => Fault::KillEtcdMember(rng.below(3) as usize),
                6 => Fault::FillWorkerDisk(rng.below(WORKERS as u64) as usize, held(&mut rng)),
                7 => Fault::JumpLeaderClock(step(&mut rng), held(&mut rng)),
                _ => {
                    let worker = rng.below(WORKERS as u64) as usize;
                    Fault::JumpWorkerClock(worker, step(&mut rng), held(&mut rng))
                }
            };
            (before, fault)
        })
        .collect()
}

/// Commits seen so far (task → attempt); panics if one changed or vanished.
fn merge_commits(seen: &mut BTreeMap<u32, u64>, results: &[v1::TaskResult]) {
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

/// The committed results of the job's final stage (its tasks are numbered last).
async fn final_results(cluster: &HaCluster, job_id: u64) -> Vec<v1::TaskResult> {
    let job = cluster.job(job_id).await;
    let total: u32 = job.stages.iter().map(|stage| stage.total).sum();
    let last = job.stages.last().map_or(total, |stage| stage.total);
    let first_of_last = total - last;
    let mut results = cluster.results(job_id).await;
    results.retain(|result| result.task_index >= first_of_last);
    results
}

/// The leader of the moment, or coordinator 0 when none answers yet.
async fn leader_or_first(cluster: &HaCluster) -> usize {
    cluster.ready().await.first().copied().unwrap_or(0)
}

/// Injects `fault`; returns false when it could not be (no tmpfs to fill).
async fn inject(cluster: &mut HaCluster, fault: Fault) -> bool {
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
        Fault::FillWorkerDisk(index, held) => {
            let Some(scratch) = cluster.worker_scratch(index % cluster.worker_count()) else {
                return false;
            };
            let (filler, _) = scratch.fill().expect("the scratch tmpfs is filled");
            tokio::time::sleep(held).await;
            std::fs::remove_file(filler).expect("the filler is removed");
        }
        Fault::JumpLeaderClock(seconds, held) => {
            let leader = leader_or_first(cluster).await;
            if !cluster.jump_coordinator_clock(leader, seconds) {
                return cluster.on_fake_clocks();
            }
            tokio::time::sleep(held).await;
            cluster.jump_coordinator_clock(leader, -seconds);
        }
        Fault::JumpWorkerClock(index, seconds, held) => {
            let index = index % cluster.worker_count();
            if !cluster.jump_worker_clock(index, seconds) {
                return false;
            }
            tokio::time::sleep(held).await;
            // The worker may have been replaced meanwhile: step back the one stepped.
            cluster.jump_worker_clock(index % cluster.worker_count(), -seconds);
        }
    }
    true
}

/// Runs the schedule of `seed` on a fresh cluster and checks the invariants; returns
/// what happened.
async fn run_schedule(seed: u64) -> Option<Ran> {
    let faults = schedule(seed);
    eprintln!(
        "torture seed {seed}: {:?} under {faults:?}",
        Workload::of(seed)
    );
    let mut cluster =
        HaCluster::start_on_fake_clocks(env!("CARGO_BIN_EXE_essaim"), 3, 2, 0, SLOTS, true).await?;
    if Tmpfs::can_mount(&cluster.path("")) {
        cluster.put_worker_scratch_on_tmpfs(SCRATCH_BYTES);
    }
    for _ in 0..WORKERS {
        cluster.start_worker(SLOTS);
    }
    let started = Instant::now();
    cluster.wait_leader().await;
    cluster.wait_for_workers(WORKERS).await;
    let submitted = Submitted::submit(&cluster, seed).await?;
    let job_id = submitted.job_id();
    let mut seen = BTreeMap::new();
    let mut ran = Ran::default();
    for (before, fault) in faults {
        tokio::time::sleep(before).await;
        if cluster.job(job_id).await.state != "running" {
            ran.after_the_end += 1;
        }
        if !inject(&mut cluster, fault).await {
            ran.skipped.push(fault);
        }
        merge_commits(&mut seen, &final_results(&cluster, job_id).await);
    }
    let job = tokio::time::timeout(
        RECOVERY,
        cluster.wait_job_until(job_id, "finished", |job| job.state != "running"),
    )
    .await
    .unwrap_or_else(|_| panic!("torture seed {seed}: the job did not finish"));
    assert_eq!(job.state, "succeeded", "torture seed {seed}: {job:?}");
    let results = final_results(&cluster, job_id).await;
    merge_commits(&mut seen, &results);
    submitted.check(seed, &results).await;
    ran.took = started.elapsed();
    Some(ran)
}

/// What one schedule did.
#[derive(Debug, Default)]
struct Ran {
    took: Duration,
    /// Faults that could not be injected.
    skipped: Vec<Fault>,
    /// Faults injected once the job had ended (they test recovery of an idle cluster).
    after_the_end: usize,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| value.parse().unwrap_or_else(|_| panic!("{name}={value}")))
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_schedules_lose_nothing_acknowledged_and_commit_every_task_once() {
    let schedules = env_number("ESSAIM_TORTURE_SCHEDULES", 3);
    let first = env_number("ESSAIM_TORTURE_SEED", 1);
    let mut faults = BTreeMap::<String, usize>::new();
    let mut skipped = BTreeMap::<String, usize>::new();
    let mut workloads = BTreeMap::<String, usize>::new();
    let mut after_the_end = 0;
    for seed in first..first + schedules {
        let Some(ran) = run_schedule(seed).await else {
            return;
        };
        after_the_end += ran.after_the_end;
        for (_, fault) in schedule(seed) {
            *faults.entry(fault.kind()).or_default() += 1;
        }
        for fault in ran.skipped {
            *faults.entry(fault.kind()).or_default() -= 1;
            *skipped.entry(fault.kind()).or_default() += 1;
        }
        *workloads
            .entry(format!("{:?}", Workload::of(seed)))
            .or_default() += 1;
        eprintln!("torture seed {seed}: passed in {:?}", ran.took);
    }
    eprintln!(
        "TORTURE schedules={schedules} first_seed={first} violations=0 \
         workloads={workloads:?} faults={faults:?} skipped={skipped:?} \
         faults_after_the_job_ended={after_the_end}"
    );
}
