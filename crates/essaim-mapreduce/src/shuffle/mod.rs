//! The shuffle: fetch one partition of every upstream output from the workers that hold
//! them, over HTTP range requests, into local files.
//!
//! The upstreams held by one worker are fetched together first (`batch.rs`): their
//! footers in one request, then their small segments in another. Whatever a batch does
//! not finish is fetched one by one, which is also the path that decides what is lost.
//!
//! One by one, per upstream output, two requests on a pooled keep-alive connection: the
//! footer (its length depends only on the number of partitions, and the file's size is
//! in the upstream's `FileRef`), then the partition's segment, streamed to disk through
//! a [`SegmentVerifier`] so that memory stays at one chunk per fetch and corruption is
//! caught while it can still be blamed on the upstream task. Partitions the footer says
//! are empty are not fetched at all.
//!
//! Every request carries the reducer attempt's trace context (`traceparent`), so that
//! the serving worker's span of the fetch joins the job's trace.
//!
//! Fetches run [`ShuffleSettings::parallel_fetches`] at a time, each retried with
//! exponential backoff. An upstream whose output stays unreachable, missing (404),
//! truncated or corrupt is *lost*: the task fails with every lost upstream listed, so
//! the coordinator re-runs those upstream tasks and then this one, without counting the
//! failure against it. A refused token or a local disk error is not the upstream's
//! fault and fails the task as a plain retryable error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use essaim_core::UpstreamOutput;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::counters::{self, Counters};
use crate::error::{TaskError, TaskResult};
use crate::format::{EMPTY_SEGMENT_BYTES, SegmentVerifier, decode_footer, footer_len};
use crate::reduce_task::FetchedSegment;
use essaim_worker::file_access::FileCredential;

/// How the shuffle fetches.
#[derive(Debug, Clone)]
pub struct ShuffleSettings {
    /// Fetches in flight at once (default 6: enough to hide round trips, few enough
    /// not to thrash one upstream worker's disk).
    pub parallel_fetches: usize,
    /// Tries per upstream output before it is declared lost (default 4).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each next one (default 200 ms).
    pub first_backoff: Duration,
    /// Longest wait for a connection, a response, or the next chunk of a body (default
    /// 10 s): a stopped worker is declared lost after about `attempts` times this.
    pub idle_timeout: Duration,
    /// The roots `https://` file servers are verified with (default: the system's).
    pub trust: essaim_tls::ClientTrust,
}

impl Default for ShuffleSettings {
    fn default() -> Self {
        Self {
            parallel_fetches: 6,
            attempts: 4,
            first_backoff: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(10),
            trust: essaim_tls::ClientTrust::system(),
        }
    }
}

/// Bytes buffered before a write to the local segment file.
const LOCAL_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

type HttpClient = Client<essaim_tls::HttpsConnector, Full<Bytes>>;

/// Classifies a request that got no answer: a failed TLS handshake is not the upstream's
/// fault (this worker does not trust it, or one side lacks TLS) and no retry fixes it;
/// anything else is worth another try.
fn request_failed(url: &str, error: &hyper_util::client::legacy::Error) -> FetchError {
    if let Some(failure) = essaim_tls::handshake_failure(error) {
        return FetchError::Refused(format!("cannot fetch `{url}`: {failure}"));
    }
    FetchError::Retry(format!(
        "request to `{url}` failed: {}",
        essaim_core::error_chain::error_chain(error)
    ))
}

mod batch;
mod rounds;
use batch::{BatchFetch, footer_batches, origin_and_file};
pub use rounds::{RoundsTarget, fetch_partition_in_rounds};

/// What one fetch attempt ran into.
#[derive(Debug)]
enum FetchError {
    /// Worth another try (connection refused or reset, 5xx, a timeout, a corrupt or
    /// short body); the upstream is lost if every try fails.
    Retry(String),
    /// The upstream output is gone for good (404, 416, a malformed URL): lost at once.
    Lost(String),
    /// Not the upstream's fault: a refused token.
    Refused(String),
    /// The local disk failed.
    Local(TaskError),
    Cancelled,
}

/// Fetched segments and the shuffle's counters.
#[derive(Debug)]
pub struct ShuffleOutcome {
    /// One per upstream with records in the partition, by upstream task index.
    pub segments: Vec<FetchedSegment>,
    /// `shuffle.bytes`, `shuffle.segments`, `shuffle.fetch_retries`, `shuffle.requests`.
    pub counters: Counters,
}

/// Fetches partition `partition` (of `partitions`) of every upstream output into
/// `dest_dir` (which must exist).
pub async fn fetch_partition(
    inputs: &[UpstreamOutput],
    partition: u32,
    partitions: u32,
    dest_dir: &Path,
    credential: Option<&FileCredential>,
    settings: &ShuffleSettings,
    cancel: &CancellationToken,
) -> TaskResult<ShuffleOutcome> {
    let connector = settings.trust.http_connector(settings.idle_timeout);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let permits = Arc::new(Semaphore::new(settings.parallel_fetches.max(1)));
    // Cancelled when the task fails for a reason every other fetch shares (the disk,
    // the token), so that they stop early.
    let stop = cancel.child_token();
    let mut results = FetchResults::default();

    let (by_worker, mut one_by_one) = group_by_worker(inputs);
    let mut batches = JoinSet::new();
    for (origin, upstreams) in by_worker {
        for upstreams in footer_batches(upstreams, partitions) {
            let batch = BatchFetch {
                client: client.clone(),
                origin: origin.clone(),
                upstreams,
                partition,
                partitions,
                dest_dir: dest_dir.to_path_buf(),
                credential: credential.cloned(),
                settings: settings.clone(),
            };
            let permits = Arc::clone(&permits);
            let stop = stop.clone();
            // In the attempt's span, so that the request carries its trace context.
            let fetch = async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = permits.acquire_owned().await;
                tokio::select! {
                    () = stop.cancelled() => Err(FetchError::Cancelled),
                    outcome = batch.run() => outcome,
                }
            };
            batches.spawn(fetch.in_current_span());
        }
    }
    while let Some(joined) = batches.join_next().await {
        let outcome = joined
            .map_err(|error| TaskError::Internal(format!("a batched fetch failed: {error}")))?;
        match outcome {
            Ok(outcome) => {
                results
                    .counters
                    .add(counters::SHUFFLE_REQUESTS, outcome.requests);
                for (task_index, fetched) in outcome.finished {
                    results.add(task_index, Ok(fetched), &stop);
                }
                one_by_one.extend(outcome.left);
            }
            // Only a local disk error (or the stop) ends a batch.
            Err(error) => results.add(u32::MAX, Err(error), &stop),
        }
    }

    let mut fetches = JoinSet::new();
    for upstream in one_by_one {
        if stop.is_cancelled() {
            break;
        }
        let job = UpstreamFetch {
            client: client.clone(),
            dest: dest_dir.join(format!("upstream-{}.seg", upstream.task_index)),
            upstream,
            partition,
            partitions,
            credential: credential.cloned(),
            settings: settings.clone(),
        };
        let permits = Arc::clone(&permits);
        let stop = stop.clone();
        // In the attempt's span, so that the requests carry its trace context.
        let fetch = async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire_owned().await;
            let task_index = job.upstream.task_index;
            let outcome = tokio::select! {
                () = stop.cancelled() => Err(FetchError::Cancelled),
                outcome = job.run() => outcome,
            };
            (task_index, outcome)
        };
        fetches.spawn(fetch.in_current_span());
    }
    while let Some(joined) = fetches.join_next().await {
        let (task_index, outcome) =
            joined.map_err(|error| TaskError::Internal(format!("a fetch task failed: {error}")))?;
        results.add(task_index, outcome, &stop);
    }
    let FetchResults {
        counters,
        mut segments,
        mut lost,
        first_other_error,
    } = results;
    if cancel.is_cancelled() {
        return Err(TaskError::Cancelled);
    }
    if !lost.is_empty() {
        lost.sort();
        let details = lost
            .iter()
            .map(|(task_index, reason)| format!("task {task_index}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(TaskError::LostInputs {
            upstreams: lost.into_iter().map(|(task_index, _)| task_index).collect(),
            details,
        });
    }
    if let Some(error) = first_other_error {
        return Err(error);
    }
    segments.sort_by_key(|segment: &FetchedSegment| segment.task_index);
    Ok(ShuffleOutcome { segments, counters })
}

/// The upstreams one worker holds: its `http://host:port`, and each upstream with its
/// file's path after `/files/`.
type WorkerUpstreams = (String, Vec<(UpstreamOutput, String)>);

/// Splits upstreams into those fetched in batches, by worker (`http://host:port`, in
/// order of first appearance; a worker holding a single one is not worth a batch), and
/// the rest, fetched one by one.
fn group_by_worker(inputs: &[UpstreamOutput]) -> (Vec<WorkerUpstreams>, Vec<UpstreamOutput>) {
    let mut by_worker: Vec<WorkerUpstreams> = Vec::new();
    let mut one_by_one = Vec::new();
    for upstream in inputs {
        let Some((origin, file)) = origin_and_file(&upstream.file.url) else {
            one_by_one.push(upstream.clone());
            continue;
        };
        match by_worker.iter_mut().find(|(known, _)| *known == origin) {
            Some((_, upstreams)) => upstreams.push((upstream.clone(), file)),
            None => by_worker.push((origin, vec![(upstream.clone(), file)])),
        }
    }
    by_worker.retain(|(_, upstreams)| {
        if let [(single, _)] = &upstreams[..] {
            one_by_one.push(single.clone());
            return false;
        }
        true
    });
    (by_worker, one_by_one)
}

/// What the fetches brought so far.
#[derive(Default)]
struct FetchResults {
    counters: Counters,
    segments: Vec<FetchedSegment>,
    lost: Vec<(u32, String)>,
    first_other_error: Option<TaskError>,
}

impl FetchResults {
    /// Records the outcome of upstream `task_index`; an error every fetch shares stops
    /// the others.
    fn add(
        &mut self,
        task_index: u32,
        outcome: Result<Fetched, FetchError>,
        stop: &CancellationToken,
    ) {
        match outcome {
            Ok(fetched) => {
                self.counters
                    .add(counters::SHUFFLE_FETCH_RETRIES, fetched.retries);
                self.counters.add(counters::SHUFFLE_BYTES, fetched.bytes);
                self.counters
                    .add(counters::SHUFFLE_REQUESTS, fetched.requests);
                if let Some(segment) = fetched.segment {
                    self.counters.add(counters::SHUFFLE_SEGMENTS, 1);
                    self.segments.push(segment);
                }
            }
            Err(FetchError::Lost(reason) | FetchError::Retry(reason)) => {
                self.lost.push((task_index, reason));
            }
            Err(FetchError::Refused(reason)) => {
                stop.cancel();
                self.first_other_error
                    .get_or_insert(TaskError::Shuffle(format!(
                        "upstream task {task_index}: {reason}"
                    )));
            }
            Err(FetchError::Local(error)) => {
                stop.cancel();
                self.first_other_error.get_or_insert(error);
            }
            Err(FetchError::Cancelled) => {}
        }
    }
}

/// The fetch of one upstream's partition, with its retries.
struct UpstreamFetch {
    client: HttpClient,
    upstream: UpstreamOutput,
    partition: u32,
    partitions: u32,
    dest: PathBuf,
    credential: Option<FileCredential>,
    settings: ShuffleSettings,
}

/// What a successful fetch brought.
struct Fetched {
    /// `None` when the partition is empty in that upstream output.
    segment: Option<FetchedSegment>,
    bytes: u64,
    retries: u64,
    /// HTTP requests made (0 when fetched in a batch, which counts its own).
    requests: u64,
}

impl UpstreamFetch {
    async fn run(self) -> Result<Fetched, FetchError> {
        let mut retries = 0u64;
        let mut requests = 0u64;
        let mut backoff = self.settings.first_backoff;
        let mut attempt = 1;
        loop {
            match self.fetch_once(&mut requests).await {
                Ok((segment, bytes)) => {
                    return Ok(Fetched {
                        segment,
                        bytes,
                        retries,
                        requests,
                    });
                }
                Err(FetchError::Retry(reason)) if attempt < self.settings.attempts => {
                    tracing::debug!(
                        upstream = self.upstream.task_index,
                        attempt,
                        %reason,
                        "fetch failed, retrying"
                    );
                    retries += 1;
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One try: the footer, then the segment. Returns the segment and the bytes read.
    async fn fetch_once(
        &self,
        requests: &mut u64,
    ) -> Result<(Option<FetchedSegment>, u64), FetchError> {
        let file_len = self.upstream.file.size_bytes;
        let footer_bytes = footer_len(self.partitions);
        let smallest_file = footer_bytes + u64::from(self.partitions) * EMPTY_SEGMENT_BYTES;
        if file_len < smallest_file {
            return Err(FetchError::Lost(format!(
                "its output has {file_len} bytes, fewer than an empty output of {} partitions",
                self.partitions
            )));
        }
        let name = format!(
            "map output of task {} (`{}`)",
            self.upstream.task_index, self.upstream.file.url
        );
        let mut footer = Vec::with_capacity(footer_bytes as usize);
        *requests += 1;
        let mut body = self
            .open_range(file_len - footer_bytes, footer_bytes)
            .await?;
        while let Some(chunk) = body.next_chunk().await? {
            footer.extend_from_slice(&chunk);
        }
        let entries = decode_footer(&footer, self.partitions, file_len, &name)
            .map_err(|error| FetchError::Retry(error.to_string()))?;
        let entry = entries[self.partition as usize];
        if entry.records == 0 {
            return Ok((None, footer_bytes));
        }

        *requests += 1;
        let mut body = self.open_range(entry.offset, entry.length).await?;
        let local_error =
            |source| FetchError::Local(TaskError::io("write fetched segment", &self.dest, source));
        let file = tokio::fs::File::create(&self.dest)
            .await
            .map_err(local_error)?;
        let mut local = tokio::io::BufWriter::with_capacity(LOCAL_WRITE_BUFFER_BYTES, file);
        let mut verifier = SegmentVerifier::new(format!("{name} partition {}", self.partition));
        while let Some(chunk) = body.next_chunk().await? {
            verifier
                .update(&chunk)
                .map_err(|error| FetchError::Retry(error.to_string()))?;
            local.write_all(&chunk).await.map_err(local_error)?;
        }
        local.flush().await.map_err(local_error)?;
        let records = verifier
            .finish()
            .map_err(|error| FetchError::Retry(error.to_string()))?;
        if records != entry.records {
            return Err(FetchError::Retry(format!(
                "{name} partition {}: {records} records, its footer says {}",
                self.partition, entry.records
            )));
        }
        let segment = FetchedSegment {
            task_index: self.upstream.task_index,
            path: self.dest.clone(),
            offset: 0,
            length: entry.length,
            records,
        };
        Ok((Some(segment), footer_bytes + entry.length))
    }

    /// Sends a range request for `length` bytes (≥ 1) at `start` and checks the answer.
    async fn open_range(&self, start: u64, length: u64) -> Result<RangeBody, FetchError> {
        let url = &self.upstream.file.url;
        let uri: http::Uri = url
            .parse()
            .map_err(|error| FetchError::Lost(format!("malformed URL `{url}`: {error}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(FetchError::Lost(format!(
                "only http:// and https:// URLs can be fetched, not `{url}`"
            )));
        }
        let end = start + length - 1;
        let mut request =
            http::Request::get(uri).header(header::RANGE, format!("bytes={start}-{end}"));
        if let Some(credential) = &self.credential {
            request = request.header(&credential.header, &*credential.value);
        }
        if let Some(headers) = request.headers_mut() {
            essaim_telemetry::trace_context::inject_current_into_headers(headers);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|error| FetchError::Lost(format!("cannot request `{url}`: {error}")))?;
        let idle = self.settings.idle_timeout;
        let response = match tokio::time::timeout(idle, self.client.request(request)).await {
            Err(_elapsed) => {
                return Err(FetchError::Retry(format!(
                    "no answer from `{url}` within {} ms",
                    idle.as_millis()
                )));
            }
            Ok(Err(error)) => return Err(request_failed(url, &error)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let skip = match status {
            StatusCode::PARTIAL_CONTENT => {
                let expected = format!("bytes {start}-{end}/");
                let content_range = response
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                if !content_range.starts_with(&expected) {
                    return Err(FetchError::Retry(format!(
                        "`{url}` answered range `{content_range}` to `bytes={start}-{end}`"
                    )));
                }
                0
            }
            // A server without range support sends the whole file: skip to the range.
            StatusCode::OK => start,
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(FetchError::Lost(format!("`{url}` is gone ({status})")));
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                return Err(FetchError::Lost(format!(
                    "`{url}` is shorter than its announced size ({status})"
                )));
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(FetchError::Refused(format!(
                    "`{url}` refused this worker's credentials for the job ({status})"
                )));
            }
            status if status.is_server_error() => {
                return Err(FetchError::Retry(format!("`{url}` answered {status}")));
            }
            status => {
                return Err(FetchError::Lost(format!("`{url}` answered {status}")));
            }
        };
        Ok(RangeBody {
            body: response.into_body(),
            url: url.clone(),
            skip,
            remaining: length,
            expected: length,
            idle,
        })
    }
}

/// The body of a range response, cut to the range.
struct RangeBody {
    body: hyper::body::Incoming,
    url: String,
    /// Bytes still to drop before the range (a 200 answer).
    skip: u64,
    remaining: u64,
    expected: u64,
    idle: Duration,
}

impl RangeBody {
    /// Returns the next bytes of the range, or `None` once it is complete; a body that
    /// ends early or stalls is an error.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        while self.remaining > 0 {
            let frame = match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_elapsed) => {
                    return Err(FetchError::Retry(format!(
                        "`{}` stalled for {} ms",
                        self.url,
                        self.idle.as_millis()
                    )));
                }
                Ok(None) => {
                    return Err(FetchError::Retry(format!(
                        "`{}` ended after {} of {} bytes",
                        self.url,
                        self.expected - self.remaining,
                        self.expected
                    )));
                }
                Ok(Some(Err(error))) => {
                    return Err(FetchError::Retry(format!(
                        "reading `{}` failed: {}",
                        self.url,
                        essaim_core::error_chain::error_chain(&error)
                    )));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers
            };
            if self.skip > 0 {
                let dropped = self.skip.min(data.len() as u64);
                self.skip -= dropped;
                data = data.slice(dropped as usize..);
            }
            if data.is_empty() {
                continue;
            }
            if data.len() as u64 > self.remaining {
                data.truncate(self.remaining as usize);
            }
            self.remaining -= data.len() as u64;
            return Ok(Some(data));
        }
        Ok(None)
    }
}
