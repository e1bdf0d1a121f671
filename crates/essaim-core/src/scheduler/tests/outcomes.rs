//! Failures: retries with backoff, dead letters after the last attempt or a failure that
//! cannot be retried.

use super::*;

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
