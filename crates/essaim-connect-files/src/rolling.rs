//! The file sink: results as JSON lines in files rolled by size and age.
//!
//! Each [`OutMessage`] becomes one line `{"key":…,"revision":…,"value":<payload>}` in
//! `<dir>/<partition>/part-<partition>-<n>.jsonl.inprogress` (`n` zero-padded, so names
//! sort in writing order). When that file reaches `max_bytes` (64 MiB by default) or
//! `max_age` (60 s), noticed on the next `write` or `flush`, it is fsynced and renamed
//! to its final name `part-<partition>-<n>.jsonl`, and the directory is fsynced.
//! Readers only ever see whole files: a [`crate::DirectoryReader`] on
//! `<dir>/<partition>` ignores `.inprogress` files, and every final file ends with a
//! complete line.
//!
//! # Durability and duplicates
//!
//! `write` appends each call's lines with one write (no buffer outlives a call);
//! `flush` fsyncs. The runtime flushes before it commits the source positions that
//! produced the messages, so after a crash it replays from its committed positions and
//! may write some results again. Delivery is therefore **at-least-once with
//! deterministic keys**: a consumer of these files deduplicates by `key`, keeping the
//! line of greatest `revision` (a window re-emitted after a late record has a greater
//! one; a replay writes the same key and revision again).
//!
//! # Recovery
//!
//! [`RollingFileWriter::open`] (and the first write to a partition) recovers what a
//! crash left: an `.inprogress` file is truncated to its last complete line and renamed
//! to its final name (or removed if nothing is left), and numbering continues after the
//! highest `n` found. Dropping a writer without `flush` is a crash as far as the files
//! are concerned.
//!
//! # Errors
//!
//! A full disk (`ENOSPC`) is a **transient** error: the file is cut back to the end of
//! the last complete write, so nothing already written (let alone flushed) is lost or
//! torn, and the same call can be retried once space is freed. A failed fsync is
//! transient too, but the lines written since the last successful flush are cut off
//! (the kernel may have dropped them), so the runtime must replay from its committed
//! positions, which it does after any failed flush. A payload that is not JSON is a
//! permanent error and nothing of that call is written.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use essaim_connect::{ConnectorError, MessageWriter, OutMessage};

use crate::names::{IN_PROGRESS_SUFFIX, in_progress_name, part_name, part_number};
use crate::{CONNECTOR, blocking, io_error};

/// The size at which a file is rolled by default: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// The age at which a file is rolled by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

/// Where and how to write files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingConfig {
    /// The sink's directory; partition `p` writes in `<dir>/<p>/`. Created if missing.
    pub dir: PathBuf,
    /// A file is rolled once it holds at least this many bytes.
    pub max_bytes: u64,
    /// A file is rolled once it is this old (on the next write or flush).
    pub max_age: Duration,
}

impl RollingConfig {
    /// Returns the default configuration of a sink in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> RollingConfig {
        RollingConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: DEFAULT_MAX_AGE,
        }
    }

    /// Returns the directory of `partition`'s files.
    pub fn partition_dir(&self, partition: u32) -> PathBuf {
        self.dir.join(partition.to_string())
    }
}

/// Writes results as rolling JSON-lines files (see the [module](self) documentation).
pub struct RollingFileWriter {
    sink: Arc<Mutex<Sink>>,
}

impl RollingFileWriter {
    /// Opens the sink, recovering the files of every partition found in `config.dir`.
    pub async fn open(config: RollingConfig) -> Result<RollingFileWriter, ConnectorError> {
        if config.max_bytes == 0 {
            return Err(ConnectorError::permanent(
                CONNECTOR,
                "open",
                "`max_bytes` must be at least 1",
            ));
        }
        let sink = blocking("open", move || Sink::open(config)).await?;
        Ok(RollingFileWriter {
            sink: Arc::new(Mutex::new(sink)),
        })
    }

    async fn with_sink<T: Send + 'static>(
        &self,
        action: &'static str,
        work: impl FnOnce(&mut Sink) -> Result<T, ConnectorError> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let sink = Arc::clone(&self.sink);
        blocking(action, move || work(&mut *lock(&sink)?)).await
    }
}

fn lock(sink: &Mutex<Sink>) -> Result<MutexGuard<'_, Sink>, ConnectorError> {
    sink.lock().map_err(|_| {
        ConnectorError::permanent(CONNECTOR, "lock", "a previous call panicked mid-write")
    })
}

impl MessageWriter for RollingFileWriter {
    async fn write(&mut self, messages: &[OutMessage]) -> Result<(), ConnectorError> {
        // Encoded here, so a bad payload fails before anything is written.
        let mut lines: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        for message in messages {
            lines
                .entry(message.partition)
                .or_default()
                .push(encode(message)?);
        }
        if lines.is_empty() {
            return Ok(());
        }
        self.with_sink("write", move |sink| {
            for (partition, lines) in lines {
                sink.write(partition, &lines)?;
            }
            Ok(())
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        self.with_sink("flush", Sink::flush).await
    }
}

/// Encodes one message as a line, terminator included.
fn encode(message: &OutMessage) -> Result<Vec<u8>, ConnectorError> {
    let value: serde_json::Value = serde_json::from_slice(&message.payload).map_err(|error| {
        ConnectorError::permanent(
            CONNECTOR,
            "write",
            format!("the payload of `{}` is not JSON: {error}", message.key),
        )
    })?;
    let key = serde_json::to_string(&message.key).map_err(|error| {
        ConnectorError::permanent(CONNECTOR, "write", format!("encoding a key: {error}"))
    })?;
    let mut line = Vec::with_capacity(message.payload.len() + key.len() + 40);
    line.extend_from_slice(b"{\"key\":");
    line.extend_from_slice(key.as_bytes());
    line.extend_from_slice(format!(",\"revision\":{},\"value\":", message.revision).as_bytes());
    if message
        .payload
        .iter()
        .any(|byte| matches!(byte, b'\n' | b'\r'))
    {
        // Pretty-printed JSON would break the one-line-per-result format.
        line.extend_from_slice(value.to_string().as_bytes());
    } else {
        line.extend_from_slice(message.payload.trim_ascii());
    }
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// The file of a partition being written.
struct OpenFile {
    number: u64,
    file: File,
    /// Bytes written (complete lines only).
    len: u64,
    /// Bytes known to be on disk (the last successful fsync).
    durable_len: u64,
    opened: Instant,
}

/// The files of one partition.
struct PartitionFiles {
    partition: u32,
    dir: PathBuf,
    next_number: u64,
    open: Option<OpenFile>,
}

struct Sink {
    config: RollingConfig,
    partitions: BTreeMap<u32, PartitionFiles>,
}

impl Sink {
    fn open(config: RollingConfig) -> Result<Sink, ConnectorError> {
        std::fs::create_dir_all(&config.dir).map_err(|error| {
            io_error(
                "open",
                format!("creating `{}`", config.dir.display()),
                error,
            )
        })?;
        let mut sink = Sink {
            config,
            partitions: BTreeMap::new(),
        };
        let entries = std::fs::read_dir(&sink.config.dir).map_err(|error| {
            io_error(
                "open",
                format!("listing `{}`", sink.config.dir.display()),
                error,
            )
        })?;
        for entry in entries {
            let entry = entry.map_err(|error| io_error("open", "listing", error))?;
            // Only canonical names (`3`, not `03` or `+3`): the ones this sink creates.
            let name = entry.file_name();
            let partition = name
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
                .filter(|partition| name.to_str() == Some(partition.to_string().as_str()));
            if let Some(partition) = partition
                && entry.path().is_dir()
            {
                sink.partition(partition)?;
            }
        }
        Ok(sink)
    }

    /// The files of `partition`, recovered on first use.
    fn partition(&mut self, partition: u32) -> Result<&mut PartitionFiles, ConnectorError> {
        if !self.partitions.contains_key(&partition) {
            let dir = self.config.partition_dir(partition);
            let next_number = recover(&dir, partition)?;
            self.partitions.insert(
                partition,
                PartitionFiles {
                    partition,
                    dir,
                    next_number,
                    open: None,
                },
            );
        }
        self.partitions.get_mut(&partition).ok_or_else(|| {
            ConnectorError::permanent(CONNECTOR, "write", "a partition vanished from the map")
        })
    }

    fn write(&mut self, partition: u32, lines: &[Vec<u8>]) -> Result<(), ConnectorError> {
        let max_bytes = self.config.max_bytes;
        let max_age = self.config.max_age;
        let files = self.partition(partition)?;
        files.roll_if_due(max_bytes, max_age)?;
        let mut buffer = Vec::new();
        for line in lines {
            files.ensure_open()?;
            buffer.extend_from_slice(line);
            let len = files.open.as_ref().map_or(0, |open| open.len);
            if len + buffer.len() as u64 >= max_bytes {
                files.append(&mut buffer)?;
                files.roll()?;
            }
        }
        if !buffer.is_empty() {
            files.append(&mut buffer)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        let max_bytes = self.config.max_bytes;
        let max_age = self.config.max_age;
        for files in self.partitions.values_mut() {
            files.roll_if_due(max_bytes, max_age)?;
            files.sync()?;
        }
        Ok(())
    }
}

impl PartitionFiles {
    fn in_progress_path(&self, number: u64) -> PathBuf {
        self.dir.join(in_progress_name(self.partition, number))
    }

    /// The open file, if any, with its in-progress path (for error messages).
    fn open_file(&mut self) -> Option<(&mut OpenFile, PathBuf)> {
        let path = self.in_progress_path(self.open.as_ref()?.number);
        Some((self.open.as_mut()?, path))
    }

    fn ensure_open(&mut self) -> Result<(), ConnectorError> {
        if self.open.is_some() {
            return Ok(());
        }
        let number = self.next_number;
        let path = self.in_progress_path(number);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| write_error(Some(&path), error))?;
        self.next_number += 1;
        // The new name must be durable too, or a flushed file could vanish with a
        // crash of the machine.
        if let Err(error) = sync_dir(&self.dir) {
            let _ = std::fs::remove_file(&path);
            return Err(error);
        }
        self.open = Some(OpenFile {
            number,
            file,
            len: 0,
            durable_len: 0,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Appends whole lines; on failure cuts the file back to where it was, so it never
    /// ends with a torn line.
    fn append(&mut self, buffer: &mut Vec<u8>) -> Result<(), ConnectorError> {
        let Some((open, path)) = self.open_file() else {
            return Ok(());
        };
        if let Err(error) = open.file.write_all(buffer) {
            let _ = open.file.set_len(open.len);
            buffer.clear();
            return Err(write_error(Some(&path), error));
        }
        open.len += buffer.len() as u64;
        buffer.clear();
        Ok(())
    }

    fn roll_if_due(&mut self, max_bytes: u64, max_age: Duration) -> Result<(), ConnectorError> {
        let due = self
            .open
            .as_ref()
            .is_some_and(|open| open.len >= max_bytes || open.opened.elapsed() >= max_age);
        if due { self.roll() } else { Ok(()) }
    }

    /// Fsyncs the open file.
    fn sync(&mut self) -> Result<(), ConnectorError> {
        let Some((open, path)) = self.open_file() else {
            return Ok(());
        };
        if open.durable_len == open.len {
            return Ok(());
        }
        if let Err(error) = open.file.sync_data() {
            // What the kernel failed to write may be gone: cut it off rather than
            // pretend, and let the runtime replay from its committed positions.
            let _ = open.file.set_len(open.durable_len);
            open.len = open.durable_len;
            let mut error = write_error(Some(&path), error);
            error
                .message
                .push_str("; the lines written since the last flush were discarded: replay them");
            return Err(error);
        }
        open.durable_len = open.len;
        Ok(())
    }

    /// Fsyncs the open file and renames it to its final name.
    fn roll(&mut self) -> Result<(), ConnectorError> {
        self.sync()?;
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let from = self.in_progress_path(open.number);
        if open.len == 0 {
            let _ = std::fs::remove_file(&from);
            return Ok(());
        }
        let to = self.dir.join(part_name(self.partition, open.number));
        if let Err(error) = std::fs::rename(&from, &to) {
            self.open = Some(open);
            return Err(io_error(
                "write",
                format!("renaming `{}`", from.display()),
                error,
            ));
        }
        sync_dir(&self.dir)
    }
}

fn write_error(path: Option<&Path>, error: std::io::Error) -> ConnectorError {
    let path = path.map_or_else(String::new, |path| path.display().to_string());
    if error.kind() == std::io::ErrorKind::StorageFull {
        ConnectorError::transient(
            CONNECTOR,
            "write",
            format!("the disk is full writing `{path}` (nothing written before was lost): {error}"),
        )
    } else {
        io_error("write", format!("writing `{path}`"), error)
    }
}

fn sync_dir(dir: &Path) -> Result<(), ConnectorError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| io_error("write", format!("syncing `{}`", dir.display()), error))
}

/// Finalises what a crash left in a partition's directory and returns the number of
/// the next file.
fn recover(dir: &Path, partition: u32) -> Result<u64, ConnectorError> {
    let context = |what: &str| format!("recovering `{}`: {what}", dir.display());
    std::fs::create_dir_all(dir).map_err(|error| io_error("open", context("creating"), error))?;
    let entries =
        std::fs::read_dir(dir).map_err(|error| io_error("open", context("listing"), error))?;
    let mut highest = None;
    let mut torn = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error("open", context("listing"), error))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(number) = part_number(partition, &name) else {
            continue;
        };
        highest = highest.max(Some(number));
        if name.ends_with(IN_PROGRESS_SUFFIX) {
            torn.push(number);
        }
    }
    for number in &torn {
        let from = dir.join(in_progress_name(partition, *number));
        let to = dir.join(part_name(partition, *number));
        let kept = cut_after_last_line(&from)
            .map_err(|error| io_error("open", context(&format!("`{}`", from.display())), error))?;
        let finished = if kept == 0 {
            std::fs::remove_file(&from)
        } else {
            std::fs::rename(&from, &to)
        };
        finished
            .map_err(|error| io_error("open", context(&format!("`{}`", from.display())), error))?;
        tracing::info!(file = %to.display(), bytes = kept, "recovered an unfinished file");
    }
    if !torn.is_empty() {
        sync_dir(dir)?;
    }
    Ok(highest.map_or(1, |highest| highest + 1))
}

/// Truncates `path` after its last `\n` (to nothing if it has none), fsyncs it, and
/// returns its new length. Reads backwards in blocks, never the whole file.
fn cut_after_last_line(path: &Path) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 << 10;
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = vec![0; BLOCK as usize];
    let mut keep = 0;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..size])?;
        if let Some(index) = block[..size].iter().rposition(|byte| *byte == b'\n') {
            keep = start + index as u64 + 1;
            break;
        }
        end = start;
    }
    if keep != len {
        file.set_len(keep)?;
    }
    file.sync_all()?;
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(key: &str, payload: &str) -> OutMessage {
        OutMessage {
            key: key.to_owned(),
            revision: 2,
            partition: 0,
            payload: Bytes::from(payload.to_owned()),
        }
    }

    #[test]
    fn a_message_is_one_line_even_when_its_payload_is_pretty_printed() -> Result<(), ConnectorError>
    {
        let line = encode(&message("k\"1", "{\"n\": 1}"))?;
        assert_eq!(
            line,
            b"{\"key\":\"k\\\"1\",\"revision\":2,\"value\":{\"n\": 1}}\n"
        );
        let line = encode(&message("k", "{\n  \"n\": 1\n}"))?;
        assert_eq!(
            line,
            b"{\"key\":\"k\",\"revision\":2,\"value\":{\"n\":1}}\n"
        );
        assert!(encode(&message("k", "{oops")).is_err());
        Ok(())
    }

    #[test]
    fn a_torn_file_is_cut_after_its_last_line() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        std::fs::write(&path, "one\ntwo\nthr")?;
        assert_eq!(cut_after_last_line(&path)?, 8);
        assert_eq!(std::fs::read_to_string(&path)?, "one\ntwo\n");
        std::fs::write(&path, "no line")?;
        assert_eq!(cut_after_last_line(&path)?, 0);
        Ok(())
    }
}
