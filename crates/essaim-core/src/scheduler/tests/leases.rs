//! Leases and workers: expiry, heartbeats, lost and unknown workers, drain hand-backs.

use super::*;

#[test]
fn stale_result_after_lease_expiry_is_rejected() {
    let (mut scheduler, mut out, job_id, worker) = setup(config(), job(1));
    let first = pull_one(&mut scheduler, 0, worker);

    // No heartbeat: the lease granted at 0 expires at lease_ms, the worker is still alive.
    scheduler.tick(999, &mut out);
    assert_eq!(scheduler.attempts().count(), 1);
    scheduler.tick(1000, &mut out);
    assert_eq!(scheduler.attempts().count(), 0);
    assert_eq!(scheduler.stats().lease_expiries, 1);
    let retry_at = not_before(&scheduler, task(job_id, 0));

    let late = scheduler.report(retry_at, worker, vec![ok(first.attempt, 100)], &mut out);
    assert_eq!((late.reregister, late.rejected), (false, 1));
    assert_eq!(scheduler.stats().results_rejected, 1);
    assert_eq!(scheduler.job(job_id).unwrap().counters.results_rejected, 1);
    assert_eq!(commits(&out), vec![]);
    let reply = scheduler.heartbeat(retry_at, worker, &[first.attempt], false, 0);
    assert_eq!(reply.cancel, vec![first.attempt]);

    let second = pull_one(&mut scheduler, retry_at, worker);
    assert_eq!((second.task, second.attempt_number), (task(job_id, 0), 2));
    assert!(second.attempt > first.attempt);
    let reply = scheduler.report(retry_at, worker, vec![ok(second.attempt, 100)], &mut out);
    assert_eq!(reply.rejected, 0);
    assert_eq!(commits(&out), vec![(task(job_id, 0), second.attempt)]);
    assert_eq!(finished(&out), vec![(job_id, JobState::Succeeded)]);
    scheduler.check_invariants().unwrap();
}

#[test]
fn heartbeat_renews_leases_and_tells_zombies_to_stop() {
    let (mut scheduler, mut out, _, worker_a) = setup(config(), job(2));
    let worker_b = scheduler.register_worker(0, advertising(&["noop"]));
    let ours = pull_one(&mut scheduler, 0, worker_a).attempt;
    let theirs = pull_one(&mut scheduler, 0, worker_b).attempt;
    let unknown = AttemptId(999);

    // A lists its own attempt, B's attempt and one nobody granted: only its own is renewed.
    let reply = scheduler.heartbeat(900, worker_a, &[ours, theirs, unknown], false, 1);
    assert!(!reply.reregister);
    assert_eq!(reply.cancel, vec![unknown, theirs]);
    let leases = scheduler
        .attempts()
        .map(|(id, lease)| (*id, lease.lease_expires_at));
    assert_eq!(
        leases.collect::<Vec<_>>(),
        vec![(ours, 1900), (theirs, 1000)]
    );

    scheduler.tick(1000, &mut out); // B's lease expires, A's does not
    let live: Vec<AttemptId> = scheduler.attempts().map(|(id, _)| *id).collect();
    assert_eq!(live, vec![ours]);
    scheduler.heartbeat(1500, worker_a, &[], false, 1); // keeps A alive, renews nothing
    scheduler.tick(1900, &mut out);
    assert_eq!(scheduler.attempts().count(), 0);
    let reply = scheduler.heartbeat(1901, worker_a, &[ours], false, 1);
    assert_eq!(reply.cancel, vec![ours]);
    scheduler.check_invariants().unwrap();
}

#[test]
fn dead_worker_tasks_are_requeued_after_worker_timeout() {
    // Leases outlive the worker timeout so that only the lost worker can free the tasks.
    let config = config_with(|config| config.lease_ms = 10_000);
    let (mut scheduler, mut out, job_id, silent) = setup(config, job(2));
    let alive = scheduler.register_worker(0, advertising(&["noop"]));
    let lost = attempts_of(&scheduler.pull(0, silent, 2).assignments);

    scheduler.heartbeat(1500, alive, &[], false, 0);
    scheduler.tick(1999, &mut out);
    assert_eq!(scheduler.attempts().count(), 2);
    scheduler.tick(2000, &mut out);
    assert_eq!(scheduler.attempts().count(), 0);
    assert_eq!(scheduler.workers().count(), 1);
    assert_eq!(scheduler.stats().workers_lost, 1);
    assert_eq!(scheduler.stats().lease_expiries, 2);
    for (index, attempt) in lost.iter().enumerate() {
        let errors = scheduler.job(job_id).unwrap().tasks()[index].errors();
        let error = (errors[0].attempt, errors[0].failure.message.as_str());
        assert_eq!(error, (*attempt, "worker lost: no heartbeat"));
    }

    let reply = scheduler.heartbeat(2001, silent, &lost, false, 2);
    assert_eq!((reply.reregister, reply.cancel), (true, lost));
    let due = not_before(&scheduler, task(job_id, 0)).max(not_before(&scheduler, task(job_id, 1)));
    let grants = scheduler.pull(due, alive, 10).assignments;
    // Retries are served by due time, which the jitter decides: compare as a set.
    let mut granted: Vec<(TaskId, u32)> =
        grants.iter().map(|g| (g.task, g.attempt_number)).collect();
    granted.sort();
    assert_eq!(granted, vec![(task(job_id, 0), 2), (task(job_id, 1), 2)]);
    scheduler.check_invariants().unwrap();
}

#[test]
fn drained_worker_hands_back_unstarted_attempts_to_the_front_of_the_queue_without_counting_them() {
    // Regression: handed-back tasks were pushed to the front one by one in the order the
    // worker listed them, which reversed them; they must keep the order they were granted.
    // (returned attempts, by grant index, in the order the worker lists them)
    let table: [&[usize]; 2] = [&[1, 2], &[2, 1]];
    for returned in table {
        let (mut scheduler, mut out, job_id, draining) = setup(config(), job(4));
        let other = scheduler.register_worker(0, advertising(&["noop"]));
        let held = attempts_of(&scheduler.pull(0, draining, 3).assignments);

        let reply = scheduler.heartbeat(10, draining, &held, true, 1);
        assert_eq!(reply.cancel, vec![]);
        assert_eq!(scheduler.pull(10, draining, 1).assignments, vec![]);
        let returned: Vec<AttemptId> = returned.iter().map(|index| held[*index]).collect();
        scheduler.deregister(20, draining, &returned, &mut out);

        // Task 0 was started and is lost (a retry); tasks 1 and 2 come back uncounted.
        assert!(
            not_before(&scheduler, task(job_id, 0)) > 20,
            "seeded jitter"
        );
        let next = scheduler.pull(20, other, 3).assignments;
        let expected = vec![task(job_id, 1), task(job_id, 2), task(job_id, 3)];
        assert_eq!(tasks_of(&next), expected, "returned {returned:?}");
        assert!(next.iter().all(|grant| grant.attempt_number == 1));
        assert_eq!(scheduler.stats().attempts_failed, 1);
        let errors = scheduler.job(job_id).unwrap().tasks()[0].errors();
        assert_eq!(errors[0].failure.message, "worker left");
        scheduler.check_invariants().unwrap();
    }
}

#[test]
fn unknown_worker_is_told_to_reregister() {
    let (mut scheduler, mut out, _, declared_dead) = setup(config(), job(1));
    scheduler.tick(2000, &mut out);
    let zombie = AttemptId(7);

    for worker in [WorkerId(42), declared_dead] {
        let pull = scheduler.pull(2001, worker, 5);
        assert_eq!((pull.reregister, pull.assignments), (true, vec![]));
        let heartbeat = scheduler.heartbeat(2001, worker, &[zombie], false, 1);
        let expected = (true, vec![zombie]);
        assert_eq!((heartbeat.reregister, heartbeat.cancel), expected);
        let report = scheduler.report(2001, worker, vec![ok(zombie, 10)], &mut out);
        assert_eq!((report.reregister, report.rejected), (true, 1));
    }
    assert_eq!(scheduler.attempts().count(), 0);
    scheduler.check_invariants().unwrap();
}
