//! Jobs of several stages (MapReduce): readiness, upstream inputs, lost outputs, dead
//! letters that block later stages, locality, and recovery of all of it.

use super::*;
use crate::model::{FileRef, UpstreamOutput};
use std::collections::BTreeMap;

/// `maps` tasks of stage 0, `reduces` of stage 1, one of stage 2.
fn staged(maps: usize, reduces: usize) -> RawJobSpec {
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
        name: "staged".into(),
        tasks,
        ..Default::default()
    }
}

/// A success whose output file is named after its attempt, with one counter.
pub(super) fn ok_with_file(attempt: AttemptId) -> ReportedResult {
    ReportedResult {
        attempt,
        outcome: Ok(TaskOutput {
            inline: Vec::new(),
            file: Some(FileRef {
                url: format!("http://w/{}", attempt.0),
                size_bytes: 1,
            }),
            counters: BTreeMap::from([("records".to_string(), 10)]),
        }),
        duration_ms: 5,
    }
}

pub(super) fn lost(attempt: AttemptId, inputs: Vec<u32>) -> ReportedResult {
    ReportedResult {
        attempt,
        outcome: Err(TaskFailure {
            message: "fetch failed".into(),
            retryable: true,
            lost_inputs: inputs,
            ..Default::default()
        }),
        duration_ms: 1,
    }
}

pub(super) fn run_all(
    scheduler: &mut Scheduler,
    now: Millis,
    worker: WorkerId,
    out: &mut Vec<Output>,
) {
    let grants = scheduler.pull(now, worker, 100).assignments;
    let results = grants
        .iter()
        .map(|grant| ok_with_file(grant.attempt))
        .collect();
    scheduler.report(now, worker, results, out);
}

#[test]
fn a_stage_starts_only_when_the_previous_one_succeeded_and_reads_its_outputs() {
    let (mut scheduler, mut out, job, worker) = setup(config(), staged(3, 2));
    let maps = scheduler.pull(1, worker, 100).assignments;
    assert_eq!(
        tasks_of(&maps),
        vec![task(job, 0), task(job, 1), task(job, 2)]
    );
    scheduler.report(2, worker, vec![ok_with_file(maps[0].attempt)], &mut out);
    scheduler.report(2, worker, vec![ok_with_file(maps[1].attempt)], &mut out);
    assert!(scheduler.pull(3, worker, 100).assignments.is_empty());
    scheduler.report(4, worker, vec![ok_with_file(maps[2].attempt)], &mut out);
    let reduces = scheduler.pull(5, worker, 100).assignments;
    assert_eq!(tasks_of(&reduces), vec![task(job, 3), task(job, 4)]);
    let expected: Vec<UpstreamOutput> = maps
        .iter()
        .map(|grant| UpstreamOutput {
            task_index: grant.task.index,
            attempt: grant.attempt,
            file: FileRef {
                url: format!("http://w/{}", grant.attempt.0),
                size_bytes: 1,
            },
        })
        .collect();
    assert_eq!(reduces[0].inputs, expected);
    assert!(maps[0].inputs.is_empty());
    let reduce_results = reduces.iter().map(|g| ok_with_file(g.attempt)).collect();
    scheduler.report(6, worker, reduce_results, &mut out);
    let commit = pull_one(&mut scheduler, 7, worker);
    assert_eq!(commit.task, task(job, 5));
    assert_eq!(commit.inputs.len(), 2);
    scheduler.report(8, worker, vec![ok(commit.attempt, 1)], &mut out);
    assert_eq!(finished(&out), vec![(job, JobState::Succeeded)]);
    assert_eq!(scheduler.job(job).unwrap().task_counters()["records"], 50);
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_lost_input_reruns_the_upstream_task_and_the_reader_waits_without_losing_an_attempt() {
    let (mut scheduler, mut out, job, worker) = setup(config(), staged(2, 1));
    run_all(&mut scheduler, 1, worker, &mut out);
    let reduce = pull_one(&mut scheduler, 2, worker);
    scheduler.report(3, worker, vec![lost(reduce.attempt, vec![1])], &mut out);
    scheduler.check_invariants().unwrap();
    assert_eq!(state_of(&scheduler, task(job, 1)), TaskState::Pending);
    assert_eq!(state_of(&scheduler, task(job, 2)), TaskState::Pending);
    assert!(persisted(&out).iter().any(|event| matches!(
        event,
        JournalEvent::TaskOutputLost { task: lost, error } if *lost == task(job, 1) && error.at == 3
    )));
    // Only the lost map runs; the reducer waits for it.
    let rerun = scheduler.pull(4, worker, 100).assignments;
    assert_eq!(tasks_of(&rerun), vec![task(job, 1)]);
    scheduler.report(5, worker, vec![ok_with_file(rerun[0].attempt)], &mut out);
    let again = pull_one(&mut scheduler, 6, worker);
    assert_eq!(again.task, task(job, 2));
    assert_eq!(
        again.attempt_number, 1,
        "a lost input does not count as an attempt"
    );
    assert_eq!(again.inputs[1].attempt, rerun[0].attempt);
    let job_state = scheduler.job(job).unwrap();
    assert_eq!(job_state.counters.outputs_lost, 1);
    assert_eq!(
        job_state.task_counters()["records"],
        20,
        "lost counters are taken back"
    );
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_second_report_of_an_output_already_recomputed_does_not_rerun_it_again() {
    let (mut scheduler, mut out, job, worker) = setup(config(), staged(1, 2));
    run_all(&mut scheduler, 1, worker, &mut out);
    let reduces = scheduler.pull(2, worker, 100).assignments;
    scheduler.report(3, worker, vec![lost(reduces[0].attempt, vec![0])], &mut out);
    run_all(&mut scheduler, 4, worker, &mut out); // the map again
    // The second reducer saw the old output and reports it late: the new one stays.
    scheduler.report(5, worker, vec![lost(reduces[1].attempt, vec![0])], &mut out);
    assert_eq!(state_of(&scheduler, task(job, 0)), TaskState::Succeeded);
    assert_eq!(scheduler.job(job).unwrap().counters.outputs_lost, 1);
    let both = scheduler.pull(6, worker, 100).assignments;
    assert_eq!(tasks_of(&both), vec![task(job, 1), task(job, 2)]);
    scheduler.check_invariants().unwrap();
}

#[test]
fn outputs_of_a_dead_worker_are_recomputed_only_while_needed() {
    let (mut scheduler, mut out, job, first) = setup(config(), staged(2, 1));
    run_all(&mut scheduler, 1, first, &mut out);
    let second = scheduler.register_worker(1, advertising(&["noop"]));
    // The first worker dies before the reduce ran: both map outputs are lost.
    scheduler.heartbeat(1500, second, &[], false, 0);
    scheduler.tick(2500, &mut out);
    scheduler.check_invariants().unwrap();
    let reruns = scheduler.pull(2600, second, 100).assignments;
    assert_eq!(tasks_of(&reruns), vec![task(job, 0), task(job, 1)]);
    let results = reruns.iter().map(|g| ok_with_file(g.attempt)).collect();
    scheduler.report(2700, second, results, &mut out);
    let reduce = pull_one(&mut scheduler, 2800, second);
    scheduler.report(2800, second, vec![ok(reduce.attempt, 1)], &mut out);
    // Now the second worker dies: the reduce has its result (in shared storage, not a
    // file on the worker), so nothing is recomputed.
    scheduler.tick(10_000, &mut out);
    assert_eq!(scheduler.job(job).unwrap().counters.outputs_lost, 2);
    let third = scheduler.register_worker(10_000, advertising(&["noop"]));
    let last = pull_one(&mut scheduler, 10_001, third);
    assert_eq!(last.task, task(job, 3));
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_dead_lettered_map_skips_the_later_stages_and_fails_the_job() {
    let spec = RawJobSpec {
        max_attempts: 1,
        ..staged(2, 2)
    };
    let (mut scheduler, mut out, job, worker) = setup(config(), spec);
    let maps = scheduler.pull(1, worker, 100).assignments;
    scheduler.report(2, worker, vec![ok_with_file(maps[0].attempt)], &mut out);
    scheduler.report(2, worker, vec![failed(maps[1].attempt, true)], &mut out);
    let counts = scheduler.job(job).unwrap().counts();
    assert_eq!((counts.dead_lettered, counts.skipped), (1, 3));
    match &finished(&out)[..] {
        [(id, JobState::Failed { reason })] => {
            assert_eq!(*id, job);
            assert!(reason.contains("1 task failed every attempt"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    scheduler.check_invariants().unwrap();
    // Requeued from the dead-letter queue, the map runs and the later stages with it.
    scheduler.requeue_dead_letters(3, &[task(job, 1)], &mut out);
    scheduler.check_invariants().unwrap();
    run_all(&mut scheduler, 4, worker, &mut out);
    run_all(&mut scheduler, 5, worker, &mut out);
    run_all(&mut scheduler, 6, worker, &mut out);
    assert_eq!(scheduler.job(job).unwrap().state, JobState::Succeeded);
    scheduler.check_invariants().unwrap();
}

#[test]
fn an_output_lost_as_often_as_a_task_may_be_attempted_dead_letters_it() {
    let spec = RawJobSpec {
        max_attempts: 2,
        ..staged(1, 1)
    };
    let (mut scheduler, mut out, job, worker) = setup(config(), spec);
    for round in 0..2 {
        let now = 10 * round + 1;
        run_all(&mut scheduler, now, worker, &mut out);
        let reduce = pull_one(&mut scheduler, now + 1, worker);
        scheduler.report(
            now + 2,
            worker,
            vec![lost(reduce.attempt, vec![0])],
            &mut out,
        );
        scheduler.check_invariants().unwrap();
    }
    assert_eq!(state_of(&scheduler, task(job, 0)), TaskState::DeadLettered);
    assert!(matches!(
        scheduler.job(job).unwrap().state,
        JobState::Failed { .. }
    ));
}

#[test]
fn lost_inputs_naming_tasks_outside_the_previous_stage_are_an_ordinary_failure() {
    let (mut scheduler, mut out, job, worker) = setup(config(), staged(1, 1));
    let map = pull_one(&mut scheduler, 1, worker);
    scheduler.report(2, worker, vec![lost(map.attempt, vec![0])], &mut out);
    assert!(matches!(
        state_of(&scheduler, task(job, 0)),
        TaskState::Retrying { .. }
    ));
    scheduler.check_invariants().unwrap();
}

#[test]
fn map_tasks_go_first_to_workers_holding_their_input() {
    let mut spec = staged(3, 1);
    for (index, path) in ["/data/a/x", "/data/b/y", "/data/a/z"].iter().enumerate() {
        spec.tasks[index].locality = vec![path.to_string()];
    }
    let mut scheduler = Scheduler::new(config(), KINDS);
    let mut out = Vec::new();
    let job = scheduler.submit(0, spec, &mut out).unwrap();
    let holder_of_b = scheduler.register_worker(
        0,
        WorkerInfo {
            data_dirs: vec!["/data/b/".into()],
            ..advertising(&["noop"])
        },
    );
    let anywhere = scheduler.register_worker(0, advertising(&["noop"]));
    assert_eq!(pull_one(&mut scheduler, 1, holder_of_b).task, task(job, 1));
    assert_eq!(pull_one(&mut scheduler, 1, anywhere).task, task(job, 0));
    assert_eq!(scheduler.stats().local_grants, 1);
    assert_eq!(scheduler.stats().remote_grants, 1);
    assert!(!crate::model::job::is_local(
        &["/data/ab/x".into()],
        &["/data/a".into()]
    ));
    scheduler.check_invariants().unwrap();
}

#[test]
fn recovery_restores_stage_outputs_lost_outputs_and_counters_from_journal_or_snapshot() {
    let (mut scheduler, mut out, job, worker) = setup(config(), staged(2, 1));
    run_all(&mut scheduler, 1, worker, &mut out);
    let reduce = pull_one(&mut scheduler, 2, worker);
    scheduler.report(3, worker, vec![lost(reduce.attempt, vec![0])], &mut out);
    let events = persisted(&out);
    let live = scheduler.job(job).unwrap();
    for source in [events.clone(), scheduler.snapshot(4)] {
        let recovered = Scheduler::recover(config(), KINDS, source);
        recovered.check_invariants().unwrap();
        let job_state = recovered.job(job).unwrap();
        assert_eq!(job_state.counts(), live.counts());
        assert_eq!(job_state.task_counters(), live.task_counters());
        assert_eq!(
            job_state.tasks()[1].output().map(|o| o.attempt),
            live.tasks()[1].output().map(|o| o.attempt)
        );
    }
    // The recovered scheduler hands the reducer the surviving output.
    let mut recovered = Scheduler::recover(config(), KINDS, events);
    let fresh = recovered.register_worker(5, advertising(&["noop"]));
    run_all(&mut recovered, 6, fresh, &mut out);
    let reduce = pull_one(&mut recovered, 7, fresh);
    assert_eq!(reduce.inputs.len(), 2);
    recovered.check_invariants().unwrap();
}

/// Regression: a finished staged job's scratch files were all released, although a last
/// stage that commits files (over the inline limit) leaves the job's results there and
/// `essaim results` still names their URLs. Those stay until the job is forgotten,
/// through a restart from the journal or from a snapshot.
#[test]
fn a_staged_job_keeps_its_files_when_its_results_are_files() {
    for final_result_is_file in [false, true] {
        let (mut scheduler, mut out, job, worker) = setup(config(), staged(1, 1));
        run_all(&mut scheduler, 1, worker, &mut out);
        run_all(&mut scheduler, 2, worker, &mut out);
        let last = scheduler.pull(3, worker, 100).assignments;
        let result = if final_result_is_file {
            ok_with_file(last[0].attempt)
        } else {
            ok(last[0].attempt, 5)
        };
        scheduler.report(4, worker, vec![result], &mut out);
        assert_eq!(job_state(&scheduler, job), JobState::Succeeded);
        let releasable = if final_result_is_file {
            vec![]
        } else {
            vec![job]
        };
        assert_eq!(scheduler.releasable_jobs(&[job]), releasable);

        let from_journal = Scheduler::recover(config(), KINDS, persisted(&out));
        assert_eq!(from_journal.releasable_jobs(&[job]), releasable);
        let from_snapshot = Scheduler::recover(config(), KINDS, scheduler.snapshot(5));
        assert_eq!(from_snapshot.releasable_jobs(&[job]), releasable);
    }
}

/// Live, a job kept running by attempts in flight (early reducers) after a dead letter
/// may be cancelled; replayed, attempts are not journaled and the job already looks
/// failed at the dead letter. The cancellation must still be replayed, so that a requeue
/// of the dead letter is refused after a restart as it was before (simulation seed
/// 29463: the requeued task committed after its job was cancelled).
#[test]
fn a_cancellation_replays_onto_a_job_the_replay_already_failed() {
    let (_scheduler, out, job_id, _worker) = setup(config(), staged(1, 1));
    let mut events = persisted(&out);
    events.push(JournalEvent::TaskDeadLettered {
        task: task(job_id, 0),
        at: 20,
    });
    events.push(JournalEvent::JobCancelled {
        job: job_id,
        reason: "cancelled by the user".into(),
        at: 30,
    });
    let mut recovered = Scheduler::recover(config(), KINDS, events);
    recovered.check_invariants().unwrap();
    assert!(matches!(
        job_state(&recovered, job_id),
        JobState::Cancelled { .. }
    ));
    let mut out = Vec::new();
    let requeued = recovered.requeue_dead_letters(40, &[task(job_id, 0)], &mut out);
    assert_eq!(requeued, 0, "a cancelled job's dead letter stays dead");
}
