//! Following the log: opening a partition after a position, listing and checking its
//! files against the contract, and moving from one file to the next.
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};

use bytes::Bytes;
use essaim_connect::{ConnectorError, SourceMessage};

use super::deleted::read_deleted_state;
use super::{Current, DirectoryConfig, Finished, Line, Tail};
use crate::names::list_log_files;
use crate::{CONNECTOR, io_error};

impl Tail {
    pub(super) fn open(
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

    pub(super) fn violation(&mut self, action: &'static str, message: String) -> ConnectorError {
        let message = format!(
            "partition {} (`{}`): {message}",
            self.partition,
            self.dir.display()
        );
        self.failure = Some(message.clone());
        ConnectorError::permanent(CONNECTOR, action, message)
    }

    pub(super) fn io(
        &self,
        action: &'static str,
        what: &str,
        error: std::io::Error,
    ) -> ConnectorError {
        io_error(
            action,
            format!("partition {}: {what}", self.partition),
            error,
        )
    }

    /// The log files after what `delete_committed` removed.
    pub(super) fn list(&self) -> Result<Vec<(String, u64)>, ConnectorError> {
        let mut files = list_log_files(&self.dir, &self.config.end_marker).map_err(|error| {
            self.io("list", &format!("listing `{}`", self.dir.display()), error)
        })?;
        if let Some(deleted) = &self.deleted_through {
            files.retain(|(name, _)| name > deleted);
        }
        Ok(files)
    }

    pub(super) fn end_marker_exists(&self) -> Result<bool, ConnectorError> {
        self.dir
            .join(&self.config.end_marker)
            .try_exists()
            .map_err(|error| self.io("list", "looking for the end marker", error))
    }

    pub(super) fn open_file(
        &self,
        name: &str,
        offset: u64,
    ) -> Result<BufReader<File>, ConnectorError> {
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
    pub(super) fn seek_after(&mut self, position: u64) -> Result<(), ConnectorError> {
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
    pub(super) fn fill(&mut self, max: usize) -> Result<(), ConnectorError> {
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
    pub(super) fn open_next(&mut self) -> Result<bool, ConnectorError> {
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
    pub(super) fn check(&mut self, files: &[(String, u64)]) -> Result<(), ConnectorError> {
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
}
