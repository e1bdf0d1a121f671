//! A directory of rolling log files tailed as one partition of a source.
//!
//! # The log of a partition
//!
//! A partition is a directory: for a source of `partitions = N > 1`, partition `i` is
//! `<dir>/<i>/`; for one partition, `<dir>` itself. Its log is the concatenation of
//! its regular files in lexicographic (byte) order of their names. Names starting with
//! `.`, ending in `.tmp` or `.inprogress`, and the end marker (`_END` by default) are
//! not part of it: a producer writes a file under such a name and renames it when done
//! (the sink of [`crate::rolling`] does exactly that).
//!
//! A message is one line (its `\n`, and a `\r` before it, removed); its **position is
//! the byte offset of the line's first byte in the concatenation**. Positions are what
//! the runtime commits and resumes after, so they must name the same line forever.
//! That holds if the producer keeps this contract:
//!
//! 1. files only grow (appends), and only the last file (in name order) grows;
//! 2. a new file sorts after every existing one (name rolling logs so that newer sort
//!    later: `app-000001.log`, `app-2026-11-23T02.log`, not `app.log.1`);
//! 3. files are not removed, except by this reader's `delete_committed`, which records
//!    the byte count it removed in the partition's `.essaim-deleted` file so that
//!    positions stay the same.
//!
//! A violation (a file that shrank or changed size after it was read, a new file
//! sorting before one already read, a file that vanished, a resume position beyond the
//! log) is a **permanent** [`ConnectorError`] naming the file: carrying on would
//! silently deliver wrong or duplicate lines under committed positions.
//!
//! # Tailing
//!
//! The last file may still grow. A last line without its `\n` is held back until it is
//! completed, or until a newer file appears (or the end marker does), which tells that
//! the file is complete: it is then delivered as the last line of its file. Lines never
//! span files.
//!
//! The end marker, a file named `_END` (configurable) in the partition's directory, says
//! the producer is done: after the last line, the reader delivers a message with
//! `end_of_stream: true` whose position is the log's total length (greater than any
//! line's), then nothing more.
//!
//! # Lines too long
//!
//! Memory is bounded by `max_line_bytes` (1 MiB by default) plus the read buffer, never
//! a whole file. The contract has no way to flag a message as bad, and cutting a line
//! would deliver a record that never existed, so a longer line is by default a
//! permanent error naming its file and offset ([`OversizedLines::Fail`]); with
//! [`OversizedLines::Skip`] it is skipped with a warning in the log.
//!
//! # Resuming, committing, lag
//!
//! [`DirectoryReader::open`] with `resume_after: Some(p)` finds the file holding `p` by
//! the files' sizes and seeks there: it reads only the rest of the line at `p`, never
//! what comes before. `commit` only records the position, unless `delete_committed` is
//! set: then files wholly before the committed line's file are deleted. `lag` is in
//! **bytes**: the size of the log after the end of the last line returned by `fetch`.
//!
//! # Where the code is
//!
//! This file holds the configuration, the async [`DirectoryReader`] and the reader's
//! state (`Tail`), which runs on blocking threads; `follow` opens and checks the log's
//! files, `lines` cuts the current file into messages, `deleted` commits and removes
//! committed files.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use essaim_connect::{ConnectorError, PartitionReader, SourceMessage};

use crate::{CONNECTOR, blocking};

mod deleted;
mod follow;
mod lines;

/// The longest line delivered by default: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// The default name of the file that ends a partition.
pub const DEFAULT_END_MARKER: &str = "_END";
/// How often an idle reader looks for new data by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The default read buffer: 64 KiB.
pub const DEFAULT_READ_BUFFER_BYTES: usize = 64 << 10;
/// The file in a partition's directory that records what `delete_committed` removed:
/// `<bytes removed>\n<name of the last file removed>\n`. Hidden, so never a log file.
pub const DELETED_STATE_FILE: &str = ".essaim-deleted";

/// What to do with a line longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OversizedLines {
    /// Fail with a permanent error naming the file and the offset (the default: no
    /// record is lost without someone deciding so).
    #[default]
    Fail,
    /// Skip the line, with a warning in the log.
    Skip,
}

/// Where and how to read a directory source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// The source's directory (partition `i` is its subdirectory `i` when
    /// `partitions > 1`). It must exist; a partition's subdirectory may appear later.
    pub dir: PathBuf,
    /// The number of partitions, at least 1.
    pub partitions: u32,
    /// The longest line delivered, without its terminator.
    pub max_line_bytes: usize,
    /// What to do with a longer line.
    pub oversized_lines: OversizedLines,
    /// The name of the file that ends a partition.
    pub end_marker: String,
    /// Delete the files wholly before the committed position's file on commit.
    pub delete_committed: bool,
    /// How often to look for new data while `fetch` waits.
    pub poll_interval: Duration,
    /// The size of the read buffer.
    pub read_buffer_bytes: usize,
}

impl DirectoryConfig {
    /// Returns the default configuration of a source in `dir` with `partitions`
    /// partitions.
    pub fn new(dir: impl Into<PathBuf>, partitions: u32) -> DirectoryConfig {
        DirectoryConfig {
            dir: dir.into(),
            partitions,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            oversized_lines: OversizedLines::Fail,
            end_marker: DEFAULT_END_MARKER.to_owned(),
            delete_committed: false,
            poll_interval: DEFAULT_POLL_INTERVAL,
            read_buffer_bytes: DEFAULT_READ_BUFFER_BYTES,
        }
    }

    /// Returns the directory of `partition`.
    pub fn partition_dir(&self, partition: u32) -> PathBuf {
        if self.partitions > 1 {
            self.dir.join(partition.to_string())
        } else {
            self.dir.clone()
        }
    }
}

/// Reads one partition of a directory source (see the [module](self) documentation).
pub struct DirectoryReader {
    tail: Arc<Mutex<Tail>>,
    poll_interval: Duration,
}

impl DirectoryReader {
    /// Opens partition `partition`, after position `resume_after` (`None`: from the
    /// first line).
    pub async fn open(
        config: &DirectoryConfig,
        partition: u32,
        resume_after: Option<u64>,
    ) -> Result<DirectoryReader, ConnectorError> {
        let invalid = |message: String| ConnectorError::permanent(CONNECTOR, "open", message);
        if config.partitions == 0 {
            return Err(invalid("`partitions` must be at least 1".to_owned()));
        }
        if partition >= config.partitions {
            return Err(invalid(format!(
                "partition {partition} does not exist: the source has {} partitions",
                config.partitions
            )));
        }
        if config.max_line_bytes == 0 || config.read_buffer_bytes == 0 {
            return Err(invalid(
                "`max_line_bytes` and `read_buffer_bytes` must be at least 1".to_owned(),
            ));
        }
        if !config.dir.is_dir() {
            return Err(invalid(format!(
                "`{}` is not a directory",
                config.dir.display()
            )));
        }
        let config = config.clone();
        let poll_interval = config.poll_interval;
        let tail = blocking("open", move || Tail::open(config, partition, resume_after)).await?;
        Ok(DirectoryReader {
            tail: Arc::new(Mutex::new(tail)),
            poll_interval,
        })
    }

    /// Runs `work` on the reader's state on a blocking thread.
    async fn with_tail<T: Send + 'static>(
        &self,
        action: &'static str,
        work: impl FnOnce(&mut Tail) -> Result<T, ConnectorError> + Send + 'static,
    ) -> Result<T, ConnectorError> {
        let tail = Arc::clone(&self.tail);
        blocking(action, move || work(&mut *lock(&tail)?)).await
    }
}

fn lock(tail: &Mutex<Tail>) -> Result<MutexGuard<'_, Tail>, ConnectorError> {
    tail.lock().map_err(|_| {
        ConnectorError::permanent(CONNECTOR, "lock", "a previous call panicked mid-read")
    })
}

impl PartitionReader for DirectoryReader {
    async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<SourceMessage>, ConnectorError> {
        let max = max.max(1);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Lines read are buffered in the shared state and only taken out here, so a
            // fetch cancelled mid-read loses nothing: the next one returns them.
            self.with_tail("fetch", move |tail| tail.fill(max)).await?;
            let messages = lock(&self.tail)?.take(max);
            let now = tokio::time::Instant::now();
            if !messages.is_empty() || now >= deadline {
                return Ok(messages);
            }
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
    }

    async fn commit(&mut self, position: u64) -> Result<(), ConnectorError> {
        self.with_tail("commit", move |tail| tail.commit(position))
            .await
    }

    async fn lag(&mut self) -> Result<Option<u64>, ConnectorError> {
        self.with_tail("lag", |tail| tail.lag().map(Some)).await
    }
}

/// A file read to its end, whose size may no longer change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finished {
    name: String,
    size: u64,
}

/// The file being read.
struct Current {
    name: String,
    /// Its offset in the log.
    start: u64,
    reader: BufReader<File>,
    /// Bytes of the file consumed so far.
    offset: u64,
    /// A newer file or the end marker was seen: the next end of file is final.
    complete: bool,
}

/// The line being assembled.
#[derive(Default)]
struct Line {
    bytes: Vec<u8>,
    /// Its position (log offset of its first byte).
    position: u64,
    /// Longer than `max_line_bytes`: its bytes are not kept.
    oversized: bool,
    /// Bytes consumed of it so far (with `bytes` cleared when oversized).
    consumed: u64,
}

/// The state of a reader: what was read, what is buffered, what was returned.
struct Tail {
    config: DirectoryConfig,
    partition: u32,
    dir: PathBuf,
    /// Log offset of the first byte of the first file still present (bytes removed by
    /// `delete_committed`).
    base: u64,
    /// Name of the last file removed by `delete_committed`: names up to it are ignored.
    deleted_through: Option<String>,
    finished: Vec<Finished>,
    current: Option<Current>,
    line: Line,
    /// Lines at or before this position are read but not delivered (resuming).
    skip_through: Option<u64>,
    /// Messages read, with the log offset after each, not yet returned by `fetch`.
    pending: VecDeque<(SourceMessage, u64)>,
    /// Log offset after the last message returned by `fetch`.
    returned_end: u64,
    /// The end-of-stream message was read.
    ended: bool,
    /// A permanent error: every later call repeats it.
    failure: Option<String>,
    committed: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_partition_is_the_directory_itself_and_many_are_subdirectories() {
        let one = DirectoryConfig::new("/data/in", 1);
        assert_eq!(one.partition_dir(0), PathBuf::from("/data/in"));
        let four = DirectoryConfig::new("/data/in", 4);
        assert_eq!(four.partition_dir(3), PathBuf::from("/data/in/3"));
    }
}
