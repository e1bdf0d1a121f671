//! A REST submission body (`POST /api/v1/jobs`) must be accepted or refused with an
//! error, never panic: the JSON is read into a request, a task farm becomes a spec the
//! core validates, and a pipeline (with its tables inline) is planned into tasks.
//! MapReduce requests are only parsed here: planning them lists and creates directories.
#![no_main]
use essaim_coordinator::planning::{SubmitRequest, plan_tasks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<SubmitRequest>(data) else {
        return;
    };
    match request {
        SubmitRequest::Tasks(tasks) => {
            let planned = plan_tasks(tasks);
            let raw = essaim_proto::raw_job_spec_from_wire(planned.spec);
            let _ = raw.validate(&["noop".to_string(), "command".to_string()]);
        }
        SubmitRequest::Stream(mut stream) => {
            // As over the API: tables inline only, no file is read.
            stream.base_dir = Some("/nonexistent".into());
            let tables = essaim_planning::stream::Tables::InlineOnly;
            if let Ok(spec) = essaim_planning::stream::job_spec(&stream, tables) {
                assert!(spec.name.starts_with("stream:"));
            }
        }
        SubmitRequest::Mapreduce(_) => {}
    }
});
