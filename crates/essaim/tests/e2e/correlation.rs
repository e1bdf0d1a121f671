//! One correlation id follows an attempt everywhere: the coordinator's log line that
//! granted it and the one that committed (or failed) it, the worker's log lines inside
//! the attempt's span, and the environment of the command it ran
//! (`ESSAIM_CORRELATION_ID`). An operator who finds the id in any of these finds the
//! others with one search.
//!
//! The processes log JSON lines (`--log-json`) at debug level for the coordinator and
//! worker crates, the way an operator chasing one attempt would run them, so the test
//! reads fields rather than matching text.
//!
//! With an OTLP endpoint (and the `otlp` feature), the worker's `attempt` span also
//! reaches an OpenTelemetry collector, carrying the same correlation id: the second test
//! runs an in-process collector and checks what arrives.

use crate::harness::{
    Deadline, EVENTUALLY, Process, free_port, job_spec, one_at_a_time, output_text, shell_task,
    spawn_essaim, within,
};
use essaim_proto::{CoordinatorClient, v1};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Debug for the two crates whose lines carry the correlation id; info elsewhere.
const RUST_LOG: &str = "info,essaim_coordinator=debug,essaim_worker=debug";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_correlation_id_links_coordinator_worker_and_command_for_each_attempt() {
    let _one_at_a_time = one_at_a_time().await;
    let dir = tempfile::Builder::new()
        .prefix("essaim-e2e-correlation-")
        .tempdir()
        .expect("a temporary directory");
    let mut cluster = JsonLoggingCluster::start(dir.path()).await;

    // Task 0 prints its id and succeeds; task 1 prints it on stderr and fails for good.
    let tasks = vec![
        shell_task("echo \"$ESSAIM_CORRELATION_ID\"", &[]),
        shell_task("echo \"$ESSAIM_CORRELATION_ID\" >&2; exit 3", &[]),
    ];
    let job_id = cluster.submit(job_spec(tasks, 1)).await;
    let job = cluster.wait_job(job_id).await;
    assert_eq!(job.state, "failed", "{job:?}");

    // The succeeded attempt: its id as the command saw it…
    let results = cluster.results(job_id).await;
    assert_eq!(results.len(), 1, "{results:?}");
    let result = &results[0];
    let expected = essaim_proto::correlation_id(job_id, 0, result.attempt_id);
    assert_eq!(
        output_text(result).trim(),
        expected,
        "the command's environment"
    );
    // …in the coordinator's grant and commit lines, and in the worker's attempt span.
    let coordinator_lines = json_lines(&cluster.coordinator.log_text());
    let worker_lines = json_lines(&cluster.worker.log_text());
    let attempt = Attempt {
        job: job_id,
        task: 0,
        attempt: result.attempt_id,
        correlation_id: &expected,
    };
    attempt.assert_coordinator_logged(&coordinator_lines, "DEBUG", "attempt granted");
    attempt.assert_coordinator_logged(&coordinator_lines, "DEBUG", "attempt committed");
    attempt.assert_worker_logged(&worker_lines, "attempt succeeded");

    // The failed attempt: the same three places, the coordinator's line a warning.
    let letters = cluster.dead_letters(job_id).await;
    let [letter] = letters.as_slice() else {
        panic!("one dead letter expected: {letters:?}");
    };
    let [error] = letter.errors.as_slice() else {
        panic!("one failed attempt expected: {letter:?}");
    };
    let failure = error.failure.clone().unwrap_or_default();
    let expected = essaim_proto::correlation_id(job_id, 1, error.attempt_id);
    assert_eq!(
        failure.stderr_tail.trim(),
        expected,
        "the command's environment"
    );
    let attempt = Attempt {
        job: job_id,
        task: 1,
        attempt: error.attempt_id,
        correlation_id: &expected,
    };
    attempt.assert_coordinator_logged(&coordinator_lines, "DEBUG", "attempt granted");
    attempt.assert_coordinator_logged(&coordinator_lines, "WARN", "attempt failed");
    attempt.assert_worker_logged(&worker_lines, "command started");

    cluster.kill();
}

#[cfg(feature = "otlp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_spans_reach_an_otlp_collector_with_their_correlation_id() {
    use nix::sys::signal::Signal;

    let _one_at_a_time = one_at_a_time().await;
    let dir = tempfile::Builder::new()
        .prefix("essaim-e2e-otlp-")
        .tempdir()
        .expect("a temporary directory");
    let mut collector = otlp_collector::Collector::start().await;
    let endpoint = collector.endpoint.clone();
    let mut cluster = JsonLoggingCluster::start_with_env(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    )
    .await;

    let tasks = vec![shell_task("echo \"$ESSAIM_CORRELATION_ID\"", &[])];
    let job_id = cluster.submit(job_spec(tasks, 1)).await;
    let job = cluster.wait_job(job_id).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let results = cluster.results(job_id).await;
    let [result] = results.as_slice() else {
        panic!("one result expected: {results:?}");
    };
    let expected = essaim_proto::correlation_id(job_id, 0, result.attempt_id);
    assert_eq!(
        output_text(result).trim(),
        expected,
        "the command's environment"
    );

    // Spans leave in batches every 5 s; stopping the worker right away shows that the
    // last batch is flushed at shutdown rather than lost.
    cluster.worker.signal(Signal::SIGTERM);
    let status = cluster.worker.wait_exit(EVENTUALLY).await;
    assert!(status.success(), "the worker stopped with {status}");

    let span = collector
        .wait_for_span(|span| {
            span.name == "attempt"
                && span.attributes.get("correlation_id").map(String::as_str)
                    == Some(expected.as_str())
        })
        .await;
    assert_eq!(span.service_name, "essaim-worker", "{span:#?}");
    let job = job_id.to_string();
    let attempt = format!("{:x}", result.attempt_id);
    for (name, value) in [("job", job.as_str()), ("task", "0"), ("attempt", &attempt)] {
        assert_eq!(
            span.attributes.get(name).map(String::as_str),
            Some(value),
            "{name} in {span:#?}"
        );
    }
    cluster.kill();
}

/// An OTLP/gRPC trace collector on a loopback port, in the test process (also used by
/// `trace_context.rs`).
#[cfg(feature = "otlp")]
pub(crate) mod otlp_collector {
    use super::{Deadline, EVENTUALLY};
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
    use std::collections::BTreeMap;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    /// A received span, flattened: its name, its service, its ids in hex, and its
    /// attributes as text.
    #[derive(Debug, Clone)]
    pub struct ReceivedSpan {
        pub name: String,
        pub service_name: String,
        pub trace_id: String,
        pub span_id: String,
        /// Empty for a root span.
        pub parent_span_id: String,
        pub attributes: BTreeMap<String, String>,
    }

    /// The collector: spans arrive on a channel as they are exported.
    pub struct Collector {
        /// Its URL, as OTEL_EXPORTER_OTLP_ENDPOINT.
        pub endpoint: String,
        spans_rx: mpsc::UnboundedReceiver<ReceivedSpan>,
        shutdown: CancellationToken,
    }

    impl Collector {
        /// Starts a collector on a free loopback port.
        pub async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("loopback can bind");
            let address = listener
                .local_addr()
                .expect("a bound listener has an address");
            let (spans_tx, spans_rx) = mpsc::unbounded_channel();
            let shutdown = CancellationToken::new();
            let server = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Receiver { spans_tx }))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    shutdown.clone().cancelled_owned(),
                );
            // Stopped by `shutdown` when the collector is dropped.
            tokio::spawn(server);
            Self {
                endpoint: format!("http://{address}"),
                spans_rx,
                shutdown,
            }
        }

        /// Waits for a span that satisfies `wanted`, failing the test after a while.
        pub async fn wait_for_span(
            &mut self,
            wanted: impl Fn(&ReceivedSpan) -> bool,
        ) -> ReceivedSpan {
            let deadline = Deadline::after(EVENTUALLY, "the attempt span at the collector");
            let mut seen = Vec::new();
            loop {
                let next = tokio::time::timeout(EVENTUALLY, self.spans_rx.recv()).await;
                let Ok(Some(span)) = next else {
                    panic!("no matching span arrived; received: {seen:#?}");
                };
                if wanted(&span) {
                    return span;
                }
                seen.push(span);
                deadline.check();
            }
        }

        /// Collects spans until `complete` says the ones received so far are enough,
        /// failing the test after a while; returns them all.
        pub async fn wait_until(
            &mut self,
            what: &str,
            complete: impl Fn(&[ReceivedSpan]) -> bool,
        ) -> Vec<ReceivedSpan> {
            let deadline = Deadline::after(EVENTUALLY, what.to_string());
            let mut seen = Vec::new();
            while !complete(&seen) {
                let next = tokio::time::timeout(EVENTUALLY, self.spans_rx.recv()).await;
                let Ok(Some(span)) = next else {
                    panic!("{what}: the spans never sufficed; received: {seen:#?}");
                };
                seen.push(span);
                deadline.check();
            }
            seen
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    struct Receiver {
        spans_tx: mpsc::UnboundedSender<ReceivedSpan>,
    }

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            for resource_spans in request.into_inner().resource_spans {
                let resource = resource_spans.resource.unwrap_or_default();
                let service_name = text_attributes(&resource.attributes)
                    .remove("service.name")
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    for span in scope_spans.spans {
                        // The test may have stopped listening; the span is then unwanted.
                        let _ = self.spans_tx.send(ReceivedSpan {
                            name: span.name,
                            service_name: service_name.clone(),
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                            attributes: text_attributes(&span.attributes),
                        });
                    }
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    /// Returns bytes as lowercase hex, the way `traceparent` writes ids.
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Returns string, integer and boolean attributes as text.
    fn text_attributes(attributes: &[KeyValue]) -> BTreeMap<String, String> {
        let mut texts = BTreeMap::new();
        for attribute in attributes {
            let value = attribute
                .value
                .as_ref()
                .and_then(|value| value.value.as_ref());
            let text = match value {
                Some(any_value::Value::StringValue(text)) => text.clone(),
                Some(any_value::Value::IntValue(number)) => number.to_string(),
                Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
                _ => continue,
            };
            texts.insert(attribute.key.clone(), text);
        }
        texts
    }
}

// ---------------------------------------------------------------- log lines

/// Parses every JSON line of a log; lines that are not JSON (the coordinator's startup
/// banner) are skipped.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// One attempt and the correlation id it must carry.
struct Attempt<'a> {
    job: u64,
    task: u32,
    attempt: u64,
    correlation_id: &'a str,
}

impl Attempt<'_> {
    /// Returns true when `fields` (an event's fields or a span) name this attempt's
    /// job, task and attempt (in hex, as logged).
    fn is_named_by(&self, fields: &Value) -> bool {
        fields["job"] == self.job
            && fields["task"] == self.task
            && fields["attempt"] == format!("{:x}", self.attempt)
    }

    /// Asserts that the coordinator logged `message` at `level` with this attempt's
    /// correlation id, job, task and attempt as fields.
    fn assert_coordinator_logged(&self, lines: &[Value], level: &str, message: &str) {
        let found = lines.iter().find(|line| {
            line["fields"]["message"] == message
                && line["fields"]["correlation_id"] == self.correlation_id
        });
        let Some(line) = found else {
            panic!(
                "no coordinator line `{message}` with correlation id {} in:\n{lines:#?}",
                self.correlation_id
            );
        };
        assert_eq!(line["level"], level, "{line:#}");
        assert!(
            self.is_named_by(&line["fields"]),
            "wrong job/task/attempt: {line:#}"
        );
    }

    /// Asserts that the worker logged `message` inside this attempt's span, whose
    /// fields carry its correlation id, job, task and attempt.
    fn assert_worker_logged(&self, lines: &[Value], message: &str) {
        let found = lines.iter().find(|line| {
            line["fields"]["message"] == message
                && line["span"]["name"] == "attempt"
                && line["span"]["correlation_id"] == self.correlation_id
        });
        let Some(line) = found else {
            panic!(
                "no worker line `{message}` in an attempt span with correlation id {} in:\n{lines:#?}",
                self.correlation_id
            );
        };
        assert!(
            self.is_named_by(&line["span"]),
            "wrong job/task/attempt: {line:#}"
        );
    }
}

// ---------------------------------------------------------------- the cluster

/// A coordinator and one worker logging JSON at debug level. The harness's `Cluster`
/// starts its processes with fixed log settings, so this test starts its own, with the
/// harness's `Process` (log file, kill on drop) and the same fast timings.
pub(crate) struct JsonLoggingCluster {
    pub(crate) coordinator: Process,
    pub(crate) worker: Process,
    client: CoordinatorClient,
    /// The coordinator's URL.
    pub(crate) url: String,
}

impl JsonLoggingCluster {
    async fn start(dir: &Path) -> Self {
        Self::start_with_env(dir, &[]).await
    }

    /// Starts the cluster with `extra_env` set for both processes.
    pub(crate) async fn start_with_env(dir: &Path, extra_env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut env = vec![("RUST_LOG", RUST_LOG)];
        env.extend_from_slice(extra_env);
        let coordinator_args = [
            "--log-json".to_string(),
            "coordinator".to_string(),
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
            "--data-dir".to_string(),
            dir.join("coordinator-data").display().to_string(),
            "--heartbeat-ms".to_string(),
            "200".to_string(),
            "--worker-timeout-ms".to_string(),
            "1000".to_string(),
        ];
        let mut coordinator = spawn_essaim(
            "coordinator",
            &coordinator_args,
            &env,
            dir.join("coordinator.log"),
        );
        let client = connect(&url, &mut coordinator).await;
        let scratch = dir.join("worker-scratch");
        std::fs::create_dir_all(&scratch).expect("the scratch directory can be created");
        let worker_args = [
            "--log-json".to_string(),
            "worker".to_string(),
            "--coordinator".to_string(),
            url.clone(),
            "--slots".to_string(),
            "1".to_string(),
            "--allow-commands".to_string(),
            "--scratch-dir".to_string(),
            scratch.display().to_string(),
            "--name".to_string(),
            "correlation-worker".to_string(),
        ];
        let worker = spawn_essaim("worker", &worker_args, &env, dir.join("worker.log"));
        let cluster = Self {
            coordinator,
            worker,
            client,
            url,
        };
        cluster.wait_for_one_worker().await;
        cluster
    }

    async fn wait_for_one_worker(&self) {
        let deadline = Deadline::after(EVENTUALLY, "the worker to register");
        loop {
            let reply = within(
                "ListWorkers",
                self.client.clone().list_workers(v1::ListWorkersRequest {}),
            )
            .await;
            if reply
                .expect("ListWorkers succeeds")
                .into_inner()
                .workers
                .len()
                == 1
            {
                return;
            }
            deadline.tick().await;
        }
    }

    async fn submit(&self, spec: v1::JobSpec) -> u64 {
        let request = v1::SubmitJobRequest { spec: Some(spec) };
        let reply = within("SubmitJob", self.client.clone().submit_job(request)).await;
        reply.expect("the job is accepted").into_inner().job_id
    }

    pub(crate) async fn wait_job(&self, job_id: u64) -> v1::JobStatus {
        let deadline = Deadline::after(EVENTUALLY, format!("job {job_id} to finish"));
        loop {
            let request = v1::WaitJobRequest {
                job_id,
                timeout_ms: 1000,
            };
            let reply = within("WaitJob", self.client.clone().wait_job(request)).await;
            let job = reply.expect("WaitJob succeeds").into_inner();
            if job.state != "running" {
                return job;
            }
            deadline.check();
        }
    }

    async fn results(&self, job_id: u64) -> Vec<v1::TaskResult> {
        let request = v1::GetResultsRequest {
            job_id,
            from_task: 0,
            limit: 64,
        };
        let reply = within("GetResults", self.client.clone().get_results(request)).await;
        reply.expect("GetResults succeeds").into_inner().results
    }

    async fn dead_letters(&self, job_id: u64) -> Vec<v1::DeadLetter> {
        let request = v1::ListDeadLettersRequest { job_id };
        let reply = within(
            "ListDeadLetters",
            self.client.clone().list_dead_letters(request),
        )
        .await;
        reply
            .expect("ListDeadLetters succeeds")
            .into_inner()
            .dead_letters
    }

    /// Kills both processes (the worker first, so it does not log a lost coordinator).
    pub(crate) fn kill(&mut self) {
        self.worker.kill();
        self.coordinator.kill();
    }
}

impl Drop for JsonLoggingCluster {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            for process in [&self.coordinator, &self.worker] {
                eprintln!(
                    "---------- {} ({}) ----------\n{}",
                    process.name,
                    process.log.display(),
                    process.log_text()
                );
            }
        }
    }
}

/// Connects to the coordinator once it accepts calls, failing if it exits first.
async fn connect(url: &str, coordinator: &mut Process) -> CoordinatorClient {
    let deadline = Deadline::after(EVENTUALLY, "the coordinator to accept connections");
    loop {
        if let Some(status) = coordinator.exit_status() {
            panic!(
                "the coordinator exited with {status}:\n{}",
                coordinator.log_text()
            );
        }
        let connecting = essaim_proto::connect(url, None, Duration::from_secs(1));
        if let Ok(mut client) = within("connect", connecting).await {
            let listed = client.list_workers(v1::ListWorkersRequest {}).await;
            if listed.is_ok() {
                return client;
            }
        }
        deadline.tick().await;
    }
}
