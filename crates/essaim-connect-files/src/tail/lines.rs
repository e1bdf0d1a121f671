//! Cutting the current file into lines: held-back last lines, oversized lines, the
//! end-of-stream message, and handing messages to `fetch`.
use std::io::BufRead;

use bytes::Bytes;
use essaim_connect::{ConnectorError, SourceMessage};

use super::{Finished, Line, OversizedLines, Tail};

impl Tail {
    /// Reads lines of the current file until `max` messages are buffered (false) or
    /// its end (true).
    pub(super) fn read_lines(&mut self, max: usize) -> Result<bool, ConnectorError> {
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
    pub(super) fn skipping(&self) -> bool {
        self.skip_through
            .is_some_and(|skip| self.line.position <= skip)
    }

    pub(super) fn oversized_message(&self) -> String {
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
    pub(super) fn emit_line(&mut self) {
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
    pub(super) fn finish_current(&mut self) {
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

    pub(super) fn take(&mut self, max: usize) -> Vec<SourceMessage> {
        let count = self.pending.len().min(max);
        let mut messages = Vec::with_capacity(count);
        for (message, end) in self.pending.drain(..count) {
            self.returned_end = end;
            messages.push(message);
        }
        messages
    }

    pub(super) fn lag(&mut self) -> Result<u64, ConnectorError> {
        let files = self.list()?;
        let total = self.base + files.iter().map(|(_, size)| size).sum::<u64>();
        Ok(total.saturating_sub(self.returned_end))
    }
}
