//! One trace spans the client, the coordinator, the workers and the shuffle fetch: a
//! script's `TRACEPARENT` reaches `essaim submit`, whose gRPC call carries `traceparent`
//! to the coordinator, which hands the submission's context to every grant, whose
//! attempt span on the worker passes it in the HTTP headers of the reducer's fetches.
//!
//! Every process exports to an in-process OTLP collector (`correlation.rs`), and the test
//! checks each link: trace id and parent span id, service by service.

use crate::correlation::JsonLoggingCluster;
use crate::correlation::otlp_collector::{Collector, ReceivedSpan};
use crate::harness::{essaim_with_env, one_at_a_time};

/// The script's trace, as a W3C `traceparent` (version, trace id, parent id, sampled).
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_client_coordinator_worker_and_shuffle_fetch() {
    let _one_at_a_time = one_at_a_time().await;
    let dir = tempfile::Builder::new()
        .prefix("essaim-e2e-trace-")
        .tempdir()
        .expect("a temporary directory");
    let mut collector = Collector::start().await;
    let endpoint = collector.endpoint.clone();
    let mut cluster = JsonLoggingCluster::start_with_env(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    )
    .await;

    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("the input directory can be created");
    std::fs::write(input.join("words.txt"), "to be or not to be\n").expect("write the input");
    let output = dir.path().join("output");
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_PARENT_SPAN}-01");
    let run = essaim_with_env(
        &[
            "submit",
            "wordcount",
            "--input",
            input.to_str().expect("a UTF-8 path"),
            "--output",
            output.to_str().expect("a UTF-8 path"),
            "--reducers",
            "1",
        ],
        &[
            ("ESSAIM_COORDINATOR", cluster.url.as_str()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("TRACEPARENT", traceparent.as_str()),
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");

    let spans = collector
        .wait_until("the whole trace at the collector", |spans| {
            TraceLinks::find(spans).is_some()
        })
        .await;
    let links = TraceLinks::find(&spans).expect("the wait returned a complete trace");
    assert_eq!(links.client.name, "essaim submit", "{:#?}", links.client);
    assert_eq!(links.client.parent_span_id, CLIENT_PARENT_SPAN);
    assert!(
        links.attempts.len() >= 2,
        "a map and a reduce attempt: {links:#?}"
    );
    cluster.kill();
}

/// The spans of one trace, each found through the one before it.
#[derive(Debug)]
struct TraceLinks<'a> {
    /// `essaim submit`'s own span, a child of the script's.
    client: &'a ReceivedSpan,
    /// The attempts on the worker, children of the coordinator's `SubmitJob` span.
    attempts: Vec<&'a ReceivedSpan>,
}

impl<'a> TraceLinks<'a> {
    /// Returns the links once every one is there: client → `SubmitJob` on the
    /// coordinator → attempts on the worker → the worker's span of a shuffle fetch,
    /// child of an attempt.
    fn find(spans: &'a [ReceivedSpan]) -> Option<Self> {
        let in_trace = |span: &&ReceivedSpan| span.trace_id == CLIENT_TRACE;
        let client = spans
            .iter()
            .filter(in_trace)
            .find(|span| span.service_name == "essaim")?;
        let submit = spans.iter().filter(in_trace).find(|span| {
            span.service_name == "essaim-coordinator"
                && span.name == "essaim.v1.Coordinator/SubmitJob"
                && span.parent_span_id == client.span_id
        })?;
        let attempts: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(in_trace)
            .filter(|span| {
                span.service_name == "essaim-worker"
                    && span.name == "attempt"
                    && span.parent_span_id == submit.span_id
            })
            .collect();
        let fetch_served = spans.iter().filter(in_trace).any(|span| {
            let serves_files = span
                .attributes
                .get("url.path")
                .is_some_and(|path| path.starts_with("/files"));
            let under_an_attempt = attempts
                .iter()
                .any(|attempt| attempt.span_id == span.parent_span_id);
            span.service_name == "essaim-worker" && serves_files && under_an_attempt
        });
        (attempts.len() >= 2 && fetch_served).then_some(Self { client, attempts })
    }
}
