//! Replay of a CSV file as a stream: each data line published to a subject, paced by
//! the event time in one of its columns.
//!
//! A real data set replayed at a chosen speed-up is how a pipeline is tried on
//! realistic traffic: line `i` is published `(time_i − time_0) / speedup` after the
//! first one, so bursts and lulls of the original are kept, compressed in time. Lines
//! are published in file order, each exactly as it is in the file (without its line
//! ending); the header line is not published. A line whose time cannot be read, or
//! that is earlier than one already published, goes out at once: replay never drops
//! or reorders data.
//!
//! Files ending in `.zst` are decompressed by piping them through the `zstd` command
//! (the workspace has no zstd crate, and the command streams at disk speed).
//! Timestamps are read by `essaim-stream`'s schema parser, the same one pipelines use.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use essaim_stream::schema::{Column, ColumnType, Schema};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

use crate::NatsError;
use crate::publish::Publisher;

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Publish as fast as the server confirms.
    AsFastAsPossible,
    /// Event time runs this many times faster than the original (finite, > 0).
    Speedup(f64),
}

/// What to replay, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// The subject every line is published to.
    pub subject: String,
    /// The column holding each line's event time (needed by [`Pacing::Speedup`]).
    pub time_column: Option<String>,
    /// How fast.
    pub pacing: Pacing,
    /// Stop after this many data lines.
    pub limit: Option<u64>,
    /// With `Some(p)`, data line `i` goes to subject `<subject>.<i mod p>` (partition
    /// `i mod p`), which keeps each partition in the file's order.
    pub partitions: Option<u32>,
    /// After the last line, publish an end-of-stream marker (header
    /// [`essaim_connect::END_OF_STREAM_HEADER`], empty body) to every partition.
    pub end_of_stream: bool,
}

/// Where a replay is, reported about once a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayProgress {
    /// Data lines published so far.
    pub lines: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Seconds since the first line.
    pub seconds: f64,
}

/// What a finished replay did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplaySummary {
    /// Data lines published, all confirmed by the server.
    pub lines: u64,
    /// Their bytes, line endings excluded.
    pub bytes: u64,
    /// Lines whose event time could not be read (published without pacing).
    pub untimed_lines: u64,
    /// Wall-clock seconds from the first publish to the last confirmation.
    pub seconds: f64,
    /// `lines / seconds`.
    pub lines_per_second: f64,
}

/// Returns how long after the first line a line should be published: its event time's
/// distance from the first line's, divided by `speedup`; zero for an earlier line.
pub fn due_after(first_event_millis: i64, event_millis: i64, speedup: f64) -> Duration {
    let ahead_millis = event_millis.saturating_sub(first_event_millis);
    if ahead_millis <= 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(ahead_millis as f64 / 1000.0 / speedup)
}

/// A CSV file opened for replay, decompressed on the fly when it ends in `.zst`.
pub struct CsvInput {
    path: PathBuf,
    reader: Box<dyn AsyncBufRead + Unpin + Send>,
    decompressor: Option<tokio::process::Child>,
}

impl CsvInput {
    /// Opens `path`; a `.zst` file is read through `zstd -dc`.
    pub async fn open(path: &Path) -> Result<CsvInput, NatsError> {
        let read_error = |source| NatsError::Read {
            path: path.to_owned(),
            source,
        };
        let compressed = path.extension().is_some_and(|extension| extension == "zst");
        if !compressed {
            let file = tokio::fs::File::open(path).await.map_err(read_error)?;
            return Ok(CsvInput::from_reader(path, file));
        }
        // The file is opened here, so that a missing file is reported as such and not
        // as a zstd failure.
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut child = tokio::process::Command::new("zstd")
            .arg("-dc")
            .stdin(Stdio::from(file))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(read_error)?;
        let stdout = child.stdout.take().ok_or_else(|| {
            read_error(std::io::Error::other(
                "zstd's standard output was not captured",
            ))
        })?;
        let mut input = CsvInput::from_reader(path, stdout);
        input.decompressor = Some(child);
        Ok(input)
    }

    /// Wraps an already open reader (`path` only names it in errors).
    pub fn from_reader(path: &Path, reader: impl AsyncRead + Unpin + Send + 'static) -> CsvInput {
        CsvInput {
            path: path.to_owned(),
            reader: Box::new(BufReader::with_capacity(256 * 1024, reader)),
            decompressor: None,
        }
    }

    /// Reads the next line without its line ending (`\n` or `\r\n`) into `line`;
    /// returns false at the end of the input.
    async fn next_line(&mut self, line: &mut Vec<u8>) -> Result<bool, NatsError> {
        line.clear();
        let read = self
            .reader
            .read_until(b'\n', line)
            .await
            .map_err(|source| NatsError::Read {
                path: self.path.clone(),
                source,
            })?;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        Ok(read > 0)
    }

    /// Stops the decompressor if the replay stopped early, else checks that it
    /// succeeded (a corrupt file must not pass for a short one).
    async fn finish(mut self, read_to_end: bool) -> Result<(), NatsError> {
        let Some(mut child) = self.decompressor.take() else {
            return Ok(());
        };
        let read_error = |source| NatsError::Read {
            path: self.path.clone(),
            source,
        };
        if !read_to_end {
            // Stopped by --limit: the rest of the file is not wanted.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Ok(());
        }
        let status = child.wait().await.map_err(read_error)?;
        if !status.success() {
            return Err(read_error(std::io::Error::other(format!(
                "zstd -dc failed ({status})"
            ))));
        }
        Ok(())
    }
}

/// Splits a header line into column names: commas outside double quotes separate
/// names, and surrounding quotes are removed (a doubled quote stands for one).
fn header_names(header: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut name = String::new();
    let mut in_quotes = false;
    let mut characters = header.chars().peekable();
    while let Some(character) = characters.next() {
        match (character, in_quotes) {
            ('"', true) if characters.peek() == Some(&'"') => {
                characters.next();
                name.push('"');
            }
            ('"', _) => in_quotes = !in_quotes,
            (',', false) => names.push(std::mem::take(&mut name)),
            (other, _) => name.push(other),
        }
    }
    names.push(name);
    names
}

/// Returns a schema that reads only the event time of a line: every column text, the
/// time column a timestamp.
fn time_schema(path: &Path, header: &[u8], time_column: &str) -> Result<Schema, NatsError> {
    let header_error = |reason: String| NatsError::Header {
        path: path.to_owned(),
        reason,
    };
    let header = std::str::from_utf8(header)
        .map_err(|_| header_error("the header is not UTF-8".to_owned()))?;
    let names = header_names(header);
    if !names.iter().any(|name| name == time_column) {
        return Err(header_error(format!(
            "no column `{time_column}` (columns: {})",
            names.join(", ")
        )));
    }
    let columns = names
        .iter()
        .map(|name| {
            let column_type = if name == time_column {
                ColumnType::Timestamp
            } else {
                ColumnType::String
            };
            Column::new(name, column_type)
        })
        .collect();
    Schema::new(columns, None, time_column, None).map_err(|error| header_error(error.to_string()))
}

/// Publishes the data lines of `input` to `options.subject`, paced as asked, reporting
/// progress about once a second, and waits for every publish ack before returning.
pub async fn replay(
    mut input: CsvInput,
    publisher: &mut Publisher,
    options: &ReplayOptions,
    progress: &mut (dyn FnMut(&ReplayProgress) + Send),
) -> Result<ReplaySummary, NatsError> {
    let speedup = match options.pacing {
        Pacing::AsFastAsPossible => None,
        Pacing::Speedup(speedup) if speedup.is_finite() && speedup > 0.0 => Some(speedup),
        Pacing::Speedup(speedup) => {
            return Err(NatsError::InvalidConfig {
                key: "speedup",
                reason: format!("must be a finite number above 0, not {speedup}"),
            });
        }
    };
    if speedup.is_some() && options.time_column.is_none() {
        return Err(NatsError::InvalidConfig {
            key: "time_column",
            reason: "pacing by a speed-up needs the column of event times".to_owned(),
        });
    }
    let mut line = Vec::with_capacity(4096);
    if !input.next_line(&mut line).await? {
        input.finish(true).await?;
        return Ok(summary(0, 0, 0, Duration::ZERO));
    }
    let schema = match &options.time_column {
        Some(time_column) => Some(time_schema(&input.path, &line, time_column)?),
        None => None,
    };

    let limit = options.limit.unwrap_or(u64::MAX);
    let (mut lines, mut bytes, mut untimed_lines) = (0_u64, 0_u64, 0_u64);
    let mut first_event_millis = None;
    let started = Instant::now();
    let mut last_report = started;
    let mut line_number = 1_u64;
    let mut read_to_end = false;
    while lines < limit {
        if !input.next_line(&mut line).await? {
            read_to_end = true;
            break;
        }
        line_number += 1;
        if line.is_empty() {
            continue;
        }
        if let Some(schema) = &schema {
            match schema.parse_line(&line, line_number) {
                Ok(record) => {
                    let event_millis = record.time.0;
                    let first = *first_event_millis.get_or_insert(event_millis);
                    if let Some(speedup) = speedup {
                        let due = started + due_after(first, event_millis, speedup);
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                Err(_) => untimed_lines += 1,
            }
        }
        bytes += line.len() as u64;
        match options.partitions {
            Some(partitions) if partitions > 0 => {
                let partition = lines % u64::from(partitions);
                publisher
                    .publish(
                        &format!("{}.{partition}", options.subject),
                        Bytes::copy_from_slice(&line),
                    )
                    .await?;
            }
            _ => {
                publisher
                    .publish(&options.subject, Bytes::copy_from_slice(&line))
                    .await?;
            }
        }
        lines += 1;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(&ReplayProgress {
                lines,
                bytes,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    if options.end_of_stream {
        let subjects: Vec<String> = match options.partitions {
            Some(partitions) if partitions > 0 => (0..partitions)
                .map(|partition| format!("{}.{partition}", options.subject))
                .collect(),
            _ => vec![options.subject.clone()],
        };
        for subject in subjects {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(essaim_connect::END_OF_STREAM_HEADER, "1");
            publisher
                .publish_with_headers(&subject, headers, Bytes::new())
                .await?;
        }
    }
    publisher.flush().await?;
    input.finish(read_to_end).await?;
    Ok(summary(lines, bytes, untimed_lines, started.elapsed()))
}

fn summary(lines: u64, bytes: u64, untimed_lines: u64, elapsed: Duration) -> ReplaySummary {
    let seconds = elapsed.as_secs_f64();
    let lines_per_second = if seconds > 0.0 {
        lines as f64 / seconds
    } else {
        0.0
    };
    ReplaySummary {
        lines,
        bytes,
        untimed_lines,
        seconds,
        lines_per_second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_divides_event_time_by_the_speedup() {
        assert_eq!(due_after(1_000, 61_000, 60.0), Duration::from_secs(1));
        assert_eq!(due_after(1_000, 1_000, 10.0), Duration::ZERO);
        // An earlier line is due at once, never "before the start".
        assert_eq!(due_after(5_000, 1_000, 10.0), Duration::ZERO);
    }

    #[test]
    fn header_names_drop_quotes_and_keep_quoted_commas() {
        assert_eq!(
            header_names(r#""date","delay",distance,"a,b","say ""hi""""#),
            vec!["date", "delay", "distance", "a,b", r#"say "hi""#]
        );
    }

    #[test]
    fn time_schema_reads_the_flights_timestamp() {
        let path = Path::new("flights.csv");
        let header = br#""date","delay","distance","origin","destination""#;
        let schema = time_schema(path, header, "date").expect("the header names `date`");
        let record = schema
            .parse_line(br#"2001-01-01 00:01:00.000000,33,2176,"LAS","PHL""#, 2)
            .expect("a flights line");
        assert_eq!(record.time.0, 978_307_260_000);
        let missing = time_schema(path, header, "when").expect_err("no such column");
        assert!(
            missing.to_string().contains("no column `when`"),
            "{missing}"
        );
    }
}
