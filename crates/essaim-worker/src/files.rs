//! The file server: `GET /files/{job}/{task}/{attempt}/{name}` serves the file `name` of
//! an attempt directory, for results too large to travel inline.
//!
//! Guarantees:
//! - nothing outside the scratch directory can be reached: the job and task must be
//!   decimal, the attempt hexadecimal, and the name one plain component
//!   (`[A-Za-z0-9._-]+`, not `.` or `..`), checked after percent-decoding; the path is
//!   rebuilt from the parsed numbers, never from the raw text; symbolic links are not
//!   followed at the last component;
//! - a request for a job's files carries the job's capability once the worker is
//!   registered, the cluster token before (`file_access.rs`);
//! - files are streamed, so a large result never sits in memory;
//! - a single byte range (`Range: bytes=a-b`, `bytes=a-` or `bytes=-n`) is answered
//!   with `206 Partial Content` and its `Content-Range`, and a range that starts past
//!   the end with `416 Range Not Satisfiable`; a reducer fetches just its partition of
//!   a map output this way. A header this server does not understand (another unit,
//!   several ranges, a malformed one) is ignored and the whole file is sent, as HTTP
//!   allows.
//!
//! `POST /files/ranges` answers several ranges of several files in one response
//! (`file_ranges.rs`): a reducer fetches its small segments of many map outputs that way.
//!
//! Parsing is pure functions ([`parse_file_request`], [`parse_range`]) tested on their
//! own; the handler only does the I/O.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use essaim_core::{AttemptId, JobId, TaskId};

use crate::executor::attempt_dir;
use crate::file_access::FileAccess;

/// Bytes read from disk per chunk of a served file.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// One file of one attempt, as named by a valid URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptFile {
    task: TaskId,
    attempt_id: AttemptId,
    name: String,
}

impl AttemptFile {
    /// Returns where the file lives under `scratch_root`.
    pub(crate) fn path_under(&self, scratch_root: &Path) -> PathBuf {
        attempt_dir(scratch_root, self.task, self.attempt_id).join(&self.name)
    }
}

/// Why a file URL was refused (always a 400: the client asked for something that cannot
/// exist).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FileRequestError {
    /// The job is not a decimal number.
    #[error("job `{0}` is not a decimal number")]
    Job(String),
    /// The task is not a decimal number.
    #[error("task `{0}` is not a decimal number")]
    Task(String),
    /// The attempt is not a hexadecimal number.
    #[error("attempt `{0}` is not a hexadecimal number")]
    Attempt(String),
    /// The name is not one plain file name.
    #[error("file name `{0}` is not allowed (letters, digits, `.`, `_` and `-` only)")]
    Name(String),
}

/// Checks the four URL segments (already percent-decoded) of a file request.
pub(crate) fn parse_file_request(
    job: &str,
    task: &str,
    attempt: &str,
    name: &str,
) -> Result<AttemptFile, FileRequestError> {
    // Digits are checked first because `parse` also accepts a leading `+`.
    let is_decimal =
        |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let is_hex = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_hexdigit());
    let job_id = Some(job)
        .filter(|text| is_decimal(text))
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| FileRequestError::Job(shorten(job)))?;
    let task_index = Some(task)
        .filter(|text| is_decimal(text))
        .and_then(|text| text.parse::<u32>().ok())
        .ok_or_else(|| FileRequestError::Task(shorten(task)))?;
    let attempt_id = Some(attempt)
        .filter(|text| is_hex(text))
        .and_then(|text| u64::from_str_radix(text, 16).ok())
        .ok_or_else(|| FileRequestError::Attempt(shorten(attempt)))?;
    let name_is_plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if !name_is_plain {
        return Err(FileRequestError::Name(shorten(name)));
    }
    Ok(AttemptFile {
        task: TaskId::new(JobId(job_id), task_index),
        attempt_id: AttemptId(attempt_id),
        name: name.to_string(),
    })
}

/// What to send of a file, given its `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// The whole file, `200 OK`.
    Whole,
    /// Bytes `start..=end` (both within the file), `206 Partial Content`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, included.
        end: u64,
    },
    /// `416 Range Not Satisfiable`: the range starts at or past the end of the file.
    Unsatisfiable,
}

/// Reads a `Range` header (if any) against a file of `len` bytes (RFC 9110, section
/// 14): one `bytes` range is honoured, anything else is ignored.
pub(crate) fn parse_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(header) = header else {
        return ByteRange::Whole;
    };
    let header = header.trim();
    let Some((unit, spec)) = header.split_once('=') else {
        return ByteRange::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let number = |text: &str| {
        let digits = text.trim();
        let all_digits = !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit());
        if all_digits {
            digits.parse::<u64>().ok()
        } else {
            None
        }
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // `bytes=-n`: the last n bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Partial {
                start: len.saturating_sub(suffix),
                end: len - 1,
            }
        }
        // `bytes=a-`: from a to the end.
        (false, Some(start), None) if last.trim().is_empty() => {
            if start >= len {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Partial {
                start,
                end: len - 1,
            }
        }
        // `bytes=a-b`: a to b, b clamped to the end.
        (false, Some(start), Some(end)) if start <= end => {
            if start >= len {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Partial {
                start,
                end: end.min(len - 1),
            }
        }
        _ => ByteRange::Whole,
    }
}

/// Keeps error messages short whatever the client sent.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

pub(crate) struct FileServerState {
    pub(crate) scratch_root: PathBuf,
    /// What a request must carry (`file_access.rs`).
    pub(crate) access: FileAccess,
}

/// Returns the router of `/files/…`, serving attempt files under `scratch_root` to
/// holders of the cluster token `token` (public so that the shuffle's tests run against
/// the real server).
pub fn file_server_router(scratch_root: PathBuf, token: Option<&str>) -> Router {
    file_server_router_with(scratch_root, FileAccess::cluster_token_only(token))
}

/// Returns the router of `/files/…`, serving attempt files under `scratch_root` to the
/// requests `access` admits.
pub fn file_server_router_with(scratch_root: PathBuf, access: FileAccess) -> Router {
    let state = FileServerState {
        scratch_root,
        access,
    };
    Router::new()
        .route(
            "/files/{job}/{task}/{attempt}/{name}",
            get(serve_attempt_file),
        )
        .route("/files/ranges", post(crate::file_ranges::serve_ranges))
        .with_state(Arc::new(state))
}

async fn serve_attempt_file(
    State(state): State<Arc<FileServerState>>,
    headers: HeaderMap,
    UrlPath((job, task, attempt, name)): UrlPath<(String, String, String, String)>,
) -> Response {
    let file = match parse_file_request(&job, &task, &attempt, &name) {
        Ok(file) => file,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    // After parsing: the capability to check is the one of the job the path names.
    if let Err(refusal) = state.access.check(&headers, file.task.job.0) {
        return refusal.into_response();
    }
    let path = file.path_under(&state.scratch_root);
    // `symlink_metadata` so that a link planted by a command is not followed out of the
    // scratch directory.
    let metadata = match tokio::fs::symlink_metadata(&path).await {
        Ok(metadata) if metadata.is_file() => metadata,
        Ok(_) => return (StatusCode::NOT_FOUND, "no such file").into_response(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "no such file").into_response();
        }
        Err(error) => return internal_error(&path, &error),
    };
    let len = metadata.len();
    let range_header = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok());
    let range = parse_range(range_header, len);
    if range == ByteRange::Unsatisfiable {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response();
    }
    let mut opened = match tokio::fs::File::open(&path).await {
        Ok(opened) => opened,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "no such file").into_response();
        }
        Err(error) => return internal_error(&path, &error),
    };
    let ByteRange::Partial { start, end } = range else {
        let body = Body::from_stream(ReaderStream::with_capacity(opened, STREAM_CHUNK_BYTES));
        return (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::CONTENT_LENGTH, len.to_string()),
                (header::ACCEPT_RANGES, "bytes".to_string()),
            ],
            body,
        )
            .into_response();
    };
    if let Err(error) = opened.seek(std::io::SeekFrom::Start(start)).await {
        return internal_error(&path, &error);
    }
    let part_len = end - start + 1;
    // `take` ends the body at the range's end even if the file grows meanwhile.
    let body = Body::from_stream(ReaderStream::with_capacity(
        opened.take(part_len),
        STREAM_CHUNK_BYTES,
    ));
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, part_len.to_string()),
            (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        body,
    )
        .into_response()
}

fn internal_error(path: &Path, error: &std::io::Error) -> Response {
    tracing::warn!(%error, path = %path.display(), "failed to open a served file");
    (StatusCode::INTERNAL_SERVER_ERROR, "failed to open the file").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    #[test]
    fn only_numeric_ids_and_plain_names_are_accepted() {
        let file = parse_file_request("12", "3", "beef", "stdout").unwrap();
        assert_eq!(
            file.path_under(Path::new("/s")),
            Path::new("/s/12/3/beef/stdout")
        );
        // Leading zeros are canonicalised, so two spellings name one file.
        let padded = parse_file_request("012", "03", "0beef", "stdout").unwrap();
        assert_eq!(padded, file);
        for (job, task, attempt, name) in [
            ("..", "3", "beef", "stdout"),
            ("+12", "3", "beef", "stdout"),
            ("12", "-3", "beef", "stdout"),
            ("12", "3", "xyz", "stdout"),
            ("12", "3", "beef", ".."),
            ("12", "3", "beef", "."),
            ("12", "3", "beef", "a/b"),
            ("12", "3", "beef", ""),
            ("12", "99999999999", "beef", "stdout"),
        ] {
            assert!(
                parse_file_request(job, task, attempt, name).is_err(),
                "{job}/{task}/{attempt}/{name}"
            );
        }
    }

    /// Sends one raw HTTP/1.1 request and returns the status code and the body.
    async fn get(address: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let (status, _, body) = get_with(address, path, token, "").await;
        (status, body)
    }

    /// Sends one raw HTTP/1.1 request with `extra_headers` (each ending in CRLF) and
    /// returns the status code, the response head, and the body.
    async fn get_with(
        address: std::net::SocketAddr,
        path: &str,
        token: Option<&str>,
        extra_headers: &str,
    ) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let authorization = token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\n{authorization}{extra_headers}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let head_end = response
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap();
        let head = String::from_utf8_lossy(&response[..head_end]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = response[head_end + 4..].to_vec();
        (status, head.to_ascii_lowercase(), body)
    }

    #[tokio::test]
    async fn file_server_refuses_traversal_and_missing_tokens_and_serves_real_files() {
        let scratch = tempfile::tempdir().unwrap();
        let attempt_dir = scratch.path().join("12/3/beef");
        std::fs::create_dir_all(&attempt_dir).unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|index| (index % 251) as u8).collect();
        std::fs::write(attempt_dir.join("stdout"), &content).unwrap();
        std::fs::write(scratch.path().join("secret"), b"not for clients").unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = file_server_router(scratch.path().to_path_buf(), Some("s3cret"));
        let server = tokio::spawn(essaim_telemetry::serve_http(
            listener,
            router,
            stop.clone().cancelled_owned(),
        ));

        let token = Some("s3cret");
        let (status, body) = get(address, "/files/12/3/beef/stdout", token).await;
        assert_eq!(status, 200);
        assert_eq!(body, content);

        assert_eq!(get(address, "/files/12/3/beef/stdout", None).await.0, 401);
        assert_eq!(
            get(address, "/files/12/3/beef/stdout", Some("wrong"))
                .await
                .0,
            401
        );
        assert_eq!(get(address, "/files/12/3/beef/..", token).await.0, 400);
        assert_eq!(get(address, "/files/12/3/beef/%2e%2e", token).await.0, 400);
        assert_eq!(get(address, "/files/12/3/beef/%2E%2E", token).await.0, 400);
        assert_eq!(
            get(address, "/files/12/3/beef/..%2fsecret", token).await.0,
            400
        );
        assert_eq!(get(address, "/files/abc/3/beef/stdout", token).await.0, 400);
        assert_eq!(
            get(address, "/files/12/3/nothex/stdout", token).await.0,
            400
        );
        assert_eq!(get(address, "/files/12/3/beef/missing", token).await.0, 404);
        assert_eq!(
            get(address, "/files/12/3/beef/../../../secret", token)
                .await
                .0,
            404
        );

        stop.cancel();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn single_byte_ranges_are_parsed_and_everything_else_is_ignored() {
        let partial = |start, end| ByteRange::Partial { start, end };
        for (header, expected) in [
            (None, ByteRange::Whole),
            (Some("bytes=0-9"), partial(0, 9)),
            (Some("bytes=10-19"), partial(10, 19)),
            (Some("BYTES = 10-19"), partial(10, 19)),
            (Some("bytes=90-"), partial(90, 99)),
            (Some("bytes=90-1000"), partial(90, 99)),
            (Some("bytes=-5"), partial(95, 99)),
            (Some("bytes=-500"), partial(0, 99)),
            (Some("bytes=99-99"), partial(99, 99)),
            (Some("bytes=100-"), ByteRange::Unsatisfiable),
            (Some("bytes=100-200"), ByteRange::Unsatisfiable),
            (Some("bytes=-0"), ByteRange::Unsatisfiable),
            (Some("bytes=5-3"), ByteRange::Whole),
            (Some("bytes=0-1,5-6"), ByteRange::Whole),
            (Some("items=0-1"), ByteRange::Whole),
            (Some("bytes=a-b"), ByteRange::Whole),
            (Some("bytes=+1-2"), ByteRange::Whole),
            (Some("bytes=-"), ByteRange::Whole),
            (Some("bytes"), ByteRange::Whole),
        ] {
            assert_eq!(parse_range(header, 100), expected, "{header:?}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-3"), 0), ByteRange::Unsatisfiable);
    }

    #[tokio::test]
    async fn range_requests_get_partial_content_or_416() {
        let scratch = tempfile::tempdir().unwrap();
        let attempt_dir = scratch.path().join("1/2/a");
        std::fs::create_dir_all(&attempt_dir).unwrap();
        let content: Vec<u8> = (0..300_000u32).map(|index| (index % 253) as u8).collect();
        std::fs::write(attempt_dir.join("map.out"), &content).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = file_server_router(scratch.path().to_path_buf(), Some("t"));
        let server = tokio::spawn(essaim_telemetry::serve_http(
            listener,
            router,
            stop.clone().cancelled_owned(),
        ));
        let path = "/files/1/2/a/map.out";
        let len = content.len();

        let (status, head, body) =
            get_with(address, path, Some("t"), "Range: bytes=10-19\r\n").await;
        assert_eq!(status, 206);
        assert!(
            head.contains(&format!("content-range: bytes 10-19/{len}")),
            "{head}"
        );
        assert_eq!(body, &content[10..20]);

        // A range across several stream chunks, open-ended.
        let start = 1000;
        let (status, head, body) = get_with(
            address,
            path,
            Some("t"),
            &format!("Range: bytes={start}-\r\n"),
        )
        .await;
        assert_eq!(status, 206);
        assert!(
            head.contains(&format!("content-length: {}", len - start)),
            "{head}"
        );
        assert_eq!(body, &content[start..]);

        let (status, _, body) = get_with(address, path, Some("t"), "Range: bytes=-7\r\n").await;
        assert_eq!(status, 206);
        assert_eq!(body, &content[len - 7..]);

        let (status, head, body) = get_with(
            address,
            path,
            Some("t"),
            &format!("Range: bytes={len}-\r\n"),
        )
        .await;
        assert_eq!(status, 416);
        assert!(
            head.contains(&format!("content-range: bytes */{len}")),
            "{head}"
        );
        assert!(body.is_empty());

        let (status, head, body) =
            get_with(address, path, Some("t"), "Range: bytes=0-1,5-6\r\n").await;
        assert_eq!(status, 200);
        assert!(head.contains("accept-ranges: bytes"), "{head}");
        assert_eq!(body, content);

        // The token and the path checks come first.
        let (status, _, _) = get_with(address, path, None, "Range: bytes=0-1\r\n").await;
        assert_eq!(status, 401);
        let (status, _, _) = get_with(
            address,
            "/files/1/2/a/missing",
            Some("t"),
            "Range: bytes=0-1\r\n",
        )
        .await;
        assert_eq!(status, 404);

        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
