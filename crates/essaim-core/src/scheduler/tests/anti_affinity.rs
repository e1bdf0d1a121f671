//! Anti-affinity: two tasks of one group of a job never run on one worker at once —
//! first attempts, retries and speculative copies alike; a task with no worker free of
//! its group waits, queued and saying so; groups survive recovery; and the spreading of
//! long-running kinds does not strand a task of a group.

use super::*;

/// A job of `tasks` noop tasks, each in group `groups[index]` ("" for none).
fn grouped(groups: &[&str]) -> RawJobSpec {
    job_with(groups.len(), |spec| {
        spec.anti_affinity_groups = groups.iter().map(|group| group.to_string()).collect();
    })
}

fn waits(scheduler: &Scheduler, job_id: JobId) -> bool {
    scheduler.waits_for_anti_affinity(scheduler.job(job_id).unwrap())
}

#[test]
fn two_tasks_of_a_group_never_go_to_one_worker() {
    let spec = grouped(&["shard-0", "shard-1", "shard-0", "shard-1"]);
    let (mut scheduler, out, job_id, a) = setup(config(), spec);
    let grants = scheduler.pull(0, a, 10).assignments;
    assert_eq!(tasks_of(&grants), vec![task(job_id, 0), task(job_id, 1)]);
    assert!(
        waits(&scheduler, job_id),
        "a second replica has nowhere to go"
    );
    assert!(matches!(
        persisted(&out).last(),
        Some(JournalEvent::JobAntiAffinity { groups, .. }) if groups.len() == 4
    ));

    // Once another worker joins, it takes the rest.
    let b = scheduler.register_worker(10, advertising(&["noop"]));
    let grants = scheduler.pull(10, b, 10).assignments;
    assert_eq!(tasks_of(&grants), vec![task(job_id, 2), task(job_id, 3)]);
    assert!(!waits(&scheduler, job_id));
    scheduler.check_invariants().unwrap();
}

#[test]
fn with_one_worker_the_second_replica_runs_once_the_first_ends() {
    let (mut scheduler, mut out, job_id, a) = setup(config(), grouped(&["g", "g"]));
    let first = pull_one(&mut scheduler, 0, a);
    assert_eq!(scheduler.pull(0, a, 10).assignments, vec![]);
    scheduler.report(10, a, vec![ok(first.attempt, 10)], &mut out);
    let second = pull_one(&mut scheduler, 10, a);
    assert_eq!(second.task, task(job_id, 1));
    scheduler.report(20, a, vec![ok(second.attempt, 10)], &mut out);
    assert_eq!(finished(&out), vec![(job_id, JobState::Succeeded)]);
}

#[test]
fn a_retry_does_not_land_beside_a_task_of_its_group() {
    let spec = with_backoff(grouped(&["g", "g"]), 1, 1);
    let (mut scheduler, mut out, job_id, a) = setup(config(), spec);
    let b = scheduler.register_worker(0, advertising(&["noop"]));
    let on_a = pull_one(&mut scheduler, 0, a);
    let on_b = pull_one(&mut scheduler, 0, b);
    assert_eq!((on_a.task, on_b.task), (task(job_id, 0), task(job_id, 1)));
    scheduler.report(10, b, vec![failed(on_b.attempt, true)], &mut out);
    // Due now, yet not for a, which holds the other task of the group.
    assert_eq!(scheduler.pull(100, a, 10).assignments, vec![]);
    let retry = pull_one(&mut scheduler, 100, b);
    assert_eq!((retry.task, retry.attempt_number), (task(job_id, 1), 2));
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_straggler_is_not_copied_beside_a_task_of_its_group() {
    let config = config_with(|config| config.speculation_min_runtime_ms = 100);
    let mut scheduler = Scheduler::new(config, KINDS);
    let mut out = Vec::new();
    let spec = grouped(&["", "", "", "", "", "g", "g"]);
    let job_id = scheduler.submit(0, spec, &mut out).unwrap();
    let a = scheduler.register_worker(0, advertising(&["noop"]));
    let b = scheduler.register_worker(0, advertising(&["noop"]));
    let on_a = scheduler.pull(0, a, 6).assignments;
    let on_b = pull_one(&mut scheduler, 0, b);
    assert_eq!(on_b.task, task(job_id, 6));
    let fast = on_a[..5].iter().map(|grant| ok(grant.attempt, 100));
    scheduler.report(100, a, fast.collect(), &mut out);

    // Task 5 straggles on a; b holds task 6 of its group: no copy there.
    assert_eq!(scheduler.pull(400, b, 1).assignments, vec![]);
    let c = scheduler.register_worker(400, advertising(&["noop"]));
    let copy = pull_one(&mut scheduler, 401, c);
    assert_eq!((copy.task, copy.speculative), (task(job_id, 5), true));
    scheduler.check_invariants().unwrap();
}

#[test]
fn groups_survive_recovery_from_the_journal_and_a_snapshot() {
    let spec = grouped(&["g", "", "g"]);
    let (scheduler, out, job_id, _) = setup(config(), spec);
    let expected: std::collections::BTreeMap<u32, String> =
        [(0, "g".to_string()), (2, "g".to_string())].into();
    let replayed = Scheduler::recover(config(), KINDS, persisted(&out));
    let snapshotted = Scheduler::recover(config(), KINDS, scheduler.snapshot(1));
    for recovered in [replayed, snapshotted] {
        let mut recovered = recovered;
        assert_eq!(recovered.job(job_id).unwrap().anti_affinity, expected);
        let worker = recovered.register_worker(1, advertising(&["noop"]));
        let grants = recovered.pull(1, worker, 10).assignments;
        assert_eq!(tasks_of(&grants), vec![task(job_id, 0), task(job_id, 1)]);
        recovered.check_invariants().unwrap();
    }
}

#[test]
fn groups_must_name_one_entry_per_task() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let mut out = Vec::new();
    let short = job_with(3, |spec| spec.anti_affinity_groups = vec!["g".into()]);
    let refused = scheduler.submit(0, short, &mut out).unwrap_err();
    assert!(
        refused.to_string().contains("1 groups for 3 tasks"),
        "{refused}"
    );
    let long = grouped(&[&"x".repeat(129)]);
    assert!(scheduler.submit(0, long, &mut out).is_err());
    // All empty: no group at all, no event.
    let none = grouped(&["", ""]);
    scheduler.submit(0, none, &mut out).unwrap();
    let events = persisted(&out);
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, JournalEvent::JobAntiAffinity { .. }))
    );
}

/// A worker that runs `stream` tasks, which run until stopped.
fn stream_worker() -> WorkerInfo {
    WorkerInfo {
        long_running_kinds: ["stream".to_string()].into(),
        slots: 1,
        ..advertising(&["stream", "noop"])
    }
}

#[test]
fn the_spreading_does_not_strand_a_task_of_a_group() {
    // Two ungrouped stream tasks, then a group of two: the first worker to pull fills
    // its share (2 of 4) with the ungrouped ones; the second takes one of the group and
    // may not take the other.
    let mut scheduler = Scheduler::new(config(), KINDS);
    let a = scheduler.register_worker(0, stream_worker());
    let b = scheduler.register_worker(0, stream_worker());
    let mut out = Vec::new();
    let spec = job_with(4, |spec| {
        for task in &mut spec.tasks {
            task.kind = "stream".into();
        }
        spec.anti_affinity_groups = ["", "", "g", "g"].map(String::from).to_vec();
    });
    let job_id = scheduler.submit(0, spec, &mut out).unwrap();
    let on_a = scheduler.pull(0, a, 10).assignments;
    assert_eq!(tasks_of(&on_a), vec![task(job_id, 0), task(job_id, 1)]);
    let on_b = scheduler.pull(0, b, 10).assignments;
    assert_eq!(tasks_of(&on_b), vec![task(job_id, 2)]);

    // Task 3 is stranded: a, at its share, takes it anyway ...
    let stranded = pull_one(&mut scheduler, 1, a);
    assert_eq!(stranded.task, task(job_id, 3));
    // ... then hands back its newest ungrouped task, which b takes; nothing moves again.
    let held: Vec<AttemptId> = scheduler.worker(a).unwrap().held.iter().copied().collect();
    let reply = scheduler.heartbeat(2, a, &held, false, 0);
    assert_eq!(reply.cancel, vec![on_a[1].attempt]);
    let moved = pull_one(&mut scheduler, 3, b);
    assert_eq!(moved.task, task(job_id, 1));
    for worker in [a, b] {
        let held: Vec<AttemptId> = scheduler
            .worker(worker)
            .unwrap()
            .held
            .iter()
            .copied()
            .collect();
        assert_eq!(held.len(), 2);
        let reply = scheduler.heartbeat(4, worker, &held, false, 0);
        assert_eq!(reply.cancel, vec![]);
        assert_eq!(scheduler.pull(4, worker, 10).assignments, vec![]);
    }
    scheduler.check_invariants().unwrap();
}

#[test]
fn an_early_attempt_holding_the_group_of_a_task_it_waits_for_is_handed_back() {
    // Stage 0: task 0 (group g) and task 1; stage 1: task 2 (group g), which may start
    // once one task of stage 0 succeeded.
    let mut spec = grouped(&["g", "", "g"]);
    spec.tasks[2].stage = 1;
    spec.slow_start = Some(0.5);
    spec.backoff_base_ms = 10;
    spec.backoff_max_ms = 10;
    let (mut scheduler, mut out, job_id, a) = setup(config(), spec);
    let b = scheduler.register_worker(0, advertising(&["noop"]));
    let on_a = pull_one(&mut scheduler, 0, a);
    let on_b = pull_one(&mut scheduler, 0, b);
    assert_eq!((on_a.task, on_b.task), (task(job_id, 0), task(job_id, 1)));
    let outputs = vec![super::stages::ok_with_file(on_b.attempt)];
    scheduler.report(10, b, outputs, &mut out);
    let early = pull_one(&mut scheduler, 20, b);
    assert_eq!(
        (early.task, early.inputs_complete),
        (task(job_id, 2), false)
    );

    // a dies: task 0 may go only to b, where the early task of its group waits for it.
    let held: Vec<AttemptId> = scheduler.worker(b).unwrap().held.iter().copied().collect();
    scheduler.heartbeat(2_500, b, &held, false, 0);
    scheduler.tick(2_600, &mut out);
    assert!(scheduler.worker(a).is_none(), "a is declared dead");
    let reply = scheduler.heartbeat(2_600, b, &[early.attempt], false, 0);
    assert_eq!(reply.cancel, vec![early.attempt]);
    let retry = pull_one(&mut scheduler, 2_700, b);
    assert_eq!((retry.task, retry.attempt_number), (task(job_id, 0), 2));
    scheduler.check_invariants().unwrap();
}
