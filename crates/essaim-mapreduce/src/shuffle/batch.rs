//! Batched fetches: the footers of many upstream outputs held by one worker in one
//! request, then their small segments in one more, through the worker's
//! `POST /files/ranges` (`essaim_worker::file_ranges`).
//!
//! Where the time went without it: a reducer of a job with 300 tiny map outputs spent
//! about 11 ms per upstream, two HTTP requests each (the footer, then the segment). Most
//! of it was Nagle's algorithm holding each response's body until the reducer's delayed
//! ACK (fixed on the server); what was left was a round trip and a few blocking-pool hops
//! per request on each side, for a few kilobytes. A batch pays them once per worker.
//!
//! The segments of one batch are appended to one local file (one file created per
//! batch, not per segment); the merge reads each at its offset.
//!
//! A batch is only an optimisation, never the judge of an upstream: whatever goes wrong
//! in one (an older server without the endpoint, a missing file, a short answer, a
//! corrupt footer or segment) sends the upstreams it did not finish to the one-by-one
//! path of [`super::UpstreamFetch`], with its retries, which decides precisely which
//! upstream is lost. Segments larger than [`MAX_BATCHED_SEGMENT_BYTES`] are fetched one
//! by one too: they gain nothing from a batch and lose the parallelism of separate
//! fetches.

use bytes::Bytes;
use essaim_core::UpstreamOutput;
use essaim_worker::file_access::FileCredential;
use essaim_worker::file_ranges::{
    MAX_RANGES_PER_REQUEST, RANGES_PATH, RangesRequest, RequestedRange,
};
use http::{StatusCode, header};
use http_body_util::Full;
use tokio::io::AsyncWriteExt;

use super::{
    FetchError, Fetched, HttpClient, LOCAL_WRITE_BUFFER_BYTES, RangeBody, ShuffleSettings,
};
use crate::error::TaskError;
use crate::format::{
    EMPTY_SEGMENT_BYTES, SegmentEntry, SegmentVerifier, decode_footer, footer_len,
};
use crate::reduce_task::FetchedSegment;

/// Largest segment fetched in a batch.
pub(super) const MAX_BATCHED_SEGMENT_BYTES: u64 = 1024 * 1024;

/// Most bytes asked in one batch of footers (they are held in memory).
const MAX_FOOTER_BYTES_PER_BATCH: u64 = 1024 * 1024;

/// Most bytes asked in one batch of segments (they are streamed to disk; the bound keeps
/// a batch from serialising a large share of the shuffle on one connection).
const MAX_SEGMENT_BYTES_PER_BATCH: u64 = 64 * 1024 * 1024;

/// The upstreams of one worker, fetched together.
pub(super) struct BatchFetch {
    pub client: HttpClient,
    /// `http://host:port` of the worker.
    pub origin: String,
    /// The upstreams, each with its file's path after `/files/`.
    pub upstreams: Vec<(UpstreamOutput, String)>,
    pub partition: u32,
    pub partitions: u32,
    pub dest_dir: std::path::PathBuf,
    /// The job's capability (or the cluster token), in the header the server asks for.
    pub credential: Option<FileCredential>,
    pub settings: ShuffleSettings,
}

/// What a batch did: the upstreams it finished, and those left to fetch one by one.
#[derive(Default)]
pub(super) struct BatchOutcome {
    pub finished: Vec<(u32, Fetched)>,
    pub left: Vec<UpstreamOutput>,
    /// HTTP requests made.
    pub requests: u64,
}

/// An upstream whose footer was read, with its partition's entry.
struct WithEntry {
    upstream: UpstreamOutput,
    file: String,
    entry: SegmentEntry,
}

/// Splits the upstreams of one worker into batches small enough for one request each.
pub(super) fn footer_batches(
    upstreams: Vec<(UpstreamOutput, String)>,
    partitions: u32,
) -> Vec<Vec<(UpstreamOutput, String)>> {
    let per_batch = (MAX_FOOTER_BYTES_PER_BATCH / footer_len(partitions)).max(1) as usize;
    let per_batch = per_batch.min(MAX_RANGES_PER_REQUEST);
    let mut batches = Vec::new();
    let mut upstreams = upstreams.into_iter().peekable();
    while upstreams.peek().is_some() {
        batches.push(upstreams.by_ref().take(per_batch).collect());
    }
    batches
}

impl BatchFetch {
    /// Fetches the footers, then the small segments; local disk errors fail the fetch.
    pub async fn run(self) -> Result<BatchOutcome, FetchError> {
        let mut outcome = BatchOutcome::default();
        let entries = self.read_footers(&mut outcome).await;
        let (small, large): (Vec<WithEntry>, Vec<WithEntry>) = entries
            .into_iter()
            .partition(|item| item.entry.length <= MAX_BATCHED_SEGMENT_BYTES);
        outcome
            .left
            .extend(large.into_iter().map(|item| item.upstream));
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for item in small {
            let full = batch.len() == MAX_RANGES_PER_REQUEST
                || batch_bytes + item.entry.length > MAX_SEGMENT_BYTES_PER_BATCH;
            if full {
                self.read_segments(std::mem::take(&mut batch), &mut outcome)
                    .await?;
                batch_bytes = 0;
            }
            batch_bytes += item.entry.length;
            batch.push(item);
        }
        if !batch.is_empty() {
            self.read_segments(batch, &mut outcome).await?;
        }
        Ok(outcome)
    }

    /// Reads every footer; returns the upstreams with records in the partition. Empty
    /// partitions are finished; anything doubtful is left to the one-by-one path.
    async fn read_footers(&self, outcome: &mut BatchOutcome) -> Vec<WithEntry> {
        let footer_bytes = footer_len(self.partitions);
        let smallest_file = footer_bytes + u64::from(self.partitions) * EMPTY_SEGMENT_BYTES;
        let mut asked = Vec::new();
        for (upstream, file) in &self.upstreams {
            if upstream.file.size_bytes < smallest_file {
                outcome.left.push(upstream.clone()); // the one-by-one path says why
            } else {
                asked.push((upstream, file));
            }
        }
        if asked.is_empty() {
            return Vec::new();
        }
        let ranges = asked
            .iter()
            .map(|(upstream, file)| RequestedRange {
                file: (*file).clone(),
                start: upstream.file.size_bytes - footer_bytes,
                length: footer_bytes,
            })
            .collect();
        outcome.requests += 1;
        let footers = match self.post_ranges(ranges).await {
            Ok(body) => read_all(body).await,
            Err(error) => Err(error),
        };
        let footers = match footers {
            Ok(footers) => footers,
            Err(error) => {
                tracing::debug!(origin = %self.origin, ?error, "batched footers failed; fetching one by one");
                outcome
                    .left
                    .extend(asked.into_iter().map(|(upstream, _)| upstream.clone()));
                return Vec::new();
            }
        };
        let mut with_entries = Vec::new();
        for ((upstream, file), footer) in
            asked.into_iter().zip(footers.chunks(footer_bytes as usize))
        {
            let name = format!(
                "map output of task {} (`{}`)",
                upstream.task_index, upstream.file.url
            );
            let Ok(entries) =
                decode_footer(footer, self.partitions, upstream.file.size_bytes, &name)
            else {
                outcome.left.push(upstream.clone());
                continue;
            };
            let entry = entries[self.partition as usize];
            if entry.records == 0 {
                let fetched = Fetched {
                    segment: None,
                    bytes: footer_bytes,
                    retries: 0,
                    requests: 0,
                };
                outcome.finished.push((upstream.task_index, fetched));
                continue;
            }
            with_entries.push(WithEntry {
                upstream: upstream.clone(),
                file: file.clone(),
                entry,
            });
        }
        with_entries
    }

    /// Streams the segments of `items`, in order, into one local file. A corrupt
    /// segment is left to the one-by-one path and the next one read (its bytes stay in
    /// the file, unreferenced); a broken answer leaves the current segment and every
    /// later one.
    async fn read_segments(
        &self,
        items: Vec<WithEntry>,
        outcome: &mut BatchOutcome,
    ) -> Result<(), FetchError> {
        let ranges = items
            .iter()
            .map(|item| RequestedRange {
                file: item.file.clone(),
                start: item.entry.offset,
                length: item.entry.length,
            })
            .collect();
        outcome.requests += 1;
        let mut body = match self.post_ranges(ranges).await {
            Ok(body) => BodyReader::new(body),
            Err(error) => {
                tracing::debug!(origin = %self.origin, ?error, "batched segments failed; fetching one by one");
                outcome
                    .left
                    .extend(items.into_iter().map(|item| item.upstream));
                return Ok(());
            }
        };
        // Named after the batch's first upstream: unique among this reducer's files.
        let dest = self
            .dest_dir
            .join(format!("batch-{}.seg", items[0].upstream.task_index));
        let mut local = LocalFile::create(dest).await?;
        let footer_bytes = footer_len(self.partitions);
        let mut items = items.into_iter();
        while let Some(item) = items.next() {
            match self.read_segment(&item, &mut body, &mut local).await {
                Ok(Some(segment)) => {
                    let fetched = Fetched {
                        bytes: footer_bytes + segment.length,
                        segment: Some(segment),
                        retries: 0,
                        requests: 0,
                    };
                    outcome.finished.push((item.upstream.task_index, fetched));
                }
                Ok(None) => outcome.left.push(item.upstream),
                Err(FetchError::Local(error)) => return Err(FetchError::Local(error)),
                Err(error) => {
                    tracing::debug!(origin = %self.origin, ?error, "a batch of segments broke off");
                    outcome.left.push(item.upstream);
                    outcome.left.extend(items.map(|item| item.upstream));
                    break;
                }
            }
        }
        local.flush().await
    }

    /// Reads one segment off the answer and appends it to `local`: `Ok(None)` when its
    /// bytes do not verify (the answer stays aligned on the next segment).
    async fn read_segment(
        &self,
        item: &WithEntry,
        body: &mut BodyReader,
        local: &mut LocalFile,
    ) -> Result<Option<FetchedSegment>, FetchError> {
        let name = format!(
            "map output of task {} (`{}`) partition {}",
            item.upstream.task_index, item.upstream.file.url, self.partition
        );
        let mut verifier = SegmentVerifier::new(name);
        let mut verified = true;
        let offset = local.written;
        let mut remaining = item.entry.length;
        while remaining > 0 {
            let chunk = body.next_up_to(remaining).await?;
            remaining -= chunk.len() as u64;
            verified = verified && verifier.update(&chunk).is_ok();
            local.write(&chunk).await?;
        }
        let records = if verified {
            verifier.finish().ok()
        } else {
            None
        };
        if records != Some(item.entry.records) {
            return Ok(None);
        }
        Ok(Some(FetchedSegment {
            task_index: item.upstream.task_index,
            path: local.path.clone(),
            offset,
            length: item.entry.length,
            records: item.entry.records,
        }))
    }

    /// Sends `POST /files/ranges` and checks the answer's status.
    async fn post_ranges(&self, ranges: Vec<RequestedRange>) -> Result<RangeBody, FetchError> {
        let total: u64 = ranges.iter().map(|range| range.length).sum();
        let url = format!("{}{RANGES_PATH}", self.origin);
        let body = serde_json::to_vec(&RangesRequest { ranges })
            .map_err(|error| FetchError::Retry(error.to_string()))?;
        let mut request =
            http::Request::post(&url).header(header::CONTENT_TYPE, "application/json");
        if let Some(credential) = &self.credential {
            request = request.header(&credential.header, &*credential.value);
        }
        if let Some(headers) = request.headers_mut() {
            essaim_telemetry::trace_context::inject_current_into_headers(headers);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| FetchError::Retry(format!("cannot request `{url}`: {error}")))?;
        let idle = self.settings.idle_timeout;
        let response = match tokio::time::timeout(idle, self.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(super::request_failed(&url, &error)),
            Err(_elapsed) => return Err(FetchError::Retry(format!("no answer from `{url}`"))),
        };
        if response.status() != StatusCode::OK {
            return Err(FetchError::Retry(format!(
                "`{url}` answered {}",
                response.status()
            )));
        }
        Ok(RangeBody {
            body: response.into_body(),
            url,
            skip: 0,
            remaining: total,
            expected: total,
            idle,
        })
    }
}

/// Reads a whole (small) answer.
async fn read_all(mut body: RangeBody) -> Result<Vec<u8>, FetchError> {
    let mut bytes = Vec::with_capacity(body.expected as usize);
    while let Some(chunk) = body.next_chunk().await? {
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The local file a batch's segments are appended to.
struct LocalFile {
    path: std::path::PathBuf,
    output: tokio::io::BufWriter<tokio::fs::File>,
    written: u64,
}

impl LocalFile {
    async fn create(path: std::path::PathBuf) -> Result<Self, FetchError> {
        match tokio::fs::File::create(&path).await {
            Ok(file) => Ok(Self {
                output: tokio::io::BufWriter::with_capacity(LOCAL_WRITE_BUFFER_BYTES, file),
                path,
                written: 0,
            }),
            Err(source) => Err(Self::error(&path, source)),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        if let Err(source) = self.output.write_all(bytes).await {
            return Err(Self::error(&self.path, source));
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), FetchError> {
        self.output
            .flush()
            .await
            .map_err(|source| Self::error(&self.path, source))
    }

    fn error(path: &std::path::Path, source: std::io::Error) -> FetchError {
        FetchError::Local(TaskError::io("write fetched segment", path, source))
    }
}

/// An answer read in pieces of chosen sizes: a chunk may span two segments.
struct BodyReader {
    body: RangeBody,
    pending: Bytes,
}

impl BodyReader {
    fn new(body: RangeBody) -> Self {
        Self {
            body,
            pending: Bytes::new(),
        }
    }

    /// Returns between 1 and `limit` (≥ 1) next bytes; an answer that ends is an error.
    async fn next_up_to(&mut self, limit: u64) -> Result<Bytes, FetchError> {
        if self.pending.is_empty() {
            self.pending = match self.body.next_chunk().await? {
                Some(chunk) => chunk,
                None => {
                    return Err(FetchError::Retry(format!(
                        "`{}` ended early",
                        self.body.url
                    )));
                }
            };
        }
        let take = (limit as usize).min(self.pending.len());
        Ok(self.pending.split_to(take))
    }
}

/// Returns `(origin, file)` of a file server URL: `http://host:port` (or `https://`)
/// and the path after `/files/`; `None` when the URL has another shape (fetched one by
/// one, which says why).
pub(super) fn origin_and_file(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let (authority, path) = rest.split_once('/')?;
    let file = path.strip_prefix("files/")?;
    let plain = !authority.is_empty() && !file.contains(['?', '#', '%']);
    plain.then(|| (format!("{scheme}://{authority}"), file.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_server_urls_are_batched() {
        assert_eq!(
            origin_and_file("http://127.0.0.1:81/files/1/2/ab/map.out"),
            Some(("http://127.0.0.1:81".into(), "1/2/ab/map.out".into()))
        );
        assert_eq!(
            origin_and_file("https://h:81/files/1/2/ab/map.out"),
            Some(("https://h:81".into(), "1/2/ab/map.out".into()))
        );
        for other in [
            "ftp://h/files/1/2/ab/map.out",
            "http://h/other/1/2/ab/map.out",
            "http://h/files/1/2/ab/map.out?x",
            "http://h/files/1/2/a%62/map.out",
            "http:///files/1/2/ab/map.out",
            "not a url",
        ] {
            assert_eq!(origin_and_file(other), None, "{other}");
        }
    }
}
