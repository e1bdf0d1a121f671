//! Table-style unit tests of the scheduler: feed facts at chosen times, assert the exact
//! replies, state and outputs. Every test ends by checking the scheduler's invariants.

use super::{JobError, Output, Scheduler, SchedulerConfig, WorkerInfo};
use crate::ids::{AttemptId, JobId, Millis, TaskId, WorkerId};
use crate::journal::JournalEvent;
use crate::model::{Assignment, JobState, ReportedResult, TaskFailure, TaskOutput, TaskState};
use crate::spec::{RawJobSpec, SpecError, TaskSpec};

const KINDS: &[&str] = &["noop", "command"];

fn config() -> SchedulerConfig {
    SchedulerConfig {
        lease_ms: 1000,
        worker_timeout_ms: 2000,
        ..Default::default()
    }
}

fn new_scheduler(config: SchedulerConfig) -> Scheduler {
    Scheduler::new(config, KINDS)
}

/// A job of `tasks` noop tasks whose payload is their index.
fn job(tasks: usize) -> RawJobSpec {
    RawJobSpec {
        name: "test".into(),
        tasks: (0..tasks)
            .map(|index| TaskSpec {
                kind: "noop".into(),
                payload: vec![index as u8],
            })
            .collect(),
        ..Default::default()
    }
}

fn job_of_kinds(kinds: &[&str]) -> RawJobSpec {
    RawJobSpec {
        tasks: kinds
            .iter()
            .map(|kind| TaskSpec {
                kind: kind.to_string(),
                payload: Vec::new(),
            })
            .collect(),
        ..job(0)
    }
}

fn advertising(kinds: &[&str]) -> WorkerInfo {
    WorkerInfo {
        name: "worker".into(),
        slots: 8,
        kinds: kinds.iter().map(|kind| kind.to_string()).collect(),
        file_server_url: String::new(),
    }
}

fn task(job: JobId, index: u32) -> TaskId {
    TaskId::new(job, index)
}

fn ok(attempt: AttemptId) -> ReportedResult {
    ok_after(attempt, 100)
}

fn ok_after(attempt: AttemptId, duration_ms: Millis) -> ReportedResult {
    ReportedResult {
        attempt,
        outcome: Ok(TaskOutput::default()),
        duration_ms,
    }
}

/// A command that exited with code 2 and wrote `boom` on standard error.
fn failed(attempt: AttemptId, retryable: bool) -> ReportedResult {
    ReportedResult {
        attempt,
        outcome: Err(TaskFailure {
            message: "exited with code 2".into(),
            exit_code: Some(2),
            stderr_tail: "boom".into(),
            retryable,
        }),
        duration_ms: 10,
    }
}

fn persisted(out: &[Output]) -> Vec<JournalEvent> {
    out.iter()
        .filter_map(|output| match output {
            Output::Persist(event) => Some(event.clone()),
            Output::JobFinished { .. } => None,
        })
        .collect()
}

fn finished(out: &[Output]) -> Vec<(JobId, JobState)> {
    out.iter()
        .filter_map(|output| match output {
            Output::JobFinished { job, state } => Some((*job, state.clone())),
            Output::Persist(_) => None,
        })
        .collect()
}

/// The tasks committed in `out`, with the attempt that won each.
fn commits(out: &[Output]) -> Vec<(TaskId, AttemptId)> {
    persisted(out)
        .into_iter()
        .filter_map(|event| match event {
            JournalEvent::TaskSucceeded { result, .. } => Some((result.task, result.attempt)),
            _ => None,
        })
        .collect()
}

fn tasks_of(assignments: &[Assignment]) -> Vec<TaskId> {
    assignments.iter().map(|grant| grant.task).collect()
}

fn pull_one(scheduler: &mut Scheduler, now: Millis, worker: WorkerId) -> Assignment {
    let mut assignments = scheduler.pull(now, worker, 1).assignments;
    assert_eq!(assignments.len(), 1, "expected one grant at t={now}");
    assignments.remove(0)
}

fn state_of(scheduler: &Scheduler, task_id: TaskId) -> TaskState {
    scheduler.job(task_id.job).unwrap().tasks()[task_id.index as usize]
        .state()
        .clone()
}

fn not_before(scheduler: &Scheduler, task_id: TaskId) -> Millis {
    match state_of(scheduler, task_id) {
        TaskState::Retrying { not_before } => not_before,
        other => panic!("task {task_id} should be retrying, is {other:?}"),
    }
}

fn job_state(scheduler: &Scheduler, job_id: JobId) -> JobState {
    scheduler.job(job_id).unwrap().state.clone()
}

fn assert_invariants(scheduler: &Scheduler) {
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_pull_grants_at_most_max_tasks_in_priority_then_fifo_order() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let low = scheduler.submit(0, job(2), &mut out).unwrap();
    let high = RawJobSpec {
        priority: 5,
        ..job(2)
    };
    let high = scheduler.submit(0, high, &mut out).unwrap();
    let high_later = RawJobSpec {
        priority: 5,
        ..job(1)
    };
    let high_later = scheduler.submit(0, high_later, &mut out).unwrap();
    let worker = scheduler.register_worker(0, advertising(&["noop"]));

    // (max, tasks granted, in order)
    let table = [
        (0, vec![]),
        (3, vec![task(high, 0), task(high, 1), task(high_later, 0)]),
        (10, vec![task(low, 0), task(low, 1)]),
        (10, vec![]),
    ];
    for (max, expected) in table {
        let reply = scheduler.pull(0, worker, max);
        assert!(!reply.reregister);
        assert_eq!(tasks_of(&reply.assignments), expected, "pull of {max}");
        for grant in &reply.assignments {
            assert_eq!(grant.attempt_number, 1);
            assert!(!grant.speculative);
            assert_eq!(grant.payload, vec![grant.task.index as u8]);
        }
    }
    assert_eq!(scheduler.stats().attempts_started, 5);
    assert_invariants(&scheduler);
}

#[test]
fn stale_result_after_lease_expiry_is_rejected() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let job_id = scheduler.submit(0, job(1), &mut out).unwrap();
    let worker = scheduler.register_worker(0, advertising(&["noop"]));
    let first = pull_one(&mut scheduler, 0, worker);

    // No heartbeat: the lease granted at 0 expires at lease_ms, the worker is still alive.
    scheduler.tick(999, &mut out);
    assert_eq!(scheduler.attempts().count(), 1);
    scheduler.tick(1000, &mut out);
    assert_eq!(scheduler.attempts().count(), 0);
    assert_eq!(scheduler.stats().lease_expiries, 1);
    let retry_at = not_before(&scheduler, task(job_id, 0));

    let late = scheduler.report(retry_at, worker, vec![ok(first.attempt)], &mut out);
    assert_eq!((late.reregister, late.rejected), (false, 1));
    assert_eq!(scheduler.stats().results_rejected, 1);
    assert_eq!(scheduler.job(job_id).unwrap().counters.results_rejected, 1);
    assert!(commits(&out).is_empty());
    let reply = scheduler.heartbeat(retry_at, worker, &[first.attempt], false, 0);
    assert_eq!(reply.cancel, vec![first.attempt]);

    let second = pull_one(&mut scheduler, retry_at, worker);
    assert_eq!((second.task, second.attempt_number), (task(job_id, 0), 2));
    assert!(second.attempt > first.attempt);
    let reply = scheduler.report(retry_at, worker, vec![ok(second.attempt)], &mut out);
    assert_eq!(reply.rejected, 0);
    assert_eq!(commits(&out), vec![(task(job_id, 0), second.attempt)]);
    assert_eq!(finished(&out), vec![(job_id, JobState::Succeeded)]);
    assert_invariants(&scheduler);
}

#[test]
fn heartbeat_renews_leases_and_tells_zombies_to_stop() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    scheduler.submit(0, job(2), &mut out).unwrap();
    let worker_a = scheduler.register_worker(0, advertising(&["noop"]));
    let worker_b = scheduler.register_worker(0, advertising(&["noop"]));
    let ours = pull_one(&mut scheduler, 0, worker_a).attempt;
    let theirs = pull_one(&mut scheduler, 0, worker_b).attempt;
    let unknown = AttemptId(999);

    // A lists its own attempt, B's attempt and one nobody granted: only its own is renewed.
    let reply = scheduler.heartbeat(900, worker_a, &[ours, theirs, unknown], false, 1);
    assert!(!reply.reregister);
    assert_eq!(reply.cancel, vec![unknown, theirs]);
    let leases: Vec<(AttemptId, Millis)> = scheduler
        .attempts()
        .map(|(id, attempt)| (*id, attempt.lease_expires_at))
        .collect();
    assert_eq!(leases, vec![(ours, 1900), (theirs, 1000)]);

    scheduler.tick(1000, &mut out); // B's lease expires, A's does not
    let live: Vec<AttemptId> = scheduler.attempts().map(|(id, _)| *id).collect();
    assert_eq!(live, vec![ours]);
    scheduler.heartbeat(1500, worker_a, &[], false, 1); // keeps A alive, renews nothing
    scheduler.tick(1900, &mut out);
    assert_eq!(scheduler.attempts().count(), 0);
    let reply = scheduler.heartbeat(1901, worker_a, &[ours], false, 1);
    assert_eq!(reply.cancel, vec![ours]);
    assert_invariants(&scheduler);
}

#[test]
fn dead_worker_tasks_are_requeued_after_worker_timeout() {
    // Leases outlive the worker timeout so that only the lost worker can free the tasks.
    let mut scheduler = new_scheduler(SchedulerConfig {
        lease_ms: 10_000,
        ..config()
    });
    let mut out = Vec::new();
    let job_id = scheduler.submit(0, job(2), &mut out).unwrap();
    let silent = scheduler.register_worker(0, advertising(&["noop"]));
    let alive = scheduler.register_worker(0, advertising(&["noop"]));
    let lost: Vec<AttemptId> = scheduler
        .pull(0, silent, 2)
        .assignments
        .iter()
        .map(|grant| grant.attempt)
        .collect();

    scheduler.heartbeat(1500, alive, &[], false, 0);
    scheduler.tick(1999, &mut out);
    assert_eq!(scheduler.attempts().count(), 2);
    scheduler.tick(2000, &mut out);
    assert_eq!(scheduler.attempts().count(), 0);
    assert_eq!(scheduler.workers().count(), 1);
    assert_eq!(scheduler.stats().workers_lost, 1);
    assert_eq!(scheduler.stats().lease_expiries, 2);
    let failures: Vec<(TaskId, AttemptId, String)> = persisted(&out)
        .into_iter()
        .filter_map(|event| match event {
            JournalEvent::AttemptFailed {
                task: failed,
                error,
            } => Some((failed, error.attempt, error.failure.message)),
            _ => None,
        })
        .collect();
    let reason = "worker lost: no heartbeat".to_string();
    assert_eq!(
        failures,
        vec![
            (task(job_id, 0), lost[0], reason.clone()),
            (task(job_id, 1), lost[1], reason),
        ]
    );

    let reply = scheduler.heartbeat(2001, silent, &lost, false, 2);
    assert_eq!((reply.reregister, reply.cancel), (true, lost));
    let due = not_before(&scheduler, task(job_id, 0)).max(not_before(&scheduler, task(job_id, 1)));
    let grants = scheduler.pull(due, alive, 10).assignments;
    assert_eq!(tasks_of(&grants).len(), 2);
    assert!(grants.iter().all(|grant| grant.attempt_number == 2));
    assert_invariants(&scheduler);
}

#[test]
fn failures_retry_with_backoff_then_dead_letter_after_max_attempts() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let spec = RawJobSpec {
        max_attempts: 3,
        backoff_base_ms: 100,
        backoff_max_ms: 1000,
        ..job(1)
    };
    let job_id = scheduler.submit(0, spec, &mut out).unwrap();
    let the_task = task(job_id, 0);
    let worker = scheduler.register_worker(0, advertising(&["noop"]));

    let mut now = 0;
    let mut attempts = Vec::new();
    for attempt_number in 1..=3 {
        let grant = pull_one(&mut scheduler, now, worker);
        assert_eq!(grant.attempt_number, attempt_number);
        attempts.push(grant.attempt);
        scheduler.report(now, worker, vec![failed(grant.attempt, true)], &mut out);
        if attempt_number == 3 {
            break;
        }
        // Full jitter under a ceiling that doubles: 100 ms, then 200 ms.
        let retry_at = not_before(&scheduler, the_task);
        assert!(retry_at <= now + (100 << (attempt_number - 1)));
        assert_eq!(job_state(&scheduler, job_id), JobState::Running);
        now = retry_at;
    }

    assert_eq!(state_of(&scheduler, the_task), TaskState::DeadLettered);
    let history = scheduler.job(job_id).unwrap().tasks()[0].errors();
    let kept: Vec<(AttemptId, Option<i32>, &str)> = history
        .iter()
        .map(|error| {
            let failure = &error.failure;
            (
                error.attempt,
                failure.exit_code,
                failure.stderr_tail.as_str(),
            )
        })
        .collect();
    let expected: Vec<_> = attempts.iter().map(|id| (*id, Some(2), "boom")).collect();
    assert_eq!(kept, expected);
    let dead_lettered = JournalEvent::TaskDeadLettered {
        task: the_task,
        at: now,
    };
    assert_eq!(persisted(&out).last(), Some(&dead_lettered));
    let failed_every_attempt = JobState::Failed {
        reason: "1 tasks failed every attempt (see the dead-letter queue)".into(),
    };
    assert_eq!(finished(&out), vec![(job_id, failed_every_attempt.clone())]);
    assert_eq!(scheduler.dead_letters(Some(job_id)), vec![the_task]);
    assert_eq!(scheduler.stats().retries_scheduled, 2);
    assert_eq!(scheduler.stats().dead_lettered, 1);

    // Requeued: the job runs again and the task starts over from its first attempt.
    assert_eq!(
        scheduler.requeue_dead_letters(now, &[the_task], &mut out),
        1
    );
    assert_eq!(job_state(&scheduler, job_id), JobState::Running);
    assert_eq!(scheduler.dead_letter_count(), 0);
    let grant = pull_one(&mut scheduler, now, worker);
    assert_eq!(grant.attempt_number, 1);
    out.clear();
    scheduler.report(now, worker, vec![failed(grant.attempt, false)], &mut out);
    assert_eq!(finished(&out), vec![(job_id, failed_every_attempt.clone())]);

    // Purged: gone from the queue for good, and the job stays failed.
    out.clear();
    assert_eq!(scheduler.purge_dead_letters(now, &[the_task], &mut out), 1);
    let purged = JournalEvent::DeadLettersPurged {
        tasks: vec![the_task],
        at: now,
    };
    assert_eq!(persisted(&out), vec![purged]);
    assert_eq!(state_of(&scheduler, the_task), TaskState::Purged);
    assert_eq!(scheduler.dead_letter_count(), 0);
    assert_eq!(
        scheduler.requeue_dead_letters(now, &[the_task], &mut out),
        0
    );
    assert_eq!(job_state(&scheduler, job_id), failed_every_attempt);
    assert_invariants(&scheduler);
}

#[test]
fn non_retryable_failure_goes_straight_to_the_dead_letter_queue() {
    // (retryable, dead-lettered by the first failure, retries scheduled)
    let table = [(false, true, 0), (true, false, 1)];
    for (retryable, dead_lettered, retries) in table {
        let mut scheduler = new_scheduler(config());
        let mut out = Vec::new();
        let job_id = scheduler.submit(0, job(1), &mut out).unwrap(); // 4 attempts allowed
        let worker = scheduler.register_worker(0, advertising(&["noop"]));
        let grant = pull_one(&mut scheduler, 0, worker);
        scheduler.report(10, worker, vec![failed(grant.attempt, retryable)], &mut out);

        let state = state_of(&scheduler, task(job_id, 0));
        assert_eq!(state == TaskState::DeadLettered, dead_lettered, "{state:?}");
        assert_eq!(scheduler.stats().retries_scheduled, retries);
        let is_dead_letter =
            |event: &JournalEvent| matches!(event, JournalEvent::TaskDeadLettered { .. });
        assert_eq!(persisted(&out).iter().any(is_dead_letter), dead_lettered);
        assert_invariants(&scheduler);
    }
}

#[test]
fn retries_wait_for_their_backoff() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let spec = RawJobSpec {
        backoff_base_ms: 5000,
        backoff_max_ms: 5000,
        ..job(1)
    };
    let job_id = scheduler.submit(0, spec, &mut out).unwrap();
    let worker = scheduler.register_worker(0, advertising(&["noop"]));
    let grant = pull_one(&mut scheduler, 0, worker);
    scheduler.report(0, worker, vec![failed(grant.attempt, true)], &mut out);
    let retry_at = not_before(&scheduler, task(job_id, 0));
    assert!(retry_at > 0, "the seeded jitter must delay this retry");

    assert!(!scheduler.has_work_for(retry_at - 1, worker));
    assert_eq!(scheduler.pull(retry_at - 1, worker, 5).assignments, vec![]);
    assert!(scheduler.has_work_for(retry_at, worker));
    let retry = pull_one(&mut scheduler, retry_at, worker);
    assert_eq!((retry.task, retry.attempt_number), (task(job_id, 0), 2));
    assert_invariants(&scheduler);
}

#[test]
fn retries_are_served_after_first_attempts_but_never_starved() {
    let mut scheduler = new_scheduler(SchedulerConfig {
        retry_every: 3,
        ..config()
    });
    let mut out = Vec::new();
    let spec = RawJobSpec {
        backoff_base_ms: 1000,
        backoff_max_ms: 1000,
        ..job(30)
    };
    scheduler.submit(0, spec, &mut out).unwrap();
    let worker = scheduler.register_worker(0, advertising(&["noop"]));
    let failing = scheduler.pull(0, worker, 4).assignments;
    let failures = failing.iter().map(|grant| failed(grant.attempt, true));
    scheduler.report(0, worker, failures.collect(), &mut out);
    for grant in &failing {
        assert!(not_before(&scheduler, grant.task) > 1, "seeded jitter");
    }

    // No retry is due yet: first attempts keep going although retry_every has passed.
    let early = scheduler.pull(1, worker, 4).assignments;
    assert!(early.iter().all(|grant| grant.attempt_number == 1));
    assert_eq!(early.len(), 4);

    // Every retry is due: one retry per retry_every first attempts, until none is left.
    let grants = scheduler.pull(1000, worker, 20).assignments;
    let pattern: String = grants
        .iter()
        .map(|grant| if grant.attempt_number == 2 { 'R' } else { 'F' })
        .collect();
    assert_eq!(pattern, "RFFFRFFFRFFFRFFFFFFF");
    let mut retried: Vec<TaskId> = tasks_of(&grants[..13])
        .into_iter()
        .zip(pattern.chars())
        .filter_map(|(task_id, kind)| (kind == 'R').then_some(task_id))
        .collect();
    retried.sort();
    assert_eq!(retried, tasks_of(&failing));
    for window in pattern.as_bytes()[..13].windows(4) {
        assert!(window.contains(&b'R'), "a retry starved in {pattern}");
    }
    assert_invariants(&scheduler);
}

/// Runs five 100 ms tasks of a six-task job on worker A and leaves the sixth running;
/// returns the scheduler, the job, A, an idle worker B and the straggler's attempt.
fn straggler_setup(multiplier: f64) -> (Scheduler, JobId, WorkerId, WorkerId, AttemptId) {
    let mut scheduler = new_scheduler(SchedulerConfig {
        speculation_min_samples: 5,
        speculation_min_runtime_ms: 100,
        ..config()
    });
    let mut out = Vec::new();
    let spec = RawJobSpec {
        speculation_multiplier: multiplier,
        ..job(6)
    };
    let job_id = scheduler.submit(0, spec, &mut out).unwrap();
    let worker_a = scheduler.register_worker(0, advertising(&["noop"]));
    let worker_b = scheduler.register_worker(0, advertising(&["noop"]));
    let grants = scheduler.pull(0, worker_a, 6).assignments;
    let fast = grants[..5].iter().map(|grant| ok_after(grant.attempt, 100));
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

    let reply = scheduler.report(350, worker_b, vec![ok(copy.attempt)], &mut out);
    assert_eq!(reply.rejected, 0);
    assert_eq!(commits(&out), vec![(task(job_id, 5), copy.attempt)]);
    assert_eq!(finished(&out), vec![(job_id, JobState::Succeeded)]);

    let reply = scheduler.heartbeat(360, worker_a, &[original], false, 1);
    assert_eq!(reply.cancel, vec![original]);
    let reply = scheduler.report(370, worker_a, vec![ok(original)], &mut out);
    assert_eq!(reply.rejected, 1);
    assert_eq!(scheduler.job(job_id).unwrap().counters.results_rejected, 1);
    assert_eq!(commits(&out).len(), 1);
    assert_invariants(&scheduler);
}

#[test]
fn no_speculative_copy_when_speculation_is_off() {
    let (mut scheduler, job_id, _, worker_b, _) = straggler_setup(-1.0);
    for now in [301, 5000] {
        assert_eq!(scheduler.pull(now, worker_b, 1).assignments, vec![]);
    }
    assert_eq!(
        scheduler.job(job_id).unwrap().counters.speculative_attempts,
        0
    );
    assert_invariants(&scheduler);
}

#[test]
fn concurrency_limit_caps_live_attempts() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let spec = RawJobSpec {
        max_concurrency: 2,
        ..job(5)
    };
    scheduler.submit(0, spec, &mut out).unwrap();
    let worker_a = scheduler.register_worker(0, advertising(&["noop"]));
    let worker_b = scheduler.register_worker(0, advertising(&["noop"]));

    let first = scheduler.pull(0, worker_a, 5).assignments;
    assert_eq!(first.len(), 2);
    assert!(!scheduler.has_work_for(0, worker_b));
    assert_eq!(scheduler.pull(0, worker_b, 5).assignments, vec![]);
    scheduler.report(10, worker_a, vec![ok(first[0].attempt)], &mut out);
    assert_eq!(scheduler.pull(10, worker_b, 5).assignments.len(), 1);
    assert_eq!(scheduler.attempts().count(), 2);
    assert_invariants(&scheduler);
}

#[test]
fn deadline_skips_unstarted_tasks_and_fails_the_job_with_that_reason() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let with_deadline = |tasks| RawJobSpec {
        deadline: 1000,
        ..job(tasks)
    };
    let started = scheduler.submit(0, with_deadline(3), &mut out).unwrap();
    let unstarted = scheduler.submit(0, with_deadline(2), &mut out).unwrap();
    let worker = scheduler.register_worker(0, advertising(&["noop"]));
    let running = pull_one(&mut scheduler, 0, worker);
    scheduler.heartbeat(900, worker, &[running.attempt], false, 1);

    out.clear();
    scheduler.tick(1000, &mut out);
    let skipped: Vec<TaskState> = (0..3)
        .map(|index| state_of(&scheduler, task(started, index)))
        .collect();
    let still_running = TaskState::Running {
        attempts: vec![running.attempt],
    };
    assert_eq!(
        skipped,
        vec![still_running, TaskState::Skipped, TaskState::Skipped]
    );
    let nothing_started = JobState::Failed {
        reason: "deadline passed before 2 tasks started".into(),
    };
    assert_eq!(finished(&out), vec![(unstarted, nothing_started)]);
    assert_eq!(scheduler.pull(1000, worker, 10).assignments, vec![]);

    out.clear();
    scheduler.report(1100, worker, vec![ok(running.attempt)], &mut out);
    assert_eq!(commits(&out), vec![(task(started, 0), running.attempt)]);
    let [(job_id, state)] = finished(&out).try_into().unwrap();
    assert_eq!(job_id, started);
    assert!(matches!(&state, JobState::Failed { reason } if reason.contains("deadline")));
    assert_invariants(&scheduler);
}

#[test]
fn cancel_skips_queued_tasks_and_revokes_running_ones() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let job_id = scheduler.submit(0, job(3), &mut out).unwrap();
    let worker = scheduler.register_worker(0, advertising(&["noop"]));
    let running = pull_one(&mut scheduler, 0, worker);

    out.clear();
    scheduler
        .cancel_job(10, job_id, "user asked", &mut out)
        .unwrap();
    let cancelled = JobState::Cancelled {
        reason: "user asked".into(),
    };
    let expected = vec![
        Output::Persist(JournalEvent::JobCancelled {
            job: job_id,
            reason: "user asked".into(),
            at: 10,
        }),
        Output::JobFinished {
            job: job_id,
            state: cancelled,
        },
    ];
    assert_eq!(out, expected);
    assert_eq!(scheduler.job(job_id).unwrap().counts().skipped, 3);
    assert_eq!(scheduler.pull(20, worker, 10).assignments, vec![]);

    let reply = scheduler.heartbeat(20, worker, &[running.attempt], false, 1);
    assert_eq!(reply.cancel, vec![running.attempt]);
    let reply = scheduler.report(30, worker, vec![ok(running.attempt)], &mut out);
    assert_eq!(reply.rejected, 1);
    assert_eq!(scheduler.job(job_id).unwrap().counters.results_rejected, 1);
    assert!(commits(&out).is_empty());

    // (job, refusal) for a second cancel
    let table = [
        (
            job_id,
            JobError::AlreadyFinished {
                job: job_id,
                state: "cancelled",
            },
        ),
        (JobId(99), JobError::NotFound(JobId(99))),
    ];
    for (target, refusal) in table {
        assert_eq!(
            scheduler.cancel_job(40, target, "again", &mut out),
            Err(refusal)
        );
    }
    assert_invariants(&scheduler);
}

#[test]
fn drained_worker_hands_back_unstarted_attempts_to_the_front_of_the_queue_without_counting_them() {
    // Regression: handed-back tasks were pushed to the front one by one in the order the
    // worker listed them, which reversed them; they must keep the order they were granted.
    // (returned attempts, by grant index, in the order the worker lists them)
    let table: [&[usize]; 2] = [&[1, 2], &[2, 1]];
    for returned in table {
        let mut scheduler = new_scheduler(config());
        let mut out = Vec::new();
        let job_id = scheduler.submit(0, job(4), &mut out).unwrap();
        let draining = scheduler.register_worker(0, advertising(&["noop"]));
        let other = scheduler.register_worker(0, advertising(&["noop"]));
        let grants = scheduler.pull(0, draining, 3).assignments;
        let held: Vec<AttemptId> = grants.iter().map(|grant| grant.attempt).collect();

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
        assert_invariants(&scheduler);
    }
}

#[test]
fn recovery_from_the_journal_keeps_commits_and_rejects_old_attempts() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let job_id = scheduler.submit(0, job(3), &mut out).unwrap();
    let worker = scheduler.register_worker(0, advertising(&["noop"]));
    let old = scheduler.pull(0, worker, 3).assignments;
    let old_ids: Vec<AttemptId> = old.iter().map(|grant| grant.attempt).collect();
    let results = vec![ok(old_ids[0]), failed(old_ids[1], true)];
    scheduler.report(10, worker, results, &mut out);
    // Task 2 is still running when the coordinator stops.

    let recovered_config = SchedulerConfig {
        epoch: 2,
        ..config()
    };
    let mut recovered = Scheduler::recover(recovered_config, KINDS, persisted(&out));
    assert_invariants(&recovered);
    assert_eq!(job_state(&recovered, job_id), JobState::Running);
    assert_eq!(state_of(&recovered, task(job_id, 0)), TaskState::Succeeded);
    let worker = recovered.register_worker(100, advertising(&["noop"]));
    let mut out = Vec::new();
    let reply = recovered.report(100, worker, vec![ok(old_ids[2])], &mut out);
    assert_eq!((reply.reregister, reply.rejected), (false, 1));
    assert!(commits(&out).is_empty());

    // (task, attempt number): the failed attempt still counts, the lost one does not.
    let grants = recovered.pull(100, worker, 10).assignments;
    let granted: Vec<(TaskId, u32)> = grants
        .iter()
        .map(|grant| (grant.task, grant.attempt_number))
        .collect();
    assert_eq!(granted, vec![(task(job_id, 1), 2), (task(job_id, 2), 1)]);
    let newest_old = old_ids.iter().max().unwrap();
    assert!(grants.iter().all(|grant| grant.attempt > *newest_old));

    let results = grants.iter().map(|grant| ok(grant.attempt)).collect();
    recovered.report(110, worker, results, &mut out);
    assert_eq!(commits(&out).len(), 2);
    assert_eq!(finished(&out), vec![(job_id, JobState::Succeeded)]);
    assert_invariants(&recovered);
}

#[test]
fn worker_only_gets_kinds_it_advertises() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let spec = RawJobSpec {
        backoff_base_ms: 1,
        backoff_max_ms: 1,
        ..job_of_kinds(&["command", "noop", "command"])
    };
    let job_id = scheduler.submit(0, spec, &mut out).unwrap();
    let noop_only = scheduler.register_worker(0, advertising(&["noop"]));
    let command_only = scheduler.register_worker(0, advertising(&["command"]));

    // (worker, time, tasks granted)
    let table = [
        (noop_only, 0, vec![task(job_id, 1)]),
        (noop_only, 0, vec![]),
        (command_only, 0, vec![task(job_id, 0), task(job_id, 2)]),
    ];
    for (worker, now, expected) in table {
        let grants = scheduler.pull(now, worker, 10).assignments;
        assert_eq!(tasks_of(&grants), expected);
        let kinds = &scheduler
            .workers()
            .find(|(id, _)| **id == worker)
            .unwrap()
            .1
            .info
            .kinds;
        assert!(grants.iter().all(|grant| kinds.contains(&grant.kind)));
    }

    // A due retry of a command task is not handed to the noop worker either.
    let held: Vec<AttemptId> = scheduler
        .attempts()
        .filter(|(_, attempt)| attempt.worker == command_only)
        .map(|(id, _)| *id)
        .collect();
    scheduler.report(10, command_only, vec![failed(held[0], true)], &mut out);
    assert_eq!(scheduler.pull(100, noop_only, 10).assignments, vec![]);
    let retry = pull_one(&mut scheduler, 100, command_only);
    assert_eq!((retry.task, retry.attempt_number), (task(job_id, 0), 2));
    assert_invariants(&scheduler);
}

#[test]
fn unknown_worker_is_told_to_reregister() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    scheduler.submit(0, job(1), &mut out).unwrap();
    let declared_dead = scheduler.register_worker(0, advertising(&["noop"]));
    scheduler.tick(2000, &mut out);
    let zombie = AttemptId(7);

    for worker in [WorkerId(42), declared_dead] {
        let pull = scheduler.pull(2001, worker, 5);
        assert_eq!((pull.reregister, pull.assignments), (true, vec![]));
        let heartbeat = scheduler.heartbeat(2001, worker, &[zombie], false, 1);
        assert_eq!(
            (heartbeat.reregister, heartbeat.cancel),
            (true, vec![zombie])
        );
        let report = scheduler.report(2001, worker, vec![ok(zombie)], &mut out);
        assert_eq!((report.reregister, report.rejected), (true, 1));
    }
    assert_eq!(scheduler.attempts().count(), 0);
    assert_invariants(&scheduler);
}

#[test]
fn submit_refuses_an_empty_job_and_unknown_kinds() {
    let mut scheduler = new_scheduler(config());
    let mut out = Vec::new();
    let unknown_kind = SpecError::UnknownKind {
        index: 1,
        kind: "gpu".into(),
        known: "command, noop".into(),
    };
    // (spec, refusal)
    let table = [
        (job(0), SpecError::NoTasks),
        (job_of_kinds(&["noop", "gpu"]), unknown_kind),
    ];
    for (spec, refusal) in table {
        assert_eq!(scheduler.submit(0, spec, &mut out), Err(refusal));
    }
    assert_eq!(out, vec![]);
    assert_eq!(scheduler.jobs().count(), 0);

    // A worker advertising the kind makes it known; refusals used no job id.
    scheduler.register_worker(0, advertising(&["gpu"]));
    let accepted = scheduler.submit(0, job_of_kinds(&["noop", "gpu"]), &mut out);
    assert_eq!(accepted, Ok(JobId(1)));
    assert_eq!(persisted(&out).len(), 1);
    assert_invariants(&scheduler);
}
