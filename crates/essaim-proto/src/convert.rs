//! Conversions between wire messages and core types, with validation of what comes in.

use crate::v1;
use essaim_core::model::{MAX_INLINE_RESULT_BYTES, MAX_STDERR_TAIL_BYTES};
use essaim_core::{
    Assignment, AttemptId, FileRef, JobId, RawJobSpec, ReportedResult, TaskFailure, TaskId,
    TaskOutput, TaskSpec, UpstreamOutput,
};

/// Most counters one result may carry.
pub const MAX_COUNTERS_PER_RESULT: usize = 64;
/// Longest counter name.
pub const MAX_COUNTER_NAME_BYTES: usize = 64;

/// A message that does not respect the wire contract.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A required field is missing.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field is over its size limit.
    #[error(
        "field `{field}` has {bytes} bytes; at most {limit} are allowed (write large results to a file)"
    )]
    TooLarge {
        /// The field.
        field: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// Converts a submitted spec to the core's raw form (validated by the scheduler, which
/// knows the task kinds the cluster can run).
pub fn raw_job_spec_from_wire(spec: v1::JobSpec) -> RawJobSpec {
    let anti_affinity_groups = if spec.tasks.iter().any(|t| !t.anti_affinity_group.is_empty()) {
        let groups = spec.tasks.iter().map(|t| t.anti_affinity_group.clone());
        groups.collect()
    } else {
        Vec::new()
    };
    RawJobSpec {
        name: spec.name,
        tasks: spec
            .tasks
            .into_iter()
            .map(|t| TaskSpec {
                kind: t.kind,
                payload: t.payload,
                stage: t.stage,
                locality: t.locality,
            })
            .collect(),
        anti_affinity_groups,
        priority: spec.priority,
        max_concurrency: spec.max_concurrency,
        max_attempts: spec.max_attempts,
        deadline: spec.deadline_unix_ms,
        task_timeout_ms: spec.task_timeout_ms,
        backoff_base_ms: spec.retry_backoff_base_ms,
        backoff_max_ms: spec.retry_backoff_max_ms,
        speculation_multiplier: spec.speculation_multiplier,
        supersede_key: spec.supersede_key,
        processing_version: spec.processing_version,
        slow_start: spec.slow_start,
        required_labels: spec.required_labels.into_iter().collect(),
        // Never from the wire: the coordinator sets it from the authenticated caller.
        owner: String::new(),
    }
}

/// Converts a granted attempt for the wire, with its correlation id.
pub fn assignment_to_wire(assignment: Assignment) -> v1::Assignment {
    let Assignment {
        task,
        attempt,
        attempt_number,
        kind,
        payload,
        timeout_ms,
        speculative,
        inputs,
        inputs_complete,
        inputs_version,
        trace_parent,
    } = assignment;
    v1::Assignment {
        job_id: task.job.0,
        task_index: task.index,
        attempt_id: attempt.0,
        attempt_number,
        kind,
        payload,
        timeout_ms: timeout_ms.unwrap_or(0),
        speculative,
        correlation_id: crate::correlation_id(task.job.0, task.index, attempt.0),
        inputs: inputs.into_iter().map(upstream_output_to_wire).collect(),
        trace_parent: trace_parent.unwrap_or_default(),
        inputs_incomplete: !inputs_complete,
        inputs_version,
    }
}

/// Converts one upstream output for the wire.
pub fn upstream_output_to_wire(input: UpstreamOutput) -> v1::UpstreamOutput {
    v1::UpstreamOutput {
        task_index: input.task_index,
        attempt_id: input.attempt.0,
        url: input.file.url,
        size_bytes: input.file.size_bytes,
    }
}

/// Converts one upstream output from the wire.
pub fn upstream_output_from_wire(input: v1::UpstreamOutput) -> UpstreamOutput {
    UpstreamOutput {
        task_index: input.task_index,
        attempt: AttemptId(input.attempt_id),
        file: FileRef {
            url: input.url,
            size_bytes: input.size_bytes,
        },
    }
}

/// Converts an assignment a worker pulled to the core's typed form. The wire's
/// correlation id is not kept: it is derived from the ids (see [`crate::correlation_id`]),
/// on both sides.
pub fn assignment_from_wire(assignment: v1::Assignment) -> Assignment {
    let v1::Assignment {
        job_id,
        task_index,
        attempt_id,
        attempt_number,
        kind,
        payload,
        timeout_ms,
        speculative,
        correlation_id: _,
        inputs,
        trace_parent,
        inputs_incomplete,
        inputs_version,
    } = assignment;
    Assignment {
        task: TaskId::new(JobId(job_id), task_index),
        attempt: AttemptId(attempt_id),
        attempt_number,
        kind,
        payload,
        timeout_ms: (timeout_ms > 0).then_some(timeout_ms),
        speculative,
        inputs: inputs.into_iter().map(upstream_output_from_wire).collect(),
        inputs_complete: !inputs_incomplete,
        inputs_version,
        trace_parent: (!trace_parent.is_empty()).then_some(trace_parent),
    }
}

/// Converts a core output to the wire.
pub fn output_to_wire(output: &TaskOutput) -> v1::TaskOutput {
    v1::TaskOutput {
        inline: output.inline.clone(),
        file: output.file.as_ref().map(|file| v1::FileRef {
            url: file.url.clone(),
            size_bytes: file.size_bytes,
        }),
        counters: output
            .counters
            .iter()
            .map(|(name, value)| (name.clone(), *value))
            .collect(),
    }
}

/// Converts a wire output to the core, enforcing the inline size limit.
pub fn output_from_wire(output: v1::TaskOutput) -> Result<TaskOutput, WireError> {
    if output.inline.len() > MAX_INLINE_RESULT_BYTES {
        return Err(WireError::TooLarge {
            field: "inline",
            bytes: output.inline.len(),
            limit: MAX_INLINE_RESULT_BYTES,
        });
    }
    let too_long = output
        .counters
        .keys()
        .any(|name| name.len() > MAX_COUNTER_NAME_BYTES);
    if output.counters.len() > MAX_COUNTERS_PER_RESULT || too_long {
        return Err(WireError::TooLarge {
            field: "counters",
            bytes: output.counters.keys().map(String::len).sum(),
            limit: MAX_COUNTERS_PER_RESULT * MAX_COUNTER_NAME_BYTES,
        });
    }
    Ok(TaskOutput {
        inline: output.inline,
        file: output.file.map(|file| FileRef {
            url: file.url,
            size_bytes: file.size_bytes,
        }),
        counters: output.counters.into_iter().collect(),
    })
}

/// Converts a core failure to the wire.
pub fn failure_to_wire(failure: &TaskFailure) -> v1::TaskFailure {
    v1::TaskFailure {
        message: failure.message.clone(),
        exit_code: failure.exit_code,
        stderr_tail: failure.stderr_tail.clone(),
        retryable: failure.retryable,
        lost_inputs: failure.lost_inputs.clone(),
    }
}

/// Converts a wire failure to the core, trimming oversized text rather than refusing it:
/// a failure report must never be lost because its stderr was long.
pub fn failure_from_wire(failure: v1::TaskFailure) -> TaskFailure {
    TaskFailure {
        message: truncate_front(failure.message, MAX_STDERR_TAIL_BYTES),
        exit_code: failure.exit_code,
        stderr_tail: keep_tail(failure.stderr_tail, MAX_STDERR_TAIL_BYTES),
        retryable: failure.retryable,
        lost_inputs: failure.lost_inputs,
    }
}

/// Converts a finished attempt for the wire.
pub fn attempt_result_to_wire(
    attempt: AttemptId,
    outcome: &Result<TaskOutput, TaskFailure>,
    duration_ms: u64,
) -> v1::AttemptResult {
    let outcome = match outcome {
        Ok(output) => v1::attempt_result::Outcome::Success(output_to_wire(output)),
        Err(failure) => v1::attempt_result::Outcome::Failure(failure_to_wire(failure)),
    };
    v1::AttemptResult {
        attempt_id: attempt.0,
        outcome: Some(outcome),
        duration_ms,
    }
}

/// Converts a reported attempt from the wire. An oversized inline result becomes a
/// non-retryable failure of that attempt, so the report is never lost.
pub fn reported_result_from_wire(result: v1::AttemptResult) -> Result<ReportedResult, WireError> {
    let outcome = match result.outcome.ok_or(WireError::Missing("outcome"))? {
        v1::attempt_result::Outcome::Success(output) => {
            output_from_wire(output).map_err(|error| TaskFailure {
                message: format!("result refused: {error}"),
                exit_code: None,
                stderr_tail: String::new(),
                retryable: false,
                lost_inputs: Vec::new(),
            })
        }
        v1::attempt_result::Outcome::Failure(failure) => Err(failure_from_wire(failure)),
    };
    Ok(ReportedResult {
        attempt: AttemptId(result.attempt_id),
        outcome,
        duration_ms: result.duration_ms,
    })
}

fn truncate_front(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Returns the last `limit` bytes of `text` or fewer, cut on a character boundary.
pub fn keep_tail(text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_inline_result_becomes_a_non_retryable_failure() {
        let wire = v1::AttemptResult {
            attempt_id: 9,
            outcome: Some(v1::attempt_result::Outcome::Success(v1::TaskOutput {
                inline: vec![0; MAX_INLINE_RESULT_BYTES + 1],
                file: None,
                ..Default::default()
            })),
            duration_ms: 1,
        };
        let result = reported_result_from_wire(wire).unwrap();
        let failure = result.outcome.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure.message.contains("at most 65536"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn long_stderr_keeps_its_tail_on_a_char_boundary() {
        let stderr = format!("{}é-end", "x".repeat(10_000));
        let failure = failure_from_wire(v1::TaskFailure {
            message: "m".into(),
            exit_code: Some(2),
            stderr_tail: stderr,
            retryable: true,
            ..Default::default()
        });
        assert!(failure.stderr_tail.len() <= MAX_STDERR_TAIL_BYTES);
        assert!(failure.stderr_tail.ends_with("é-end"));
    }

    #[test]
    fn an_assignment_survives_the_wire_with_its_correlation_id() {
        let assignment = Assignment {
            task: TaskId::new(JobId(5), 6),
            attempt: AttemptId(0x7f),
            attempt_number: 2,
            kind: "mapreduce.reduce".into(),
            payload: b"{}".to_vec(),
            timeout_ms: Some(1500),
            speculative: true,
            inputs: vec![UpstreamOutput {
                task_index: 1,
                attempt: AttemptId(0x10),
                file: FileRef {
                    url: "http://w:1/files/5/1/10/map.out".into(),
                    size_bytes: 42,
                },
            }],
            inputs_complete: false,
            inputs_version: 9,
            trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let wire = assignment_to_wire(assignment.clone());
        assert_eq!(wire.correlation_id, "job-5/task-6/attempt-7f");
        assert_eq!(assignment_from_wire(wire), assignment);
        let untimed = v1::Assignment {
            timeout_ms: 0,
            ..Default::default()
        };
        let untimed = assignment_from_wire(untimed);
        assert_eq!(untimed.timeout_ms, None);
        assert_eq!(untimed.trace_parent, None, "an empty traceparent is none");
        assert!(
            untimed.inputs_complete,
            "an older coordinator's grant is complete"
        );
    }

    #[test]
    fn a_result_without_outcome_is_refused() {
        let wire = v1::AttemptResult {
            attempt_id: 1,
            outcome: None,
            duration_ms: 0,
        };
        assert!(matches!(
            reported_result_from_wire(wire),
            Err(WireError::Missing("outcome"))
        ));
    }
}
