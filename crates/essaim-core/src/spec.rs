//! Job specifications as the scheduler uses them, their defaults, limits and validation.
//!
//! A spec is validated once, at submission, and turned into a [`JobSpec`] whose every
//! field has a concrete value; the scheduler never sees an unset option. Limits are
//! documented in the README ("Limits") and enforced here so that every entry point
//! (gRPC, CLI, tests) refuses the same things with the same words.

use crate::ids::Millis;
use serde::{Deserialize, Serialize};

/// Largest payload of one task.
pub const MAX_TASK_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Largest number of tasks in one job.
pub const MAX_TASKS_PER_JOB: usize = 1_000_000;
/// Largest sum of payloads of one job (a submission must fit one RPC message).
pub const MAX_JOB_PAYLOAD_BYTES: usize = 48 * 1024 * 1024;
/// Longest task kind name.
pub const MAX_KIND_LEN: usize = 64;
/// Most locality paths of one task.
pub const MAX_LOCALITY_PATHS: usize = 16;
/// Attempts per task when the spec does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Most attempts per task a spec may ask for.
pub const MAX_MAX_ATTEMPTS: u32 = 100;
/// First retry delay ceiling when the spec does not say.
pub const DEFAULT_BACKOFF_BASE_MS: Millis = 200;
/// Largest retry delay when the spec does not say.
pub const DEFAULT_BACKOFF_MAX_MS: Millis = 30_000;
/// Straggler threshold relative to the job's median task duration, by default.
pub const DEFAULT_SPECULATION_MULTIPLIER: f64 = 3.0;

/// One task as submitted: what to run and its input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Task kind, e.g. `noop` or `command`; only workers advertising it run the task.
    pub kind: String,
    /// Kind-specific input.
    pub payload: Vec<u8>,
    /// Stage, 0 for the first; tasks of stage s > 0 start once stage s - 1 has
    /// succeeded and read its outputs. Stages are contiguous in task order.
    pub stage: u32,
    /// Paths the task reads; workers whose data directories hold one are preferred.
    pub locality: Vec<String>,
}

/// A validated job: every option has its concrete value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Name shown in listings.
    pub name: String,
    /// The tasks, in index order.
    pub tasks: Vec<TaskSpec>,
    /// Higher runs first.
    pub priority: i32,
    /// Most attempts of this job running at once, `None` for no limit.
    pub max_concurrency: Option<u32>,
    /// Attempts per task before it is dead-lettered.
    pub max_attempts: u32,
    /// Tasks not started by this time are not run.
    pub deadline: Option<Millis>,
    /// Longest run of one attempt.
    pub task_timeout_ms: Option<Millis>,
    /// Ceiling of the first retry delay; doubles with each failure.
    pub backoff_base_ms: Millis,
    /// Largest retry delay.
    pub backoff_max_ms: Millis,
    /// Straggler threshold relative to the median duration, `None` when speculation is off.
    pub speculation_multiplier: Option<f64>,
}

/// The options of a job as they arrive, zero meaning "the default".
#[derive(Debug, Clone, Default)]
pub struct RawJobSpec {
    /// See [`JobSpec::name`].
    pub name: String,
    /// See [`JobSpec::tasks`].
    pub tasks: Vec<TaskSpec>,
    /// See [`JobSpec::priority`].
    pub priority: i32,
    /// 0 = unlimited.
    pub max_concurrency: u32,
    /// 0 = default.
    pub max_attempts: u32,
    /// 0 = none.
    pub deadline: Millis,
    /// 0 = none.
    pub task_timeout_ms: Millis,
    /// 0 = default.
    pub backoff_base_ms: Millis,
    /// 0 = default.
    pub backoff_max_ms: Millis,
    /// 0 = default, negative = off.
    pub speculation_multiplier: f64,
    /// Empty = none; see [`crate::model::Job::supersede_key`].
    pub supersede_key: String,
    /// Empty = none; see [`crate::model::Job::processing_version`].
    pub processing_version: String,
    /// `None` = a stage starts once every task of the stage before has succeeded;
    /// otherwise the share of the first stage (0.0 to 1.0) after which the second may
    /// start early; see [`crate::model::Job::slow_start`].
    pub slow_start: Option<f64>,
    /// Empty = none; see [`crate::model::Job::owner`]. Set by the coordinator from the
    /// authenticated caller, never taken from the client.
    pub owner: String,
    /// Empty = any worker; otherwise only workers carrying every one of these labels
    /// run the job's tasks; see [`crate::model::Job::required_labels`].
    pub required_labels: crate::labels::Labels,
    /// Empty = no task has one; otherwise one entry per task, in task order, an empty
    /// entry for a task without a group: two tasks of one group never run on one worker
    /// at the same time; see [`crate::model::Job::anti_affinity`].
    pub anti_affinity_groups: Vec<String>,
}

/// Longest anti-affinity group name, in bytes.
pub const MAX_ANTI_AFFINITY_GROUP_BYTES: usize = 128;

/// Longest supersede key, in bytes.
pub const MAX_SUPERSEDE_KEY_BYTES: usize = 256;

/// Longest processing version (and owner), in bytes.
pub const MAX_PROCESSING_VERSION_BYTES: usize = 256;

/// Why a job spec was refused; the message names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The job has no task.
    #[error("the job has no task: submit at least one")]
    NoTasks,
    /// Too many tasks.
    #[error("the job has {count} tasks; at most {MAX_TASKS_PER_JOB} are allowed")]
    TooManyTasks {
        /// Tasks in the spec.
        count: usize,
    },
    /// One payload is over the limit.
    #[error(
        "task {index} has a payload of {bytes} bytes; at most {MAX_TASK_PAYLOAD_BYTES} are allowed"
    )]
    PayloadTooLarge {
        /// Index of the task.
        index: usize,
        /// Its payload size.
        bytes: usize,
    },
    /// The payloads together are over the limit.
    #[error(
        "the job's payloads add up to {bytes} bytes; at most {MAX_JOB_PAYLOAD_BYTES} are allowed"
    )]
    JobTooLarge {
        /// Sum of payload sizes.
        bytes: usize,
    },
    /// A task names a kind nothing can run.
    #[error("task {index} has unknown kind `{kind}`; known kinds: {known}")]
    UnknownKind {
        /// Index of the task.
        index: usize,
        /// The kind it names.
        kind: String,
        /// Kinds the cluster can run, comma-separated.
        known: String,
    },
    /// A field is out of range.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl RawJobSpec {
    /// Validates the spec against the kinds the cluster can run and fills in defaults.
    pub fn validate(self, known_kinds: &[String]) -> Result<JobSpec, SpecError> {
        if self.tasks.is_empty() {
            return Err(SpecError::NoTasks);
        }
        if self.tasks.len() > MAX_TASKS_PER_JOB {
            return Err(SpecError::TooManyTasks {
                count: self.tasks.len(),
            });
        }
        if self.name.len() > 256 {
            return Err(SpecError::Invalid {
                field: "name",
                reason: format!("{} bytes long; at most 256", self.name.len()),
            });
        }
        let mut total_bytes = 0usize;
        let mut previous_stage = 0u32;
        for (index, task) in self.tasks.iter().enumerate() {
            let stage_follows = task.stage == previous_stage || task.stage == previous_stage + 1;
            if !stage_follows {
                return Err(SpecError::Invalid {
                    field: "stage",
                    reason: format!(
                        "task {index} is in stage {} after a task of stage {previous_stage}; \
                         stages start at 0 and follow task order without gaps",
                        task.stage
                    ),
                });
            }
            previous_stage = task.stage;
            if task.locality.len() > MAX_LOCALITY_PATHS {
                return Err(SpecError::Invalid {
                    field: "locality",
                    reason: format!(
                        "task {index} names {} paths; at most {MAX_LOCALITY_PATHS}",
                        task.locality.len()
                    ),
                });
            }
            if task.payload.len() > MAX_TASK_PAYLOAD_BYTES {
                return Err(SpecError::PayloadTooLarge {
                    index,
                    bytes: task.payload.len(),
                });
            }
            total_bytes += task.payload.len();
            let kind_is_known = task.kind.len() <= MAX_KIND_LEN && known_kinds.contains(&task.kind);
            if !kind_is_known {
                return Err(SpecError::UnknownKind {
                    index,
                    kind: task.kind.chars().take(MAX_KIND_LEN).collect(),
                    known: known_kinds.join(", "),
                });
            }
        }
        if total_bytes > MAX_JOB_PAYLOAD_BYTES {
            return Err(SpecError::JobTooLarge { bytes: total_bytes });
        }
        if self.max_attempts > MAX_MAX_ATTEMPTS {
            return Err(SpecError::Invalid {
                field: "max_attempts",
                reason: format!(
                    "{} is over the limit of {MAX_MAX_ATTEMPTS}",
                    self.max_attempts
                ),
            });
        }
        let backoff_base_ms = nonzero_or(self.backoff_base_ms, DEFAULT_BACKOFF_BASE_MS);
        let backoff_max_ms = nonzero_or(self.backoff_max_ms, DEFAULT_BACKOFF_MAX_MS);
        if backoff_base_ms > backoff_max_ms {
            return Err(SpecError::Invalid {
                field: "retry_backoff_base_ms",
                reason: format!("{backoff_base_ms} is above the cap of {backoff_max_ms}"),
            });
        }
        let multiplier = self.speculation_multiplier;
        if multiplier.is_nan() || (multiplier > 0.0 && multiplier < 1.0) {
            return Err(SpecError::Invalid {
                field: "speculation_multiplier",
                reason: format!("{multiplier} must be at least 1.0 (or negative to turn it off)"),
            });
        }
        let speculation_multiplier = if multiplier < 0.0 {
            None
        } else if multiplier == 0.0 {
            Some(DEFAULT_SPECULATION_MULTIPLIER)
        } else {
            Some(multiplier)
        };
        Ok(JobSpec {
            name: self.name,
            tasks: self.tasks,
            priority: self.priority,
            max_concurrency: (self.max_concurrency > 0).then_some(self.max_concurrency),
            max_attempts: if self.max_attempts == 0 {
                DEFAULT_MAX_ATTEMPTS
            } else {
                self.max_attempts
            },
            deadline: (self.deadline > 0).then_some(self.deadline),
            task_timeout_ms: (self.task_timeout_ms > 0).then_some(self.task_timeout_ms),
            backoff_base_ms,
            backoff_max_ms,
            speculation_multiplier,
        })
    }
}

fn nonzero_or(value: u64, default: u64) -> u64 {
    if value == 0 { default } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Vec<String> {
        vec!["noop".into(), "command".into()]
    }

    fn raw(tasks: Vec<TaskSpec>) -> RawJobSpec {
        RawJobSpec {
            name: "t".into(),
            tasks,
            ..Default::default()
        }
    }

    fn task(kind: &str) -> TaskSpec {
        TaskSpec {
            kind: kind.into(),
            payload: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn empty_task_list_is_refused() {
        assert_eq!(raw(vec![]).validate(&kinds()), Err(SpecError::NoTasks));
    }

    #[test]
    fn unknown_kind_is_refused_with_the_known_ones() {
        let error = raw(vec![task("noop"), task("nope")])
            .validate(&kinds())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "task 1 has unknown kind `nope`; known kinds: noop, command"
        );
    }

    #[test]
    fn oversized_payload_is_refused() {
        let big = TaskSpec {
            kind: "noop".into(),
            payload: vec![0; MAX_TASK_PAYLOAD_BYTES + 1],
            ..Default::default()
        };
        assert!(matches!(
            raw(vec![big]).validate(&kinds()),
            Err(SpecError::PayloadTooLarge { index: 0, .. })
        ));
    }

    #[test]
    fn defaults_are_filled_in() {
        let spec = raw(vec![task("noop")]).validate(&kinds()).unwrap();
        assert_eq!(spec.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(spec.max_concurrency, None);
        assert_eq!(
            spec.speculation_multiplier,
            Some(DEFAULT_SPECULATION_MULTIPLIER)
        );
        assert_eq!(spec.backoff_base_ms, DEFAULT_BACKOFF_BASE_MS);
    }

    #[test]
    fn speculation_can_be_turned_off_and_nonsense_is_refused() {
        let mut off = raw(vec![task("noop")]);
        off.speculation_multiplier = -1.0;
        assert_eq!(off.validate(&kinds()).unwrap().speculation_multiplier, None);
        let mut below_one = raw(vec![task("noop")]);
        below_one.speculation_multiplier = 0.5;
        assert!(below_one.validate(&kinds()).is_err());
    }
}
