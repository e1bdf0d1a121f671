//! A submitted job spec must be accepted or refused with an error, never panic, and an
//! accepted spec always respects the documented limits.
#![no_main]
use essaim_core::spec::{MAX_TASK_PAYLOAD_BYTES, RawJobSpec, TaskSpec};
use essaim_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = v1::SubmitJobRequest::decode(data) else { return };
    let Some(spec) = request.spec else { return };
    let raw = RawJobSpec {
        name: spec.name,
        tasks: spec.tasks.into_iter().map(|t| TaskSpec { kind: t.kind, payload: t.payload }).collect(),
        priority: spec.priority,
        max_concurrency: spec.max_concurrency,
        max_attempts: spec.max_attempts,
        deadline: spec.deadline_unix_ms,
        task_timeout_ms: spec.task_timeout_ms,
        backoff_base_ms: spec.retry_backoff_base_ms,
        backoff_max_ms: spec.retry_backoff_max_ms,
        speculation_multiplier: spec.speculation_multiplier,
    };
    let kinds = vec!["noop".to_string(), "command".to_string()];
    if let Ok(valid) = raw.validate(&kinds) {
        assert!(!valid.tasks.is_empty());
        assert!(valid.tasks.iter().all(|t| t.payload.len() <= MAX_TASK_PAYLOAD_BYTES));
        assert!(valid.backoff_base_ms <= valid.backoff_max_ms);
        assert!(valid.speculation_multiplier.is_none_or(|m| m >= 1.0));
    }
});
