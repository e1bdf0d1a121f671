//! The worker's whole life against a small in-process coordinator: register, pull,
//! report in batches, register again when forgotten, drain and hand back.
//!
//! The coordinator here is a stand-in that speaks the real gRPC API over real loopback
//! sockets, with just enough behaviour (a FIFO of assignments, a set of known workers)
//! to drive every loop of the worker. It does not schedule, retry or fence: the real
//! coordinator's end-to-end tests cover that.

// Helpers outside `#[test]` functions are test code too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use essaim_proto::v1;
use essaim_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use essaim_worker::{ExecutorRegistry, RunningWorker, WorkerConfig, start_worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

const LONG_POLL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct CoordinatorState {
    registrations: Vec<u64>,
    known_workers: BTreeSet<u64>,
    queue: VecDeque<v1::Assignment>,
    /// Every result received, with the worker id it came under.
    results: Vec<(u64, v1::AttemptResult)>,
    report_calls: usize,
    heartbeats: Vec<v1::HeartbeatRequest>,
    deregistrations: Vec<v1::DeregisterWorkerRequest>,
    forget_workers_at_next_heartbeat: bool,
    /// Answers to `WatchInputs`, in order; once they run out, the lease is lost.
    inputs_answers: VecDeque<v1::WatchInputsResponse>,
    /// Every `WatchInputs` received.
    inputs_questions: Vec<v1::WatchInputsRequest>,
}

#[derive(Clone, Default)]
struct StandInCoordinator {
    state: Arc<Mutex<CoordinatorState>>,
    work_queued: Arc<Notify>,
}

impl StandInCoordinator {
    fn with_state<T>(&self, read: impl FnOnce(&mut CoordinatorState) -> T) -> T {
        read(&mut self.state.lock().unwrap())
    }

    fn enqueue(&self, assignments: impl IntoIterator<Item = v1::Assignment>) {
        self.with_state(|state| state.queue.extend(assignments));
        self.work_queued.notify_waiters();
    }

    fn take(&self, worker_id: u64, max_tasks: u32) -> Option<Vec<v1::Assignment>> {
        self.with_state(|state| {
            if !state.known_workers.contains(&worker_id) {
                return None;
            }
            let count = state.queue.len().min(max_tasks as usize);
            Some(state.queue.drain(..count).collect())
        })
    }
}

fn unused<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not part of the stand-in"))
}

#[tonic::async_trait]
impl Coordinator for StandInCoordinator {
    async fn register_worker(
        &self,
        request: Request<v1::RegisterWorkerRequest>,
    ) -> Result<Response<v1::RegisterWorkerResponse>, Status> {
        assert!(request.get_ref().kinds.contains(&"noop".to_string()));
        let worker_id = self.with_state(|state| {
            let worker_id = 0x100 + state.registrations.len() as u64;
            state.registrations.push(worker_id);
            state.known_workers.insert(worker_id);
            worker_id
        });
        Ok(Response::new(v1::RegisterWorkerResponse {
            worker_id,
            heartbeat_interval_ms: 100,
            worker_timeout_ms: 5_000,
            long_poll_ms: LONG_POLL.as_millis() as u64,
            // An older coordinator: no file capability key, so the file server asks
            // for the cluster token.
            ..Default::default()
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let reregister = self.with_state(|state| {
            if state.forget_workers_at_next_heartbeat {
                state.forget_workers_at_next_heartbeat = false;
                state.known_workers.clear();
            }
            let known = state.known_workers.contains(&request.worker_id);
            state.heartbeats.push(request);
            !known
        });
        Ok(Response::new(v1::HeartbeatResponse {
            reregister,
            cancel_attempts: Vec::new(),
            ..Default::default()
        }))
    }

    async fn pull_tasks(
        &self,
        request: Request<v1::PullTasksRequest>,
    ) -> Result<Response<v1::PullTasksResponse>, Status> {
        let request = request.into_inner();
        assert!(
            request.max_tasks > 0,
            "a pull must ask for at least one attempt"
        );
        let woken = self.work_queued.notified();
        let Some(mut assignments) = self.take(request.worker_id, request.max_tasks) else {
            return Ok(Response::new(v1::PullTasksResponse {
                assignments: Vec::new(),
                reregister: true,
            }));
        };
        if assignments.is_empty() {
            // The long poll: park until work arrives or the poll times out.
            let _ = tokio::time::timeout(LONG_POLL, woken).await;
            assignments = self
                .take(request.worker_id, request.max_tasks)
                .unwrap_or_default();
        }
        Ok(Response::new(v1::PullTasksResponse {
            assignments,
            reregister: false,
        }))
    }

    async fn report_results(
        &self,
        request: Request<v1::ReportResultsRequest>,
    ) -> Result<Response<v1::ReportResultsResponse>, Status> {
        let request = request.into_inner();
        let reregister = self.with_state(|state| {
            state.report_calls += 1;
            if !state.known_workers.contains(&request.worker_id) {
                return true;
            }
            let worker_id = request.worker_id;
            state.results.extend(
                request
                    .results
                    .into_iter()
                    .map(|result| (worker_id, result)),
            );
            false
        });
        Ok(Response::new(v1::ReportResultsResponse {
            rejected: 0,
            reregister,
        }))
    }

    async fn watch_inputs(
        &self,
        request: Request<v1::WatchInputsRequest>,
    ) -> Result<Response<v1::WatchInputsResponse>, Status> {
        let answer = self.with_state(|state| {
            state.inputs_questions.push(request.into_inner());
            state.inputs_answers.pop_front()
        });
        Ok(Response::new(answer.unwrap_or(v1::WatchInputsResponse {
            lease_lost: true,
            ..Default::default()
        })))
    }

    async fn deregister_worker(
        &self,
        request: Request<v1::DeregisterWorkerRequest>,
    ) -> Result<Response<v1::DeregisterWorkerResponse>, Status> {
        self.with_state(|state| state.deregistrations.push(request.into_inner()));
        Ok(Response::new(v1::DeregisterWorkerResponse {}))
    }

    async fn submit_job(
        &self,
        _: Request<v1::SubmitJobRequest>,
    ) -> Result<Response<v1::SubmitJobResponse>, Status> {
        unused()
    }
    async fn plan_and_submit(
        &self,
        _: Request<v1::PlanAndSubmitRequest>,
    ) -> Result<Response<v1::PlanAndSubmitResponse>, Status> {
        unused()
    }
    async fn get_job(
        &self,
        _: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        unused()
    }
    async fn list_jobs(
        &self,
        _: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        unused()
    }
    async fn wait_job(
        &self,
        _: Request<v1::WaitJobRequest>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        unused()
    }
    async fn cancel_job(
        &self,
        _: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::JobStatus>, Status> {
        unused()
    }
    async fn get_results(
        &self,
        _: Request<v1::GetResultsRequest>,
    ) -> Result<Response<v1::GetResultsResponse>, Status> {
        unused()
    }
    async fn list_workers(
        &self,
        _: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
        unused()
    }
    async fn list_dead_letters(
        &self,
        _: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        unused()
    }
    async fn requeue_dead_letters(
        &self,
        _: Request<v1::DeadLetterSelection>,
    ) -> Result<Response<v1::DeadLetterChange>, Status> {
        unused()
    }
    async fn purge_dead_letters(
        &self,
        _: Request<v1::DeadLetterSelection>,
    ) -> Result<Response<v1::DeadLetterChange>, Status> {
        unused()
    }
}

/// Serves `coordinator` on a loopback port until `stop` fires.
async fn serve(
    coordinator: StandInCoordinator,
    stop: CancellationToken,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Without TCP_NODELAY on the server side, Nagle's algorithm meeting delayed ACKs
    // adds milliseconds to every small response: 3,000 no-ops took 3.5 s instead of
    // 0.13 s. The real coordinator must set it too.
    let accepted = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let incoming = tokio_stream::StreamExt::map(accepted, |connection| {
        connection.inspect(|stream| stream.set_nodelay(true).expect("set TCP_NODELAY"))
    });
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(CoordinatorServer::new(coordinator))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .unwrap();
    });
    (address, server)
}

/// A stand-in coordinator served on loopback with a real worker (built-in executors)
/// pulling from it: what a test needs to drain the worker and stop the server.
struct WorkerAgainstStandIn {
    /// Stops the stand-in's server.
    stop_coordinator: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    /// The worker's scratch directory, removed when dropped.
    _scratch: tempfile::TempDir,
    /// Drains the worker.
    drain: CancellationToken,
}

impl WorkerAgainstStandIn {
    /// Serves a stand-in coordinator and starts a worker of `slots` slots that
    /// prefetches `prefetch` attempts; returns the stand-in, the worker and the rest.
    async fn start(slots: u32, prefetch: u32) -> (StandInCoordinator, RunningWorker, Self) {
        Self::start_with(slots, prefetch, ExecutorRegistry::with_builtins(false)).await
    }

    /// Like [`Self::start`], with the worker running `executors`.
    async fn start_with(
        slots: u32,
        prefetch: u32,
        executors: ExecutorRegistry,
    ) -> (StandInCoordinator, RunningWorker, Self) {
        let coordinator = StandInCoordinator::default();
        let stop_coordinator = CancellationToken::new();
        let (address, server) = serve(coordinator.clone(), stop_coordinator.clone()).await;
        let scratch = tempfile::tempdir().unwrap();
        let drain = CancellationToken::new();
        let worker = start_worker(
            config(address, scratch.path(), slots, prefetch),
            executors,
            drain.clone(),
        )
        .await
        .unwrap();
        let stand_in = Self {
            stop_coordinator,
            server,
            _scratch: scratch,
            drain,
        };
        (coordinator, worker, stand_in)
    }

    /// Stops the stand-in's server and waits until it has stopped.
    async fn stop(self) {
        self.stop_coordinator.cancel();
        self.server.await.unwrap();
    }
}

fn config(
    coordinator: SocketAddr,
    scratch: &std::path::Path,
    slots: u32,
    prefetch: u32,
) -> WorkerConfig {
    WorkerConfig {
        coordinator_url: format!("http://{coordinator}"),
        token: Some("t0k3n".into()),
        name: "lifecycle".into(),
        slots,
        prefetch: essaim_worker::Prefetch::Fixed(prefetch),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        advertised_host: None,
        scratch_dir: scratch.to_path_buf(),
        scratch_reserve_bytes: essaim_worker::DEFAULT_SCRATCH_RESERVE_BYTES,
        drain_grace: Duration::from_millis(300),
        allow_commands: false,
        data_dirs: Vec::new(),
        labels: Default::default(),
        tls: None,
        trust: Default::default(),
    }
}

fn assignment(attempt_id: u64, kind: &str, payload: Vec<u8>) -> v1::Assignment {
    v1::Assignment {
        job_id: 1,
        task_index: attempt_id as u32,
        attempt_id,
        attempt_number: 1,
        kind: kind.into(),
        payload,
        timeout_ms: 0,
        speculative: false,
        correlation_id: String::new(),
        inputs: Vec::new(),
        trace_parent: String::new(),
        inputs_incomplete: false,
        inputs_version: 0,
    }
}

/// Polls `condition` until it holds, failing the test after ten seconds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends one raw HTTP/1.1 GET and returns the status code and the body.
async fn http_get(address: SocketAddr, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n{authorization}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let head_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap();
    let status = String::from_utf8_lossy(&response[..head_end])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, response[head_end + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pulled_attempt_is_reported_once_in_batches_then_the_worker_deregisters() {
    let (coordinator, worker, stand_in) = WorkerAgainstStandIn::start(4, 4).await;
    assert_eq!(
        http_get(worker.http_addr, "/readyz", None).await,
        (200, b"ready".to_vec())
    );

    let noops = 3_000;
    coordinator.enqueue((1..=noops).map(|id| assignment(id, "noop", Vec::new())));
    let large = vec![b'z'; 100_000];
    coordinator.enqueue([assignment(noops + 1, "echo", large.clone())]);
    eventually("every result is reported", || {
        coordinator.with_state(|state| state.results.len() as u64 == noops + 1)
    })
    .await;

    let (results, report_calls) =
        coordinator.with_state(|state| (state.results.clone(), state.report_calls));
    let distinct: BTreeSet<u64> = results
        .iter()
        .map(|(_, result)| result.attempt_id)
        .collect();
    assert_eq!(
        distinct.len() as u64,
        noops + 1,
        "a result was reported twice"
    );
    assert!(
        report_calls < results.len(),
        "results were not batched: {report_calls} calls"
    );
    let (status, metrics) = http_get(worker.http_addr, "/metrics", None).await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert_eq!(status, 200);
    let succeeded = format!("essaim_worker_attempts_succeeded_total {}\n", noops + 1);
    assert!(metrics.contains(&succeeded), "{metrics}");
    assert!(metrics.contains("essaim_worker_slots 4\n"), "{metrics}");

    // The large echo result is a file, served to whoever holds the token.
    let echo = results
        .iter()
        .find(|(_, result)| result.attempt_id == noops + 1)
        .unwrap();
    let Some(v1::attempt_result::Outcome::Success(output)) = &echo.1.outcome else {
        panic!("echo failed: {echo:?}");
    };
    let file = output.file.as_ref().unwrap();
    assert_eq!(file.size_bytes, large.len() as u64);
    let path = file
        .url
        .strip_prefix(&worker.file_server_url)
        .unwrap()
        .to_string();
    assert_eq!(
        http_get(worker.http_addr, &path, Some("t0k3n")).await,
        (200, large)
    );
    assert_eq!(http_get(worker.http_addr, &path, None).await.0, 401);

    stand_in.drain.cancel();
    worker.wait().await.unwrap();
    let deregistrations = coordinator.with_state(|state| state.deregistrations.clone());
    assert_eq!(deregistrations.len(), 1);
    assert_eq!(deregistrations[0].worker_id, 0x100);
    assert!(deregistrations[0].returned_attempts.is_empty());
    stand_in.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_worker_registers_again_and_keeps_working() {
    let (coordinator, worker, stand_in) = WorkerAgainstStandIn::start(2, 0).await;

    coordinator.with_state(|state| state.forget_workers_at_next_heartbeat = true);
    eventually("the worker registers again", || {
        coordinator.with_state(|state| state.registrations.len() == 2)
    })
    .await;
    coordinator.enqueue((1..=50).map(|id| assignment(id, "noop", Vec::new())));
    eventually("results arrive under the new id", || {
        coordinator.with_state(|state| state.results.len() == 50)
    })
    .await;
    let all_under_new_id = coordinator.with_state(|state| {
        state
            .results
            .iter()
            .all(|(worker_id, _)| *worker_id == 0x101)
    });
    assert!(all_under_new_id);

    stand_in.drain.cancel();
    worker.wait().await.unwrap();
    let deregistered = coordinator.with_state(|state| {
        state
            .deregistrations
            .iter()
            .map(|request| request.worker_id)
            .collect::<Vec<_>>()
    });
    assert_eq!(deregistered, [0x101]);
    stand_in.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_announces_itself_cancels_after_the_grace_and_hands_back_queued_attempts() {
    let (coordinator, worker, stand_in) = WorkerAgainstStandIn::start(1, 2).await;
    let http_addr = worker.http_addr;

    coordinator.enqueue((1..=3).map(|id| assignment(id, "sleep", b"60000".to_vec())));
    let holds_all_three = |heartbeat: &v1::HeartbeatRequest| {
        heartbeat.held_attempts.len() == 3 && heartbeat.busy_slots == 1
    };
    eventually("a heartbeat renews all three attempts", || {
        coordinator.with_state(|state| state.heartbeats.iter().any(holds_all_three))
    })
    .await;

    let started = std::time::Instant::now();
    stand_in.drain.cancel();
    let waiting = tokio::spawn(worker.wait());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let readiness = http_get(http_addr, "/readyz", None).await;
        if readiness == (503, b"draining".to_vec()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness stayed {readiness:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    waiting.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain took {:?}",
        started.elapsed()
    );

    let (announced, results, deregistrations) = coordinator.with_state(|state| {
        (
            state.heartbeats.iter().any(|heartbeat| heartbeat.draining),
            state.results.len(),
            state.deregistrations.clone(),
        )
    });
    assert!(announced, "no heartbeat said the worker was draining");
    assert_eq!(results, 0, "an attempt cancelled by the drain was reported");
    assert_eq!(deregistrations.len(), 1);
    assert_eq!(deregistrations[0].returned_attempts, [2, 3]);
    stand_in.stop().await;
}

/// Runs attempts that read their inputs as a reducer started early does: asks for
/// them until they are complete, then returns the upstream tasks and attempts it got.
struct InputsReader;

impl essaim_worker::Executor for InputsReader {
    fn execute(
        &self,
        attempt: essaim_worker::AttemptContext,
        _cancel: CancellationToken,
    ) -> essaim_worker::ExecutionFuture {
        Box::pin(async move {
            let watch = attempt
                .inputs_watch
                .expect("granted with incomplete inputs");
            let mut version = watch.granted_version;
            let inputs = loop {
                let answer = watch.next(version).await;
                let inputs = answer
                    .map_err(|error| essaim_core::TaskFailure::retryable(error.to_string()))?
                    .ok_or_else(|| essaim_core::TaskFailure::retryable("lease lost"))?;
                if inputs.complete {
                    break inputs;
                }
                version = inputs.version;
            };
            let read: Vec<String> = inputs
                .outputs
                .iter()
                .map(|output| format!("{}@{:x}", output.task_index, output.attempt.0))
                .collect();
            Ok(essaim_core::TaskOutput {
                inline: read.join(",").into_bytes(),
                ..Default::default()
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_started_early_asks_for_its_inputs_until_they_are_complete() {
    let mut executors = ExecutorRegistry::with_builtins(false);
    executors.register("inputs", Arc::new(InputsReader));
    let (coordinator, worker, stand_in) = WorkerAgainstStandIn::start_with(1, 0, executors).await;
    let upstream = |task_index: u32, attempt_id: u64| v1::UpstreamOutput {
        task_index,
        attempt_id,
        url: format!("http://elsewhere/{task_index}"),
        size_bytes: 1,
    };
    let answers = [
        // Task 1 committed.
        (4, vec![upstream(0, 0xa), upstream(1, 0xb)], false),
        // Task 0's output lost, then committed again by another attempt; task 2 done.
        (
            7,
            vec![upstream(0, 0xc), upstream(1, 0xb), upstream(2, 0xd)],
            true,
        ),
    ];
    coordinator.with_state(|state| {
        state
            .inputs_answers
            .extend(answers.into_iter().map(|(version, outputs, complete)| {
                v1::WatchInputsResponse {
                    lease_lost: false,
                    version,
                    outputs,
                    complete,
                }
            }))
    });
    let mut early = assignment(9, "inputs", Vec::new());
    early.inputs = vec![upstream(0, 0xa)];
    early.inputs_incomplete = true;
    early.inputs_version = 3;
    coordinator.enqueue([early]);
    eventually("the early attempt is reported", || {
        coordinator.with_state(|state| !state.results.is_empty())
    })
    .await;
    let (questions, result) = coordinator
        .with_state(|state| (state.inputs_questions.clone(), state.results[0].1.clone()));
    let asked: Vec<(u64, u64, u64)> = questions
        .iter()
        .map(|question| {
            (
                question.worker_id,
                question.attempt_id,
                question.known_version,
            )
        })
        .collect();
    let worker_id = coordinator.with_state(|state| state.registrations[0]);
    assert_eq!(asked, vec![(worker_id, 9, 3), (worker_id, 9, 4)]);
    let Some(v1::attempt_result::Outcome::Success(output)) = result.outcome else {
        panic!("the early attempt failed: {result:?}");
    };
    assert_eq!(String::from_utf8(output.inline).unwrap(), "0@c,1@b,2@d");
    stand_in.drain.cancel();
    worker.wait().await.unwrap();
    stand_in.stop().await;
}
