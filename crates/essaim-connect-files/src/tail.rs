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

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use essaim_connect::{ConnectorError, PartitionReader, SourceMessage};

use crate::names::list_log_files;
use crate::{CONNECTOR, blocking, io_error};

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

impl Tail {
    fn open(
        config: DirectoryConfig,
        partition: u32,
        resume_after: Option<u64>,
    ) -> Result<Tail, ConnectorError> {
        let dir = config.partition_dir(partition);
        let (base, deleted_through) = read_deleted_state(&dir)?;
        let mut tail = Tail {
            config,
            partition,
            dir,
            base,
            deleted_through,
            finished: Vec::new(),
            current: None,
            line: Line::default(),
            skip_through: resume_after,
            pending: VecDeque::new(),
            returned_end: base,
            ended: false,
            failure: None,
            committed: None,
        };
        if let Some(position) = resume_after {
            tail.seek_after(position)?;
        }
        Ok(tail)
    }

    fn violation(&mut self, action: &'static str, message: String) -> ConnectorError {
        let message = format!(
            "partition {} (`{}`): {message}",
            self.partition,
            self.dir.display()
        );
        self.failure = Some(message.clone());
        ConnectorError::permanent(CONNECTOR, action, message)
    }

    fn io(&self, action: &'static str, what: &str, error: std::io::Error) -> ConnectorError {
        io_error(
            action,
            format!("partition {}: {what}", self.partition),
            error,
        )
    }

    /// The log files after what `delete_committed` removed.
    fn list(&self) -> Result<Vec<(String, u64)>, ConnectorError> {
        let mut files = list_log_files(&self.dir, &self.config.end_marker).map_err(|error| {
            self.io("list", &format!("listing `{}`", self.dir.display()), error)
        })?;
        if let Some(deleted) = &self.deleted_through {
            files.retain(|(name, _)| name > deleted);
        }
        Ok(files)
    }

    fn end_marker_exists(&self) -> Result<bool, ConnectorError> {
        self.dir
            .join(&self.config.end_marker)
            .try_exists()
            .map_err(|error| self.io("list", "looking for the end marker", error))
    }

    fn open_file(&self, name: &str, offset: u64) -> Result<BufReader<File>, ConnectorError> {
        let path = self.dir.join(name);
        let mut file = File::open(&path)
            .map_err(|error| self.io("open", &format!("`{}`", path.display()), error))?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).map_err(|error| {
                self.io("open", &format!("seeking `{}`", path.display()), error)
            })?;
        }
        Ok(BufReader::with_capacity(
            self.config.read_buffer_bytes,
            file,
        ))
    }

    /// Positions the reader on the line at `position`, which is read but not
    /// delivered.
    fn seek_after(&mut self, position: u64) -> Result<(), ConnectorError> {
        let ended = self.end_marker_exists()?;
        let files = self.list()?;
        if position < self.base {
            return Err(self.violation(
                "open",
                format!(
                    "cannot resume after position {position}: the files before byte {} were deleted",
                    self.base
                ),
            ));
        }
        let mut start = self.base;
        for (index, (name, size)) in files.iter().enumerate() {
            if position < start + size {
                self.finished = files[..index]
                    .iter()
                    .map(|(name, size)| Finished {
                        name: name.clone(),
                        size: *size,
                    })
                    .collect();
                let offset = position - start;
                let reader = self.open_file(name, offset)?;
                self.current = Some(Current {
                    name: name.clone(),
                    start,
                    reader,
                    offset,
                    complete: false,
                });
                self.line = Line {
                    position,
                    ..Line::default()
                };
                self.returned_end = position;
                return Ok(());
            }
            start += size;
        }
        if ended && position == start {
            // The end-of-stream message was delivered (and committed) already.
            self.finished = files
                .into_iter()
                .map(|(name, size)| Finished { name, size })
                .collect();
            self.ended = true;
            self.returned_end = start;
            return Ok(());
        }
        Err(self.violation(
            "open",
            format!(
                "cannot resume after position {position}: the log has only {start} bytes \
                 (files removed, truncated, or renamed?)"
            ),
        ))
    }

    /// Reads until `max` messages are buffered or no more data is available now.
    fn fill(&mut self, max: usize) -> Result<(), ConnectorError> {
        if let Some(failure) = &self.failure {
            return Err(ConnectorError::permanent(
                CONNECTOR,
                "fetch",
                failure.clone(),
            ));
        }
        while self.pending.len() < max && !self.ended {
            if self.current.is_none() && !self.open_next()? {
                break;
            }
            let at_end = self.read_lines(max)?;
            if !at_end {
                continue;
            }
            let complete = self
                .current
                .as_ref()
                .is_some_and(|current| current.complete);
            if complete {
                self.finish_current();
                continue;
            }
            // At the end of the file: is it complete? The marker is looked for before
            // the listing, so that once it is seen the listing holds every file.
            let marker = self.end_marker_exists()?;
            let files = self.list()?;
            self.check(&files)?;
            let newer = match &self.current {
                Some(current) => files.iter().any(|(name, _)| *name > current.name),
                None => false,
            };
            if !(newer || marker) {
                break;
            }
            // Complete, but read it to its end once more: it may have grown before
            // the newer file appeared.
            if let Some(current) = &mut self.current {
                current.complete = true;
            }
        }
        Ok(())
    }

    /// Opens the file after the finished ones, or reads the end marker; false when
    /// there is nothing to read now.
    fn open_next(&mut self) -> Result<bool, ConnectorError> {
        let marker = self.end_marker_exists()?;
        let files = self.list()?;
        self.check(&files)?;
        let start = self.base + self.finished.iter().map(|file| file.size).sum::<u64>();
        if let Some((name, _)) = files.get(self.finished.len()) {
            let reader = self.open_file(name, 0)?;
            self.current = Some(Current {
                name: name.clone(),
                start,
                reader,
                offset: 0,
                complete: false,
            });
            self.line = Line {
                position: start,
                ..Line::default()
            };
            return Ok(true);
        }
        if marker {
            self.ended = true;
            let message = SourceMessage {
                partition: self.partition,
                position: start,
                payload: Bytes::new(),
                end_of_stream: true,
                redeliveries: 0,
            };
            if self.skip_through.is_none_or(|skip| start > skip) {
                self.pending.push_back((message, start));
            }
        }
        Ok(false)
    }

    /// Checks the listing against the contract: files already read are unchanged,
    /// the current file did not shrink, no new file sorts before the current one.
    fn check(&mut self, files: &[(String, u64)]) -> Result<(), ConnectorError> {
        let known = self
            .finished
            .iter()
            .map(|file| (file.name.as_str(), Some(file.size), 0))
            .chain(
                self.current
                    .as_ref()
                    .map(|current| (current.name.as_str(), None, current.offset)),
            );
        let mut problem = None;
        for (index, (name, expected_size, read)) in known.enumerate() {
            match files.get(index) {
                Some((listed, size)) if listed == name => {
                    if let Some(expected) = expected_size
                        && *size != expected
                    {
                        problem = Some(format!(
                            "file `{name}` changed size from {expected} to {size} bytes after it was \
                             read to its end (only the last file may grow)"
                        ));
                    } else if *size < read {
                        problem = Some(format!(
                            "file `{name}` shrank to {size} bytes after {read} were read (files \
                             must only grow)"
                        ));
                    }
                }
                Some((listed, _)) if listed.as_str() < name => {
                    problem = Some(format!(
                        "new file `{listed}` sorts before `{name}`, which was already read (new \
                         files must sort after existing ones)"
                    ));
                }
                _ => {
                    problem = Some(format!(
                        "file `{name}` vanished after it was read (files may only be removed by \
                         delete_committed)"
                    ));
                }
            }
            if problem.is_some() {
                break;
            }
        }
        match problem {
            Some(problem) => Err(self.violation("fetch", problem)),
            None => Ok(()),
        }
    }

    /// Reads lines of the current file until `max` messages are buffered (false) or
    /// its end (true).
    fn read_lines(&mut self, max: usize) -> Result<bool, ConnectorError> {
        loop {
            if self.pending.len() >= max {
                return Ok(false);
            }
            let Some(current) = &mut self.current else {
                return Ok(true);
            };
            let buffer = match current.reader.fill_buf() {
                Ok(buffer) => buffer,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let what = format!("reading `{}`", current.name);
                    return Err(self.io("fetch", &what, error));
                }
            };
            if buffer.is_empty() {
                return Ok(true);
            }
            let (chunk_len, complete) = match buffer.iter().position(|byte| *byte == b'\n') {
                Some(index) => (index, true),
                None => (buffer.len(), false),
            };
            let line = &mut self.line;
            if !line.oversized {
                if line.bytes.len() + chunk_len > self.config.max_line_bytes {
                    line.oversized = true;
                    line.bytes = Vec::new();
                } else {
                    line.bytes.extend_from_slice(&buffer[..chunk_len]);
                }
            }
            let consumed = chunk_len + usize::from(complete);
            current.reader.consume(consumed);
            current.offset += consumed as u64;
            line.consumed += consumed as u64;
            if self.line.oversized
                && !self.skipping()
                && self.config.oversized_lines == OversizedLines::Fail
            {
                let message = self.oversized_message();
                return Err(self.violation("fetch", message));
            }
            if complete {
                self.emit_line();
            }
        }
    }

    /// True when the line being read is at or before the resume position.
    fn skipping(&self) -> bool {
        self.skip_through
            .is_some_and(|skip| self.line.position <= skip)
    }

    fn oversized_message(&self) -> String {
        let (name, start) = self
            .current
            .as_ref()
            .map(|current| (current.name.as_str(), current.start))
            .unwrap_or(("?", 0));
        format!(
            "the line at position {} (file `{name}`, byte {}) is longer than max_line_bytes = {} \
             (raise it, or set oversized_lines = skip)",
            self.line.position,
            self.line.position - start,
            self.config.max_line_bytes
        )
    }

    /// Delivers the line read (unless skipped) and starts the next one.
    fn emit_line(&mut self) {
        let end = self.line.position + self.line.consumed;
        let line = std::mem::replace(
            &mut self.line,
            Line {
                position: end,
                ..Line::default()
            },
        );
        if self.skip_through.is_some_and(|skip| line.position <= skip) {
            return;
        }
        if line.oversized {
            tracing::warn!(
                partition = self.partition,
                position = line.position,
                bytes = line.consumed,
                "skipping a line longer than max_line_bytes"
            );
            return;
        }
        let mut bytes = line.bytes;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        self.pending.push_back((
            SourceMessage {
                partition: self.partition,
                position: line.position,
                payload: Bytes::from(bytes),
                end_of_stream: false,
                redeliveries: 0,
            },
            end,
        ));
    }

    /// The current file is complete and read to its end: its unterminated last line is
    /// delivered, and it joins the finished files.
    fn finish_current(&mut self) {
        if self.line.consumed > 0 {
            self.emit_line();
        }
        if let Some(current) = self.current.take() {
            self.finished.push(Finished {
                name: current.name,
                size: current.offset,
            });
        }
    }

    fn take(&mut self, max: usize) -> Vec<SourceMessage> {
        let count = self.pending.len().min(max);
        let mut messages = Vec::with_capacity(count);
        for (message, end) in self.pending.drain(..count) {
            self.returned_end = end;
            messages.push(message);
        }
        messages
    }

    fn lag(&mut self) -> Result<u64, ConnectorError> {
        let files = self.list()?;
        let total = self.base + files.iter().map(|(_, size)| size).sum::<u64>();
        Ok(total.saturating_sub(self.returned_end))
    }

    fn commit(&mut self, position: u64) -> Result<(), ConnectorError> {
        if self
            .committed
            .is_some_and(|committed| committed >= position)
        {
            return Ok(());
        }
        self.committed = Some(position);
        if !self.config.delete_committed {
            return Ok(());
        }
        // Files ending at or before the committed line's position are wholly committed.
        let mut end = self.base;
        let mut count = 0;
        for file in &self.finished {
            if end + file.size > position {
                break;
            }
            end += file.size;
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let removed: Vec<Finished> = self.finished.drain(..count).collect();
        let last = removed.last().map(|file| file.name.clone());
        // Record first, then remove: after a crash in between, the names recorded are
        // ignored (and removed again), so positions never shift.
        write_deleted_state(&self.dir, end, last.as_deref().unwrap_or_default())
            .map_err(|error| self.io("commit", "recording deleted files", error))?;
        self.base = end;
        self.deleted_through = last;
        for file in &removed {
            match std::fs::remove_file(self.dir.join(&file.name)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(self.io("commit", &format!("removing `{}`", file.name), error));
                }
            }
        }
        // Leftovers of a crash between recording and removing.
        for (name, _) in list_log_files(&self.dir, &self.config.end_marker)
            .map_err(|error| self.io("commit", "listing", error))?
        {
            if self
                .deleted_through
                .as_ref()
                .is_some_and(|deleted| name <= *deleted)
            {
                let _ = std::fs::remove_file(self.dir.join(&name));
            }
        }
        Ok(())
    }
}

fn read_deleted_state(dir: &Path) -> Result<(u64, Option<String>), ConnectorError> {
    let path = dir.join(DELETED_STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
        Err(error) => return Err(io_error("open", format!("`{}`", path.display()), error)),
    };
    let mut lines = text.lines();
    let base = lines
        .next()
        .and_then(|line| line.trim().parse::<u64>().ok());
    let name = lines.next().filter(|name| !name.is_empty());
    match (base, name) {
        (Some(base), Some(name)) => Ok((base, Some(name.to_owned()))),
        _ => Err(ConnectorError::permanent(
            CONNECTOR,
            "open",
            format!("`{}` is not `<bytes>\\n<file name>\\n`", path.display()),
        )),
    }
}

/// Writes the deleted state atomically (temporary file, fsync, rename, fsync of the
/// directory).
fn write_deleted_state(dir: &Path, base: u64, last: &str) -> std::io::Result<()> {
    let temporary = dir.join(format!("{DELETED_STATE_FILE}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(format!("{base}\n{last}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(DELETED_STATE_FILE))?;
    File::open(dir)?.sync_all()
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

    #[test]
    fn the_deleted_state_round_trips() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(read_deleted_state(dir.path()).ok(), Some((0, None)));
        write_deleted_state(dir.path(), 1234, "a-0002.log")?;
        assert_eq!(
            read_deleted_state(dir.path()).ok(),
            Some((1234, Some("a-0002.log".to_owned())))
        );
        Ok(())
    }
}
