//! Long-running tasks: spread over the workers, moved when workers join or drain.

use super::*;

/// A worker that runs `stream` tasks, which run until stopped.
fn stream_worker() -> WorkerInfo {
    WorkerInfo {
        long_running_kinds: ["stream".to_string()].into(),
        slots: 1,
        ..advertising(&["stream", "noop"])
    }
}

fn stream_job(tasks: usize) -> RawJobSpec {
    job_with(tasks, |spec| {
        for task in &mut spec.tasks {
            task.kind = "stream".into();
        }
    })
}

/// Attempts a worker holds, as its heartbeat would report them.
fn held_by(scheduler: &Scheduler, worker: WorkerId) -> Vec<AttemptId> {
    scheduler
        .worker(worker)
        .map(|state| state.held.iter().copied().collect())
        .unwrap_or_default()
}

/// Heartbeats `worker` with what it holds; returns what it must stop.
fn beat(scheduler: &mut Scheduler, now: Millis, worker: WorkerId, draining: bool) -> usize {
    let held = held_by(scheduler, worker);
    let reply = scheduler.heartbeat(now, worker, &held, draining, 0);
    assert!(!reply.reregister);
    reply.cancel.len()
}

fn counts(scheduler: &Scheduler, workers: &[WorkerId]) -> Vec<usize> {
    workers
        .iter()
        .map(|worker| held_by(scheduler, *worker).len())
        .collect()
}

/// Two stream workers and a job of `tasks` stream tasks, each worker having pulled
/// all it may.
fn two_workers_pulled(tasks: usize) -> (Scheduler, JobId, Vec<WorkerId>) {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let a = scheduler.register_worker(0, stream_worker());
    let b = scheduler.register_worker(0, stream_worker());
    let mut out = Vec::new();
    let job_id = scheduler.submit(0, stream_job(tasks), &mut out).unwrap();
    while scheduler.has_work_for(0, a) || scheduler.has_work_for(0, b) {
        scheduler.pull(0, a, 100);
        scheduler.pull(0, b, 100);
    }
    (scheduler, job_id, vec![a, b])
}

#[test]
fn long_running_tasks_are_spread_evenly_whoever_pulls_first() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let a = scheduler.register_worker(0, stream_worker());
    let b = scheduler.register_worker(0, stream_worker());
    let mut out = Vec::new();
    scheduler.submit(0, stream_job(7), &mut out).unwrap();
    scheduler.pull(0, a, 100);
    assert!(!scheduler.has_work_for(0, a), "a holds its share");
    scheduler.pull(0, b, 100);
    let workers = vec![a, b];
    assert_eq!(counts(&scheduler, &workers), vec![4, 3]);
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_worker_holds_its_share_of_long_running_tasks_beside_its_slots() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let a = scheduler.register_worker(0, stream_worker());
    let mut out = Vec::new();
    scheduler.submit(0, stream_job(3), &mut out).unwrap();
    let noop_job = scheduler.submit(0, job(1), &mut out).unwrap();
    let grants = scheduler.pull(0, a, 100).assignments;
    assert_eq!(grants.len(), 4, "three stream tasks and the noop task");
    assert!(tasks_of(&grants).contains(&task(noop_job, 0)));
    assert!(!scheduler.has_work_for(0, a));
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_joining_worker_takes_its_share_from_the_others_without_a_failure() {
    let (mut scheduler, job_id, mut workers) = two_workers_pulled(12);
    assert_eq!(counts(&scheduler, &workers), vec![6, 6]);
    let c = scheduler.register_worker(10, stream_worker());
    workers.push(c);
    assert!(!scheduler.has_work_for(10, c), "nothing queued yet");
    assert_eq!(beat(&mut scheduler, 20, workers[0], false), 2);
    assert_eq!(beat(&mut scheduler, 20, workers[1], false), 2);
    assert!(scheduler.has_work_for(20, c));
    assert_eq!(scheduler.pull(20, c, 100).assignments.len(), 4);
    assert_eq!(counts(&scheduler, &workers), vec![4, 4, 4]);
    // Even now: further heartbeats move nothing.
    for worker in workers.clone() {
        assert_eq!(beat(&mut scheduler, 30, worker, false), 0);
    }
    assert_eq!(scheduler.stats().attempts_moved, 4);
    assert_eq!(scheduler.stats().attempts_failed, 0);
    let job = scheduler.job(job_id).unwrap();
    assert_eq!(job.counts().running, 12);
    scheduler.check_invariants().unwrap();
}

#[test]
fn counts_settle_within_the_share_without_ping_pong() {
    let (mut scheduler, _, mut workers) = two_workers_pulled(7);
    assert_eq!(counts(&scheduler, &workers), vec![4, 3]);
    let c = scheduler.register_worker(10, stream_worker());
    workers.push(c);
    for now in [20, 40, 60] {
        for worker in workers.clone() {
            beat(&mut scheduler, now, worker, false);
            scheduler.pull(now, worker, 100);
        }
    }
    let mut settled = counts(&scheduler, &workers);
    settled.sort_unstable();
    assert_eq!(settled, vec![1, 3, 3]);
    let moved = scheduler.stats().attempts_moved;
    for worker in workers.clone() {
        assert_eq!(beat(&mut scheduler, 80, worker, false), 0);
    }
    assert_eq!(scheduler.stats().attempts_moved, moved, "no ping-pong");
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_draining_worker_hands_back_every_long_running_attempt_at_once() {
    let (mut scheduler, _, workers) = two_workers_pulled(6);
    assert_eq!(beat(&mut scheduler, 10, workers[0], true), 3);
    assert!(held_by(&scheduler, workers[0]).is_empty());
    assert_eq!(scheduler.pull(10, workers[1], 100).assignments.len(), 3);
    assert_eq!(counts(&scheduler, &workers), vec![0, 6]);
    assert_eq!(scheduler.stats().attempts_failed, 0);
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_dead_workers_long_running_tasks_go_to_the_survivors() {
    let (mut scheduler, _, workers) = two_workers_pulled(6);
    let mut out = Vec::new();
    beat(&mut scheduler, 2000, workers[1], false);
    scheduler.tick(2500, &mut out);
    assert!(scheduler.worker(workers[0]).is_none(), "worker 0 timed out");
    // Its tasks are retried after their backoff; the survivor takes them all.
    let mut taken = 0;
    for now in (2500..20_000).step_by(500) {
        beat(&mut scheduler, now, workers[1], false);
        taken += scheduler.pull(now, workers[1], 100).assignments.len();
    }
    assert_eq!(taken, 3);
    assert_eq!(counts(&scheduler, &workers[1..]), vec![6]);
    scheduler.check_invariants().unwrap();
}

/// Regression (found by the simulation): a stage mixing kinds, whose first task is not
/// long-running, still has its long-running tasks counted and granted.
#[test]
fn long_running_tasks_in_a_stage_of_mixed_kinds_are_granted() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let a = scheduler.register_worker(0, stream_worker());
    let mut out = Vec::new();
    let spec = job_with(4, |spec| {
        spec.tasks[1].kind = "stream".into();
        spec.tasks[3].kind = "stream".into();
    });
    let job_id = scheduler.submit(0, spec, &mut out).unwrap();
    let mut granted = tasks_of(&scheduler.pull(0, a, 100).assignments);
    granted.sort_unstable();
    assert_eq!(
        granted,
        (0..4).map(|index| task(job_id, index)).collect::<Vec<_>>()
    );
    scheduler.check_invariants().unwrap();
}

/// A worker whose slots are all busy does not pull: it does not count in the share, so
/// the others take its part until a slot frees (then it gets its share back).
#[test]
fn a_worker_with_every_slot_busy_leaves_its_share_to_the_others_until_a_slot_frees() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let a = scheduler.register_worker(0, stream_worker());
    let busy = scheduler.register_worker(0, stream_worker());
    scheduler.heartbeat(0, busy, &[], false, 1);
    let mut out = Vec::new();
    scheduler.submit(0, stream_job(4), &mut out).unwrap();
    assert_eq!(scheduler.pull(0, a, 100).assignments.len(), 4);
    let held = held_by(&scheduler, busy);
    scheduler.heartbeat(10, busy, &held, false, 0);
    assert_eq!(beat(&mut scheduler, 20, a, false), 2);
    assert_eq!(scheduler.pull(20, busy, 100).assignments.len(), 2);
    assert_eq!(counts(&scheduler, &[a, busy]), vec![2, 2]);
    scheduler.check_invariants().unwrap();
}

/// The share counts only the tasks a job's concurrency limit lets run.
#[test]
fn the_share_counts_what_the_concurrency_limit_lets_run() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let a = scheduler.register_worker(0, stream_worker());
    let b = scheduler.register_worker(0, stream_worker());
    let mut out = Vec::new();
    let spec = RawJobSpec {
        max_concurrency: 4,
        ..stream_job(8)
    };
    scheduler.submit(0, spec, &mut out).unwrap();
    scheduler.pull(0, a, 100);
    scheduler.pull(0, b, 100);
    assert_eq!(counts(&scheduler, &[a, b]), vec![2, 2]);
    scheduler.check_invariants().unwrap();
}
