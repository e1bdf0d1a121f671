//! Jobs as a whole: submission, deadlines, cancellation, recovery and snapshots.

use super::*;

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

#[test]
fn a_job_with_a_supersede_key_cancels_the_running_jobs_with_that_key_even_after_recovery() {
    let keyed = |key: &str| job_with(2, |spec| spec.supersede_key = key.into());
    let (mut scheduler, mut out, first, _worker) = setup(config(), keyed("report"));
    let other = scheduler.submit(1, keyed("other"), &mut out).unwrap();
    let unkeyed = scheduler.submit(1, job(1), &mut out).unwrap();

    out.clear();
    let second = scheduler.submit(2, keyed(" report "), &mut out).unwrap();
    let reason = format!("superseded by job {} (supersede key `report`)", second.0);
    let cancelled = JournalEvent::JobCancelled {
        job: first,
        reason: reason.clone(),
        at: 2,
    };
    assert_eq!(
        persisted(&out)[0],
        cancelled,
        "journaled before the new job"
    );
    assert_eq!(
        finished(&out),
        vec![(first, JobState::Cancelled { reason })]
    );
    for job_id in [other, unkeyed, second] {
        assert_eq!(job_state(&scheduler, job_id), JobState::Running);
    }

    // The key survives a restart, from the journal and from a snapshot.
    let replayed = Scheduler::recover(config(), KINDS, persisted(&out));
    let key_of = |scheduler: &Scheduler, job_id| {
        scheduler
            .job(job_id)
            .and_then(|job| job.supersede_key.clone())
    };
    assert_eq!(key_of(&replayed, second).as_deref(), Some("report"));
    let mut recovered = Scheduler::recover(config(), KINDS, scheduler.snapshot(3));
    recovered.check_invariants().unwrap();
    let mut out = Vec::new();
    let third = recovered.submit(4, keyed("report"), &mut out).unwrap();
    assert!(third > second);
    assert!(matches!(
        job_state(&recovered, second),
        JobState::Cancelled { .. }
    ));
    assert_eq!(job_state(&recovered, other), JobState::Running);

    let too_long = keyed(&"k".repeat(MAX_SUPERSEDE_KEY_BYTES + 1));
    let refused = recovered.submit(5, too_long, &mut out);
    assert!(matches!(
        refused,
        Err(SpecError::Invalid {
            field: "supersede_key",
            ..
        })
    ));
    recovered.check_invariants().unwrap();
}

#[test]
fn a_job_keeps_its_processing_version_through_the_journal_and_a_snapshot() {
    let versioned = |version: &str| job_with(1, |spec| spec.processing_version = version.into());
    let (mut scheduler, mut out, first, _worker) = setup(config(), versioned(" etl v3 "));
    let unversioned = scheduler.submit(1, job(1), &mut out).unwrap();
    let version_of = |scheduler: &Scheduler, job_id| {
        scheduler
            .job(job_id)
            .and_then(|job| job.processing_version.clone())
    };
    assert_eq!(version_of(&scheduler, first).as_deref(), Some("etl v3"));
    assert_eq!(version_of(&scheduler, unversioned), None);
    assert!(
        persisted(&out).contains(&JournalEvent::JobProcessingVersion {
            job: first,
            version: "etl v3".into(),
        })
    );

    let replayed = Scheduler::recover(config(), KINDS, persisted(&out));
    assert_eq!(version_of(&replayed, first).as_deref(), Some("etl v3"));
    let recovered = Scheduler::recover(config(), KINDS, scheduler.snapshot(3));
    assert_eq!(version_of(&recovered, first).as_deref(), Some("etl v3"));
    assert_eq!(version_of(&recovered, unversioned), None);

    for refused in [
        "v".repeat(MAX_PROCESSING_VERSION_BYTES + 1),
        "two\nlines".into(),
    ] {
        let submitted = scheduler.submit(4, versioned(&refused), &mut out);
        assert!(
            matches!(
                submitted,
                Err(SpecError::Invalid {
                    field: "processing_version",
                    ..
                })
            ),
            "{refused:?}: {submitted:?}"
        );
    }
}

#[test]
fn a_job_keeps_its_owner_and_a_supersede_key_replaces_only_the_owners_jobs() {
    let owned = |owner: &str| {
        job_with(1, |spec| {
            spec.owner = owner.into();
            spec.supersede_key = "nightly".into();
        })
    };
    let (mut scheduler, mut out, alice_first, _worker) = setup(config(), owned("alice"));
    let bob = scheduler.submit(1, owned("bob"), &mut out).unwrap();
    let nobody = scheduler.submit(1, owned(""), &mut out).unwrap();
    let owner_of =
        |scheduler: &Scheduler, job_id| scheduler.job(job_id).and_then(|job| job.owner.clone());
    assert_eq!(owner_of(&scheduler, alice_first).as_deref(), Some("alice"));
    assert_eq!(owner_of(&scheduler, nobody), None);

    // Alice's next job with the key replaces her own job only.
    let alice_second = scheduler.submit(2, owned("alice"), &mut out).unwrap();
    assert!(matches!(
        job_state(&scheduler, alice_first),
        JobState::Cancelled { .. }
    ));
    for job_id in [bob, nobody, alice_second] {
        assert_eq!(job_state(&scheduler, job_id), JobState::Running);
    }

    // The owner survives a restart, from the journal and from a snapshot.
    let replayed = Scheduler::recover(config(), KINDS, persisted(&out));
    assert_eq!(owner_of(&replayed, bob).as_deref(), Some("bob"));
    let mut recovered = Scheduler::recover(config(), KINDS, scheduler.snapshot(3));
    assert_eq!(owner_of(&recovered, alice_second).as_deref(), Some("alice"));
    assert_eq!(owner_of(&recovered, nobody), None);
    // …and so does the rule: an ownerless job's key replaces only ownerless jobs.
    let mut out = Vec::new();
    recovered.submit(4, owned(""), &mut out).unwrap();
    assert!(matches!(
        job_state(&recovered, nobody),
        JobState::Cancelled { .. }
    ));
    assert_eq!(job_state(&recovered, bob), JobState::Running);
    recovered.check_invariants().unwrap();
}
