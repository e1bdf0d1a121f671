//! A broker's answers to the consumer-group requests (FindCoordinator, OffsetCommit,
//! OffsetFetch) decode or fail with an error, never a panic, whatever the bytes.
#![no_main]
use essaim_connect_kafka::group::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::find_coordinator_response(data);
    let _ = wire::commit_response(data);
    let _ = wire::fetch_response(data);
    if let Ok(body) = wire::response_body(data, 7, "fuzz") {
        assert!(body.len() + 4 == data.len());
    }
});
