//! Table-style unit tests of the scheduler: feed facts at chosen times, assert the exact
//! replies, state and outputs. Every test ends by checking the scheduler's invariants.

mod anti_affinity;
mod jobs;
mod labels;
mod leases;
mod outcomes;
mod placement;
mod slow_start;
mod spread;
mod stages;

use super::{JobError, Output, Scheduler, SchedulerConfig, WorkerInfo};
use crate::ids::{AttemptId, JobId, Millis, TaskId, WorkerId};
use crate::journal::JournalEvent;
use crate::model::{Assignment, JobState, ReportedResult, TaskFailure, TaskOutput, TaskState};
use crate::spec::{
    MAX_PROCESSING_VERSION_BYTES, MAX_SUPERSEDE_KEY_BYTES, RawJobSpec, SpecError, TaskSpec,
};

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
