//! Which task a pulling worker gets: priority and order, kinds, retries against first
//! attempts, speculative copies of stragglers, the concurrency limit.

use super::*;

#[test]
fn a_pull_grants_at_most_max_tasks_in_priority_then_fifo_order() {
    let (mut scheduler, mut out, low, worker) = setup(config(), job(2));
    let high = scheduler.submit(0, job_with(2, |spec| spec.priority = 5), &mut out);
    let high_later = scheduler.submit(0, job_with(1, |spec| spec.priority = 5), &mut out);
    let (high, high_later) = (high.unwrap(), high_later.unwrap());

    // (max, tasks granted, in order)
    let table = [
        (0, vec![]),
        (3, vec![task(high, 0), task(high, 1), task(high_later, 0)]),
        (10, vec![task(low, 0), task(low, 1)]),
        (10, vec![]),
    ];
    for (max, expected) in table {
        let reply = scheduler.pull(0, worker, max);
        assert_eq!(tasks_of(&reply.assignments), expected, "pull of {max}");
        for grant in &reply.assignments {
            assert_eq!((grant.attempt_number, grant.speculative), (1, false));
            assert_eq!(grant.payload, vec![grant.task.index as u8]);
        }
    }
    assert_eq!(scheduler.stats().attempts_started, 5);
    scheduler.check_invariants().unwrap();
}

#[test]
fn worker_only_gets_kinds_it_advertises() {
    let spec = with_backoff(job_of_kinds(&["command", "noop", "command"]), 1, 1);
    let (mut scheduler, mut out, job_id, noop_only) = setup(config(), spec);
    let command_only = scheduler.register_worker(0, advertising(&["command"]));

    // (worker, tasks granted)
    let table = [
        (noop_only, vec![task(job_id, 1)]),
        (noop_only, vec![]),
        (command_only, vec![task(job_id, 0), task(job_id, 2)]),
    ];
    for (worker, expected) in table {
        let grants = scheduler.pull(0, worker, 10).assignments;
        assert_eq!(tasks_of(&grants), expected);
    }

    // A due retry of a command task is not handed to the noop worker either.
    let first_command = scheduler.attempts().find(|(_, a)| a.worker == command_only);
    let first_command = *first_command.unwrap().0;
    scheduler.report(
        10,
        command_only,
        vec![failed(first_command, true)],
        &mut out,
    );
    assert_eq!(scheduler.pull(100, noop_only, 10).assignments, vec![]);
    let retry = pull_one(&mut scheduler, 100, command_only);
    let expected = (task(job_id, 0), 2, "command");
    assert_eq!(
        (retry.task, retry.attempt_number, retry.kind.as_str()),
        expected
    );
    scheduler.check_invariants().unwrap();
}

#[test]
fn retries_are_served_after_first_attempts_but_never_starved() {
    let config = config_with(|config| config.retry_every = 3);
    let (mut scheduler, mut out, _, worker) = setup(config, with_backoff(job(30), 1000, 1000));
    let failing = scheduler.pull(0, worker, 4).assignments;
    let failures = failing.iter().map(|grant| failed(grant.attempt, true));
    scheduler.report(0, worker, failures.collect(), &mut out);
    for grant in &failing {
        assert!(not_before(&scheduler, grant.task) > 1, "seeded jitter");
    }

    // No retry is due yet: first attempts keep going although retry_every has passed.
    let early = scheduler.pull(1, worker, 4).assignments;
    let numbers: Vec<u32> = early.iter().map(|grant| grant.attempt_number).collect();
    assert_eq!(numbers, vec![1, 1, 1, 1]);

    // Every retry is due: one retry per retry_every first attempts, until none is left.
    let grants = scheduler.pull(1000, worker, 20).assignments;
    let is_retry = |grant: &Assignment| grant.attempt_number == 2;
    let pattern: String = grants
        .iter()
        .map(|grant| if is_retry(grant) { 'R' } else { 'F' })
        .collect();
    assert_eq!(pattern, "RFFFRFFFRFFFRFFFFFFF");
    for window in grants[..13].windows(4) {
        assert!(window.iter().any(is_retry), "a retry starved in {pattern}");
    }
    let mut retried = tasks_of(&grants.into_iter().filter(is_retry).collect::<Vec<_>>());
    retried.sort();
    assert_eq!(retried, tasks_of(&failing));
    scheduler.check_invariants().unwrap();
}

/// Runs five 100 ms tasks of a six-task job on worker A and leaves the sixth running;
/// returns the scheduler, the job, A, an idle worker B and the straggler's attempt.
fn straggler_setup(multiplier: f64) -> (Scheduler, JobId, WorkerId, WorkerId, AttemptId) {
    let config = config_with(|config| config.speculation_min_runtime_ms = 100);
    assert_eq!(config.speculation_min_samples, 5);
    let spec = job_with(6, |spec| spec.speculation_multiplier = multiplier);
    let (mut scheduler, mut out, job_id, worker_a) = setup(config, spec);
    let worker_b = scheduler.register_worker(0, advertising(&["noop"]));
    let grants = scheduler.pull(0, worker_a, 6).assignments;
    let fast = grants[..5].iter().map(|grant| ok(grant.attempt, 100));
    scheduler.report(100, worker_a, fast.collect(), &mut out);
    assert_eq!(scheduler.job(job_id).unwrap().median_duration(5), Some(100));
    (scheduler, job_id, worker_a, worker_b, grants[5].attempt)
}

#[test]
fn straggler_gets_a_speculative_copy_on_an_idle_worker_and_first_result_wins() {
    // Multiplier 3 (the default) on a 100 ms median: a straggler after 300 ms.
    let (mut scheduler, job_id, worker_a, worker_b, original) = straggler_setup(0.0);
    let mut out = Vec::new();
    assert_eq!(scheduler.pull(300, worker_b, 1).assignments, vec![]);
    let copy = pull_one(&mut scheduler, 301, worker_b);
    assert_eq!((copy.task, copy.speculative), (task(job_id, 5), true));
    assert_eq!(copy.attempt_number, 2);
    assert_eq!(scheduler.stats().speculative_attempts, 1);
    // One copy only, and never to the worker running the original.
    assert_eq!(scheduler.pull(302, worker_b, 1).assignments, vec![]);
    assert_eq!(scheduler.pull(302, worker_a, 1).assignments, vec![]);

    let reply = scheduler.report(350, worker_b, vec![ok(copy.attempt, 49)], &mut out);
    assert_eq!(reply.rejected, 0);
    assert_eq!(commits(&out), vec![(task(job_id, 5), copy.attempt)]);
    assert_eq!(finished(&out), vec![(job_id, JobState::Succeeded)]);

    let reply = scheduler.heartbeat(360, worker_a, &[], false, 1);
    assert_eq!(reply.cancel, vec![original]);
    let reply = scheduler.report(370, worker_a, vec![ok(original, 370)], &mut out);
    assert_eq!(reply.rejected, 1);
    assert_eq!(scheduler.job(job_id).unwrap().counters.results_rejected, 1);
    assert_eq!(commits(&out).len(), 1);
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_speculative_twin_that_loses_the_race_does_not_count_as_an_attempt() {
    // Seed 2701 of the simulation: the twin was counted, so when the committed output
    // was lost later the task was dead-lettered one failure too early.
    let (mut scheduler, job_id, _, worker_b, original) = straggler_setup(0.0);
    let mut out = Vec::new();
    let copy = pull_one(&mut scheduler, 301, worker_b);
    assert_eq!(copy.attempt_number, 2);
    scheduler.report(350, worker_b, vec![ok(copy.attempt, 49)], &mut out);
    let task = &scheduler.job(job_id).unwrap().tasks()[5];
    assert_eq!(
        task.attempts_made(),
        1,
        "{original:?} was killed, not failed"
    );
    scheduler.check_invariants().unwrap();
}

#[test]
fn no_speculative_copy_when_speculation_is_off() {
    let (mut scheduler, job_id, _, worker_b, _) = straggler_setup(-1.0);
    for now in [301, 5000] {
        assert_eq!(scheduler.pull(now, worker_b, 1).assignments, vec![]);
    }
    let counters = scheduler.job(job_id).unwrap().counters;
    assert_eq!(counters.speculative_attempts, 0);
    scheduler.check_invariants().unwrap();
}

#[test]
fn concurrency_limit_caps_live_attempts() {
    let spec = job_with(5, |spec| spec.max_concurrency = 2);
    let (mut scheduler, mut out, _, worker_a) = setup(config(), spec);
    let worker_b = scheduler.register_worker(0, advertising(&["noop"]));

    let first = scheduler.pull(0, worker_a, 5).assignments;
    assert_eq!(first.len(), 2);
    assert!(!scheduler.has_work_for(0, worker_b));
    assert_eq!(scheduler.pull(0, worker_b, 5).assignments, vec![]);
    scheduler.report(10, worker_a, vec![ok(first[0].attempt, 10)], &mut out);
    assert_eq!(scheduler.pull(10, worker_b, 5).assignments.len(), 1);
    assert_eq!(scheduler.attempts().count(), 2);
    scheduler.check_invariants().unwrap();
}
