//! Label-constrained placement: a job that requires worker labels goes only to workers
//! carrying them — first attempts, retries and speculative copies alike — waits while
//! none is registered, and keeps its labels through recovery.

use super::*;
use crate::labels::Labels;

fn gpu() -> Labels {
    Labels::from([("gpu".to_string(), "yes".to_string())])
}

fn labelled(labels: Labels) -> WorkerInfo {
    WorkerInfo {
        labels,
        ..advertising(&["noop"])
    }
}

fn requiring(tasks: usize, labels: Labels) -> RawJobSpec {
    job_with(tasks, |spec| spec.required_labels = labels)
}

#[test]
fn a_job_requiring_a_label_goes_only_to_workers_carrying_it() {
    let spec = with_backoff(requiring(2, gpu()), 1, 1);
    let (mut scheduler, mut out, job_id, plain) = setup(config(), spec);
    let other_gpu = Labels::from([("gpu".to_string(), "no".to_string())]);
    let wrong_value = scheduler.register_worker(0, labelled(other_gpu));
    assert!(!scheduler.has_work_for(0, plain));
    assert_eq!(scheduler.pull(0, plain, 10).assignments, vec![]);
    assert_eq!(scheduler.pull(0, wrong_value, 10).assignments, vec![]);

    let mut gpu_and_more = gpu();
    gpu_and_more.insert("zone".into(), "a".into());
    let gpu_worker = scheduler.register_worker(0, labelled(gpu_and_more));
    assert!(scheduler.has_work_for(0, gpu_worker));
    let grants = scheduler.pull(0, gpu_worker, 10).assignments;
    assert_eq!(tasks_of(&grants), vec![task(job_id, 0), task(job_id, 1)]);

    // A retry is not handed to the unlabelled worker either.
    scheduler.report(
        10,
        gpu_worker,
        vec![failed(grants[0].attempt, true)],
        &mut out,
    );
    assert_eq!(scheduler.pull(100, plain, 10).assignments, vec![]);
    let retry = pull_one(&mut scheduler, 100, gpu_worker);
    assert_eq!((retry.task, retry.attempt_number), (task(job_id, 0), 2));
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_job_without_labels_still_runs_anywhere() {
    let (mut scheduler, _, job_id, _) = setup(config(), job(1));
    let gpu_worker = scheduler.register_worker(0, labelled(gpu()));
    let grant = pull_one(&mut scheduler, 0, gpu_worker);
    assert_eq!(grant.task, task(job_id, 0));
}

#[test]
fn a_straggler_is_copied_only_to_a_worker_carrying_the_labels() {
    let config = config_with(|config| config.speculation_min_runtime_ms = 100);
    let mut scheduler = Scheduler::new(config, KINDS);
    let mut out = Vec::new();
    let job_id = scheduler.submit(0, requiring(6, gpu()), &mut out).unwrap();
    let first = scheduler.register_worker(0, labelled(gpu()));
    let plain = scheduler.register_worker(0, advertising(&["noop"]));
    let grants = scheduler.pull(0, first, 6).assignments;
    let fast = grants[..5].iter().map(|grant| ok(grant.attempt, 100));
    scheduler.report(100, first, fast.collect(), &mut out);

    assert_eq!(scheduler.pull(400, plain, 1).assignments, vec![]);
    let second = scheduler.register_worker(400, labelled(gpu()));
    let copy = pull_one(&mut scheduler, 401, second);
    assert_eq!((copy.task, copy.speculative), (task(job_id, 5), true));
    scheduler.check_invariants().unwrap();
}

#[test]
fn a_job_no_worker_satisfies_waits_queued_until_one_registers() {
    let (mut scheduler, _, job_id, plain) = setup(config(), requiring(1, gpu()));
    assert!(scheduler.waits_for_labels(scheduler.job(job_id).unwrap()));
    // Time passes: the job neither fails nor loses its task.
    let mut out = Vec::new();
    scheduler.tick(60_000, &mut out);
    assert_eq!(out, vec![]);
    assert_eq!(job_state(&scheduler, job_id), JobState::Running);
    assert_eq!(state_of(&scheduler, task(job_id, 0)), TaskState::Pending);

    let gpu_worker = scheduler.register_worker(60_000, labelled(gpu()));
    assert!(!scheduler.waits_for_labels(scheduler.job(job_id).unwrap()));
    let grant = pull_one(&mut scheduler, 60_000, gpu_worker);
    scheduler.report(60_010, gpu_worker, vec![ok(grant.attempt, 10)], &mut out);
    assert_eq!(finished(&out), vec![(job_id, JobState::Succeeded)]);
    assert!(!scheduler.waits_for_labels(scheduler.job(job_id).unwrap()));
    let _ = plain;
}

#[test]
fn required_labels_survive_recovery_from_the_journal_and_a_snapshot() {
    let (scheduler, out, job_id, _) = setup(config(), requiring(2, gpu()));
    let journal = persisted(&out);
    assert_eq!(
        journal[1],
        JournalEvent::JobPlacement {
            job: job_id,
            required_labels: vec![("gpu".into(), "yes".into())],
        }
    );
    let snapshot = scheduler.snapshot(10);
    for events in [journal, snapshot] {
        let mut recovered = Scheduler::recover(config(), KINDS, events);
        assert_eq!(recovered.job(job_id).unwrap().required_labels, gpu());
        let plain = recovered.register_worker(20, advertising(&["noop"]));
        assert_eq!(recovered.pull(20, plain, 10).assignments, vec![]);
        let gpu_worker = recovered.register_worker(20, labelled(gpu()));
        assert_eq!(recovered.pull(20, gpu_worker, 10).assignments.len(), 2);
        recovered.check_invariants().unwrap();
    }
}

#[test]
fn a_job_without_labels_journals_no_placement() {
    let (scheduler, out, _, _) = setup(config(), job(1));
    let placement = |event: &JournalEvent| matches!(event, JournalEvent::JobPlacement { .. });
    assert!(!persisted(&out).iter().any(placement));
    assert!(!scheduler.snapshot(0).iter().any(placement));
}

#[test]
fn malformed_required_labels_are_refused() {
    let mut scheduler = Scheduler::new(config(), KINDS);
    let mut out = Vec::new();
    for (key, value) in [("", "yes"), ("gpu", ""), ("g pu", "yes")] {
        let labels = Labels::from([(key.to_string(), value.to_string())]);
        let error = scheduler
            .submit(0, requiring(1, labels), &mut out)
            .unwrap_err();
        assert!(
            matches!(
                error,
                SpecError::Invalid {
                    field: "required_labels",
                    ..
                }
            ),
            "{error}"
        );
    }
    assert_eq!(out, vec![]);
}
