//! Table-style unit tests of the scheduler: feed facts at chosen times, assert the exact
//! replies, state and outputs. Every test ends by checking the scheduler's invariants.

mod stages;

use super::{JobError, Output, Scheduler, SchedulerConfig, WorkerInfo};
use crate::ids::{AttemptId, JobId, Millis, TaskId, WorkerId};
use crate::journal::JournalEvent;
use crate::model::{Assignment, JobState, ReportedResult, TaskFailure, TaskOutput, TaskState};
use crate::spec::{RawJobSpec, SpecError, TaskSpec};

const KINDS: &[&str] = &["noop", "command"];

fn config_with(edit: impl FnOnce(&mut SchedulerConfig)) -> SchedulerConfig {
    let mut config = SchedulerConfig {
        lease_ms: 1000,
        worker_timeout_ms: 2000,
        ..Default::default()
    };
    edit(&mut config);
    config
}

fn config() -> SchedulerConfig {
    config_with(|_| {})
}

/// A job of `tasks` noop tasks whose payload is their index.
fn job(tasks: usize) -> RawJobSpec {
    let payloads = (0..tasks).map(|index| vec![index as u8]);
    let tasks = payloads.map(|payload| TaskSpec {
        kind: "noop".into(),
        payload,
        ..Default::default()
    });
    RawJobSpec {
        name: "test".into(),
        tasks: tasks.collect(),
        ..Default::default()
    }
}

fn job_with(tasks: usize, edit: impl FnOnce(&mut RawJobSpec)) -> RawJobSpec {
    let mut spec = job(tasks);
    edit(&mut spec);
    spec
}

fn with_backoff(spec: RawJobSpec, base_ms: Millis, max_ms: Millis) -> RawJobSpec {
    RawJobSpec {
        backoff_base_ms: base_ms,
        backoff_max_ms: max_ms,
        ..spec
    }
}

fn job_of_kinds(kinds: &[&str]) -> RawJobSpec {
    let mut spec = job(kinds.len());
    for (task, kind) in spec.tasks.iter_mut().zip(kinds) {
        task.kind = kind.to_string();
    }
    spec
}

fn advertising(kinds: &[&str]) -> WorkerInfo {
    WorkerInfo {
        name: "worker".into(),
        slots: 8,
        kinds: kinds.iter().map(|kind| kind.to_string()).collect(),
        file_server_url: String::new(),
        ..Default::default()
    }
}

/// A scheduler with `spec` submitted and one noop worker registered, all at t=0.
fn setup(config: SchedulerConfig, spec: RawJobSpec) -> (Scheduler, Vec<Output>, JobId, WorkerId) {
    let mut scheduler = Scheduler::new(config, KINDS);
    let mut out = Vec::new();
    let job_id = scheduler.submit(0, spec, &mut out).unwrap();
    let worker = scheduler.register_worker(0, advertising(&["noop"]));
    (scheduler, out, job_id, worker)
}

fn task(job: JobId, index: u32) -> TaskId {
    TaskId::new(job, index)
}

fn ok(attempt: AttemptId, duration_ms: Millis) -> ReportedResult {
    let outcome = Ok(TaskOutput::default());
    ReportedResult {
        attempt,
        outcome,
        duration_ms,
    }
}

/// A command that exited with code 2 and wrote `boom` on standard error.
fn failed(attempt: AttemptId, retryable: bool) -> ReportedResult {
    let failure = TaskFailure {
        message: "exited with code 2".into(),
        exit_code: Some(2),
        stderr_tail: "boom".into(),
        retryable,
        ..Default::default()
    };
    ReportedResult {
        attempt,
        outcome: Err(failure),
        duration_ms: 10,
    }
}

fn persisted(out: &[Output]) -> Vec<JournalEvent> {
    let events = out.iter().filter_map(|output| match output {
        Output::Persist(event) => Some(event.clone()),
        Output::JobFinished { .. } => None,
    });
    events.collect()
}

fn finished(out: &[Output]) -> Vec<(JobId, JobState)> {
    let jobs = out.iter().filter_map(|output| match output {
        Output::JobFinished { job, state } => Some((*job, state.clone())),
        Output::Persist(_) => None,
    });
    jobs.collect()
}

/// The tasks committed in `out`, with the attempt that won each.
fn commits(out: &[Output]) -> Vec<(TaskId, AttemptId)> {
    let commits = persisted(out).into_iter().filter_map(|event| match event {
        JournalEvent::TaskSucceeded { result, .. } => Some((result.task, result.attempt)),
        _ => None,
    });
    commits.collect()
}

fn tasks_of(assignments: &[Assignment]) -> Vec<TaskId> {
    assignments.iter().map(|grant| grant.task).collect()
}

fn attempts_of(assignments: &[Assignment]) -> Vec<AttemptId> {
    assignments.iter().map(|grant| grant.attempt).collect()
}

fn pull_one(scheduler: &mut Scheduler, now: Millis, worker: WorkerId) -> Assignment {
    let mut assignments = scheduler.pull(now, worker, 1).assignments;
    assert_eq!(assignments.len(), 1, "expected one grant at t={now}");
    assignments.remove(0)
}

fn state_of(scheduler: &Scheduler, task_id: TaskId) -> TaskState {
    let job = scheduler.job(task_id.job).unwrap();
    job.tasks()[task_id.index as usize].state().clone()
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
fn failures_retry_with_backoff_then_dead_letter_after_max_attempts() {
    let spec = with_backoff(job_with(1, |spec| spec.max_attempts = 3), 100, 1000);
    let (mut scheduler, mut out, job_id, worker) = setup(config(), spec);
    let the_task = task(job_id, 0);

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
    assert_eq!(history.len(), 3);
    for (error, attempt) in history.iter().zip(&attempts) {
        let (failure, tail) = (&error.failure, error.failure.stderr_tail.as_str());
        let kept = (error.attempt, failure.exit_code, tail);
        assert_eq!(kept, (*attempt, Some(2), "boom"));
    }
    let dead_lettered = JournalEvent::TaskDeadLettered {
        task: the_task,
        at: now,
    };
    assert_eq!(persisted(&out).last(), Some(&dead_lettered));
    let failed_every_attempt = JobState::Failed {
        reason: "1 task failed every attempt (see the dead-letter queue)".into(),
    };
    assert_eq!(finished(&out), vec![(job_id, failed_every_attempt.clone())]);
    assert_eq!(scheduler.dead_letters(Some(job_id)), vec![the_task]);
    assert_eq!(scheduler.stats().retries_scheduled, 2);
    assert_eq!(scheduler.stats().dead_lettered, 1);

    // Requeued: the job runs again and the task starts over from its first attempt.
    let requeued = scheduler.requeue_dead_letters(now, &[the_task], &mut out);
    assert_eq!(requeued, 1);
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
    let requeued = scheduler.requeue_dead_letters(now, &[the_task], &mut out);
    assert_eq!(requeued, 0);
    assert_eq!(job_state(&scheduler, job_id), failed_every_attempt);
    scheduler.check_invariants().unwrap();
}

#[test]
fn non_retryable_failure_goes_straight_to_the_dead_letter_queue() {
    // (retryable, dead-lettered by the first of 4 allowed attempts, retries scheduled)
    let table = [(false, true, 0), (true, false, 1)];
    for (retryable, dead_lettered, retries) in table {
        let (mut scheduler, mut out, job_id, worker) = setup(config(), job(1));
        let grant = pull_one(&mut scheduler, 0, worker);
        scheduler.report(10, worker, vec![failed(grant.attempt, retryable)], &mut out);

        let state = state_of(&scheduler, task(job_id, 0));
        assert_eq!(state == TaskState::DeadLettered, dead_lettered, "{state:?}");
        assert_eq!(scheduler.stats().retries_scheduled, retries);
        let is_dead_letter =
            |event: &JournalEvent| matches!(event, JournalEvent::TaskDeadLettered { .. });
        assert_eq!(persisted(&out).iter().any(is_dead_letter), dead_lettered);
        scheduler.check_invariants().unwrap();
    }
}

#[test]
fn retries_wait_for_their_backoff() {
    let (mut scheduler, mut out, job_id, worker) =
        setup(config(), with_backoff(job(1), 5000, 5000));
    let grant = pull_one(&mut scheduler, 0, worker);
    scheduler.report(0, worker, vec![failed(grant.attempt, true)], &mut out);
    let retry_at = not_before(&scheduler, task(job_id, 0));
    assert!(retry_at > 0, "the seeded jitter must delay this retry");

    assert!(!scheduler.has_work_for(retry_at - 1, worker));
    assert_eq!(scheduler.pull(retry_at - 1, worker, 5).assignments, vec![]);
    assert!(scheduler.has_work_for(retry_at, worker));
    let retry = pull_one(&mut scheduler, retry_at, worker);
    assert_eq!((retry.task, retry.attempt_number), (task(job_id, 0), 2));
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

#[test]
fn deadline_skips_unstarted_tasks_and_fails_the_job_with_that_reason() {
    let with_deadline = |tasks| job_with(tasks, |spec| spec.deadline = 1000);
    let (mut scheduler, mut out, started, worker) = setup(config(), with_deadline(3));
    let unstarted = scheduler.submit(0, with_deadline(2), &mut out).unwrap();
    let running = pull_one(&mut scheduler, 0, worker);
    scheduler.heartbeat(900, worker, &[running.attempt], false, 1);

    out.clear();
    scheduler.tick(1000, &mut out);
    let states: Vec<TaskState> = (0..3)
        .map(|index| state_of(&scheduler, task(started, index)))
        .collect();
    let still_running = TaskState::Running {
        attempts: vec![running.attempt],
    };
    let skipped = TaskState::Skipped;
    assert_eq!(states, vec![still_running, skipped.clone(), skipped]);
    let nothing_started = JobState::Failed {
        reason: "deadline passed before 2 tasks started".into(),
    };
    assert_eq!(finished(&out), vec![(unstarted, nothing_started)]);
    assert_eq!(scheduler.pull(1000, worker, 10).assignments, vec![]);

    out.clear();
    scheduler.report(1100, worker, vec![ok(running.attempt, 1100)], &mut out);
    assert_eq!(commits(&out), vec![(task(started, 0), running.attempt)]);
    let [(job_id, state)] = finished(&out).try_into().unwrap();
    assert_eq!(job_id, started);
    assert!(matches!(&state, JobState::Failed { reason } if reason.contains("deadline")));
    scheduler.check_invariants().unwrap();
}

#[test]
fn cancel_skips_queued_tasks_and_revokes_running_ones() {
    let (mut scheduler, mut out, job_id, worker) = setup(config(), job(3));
    let running = pull_one(&mut scheduler, 0, worker);

    out.clear();
    let reason = "user asked".to_string();
    scheduler.cancel_job(10, job_id, &reason, &mut out).unwrap();
    let cancelled = JournalEvent::JobCancelled {
        job: job_id,
        reason: reason.clone(),
        at: 10,
    };
    let state = JobState::Cancelled { reason };
    let finished = Output::JobFinished { job: job_id, state };
    assert_eq!(out, vec![Output::Persist(cancelled), finished]);
    assert_eq!(scheduler.job(job_id).unwrap().counts().skipped, 3);
    assert_eq!(scheduler.pull(20, worker, 10).assignments, vec![]);

    // Delivered even when the worker does not list the attempt it holds.
    let reply = scheduler.heartbeat(20, worker, &[], false, 1);
    assert_eq!(reply.cancel, vec![running.attempt]);
    let reply = scheduler.report(30, worker, vec![ok(running.attempt, 30)], &mut out);
    assert_eq!(reply.rejected, 1);
    assert_eq!(scheduler.job(job_id).unwrap().counters.results_rejected, 1);
    assert_eq!(commits(&out), vec![]);

    let already = JobError::AlreadyFinished {
        job: job_id,
        state: "cancelled",
    };
    // (job, refusal) of a second cancel
    for (target, refusal) in [
        (job_id, already),
        (JobId(99), JobError::NotFound(JobId(99))),
    ] {
        let again = scheduler.cancel_job(40, target, "again", &mut out);
        assert_eq!(again, Err(refusal));
    }
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
fn recovery_from_the_journal_keeps_commits_and_rejects_old_attempts() {
    let (mut scheduler, mut out, job_id, worker) = setup(config(), job(3));
    let old = attempts_of(&scheduler.pull(0, worker, 3).assignments);
    let results = vec![ok(old[0], 10), failed(old[1], true)];
    scheduler.report(10, worker, results, &mut out);
    // Task 2 is still running when the coordinator stops.

    let config = config_with(|config| config.epoch = 2);
    let mut recovered = Scheduler::recover(config, KINDS, persisted(&out));
    recovered.check_invariants().unwrap();
    assert_eq!(job_state(&recovered, job_id), JobState::Running);
    assert_eq!(state_of(&recovered, task(job_id, 0)), TaskState::Succeeded);
    let worker = recovered.register_worker(100, advertising(&["noop"]));
    let mut out = Vec::new();
    let reply = recovered.report(100, worker, vec![ok(old[2], 100)], &mut out);
    assert_eq!((reply.reregister, reply.rejected), (false, 1));
    assert_eq!(commits(&out), vec![]);

    // (task, attempt number): the failed attempt still counts, the lost one does not.
    let grants = recovered.pull(100, worker, 10).assignments;
    let granted: Vec<(TaskId, u32)> = grants.iter().map(|g| (g.task, g.attempt_number)).collect();
    assert_eq!(granted, vec![(task(job_id, 1), 2), (task(job_id, 2), 1)]);
    let newest_old = old.iter().max().unwrap();
    assert!(grants.iter().all(|grant| grant.attempt > *newest_old));

    let results = grants.iter().map(|grant| ok(grant.attempt, 10)).collect();
    recovered.report(110, worker, results, &mut out);
    assert_eq!(commits(&out).len(), 2);
    assert_eq!(finished(&out), vec![(job_id, JobState::Succeeded)]);
    recovered.check_invariants().unwrap();
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

#[test]
fn submit_refuses_an_empty_job_and_unknown_kinds() {
    let mut scheduler = Scheduler::new(config(), KINDS);
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
    scheduler.check_invariants().unwrap();
}

/// Regression: a snapshot carried one `TaskProgress` per committed task, so a large job's
/// snapshot was as long as its journal and the coordinator compacted again at every tick
/// (a 1M-task benchmark went from 5 s to 210 s).
#[test]
fn a_snapshot_stays_proportional_to_failures_not_to_work_done() {
    let (mut scheduler, mut out, job_id, worker) = setup(config(), job(200));
    let mut now = 0;
    loop {
        let assignments = scheduler.pull(now, worker, 50).assignments;
        if assignments.is_empty() {
            break;
        }
        let results = attempts_of(&assignments)
            .into_iter()
            .map(|a| ok(a, 1))
            .collect();
        scheduler.report(now, worker, results, &mut out);
        now += 1;
    }
    assert_eq!(job_state(&scheduler, job_id), JobState::Succeeded);
    let snapshot = scheduler.snapshot(now);
    // JobIdsReserved, JobSubmitted, TasksCommitted.
    assert_eq!(
        snapshot.len(),
        3,
        "{:?}",
        &snapshot[..snapshot.len().min(5)]
    );
    let recovered = Scheduler::recover(config(), KINDS, snapshot);
    assert_eq!(job_state(&recovered, job_id), JobState::Succeeded);
    recovered.check_invariants().unwrap();
}
