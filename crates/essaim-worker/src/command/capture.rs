//! Bounded capture of a program's pipes: what is kept of standard output and standard
//! error, whatever the program prints.
//!
//! Standard output is held in memory only up to the inline limit (64 KiB); as soon as
//! it outgrows it, what was read so far and everything after goes to a file, so memory
//! stays bounded and a small output never touches the disk. Of standard error only the
//! last 4 KiB are kept, in a buffer that drops its oldest bytes.

use std::io::ErrorKind;
use std::path::Path;

use essaim_core::model::{MAX_INLINE_RESULT_BYTES, MAX_STDERR_TAIL_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;

/// Size of one read from the program's pipes.
const PIPE_READ_BYTES: usize = 64 * 1024;

/// Writes `text` to the program's standard input, then closes it (by dropping it) so that
/// the program sees the end of its input.
pub(super) async fn feed_stdin(
    pipe: Option<ChildStdin>,
    text: Option<String>,
) -> std::io::Result<()> {
    let (Some(mut pipe), Some(text)) = (pipe, text) else {
        return Ok(());
    };
    match pipe.write_all(text.as_bytes()).await {
        // The program exited or closed its input without reading everything: its
        // choice, judged by its exit status.
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        written => written,
    }
}

/// Standard output as kept: in memory when small, in a file otherwise.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CapturedStdout {
    Inline(Vec<u8>),
    File { size_bytes: u64 },
}

/// Reads the program's standard output to the end, holding at most the inline limit in
/// memory and moving to the file `path` as soon as it outgrows it.
pub(super) async fn capture_stdout(
    mut pipe: impl AsyncRead + Unpin,
    path: &Path,
) -> std::io::Result<CapturedStdout> {
    let mut buffer = vec![0; PIPE_READ_BYTES];
    let mut small_output = Vec::new();
    let mut file: Option<tokio::fs::File> = None;
    let mut size_bytes: u64 = 0;
    loop {
        let read = pipe.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        size_bytes += read as u64;
        let chunk = &buffer[..read];
        if let Some(file) = &mut file {
            file.write_all(chunk).await?;
            continue;
        }
        small_output.extend_from_slice(chunk);
        if small_output.len() > MAX_INLINE_RESULT_BYTES {
            let mut created = tokio::fs::File::create(path).await?;
            created.write_all(&small_output).await?;
            small_output = Vec::new();
            file = Some(created);
        }
    }
    let Some(mut file) = file else {
        return Ok(CapturedStdout::Inline(small_output));
    };
    // A tokio file finishes its last write in the background; flush waits for it.
    file.flush().await?;
    Ok(CapturedStdout::File { size_bytes })
}

/// Reads the program's standard error to the end, keeping only its last bytes. A read
/// error ends the capture with what was kept: the tail is a diagnostic, not a result.
pub(super) async fn keep_stderr_tail(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut buffer = vec![0; PIPE_READ_BYTES];
    let mut tail: Vec<u8> = Vec::with_capacity(MAX_STDERR_TAIL_BYTES);
    loop {
        let read = match pipe.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, "failed to read the command's standard error");
                break;
            }
        };
        append_keeping_tail(&mut tail, &buffer[..read], MAX_STDERR_TAIL_BYTES);
    }
    tail
}

/// Appends `chunk` to `tail`, then drops the oldest bytes beyond `limit`.
fn append_keeping_tail(tail: &mut Vec<u8>, chunk: &[u8], limit: usize) {
    let chunk = &chunk[chunk.len().saturating_sub(limit)..];
    tail.extend_from_slice(chunk);
    let excess = tail.len().saturating_sub(limit);
    tail.drain(..excess);
}

/// Returns the stderr tail as text of at most the tail limit, cut on a character boundary
/// (replacement characters for invalid UTF-8 can make the text longer than the bytes).
pub(super) fn stderr_tail_text(tail: &[u8]) -> String {
    essaim_proto::keep_tail(
        String::from_utf8_lossy(tail).into_owned(),
        MAX_STDERR_TAIL_BYTES,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_last_bytes_across_chunks() {
        let mut tail = Vec::new();
        append_keeping_tail(&mut tail, b"abcdef", 4);
        assert_eq!(tail, b"cdef");
        append_keeping_tail(&mut tail, b"gh", 4);
        assert_eq!(tail, b"efgh");
        append_keeping_tail(&mut tail, b"ijklmnop", 4);
        assert_eq!(tail, b"mnop");
        let invalid = [0xff; MAX_STDERR_TAIL_BYTES];
        assert!(stderr_tail_text(&invalid).len() <= MAX_STDERR_TAIL_BYTES);
    }
}
