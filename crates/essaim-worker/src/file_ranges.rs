//! `POST /files/ranges`: several byte ranges of several attempt files, in one response.
//!
//! A reducer needs one small segment from each of hundreds of map outputs held by a
//! handful of workers. One range request per output costs a round trip and a few
//! blocking-pool hops on each side for a few kilobytes; asking each worker once for all
//! its ranges costs one. The server stays ignorant of what the bytes mean: the client
//! names files and ranges, the server sends their bytes back to back, in the order asked.
//!
//! All or nothing before the first byte: every file is checked (it exists, is a regular
//! file, holds the range) before the `200`; otherwise the answer is `404` or `416`
//! naming the first bad range, and the client falls back to one request per file, which
//! tells it precisely which output is lost. A file that fails while its bytes are
//! being sent ends the body early, which the client sees as a short answer.
//!
//! The files are read on one blocking thread per request, with plain reads into
//! chunks handed to the response through a small bounded channel: memory stays at a few
//! chunks whatever the ranges add up to.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::ReceiverStream;

use crate::files::{FileServerState, parse_file_request};

/// Where the endpoint lives on a worker's HTTP server.
pub const RANGES_PATH: &str = "/files/ranges";

/// Most ranges in one request.
pub const MAX_RANGES_PER_REQUEST: usize = 1024;

/// Bytes per chunk of the response (small ranges are packed together).
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks read ahead of the connection.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The body of a `POST /files/ranges`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangesRequest {
    /// The ranges, answered in this order.
    pub ranges: Vec<RequestedRange>,
}

/// One range of one attempt file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedRange {
    /// The file as in its URL after `/files/`: `job/task/attempt/name`.
    pub file: String,
    /// First byte.
    pub start: u64,
    /// Bytes, at least 1.
    pub length: u64,
}

/// A checked range: the file on disk and where to read.
struct CheckedRange {
    path: PathBuf,
    start: u64,
    length: u64,
}

pub(crate) async fn serve_ranges(
    State(state): State<Arc<FileServerState>>,
    headers: HeaderMap,
    Json(request): Json<RangesRequest>,
) -> Response {
    // Every job named must be admitted; a file whose job does not parse is refused
    // with 400 below, before anything is read.
    let jobs: std::collections::BTreeSet<u64> = request
        .ranges
        .iter()
        .filter_map(|range| range.file.split('/').next()?.parse().ok())
        .collect();
    for job in jobs {
        if let Err(refusal) = state.access.check(&headers, job) {
            return refusal.into_response();
        }
    }
    let count = request.ranges.len();
    if count == 0 || count > MAX_RANGES_PER_REQUEST {
        let message = format!("{count} ranges; 1 to {MAX_RANGES_PER_REQUEST} are allowed");
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    let scratch_root = state.scratch_root.clone();
    let checked = tokio::task::spawn_blocking(move || check_ranges(&scratch_root, &request)).await;
    let ranges = match checked {
        Ok(Ok(ranges)) => ranges,
        Ok(Err((status, message))) => return (status, message).into_response(),
        Err(error) => {
            tracing::warn!(%error, "checking requested ranges panicked");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let total: u64 = ranges.iter().map(|range| range.length).sum();
    let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || send_ranges(&ranges, &chunks_tx));
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, total.to_string()),
        ],
        Body::from_stream(ReceiverStream::new(chunks_rx)),
    )
        .into_response()
}

/// Checks every range against its file; the first bad one decides the answer.
fn check_ranges(
    scratch_root: &std::path::Path,
    request: &RangesRequest,
) -> Result<Vec<CheckedRange>, (StatusCode, String)> {
    let mut checked = Vec::with_capacity(request.ranges.len());
    for (index, range) in request.ranges.iter().enumerate() {
        let bad =
            |status, why: &str| Err((status, format!("range {index} ({}): {why}", range.file)));
        let segments: Vec<&str> = range.file.split('/').collect();
        let [job, task, attempt, name] = segments[..] else {
            return bad(StatusCode::BAD_REQUEST, "not job/task/attempt/name");
        };
        let file = match parse_file_request(job, task, attempt, name) {
            Ok(file) => file,
            Err(error) => return bad(StatusCode::BAD_REQUEST, &error.to_string()),
        };
        if range.length == 0 {
            return bad(StatusCode::BAD_REQUEST, "an empty range");
        }
        let path = file.path_under(scratch_root);
        // Not following a link at the last component, as the GET handler.
        let len = match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_file() => metadata.len(),
            _ => return bad(StatusCode::NOT_FOUND, "no such file"),
        };
        if range.start.saturating_add(range.length) > len {
            return bad(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("the file has {len} bytes"),
            );
        }
        checked.push(CheckedRange {
            path,
            start: range.start,
            length: range.length,
        });
    }
    Ok(checked)
}

/// Reads the ranges in order into the channel, packing small ranges together into
/// chunks of [`CHUNK_BYTES`] (one chunk per 64-byte footer made one write, one wake-up
/// and one read per footer on each side); stops at the first error (sent, so that the
/// body ends in an error rather than looking complete) or when the client is gone.
fn send_ranges(
    ranges: &[CheckedRange],
    chunks_tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES);
    for range in ranges {
        match read_range(range, &mut chunk, chunks_tx) {
            Ok(true) => {}
            Ok(false) => return, // the client is gone
            Err(error) => {
                tracing::warn!(%error, path = %range.path.display(), "failed to send a range");
                let _ = chunks_tx.blocking_send(Err(error));
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = chunks_tx.blocking_send(Ok(Bytes::from(chunk)));
    }
}

/// Appends one range to `chunk`, sending every full chunk; returns false when the
/// client went away.
fn read_range(
    range: &CheckedRange,
    chunk: &mut Vec<u8>,
    chunks_tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<bool> {
    let mut file = std::fs::File::open(&range.path)?;
    file.seek(SeekFrom::Start(range.start))?;
    let mut remaining = range.length;
    while remaining > 0 {
        let filled = chunk.len();
        let take = (CHUNK_BYTES - filled).min(usize::try_from(remaining).unwrap_or(usize::MAX));
        chunk.resize(filled + take, 0);
        file.read_exact(&mut chunk[filled..])?;
        remaining -= take as u64;
        if chunk.len() == CHUNK_BYTES {
            let full = std::mem::replace(chunk, Vec::with_capacity(CHUNK_BYTES));
            if chunks_tx.blocking_send(Ok(Bytes::from(full))).is_err() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::file_server_router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    /// Sends a raw HTTP/1.1 POST and returns the status and the body.
    async fn post(
        address: std::net::SocketAddr,
        body: &str,
        token: Option<&str>,
    ) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let authorization = token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST {RANGES_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{authorization}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&answer[..split]).to_string();
        let status = head[9..12].parse().unwrap();
        (status, answer[split + 4..].to_vec())
    }

    fn ranges_json(ranges: &[(&str, u64, u64)]) -> String {
        let request = RangesRequest {
            ranges: ranges
                .iter()
                .map(|(file, start, length)| RequestedRange {
                    file: (*file).to_string(),
                    start: *start,
                    length: *length,
                })
                .collect(),
        };
        serde_json::to_string(&request).unwrap()
    }

    #[tokio::test]
    async fn ranges_of_several_files_come_back_to_back_or_not_at_all() {
        let scratch = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|index| (index % 253) as u8).collect();
        for (attempt, content) in [("a1", &big[..]), ("b2", b"hello world")] {
            let dir = scratch.path().join("7").join("1").join(attempt);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("map.out"), content).unwrap();
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = file_server_router(scratch.path().to_path_buf(), Some("t"));
        let server = tokio::spawn(essaim_telemetry::serve_http(
            listener,
            router,
            stop.clone().cancelled_owned(),
        ));
        let token = Some("t");

        let asked = ranges_json(&[
            ("7/1/b2/map.out", 6, 5),
            ("7/1/a1/map.out", 1000, 200_000),
            ("7/1/b2/map.out", 0, 5),
        ]);
        let (status, body) = post(address, &asked, token).await;
        assert_eq!(status, 200);
        let mut expected = b"world".to_vec();
        expected.extend_from_slice(&big[1000..201_000]);
        expected.extend_from_slice(b"hello");
        assert!(body == expected, "{} bytes back", body.len());

        assert_eq!(post(address, &asked, None).await.0, 401);
        let missing = ranges_json(&[("7/1/b2/map.out", 0, 5), ("7/1/c3/map.out", 0, 1)]);
        let (status, body) = post(address, &missing, token).await;
        assert_eq!(status, 404);
        assert!(String::from_utf8_lossy(&body).contains("range 1"));
        let too_long = ranges_json(&[("7/1/b2/map.out", 6, 6)]);
        assert_eq!(post(address, &too_long, token).await.0, 416);
        for bad in [
            ranges_json(&[("7/1/b2/../map.out", 0, 1)]),
            ranges_json(&[("7/1/b2", 0, 1)]),
            ranges_json(&[("7/1/b2/map.out", 0, 0)]),
            ranges_json(&[]),
        ] {
            assert_eq!(post(address, &bad, token).await.0, 400, "{bad}");
        }
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
