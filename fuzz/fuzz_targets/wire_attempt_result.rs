//! Whatever a worker sends as a result must be decoded and validated without panicking.
#![no_main]
use essaim_proto::v1;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = v1::ReportResultsRequest::decode(data) {
        for result in request.results {
            let _ = essaim_proto::reported_result_from_wire(result);
        }
    }
});
