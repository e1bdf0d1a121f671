//! The pure scheduling core of essaim: every decision about jobs, tasks, attempts, leases,
//! retries and workers, with no I/O, no async runtime, no clock and no OS randomness.
//!
//! Shells (the coordinator) feed it facts with the current time and carry out what it
//! returns; that is what lets the `sim` module (feature `sim`) drive it through thousands of seeded crash, delay,
//! duplicate and clock-jump schedules and check its guarantees after every step.
//!
//! | module | concept |
//! |---|---|
//! | [`ids`] | newtype ids; ids minted per coordinator epoch double as fencing tokens |
//! | [`spec`] | job specs, limits, defaults and validation |
//! | [`error_chain`] | an error and its causes as one line, for every crate that reports one |
//! | [`kinds`] | the built-in task kinds, shared by coordinator and worker |
//! | [`labels`] | worker labels and the labels a job requires: their syntax and matching |
//! | [`model`] | jobs, tasks and their lifecycle, results and failures |
//! | [`scheduler`] | the state machine |
//! | [`backoff`] | full-jitter exponential backoff |
//! | [`rng`] | the one seeded generator (SplitMix64) of the whole project |
//! | [`journal`] | the durable events a coordinator journals and replays |
//! | `sim` | deterministic simulation with invariants (feature `sim`, and in tests) |
#![warn(missing_docs)]

pub mod backoff;
pub mod error_chain;
pub mod ids;
pub mod journal;
pub mod kinds;
pub mod labels;
pub mod model;
pub mod rng;
pub mod scheduler;
pub mod spec;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use ids::{AttemptId, JobId, Millis, TaskId, WorkerId};
pub use journal::JournalEvent;
pub use model::{
    Assignment, AttemptError, CommittedResult, FileRef, Job, JobState, ReportedResult, StageCounts,
    Task, TaskCounts, TaskFailure, TaskOutput, TaskState, UpstreamInputs, UpstreamOutput,
};
pub use scheduler::{
    HeartbeatReply, JobError, Output, PullReply, ReportReply, Scheduler, SchedulerConfig,
    SchedulerStats, WorkerInfo,
};
pub use spec::{JobSpec, RawJobSpec, SpecError, TaskSpec};
