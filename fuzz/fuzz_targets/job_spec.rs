//! A submitted job spec must be accepted or refused with an error, never panic, and an
//! accepted spec always respects the documented limits.
#![no_main]
use essaim_core::spec::MAX_TASK_PAYLOAD_BYTES;
use essaim_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = v1::SubmitJobRequest::decode(data) else { return };
    let Some(spec) = request.spec else { return };
    let raw = essaim_proto::raw_job_spec_from_wire(spec);
    let kinds = vec!["noop".to_string(), "command".to_string()];
    if let Ok(valid) = raw.validate(&kinds) {
        assert!(!valid.tasks.is_empty());
        assert!(valid.tasks.iter().all(|t| t.payload.len() <= MAX_TASK_PAYLOAD_BYTES));
        assert!(valid.backoff_base_ms <= valid.backoff_max_ms);
        assert!(valid.speculation_multiplier.is_none_or(|m| m >= 1.0));
    }
});
