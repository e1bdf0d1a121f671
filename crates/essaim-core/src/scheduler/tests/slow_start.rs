//! Slow start: the second stage starts once a share of the first succeeded, never ahead
//! of a first-stage task waiting for a slot; early attempts learn of the outputs that
//! follow (and of those lost and committed again), give their slot back when a task they
//! wait for has none, stop when their inputs can never be complete; and all of it
//! survives the journal.

use super::stages::{lost, ok_with_file, run_all};
use super::*;

/// `maps` tasks of stage 0, `reduces` of stage 1 and a commit task of stage 2, with
/// slow start at `share`.
fn slow_started(maps: usize, reduces: usize, share: f64) -> RawJobSpec {
    let mut tasks = Vec::new();
    for (stage, count) in [(0u32, maps), (1, reduces), (2, 1)] {
        for _ in 0..count {
            tasks.push(TaskSpec {
                kind: "noop".into(),
                stage,
                ..Default::default()
            });
        }
    }
    RawJobSpec {
        name: "slow start".into(),
        tasks,
        slow_start: Some(share),
        backoff_base_ms: 10,
        backoff_max_ms: 10,
        ..Default::default()
    }
}

fn worker_of(slots: u32) -> WorkerInfo {
    WorkerInfo {
        slots,
        ..advertising(&["noop"])
    }
}

/// The upstream tasks and attempts an attempt reads now, and whether that is all.
fn inputs_of(scheduler: &Scheduler, attempt: AttemptId) -> (Vec<(u32, AttemptId)>, bool) {
    let inputs = scheduler.upstream_inputs(attempt).expect("attempt is live");
    let read = inputs
        .outputs
        .iter()
        .map(|output| (output.task_index, output.attempt))
        .collect();
    (read, inputs.complete)
}

#[test]
fn reducers_start_after_a_share_of_the_maps_never_ahead_of_a_waiting_map() {
    // ceil(0.3 × 3) = 1 map must succeed first.
    let (mut scheduler, mut out, job, worker) = setup(config(), slow_started(3, 2, 0.3));
    let maps = scheduler.pull(1, worker, 2).assignments;
    assert_eq!(tasks_of(&maps), vec![task(job, 0), task(job, 1)]);
    scheduler.report(2, worker, vec![ok_with_file(maps[0].attempt)], &mut out);
    // Map 2 waits for a slot: it goes first, the reducers wait.
    let next = scheduler.pull(3, worker, 1).assignments;
    assert_eq!(tasks_of(&next), vec![task(job, 2)]);
    let reducers = scheduler.pull(4, worker, 10).assignments;
    assert_eq!(tasks_of(&reducers), vec![task(job, 3), task(job, 4)]);
    for reducer in &reducers {
        assert!(!reducer.inputs_complete);
        assert_eq!(reducer.inputs.len(), 1);
        assert_eq!(reducer.inputs[0].attempt, maps[0].attempt);
    }
    assert_eq!(scheduler.stats().early_attempts_started, 2);
    let first_version = reducers[0].inputs_version;

    scheduler.report(5, worker, vec![ok_with_file(maps[1].attempt)], &mut out);
    let inputs = scheduler.upstream_inputs(reducers[0].attempt).unwrap();
    assert!(inputs.version > first_version);
    assert_eq!(
        inputs_of(&scheduler, reducers[0].attempt),
        (vec![(0, maps[0].attempt), (1, maps[1].attempt)], false)
    );
    scheduler.report(6, worker, vec![ok_with_file(next[0].attempt)], &mut out);
    let (read, complete) = inputs_of(&scheduler, reducers[1].attempt);
    assert_eq!(read.len(), 3);
    assert!(complete);

    let results = reducers.iter().map(|r| ok_with_file(r.attempt)).collect();
    scheduler.report(7, worker, results, &mut out);
    // The commit stage waited for every reducer, and reads complete inputs.
    let commit = pull_one(&mut scheduler, 8, worker);
    assert_eq!(commit.task, task(job, 5));
    assert!(commit.inputs_complete);
    scheduler.report(9, worker, vec![ok_with_file(commit.attempt)], &mut out);
    assert_eq!(job_state(&scheduler, job), JobState::Succeeded);
    scheduler.check_invariants().unwrap();
}

#[test]
fn without_slow_start_or_at_one_the_reducers_wait_for_every_map() {
    for share in [None, Some(1.0)] {
        let spec = RawJobSpec {
            slow_start: share,
            ..slow_started(2, 1, 0.0)
        };
        let (mut scheduler, mut out, job, worker) = setup(config(), spec);
        let maps = scheduler.pull(1, worker, 10).assignments;
        assert_eq!(maps.len(), 2);
        scheduler.report(2, worker, vec![ok_with_file(maps[0].attempt)], &mut out);
        assert!(scheduler.pull(3, worker, 10).assignments.is_empty());
        assert!(
            !persisted(&out)
                .iter()
                .any(|event| matches!(event, JournalEvent::JobSlowStart { .. })),
            "share {share:?} is no slow start"
        );
        assert!(scheduler.job(job).unwrap().slow_start().is_none());
    }
}

#[test]
fn a_share_outside_zero_to_one_is_refused() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let mut out = Vec::new();
    for share in [-0.1, 1.5, f64::NAN] {
        let error = scheduler
            .submit(0, slow_started(2, 1, share), &mut out)
            .unwrap_err();
        assert!(
            matches!(
                error,
                SpecError::Invalid {
                    field: "slow_start",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}

#[test]
fn early_reducers_are_handed_back_when_the_maps_they_wait_for_have_no_slot() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let mut out = Vec::new();
    let job = scheduler
        .submit(0, slow_started(4, 2, 0.5), &mut out)
        .unwrap();
    let first = scheduler.register_worker(0, worker_of(2));
    let second = scheduler.register_worker(0, worker_of(2));
    let maps_here = scheduler.pull(1, first, 2).assignments;
    let maps_there = scheduler.pull(1, second, 2).assignments;
    assert_eq!(maps_there.len(), 2);
    let results = maps_here.iter().map(|m| ok_with_file(m.attempt)).collect();
    scheduler.report(2, first, results, &mut out);
    let reducers = scheduler.pull(3, first, 2).assignments;
    assert_eq!(tasks_of(&reducers), vec![task(job, 4), task(job, 5)]);

    // The second worker dies: its two maps wait again, and no slot is free.
    scheduler.heartbeat(2_000, first, &attempts_of(&reducers), false, 2);
    scheduler.tick(2_500, &mut out);
    assert_eq!(scheduler.stats().early_attempts_handed_back, 2);
    assert!(scheduler.early_attempts_to_hand_back().is_empty());
    let told = scheduler.heartbeat(2_501, first, &attempts_of(&reducers), false, 2);
    assert_eq!(told.cancel, attempts_of(&reducers));
    assert_eq!(state_of(&scheduler, task(job, 4)), TaskState::Pending);
    let job_counts = scheduler.job(job).unwrap().counts();
    assert_eq!(
        job_counts.retrying, 2,
        "the lost maps retry, the hand-backs do not count"
    );

    // The maps get the slots back; the reducers follow once no map waits.
    let retried = scheduler.pull(2_600, first, 2).assignments;
    let mut retried_tasks = tasks_of(&retried);
    retried_tasks.sort();
    assert_eq!(retried_tasks, vec![task(job, 2), task(job, 3)]);
    let results = retried.iter().map(|m| ok_with_file(m.attempt)).collect();
    scheduler.report(2_601, first, results, &mut out);
    let reducers = scheduler.pull(2_602, first, 2).assignments;
    assert_eq!(tasks_of(&reducers), vec![task(job, 4), task(job, 5)]);
    assert!(
        reducers
            .iter()
            .all(|r| r.inputs_complete && r.inputs.len() == 4)
    );
    scheduler.check_invariants().unwrap();
}

#[test]
fn an_early_reducer_learns_of_an_output_lost_and_committed_again() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let mut out = Vec::new();
    let job = scheduler
        .submit(0, slow_started(3, 1, 0.0), &mut out)
        .unwrap();
    let doomed = scheduler.register_worker(0, worker_of(1));
    let steady = scheduler.register_worker(0, worker_of(8));
    let map0 = pull_one(&mut scheduler, 1, doomed);
    scheduler.report(2, doomed, vec![ok_with_file(map0.attempt)], &mut out);
    let maps = scheduler.pull(3, steady, 2).assignments;
    // Share 0: the reducer could start at once, but no map waits any more only now.
    let reducer = pull_one(&mut scheduler, 4, steady);
    assert_eq!(reducer.task, task(job, 3));
    assert_eq!(tasks_of(&maps), vec![task(job, 1), task(job, 2)]);
    assert_eq!(
        inputs_of(&scheduler, reducer.attempt).0,
        vec![(0, map0.attempt)]
    );

    // The worker serving map 0's output dies: the output is gone, the map runs again.
    let live = [attempts_of(&maps), vec![reducer.attempt]].concat();
    scheduler.heartbeat(2_000, steady, &live, false, 3);
    let before = scheduler.upstream_inputs(reducer.attempt).unwrap().version;
    scheduler.tick(2_500, &mut out);
    let after = scheduler.upstream_inputs(reducer.attempt).unwrap();
    assert!(after.version > before);
    assert!(after.outputs.is_empty() && !after.complete);
    let results = maps.iter().map(|m| ok_with_file(m.attempt)).collect();
    scheduler.report(2_501, steady, results, &mut out);
    let rerun = pull_one(&mut scheduler, 2_502, steady);
    assert_eq!(rerun.task, task(job, 0));
    scheduler.report(2_503, steady, vec![ok_with_file(rerun.attempt)], &mut out);
    let (read, complete) = inputs_of(&scheduler, reducer.attempt);
    assert_eq!(
        read,
        vec![
            (0, rerun.attempt),
            (1, maps[0].attempt),
            (2, maps[1].attempt)
        ]
    );
    assert!(complete);
    scheduler.check_invariants().unwrap();
}

#[test]
fn early_reducers_stop_when_a_map_they_wait_for_is_dead_lettered() {
    let spec = RawJobSpec {
        max_attempts: 1,
        ..slow_started(2, 1, 0.5)
    };
    let (mut scheduler, mut out, job, worker) = setup(config(), spec);
    let maps = scheduler.pull(1, worker, 2).assignments;
    scheduler.report(2, worker, vec![ok_with_file(maps[0].attempt)], &mut out);
    let reducer = pull_one(&mut scheduler, 3, worker);
    scheduler.report(4, worker, vec![failed(maps[1].attempt, true)], &mut out);
    assert_eq!(state_of(&scheduler, reducer.task), TaskState::Skipped);
    assert!(scheduler.upstream_inputs(reducer.attempt).is_none());
    let told = scheduler.heartbeat(5, worker, &[reducer.attempt], false, 1);
    assert_eq!(told.cancel, vec![reducer.attempt]);
    assert!(matches!(
        job_state(&scheduler, job),
        JobState::Failed { .. }
    ));
    scheduler.check_invariants().unwrap();
}

#[test]
fn slow_start_survives_the_journal_and_a_snapshot() {
    let (mut scheduler, mut out, job, worker) = setup(config(), slow_started(4, 1, 0.25));
    let maps = scheduler.pull(1, worker, 4).assignments;
    scheduler.report(2, worker, vec![ok_with_file(maps[0].attempt)], &mut out);
    assert!(persisted(&out).contains(&JournalEvent::JobSlowStart { job, share: 0.25 }));
    let sources = [persisted(&out), scheduler.snapshot(3)];
    for events in sources {
        let mut recovered = Scheduler::recover(config_with(|c| c.epoch = 2), KINDS, events);
        assert_eq!(recovered.job(job).unwrap().slow_start(), Some(0.25));
        let worker = recovered.register_worker(10, advertising(&["noop"]));
        // The three unfinished maps first, then the reducer, early.
        let grants = recovered.pull(11, worker, 10).assignments;
        let expected: Vec<TaskId> = (1..=4).map(|index| task(job, index)).collect();
        assert_eq!(tasks_of(&grants), expected);
        assert!(!grants[3].inputs_complete);
        recovered.check_invariants().unwrap();
    }
}

#[test]
fn an_early_success_reported_while_maps_run_is_refused_not_committed() {
    // A worker that does not know slow start reduces the outputs of its grant alone and
    // reports success while a map still runs: that would be a silent partial result.
    let (mut scheduler, mut out, job, worker) = setup(config(), slow_started(2, 1, 0.0));
    let maps = scheduler.pull(1, worker, 2).assignments;
    scheduler.report(2, worker, vec![ok_with_file(maps[0].attempt)], &mut out);
    let reducer = pull_one(&mut scheduler, 3, worker);
    assert_eq!(reducer.task, task(job, 2));
    assert!(!reducer.inputs_complete);
    scheduler.report(4, worker, vec![ok_with_file(reducer.attempt)], &mut out);
    let state = scheduler.job(job).expect("job");
    assert_eq!(
        state.counts().succeeded,
        1,
        "only the map: the early success is refused"
    );
    assert_eq!(state.counters.attempts_failed, 1);
    scheduler.check_invariants().unwrap();
    // Once the maps are done, the reducer's success counts.
    scheduler.report(5, worker, vec![ok_with_file(maps[1].attempt)], &mut out);
    let again = pull_one(&mut scheduler, 100, worker);
    assert_eq!(again.task, task(job, 2));
    assert!(again.inputs_complete);
    scheduler.report(101, worker, vec![ok_with_file(again.attempt)], &mut out);
    assert_eq!(scheduler.job(job).expect("job").counts().succeeded, 3);
}

#[test]
fn outputs_lost_after_the_job_failed_leave_it_finished() {
    // Seed 12493 of the simulation: a reducer's twin lost every map output; the first
    // one dead-lettered (one attempt allowed) stranded the reducer's other attempt, so
    // the job failed, and the next lost output sent a map back to `Pending` in it.
    let config = config_with(|config| config.speculation_min_runtime_ms = 100);
    let spec = RawJobSpec {
        max_attempts: 1,
        speculation_multiplier: 0.0,
        ..slow_started(2, 6, 0.5)
    };
    let (mut scheduler, mut out, job, worker_a) = setup(config, spec);
    let worker_b = scheduler.register_worker(0, worker_of(1));
    run_all(&mut scheduler, 0, worker_a, &mut out);
    let reducers = scheduler.pull(0, worker_a, 6).assignments;
    let fast = reducers[..5].iter().map(|grant| ok(grant.attempt, 100));
    scheduler.report(100, worker_a, fast.collect(), &mut out);
    let twin = pull_one(&mut scheduler, 400, worker_b);
    assert_eq!((twin.task, twin.speculative), (task(job, 7), true));

    scheduler.report(
        401,
        worker_b,
        vec![lost(twin.attempt, vec![0, 1])],
        &mut out,
    );
    scheduler.check_invariants().unwrap();
    assert!(matches!(
        scheduler.job(job).unwrap().state,
        JobState::Failed { .. }
    ));
    assert_eq!(state_of(&scheduler, task(job, 1)), TaskState::Succeeded);
}

#[test]
fn only_the_holder_of_an_attempt_holds_it() {
    let (mut scheduler, mut out, _job, worker) = setup(config(), slow_started(2, 1, 0.5));
    let other = scheduler.register_worker(0, worker_of(1));
    let maps = scheduler.pull(1, worker, 2).assignments;
    scheduler.report(2, worker, vec![ok_with_file(maps[0].attempt)], &mut out);
    let reducer = pull_one(&mut scheduler, 3, worker);
    assert!(scheduler.holds(worker, reducer.attempt));
    assert!(!scheduler.holds(other, reducer.attempt), "another worker");
    assert!(
        !scheduler.holds(worker, maps[0].attempt),
        "a finished attempt"
    );
}
