//! A skipped record as stored: one JSON object per line, in the file of the task that
//! skipped it (`_skipped/map-00003.jsonl`), readable with `jq` as well as with
//! `essaim skipped`.

use serde::{Deserialize, Serialize};

/// Folder of the job's output where skipped records are published.
pub const SKIPPED_DIR: &str = "_skipped";
/// Bytes of a skipped record kept in the store; a longer record keeps its first bytes
/// and says how long it was.
pub const MAX_STORED_RECORD_BYTES: usize = 64 * 1024;

/// Returns the name, in [`SKIPPED_DIR`], of the file of the records map task
/// `task_index` skipped: one file per task, so that a re-run or a twin of the task
/// replaces it rather than adds to it.
pub fn map_task_file_name(task_index: u32) -> String {
    format!("map-{task_index:05}.jsonl")
}

/// Returns the name, in [`SKIPPED_DIR`], of the file of the key groups the reduce task
/// of `partition` (of the job's last step) skipped.
pub fn reduce_task_file_name(partition: u32) -> String {
    format!("reduce-{partition:05}.jsonl")
}

/// One record a task skipped, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRecord {
    /// The input file, as the job named it.
    pub file: String,
    /// Byte offset of the record in the file (in decoded bytes for a compressed file).
    pub offset: u64,
    /// Line number of the record in the file, from 1.
    pub line: u64,
    /// Index of the map task that skipped it.
    pub task: u32,
    /// What failed when the record ran alone: the job's error, a panic's message, or a
    /// command's exit status with the tail of its standard error.
    pub error: String,
    /// Length of the record in bytes (its line terminator excluded).
    pub length: u64,
    /// The record's first [`MAX_STORED_RECORD_BYTES`] bytes, when they are UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The same bytes in hexadecimal, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

/// Where a skipped record was and why, before its bytes are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedAt {
    /// The input file.
    pub file: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// Line number in the file, from 1.
    pub line: u64,
    /// The map task.
    pub task: u32,
    /// Why it failed.
    pub error: String,
}

impl SkippedRecord {
    /// Returns the stored form of the record `data` skipped at `at` (its bytes cut to
    /// [`MAX_STORED_RECORD_BYTES`]).
    pub fn new(at: SkippedAt, data: &[u8]) -> Self {
        let kept = &data[..data.len().min(MAX_STORED_RECORD_BYTES)];
        let (text, hex) = match std::str::from_utf8(kept) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (None, Some(to_hex(kept))),
        };
        Self {
            file: at.file,
            offset: at.offset,
            line: at.line,
            task: at.task,
            error: at.error,
            length: data.len() as u64,
            text,
            hex,
        }
    }

    /// Returns the stored bytes of the record (all of it unless
    /// [`SkippedRecord::is_truncated`]).
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.text, &self.hex) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(hex)) => from_hex(hex),
            (None, None) => Vec::new(),
        }
    }

    /// Returns true when only the first bytes of the record were kept.
    pub fn is_truncated(&self) -> bool {
        (self.bytes().len() as u64) < self.length
    }

    /// Returns `file:line`, the way a person names the record.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Encodes `records` as JSON lines.
pub fn to_json_lines(records: &[SkippedRecord]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for record in records {
        serde_json::to_writer(&mut bytes, record).expect("a skipped record always serializes");
        bytes.push(b'\n');
    }
    bytes
}

/// Decodes JSON lines written by [`to_json_lines`]; `name` names the file in errors.
pub fn from_json_lines(name: &str, bytes: &[u8]) -> Result<Vec<SkippedRecord>, String> {
    let mut records = Vec::new();
    for (number, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let record = serde_json::from_slice(line)
            .map_err(|error| format!("{name} line {}: {error}", number + 1))?;
        records.push(record);
    }
    Ok(records)
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Decodes lowercase or uppercase hex; stops at the first pair that is not hex (the
/// store writes only valid pairs).
fn from_hex(hex: &str) -> Vec<u8> {
    hex.as_bytes()
        .chunks_exact(2)
        .map_while(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> SkippedAt {
        SkippedAt {
            file: "/data/a.txt".into(),
            offset: 120,
            line: 7,
            task: 3,
            error: "exit status: 3: bad line".into(),
        }
    }

    #[test]
    fn records_round_trip_as_text_or_hex_and_long_ones_are_cut() {
        let text = SkippedRecord::new(at(), b"POISON here");
        let binary = SkippedRecord::new(at(), b"\xff\x00\tx");
        let long_data = vec![b'x'; MAX_STORED_RECORD_BYTES + 10];
        let long = SkippedRecord::new(at(), &long_data);
        assert_eq!(text.text.as_deref(), Some("POISON here"));
        assert_eq!(binary.hex.as_deref(), Some("ff000978"));
        assert_eq!(binary.bytes(), b"\xff\x00\tx");
        assert!(long.is_truncated() && !text.is_truncated());
        assert_eq!(long.length, MAX_STORED_RECORD_BYTES as u64 + 10);
        let records = vec![text, binary, long];
        let bytes = to_json_lines(&records);
        assert_eq!(from_json_lines("x", &bytes).unwrap(), records);
        assert_eq!(records[0].location(), "/data/a.txt:7");
        let error = from_json_lines("map-00003.jsonl", b"{\"file\":1}\n").unwrap_err();
        assert!(error.starts_with("map-00003.jsonl line 1"), "{error}");
    }
}
