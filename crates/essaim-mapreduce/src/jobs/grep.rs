//! `grep`: the lines that match a regular expression, as `path:line_number:line`.
//!
//! The difficulty is the line number. A map task sees one split of a file and numbers
//! its lines from 1 (`Record::line_in_split`); it does not know how many lines the
//! earlier splits of the file hold. So every mapper also reports how many lines its
//! split has, and one reducer, which sees all the records of a file in order, adds the
//! counts of the earlier splits to each match's line number.
//!
//! Keys are built so that byte order is the order the reducer needs:
//!
//! ```text
//! path  0x00  split_start (u64 BE)  kind (0x00 match | 0x01 count)  [line_in_split (u64 BE)]
//! ```
//!
//! - a path never contains a NUL byte, so the `0x00` ends it unambiguously and a path
//!   sorts before every longer path it is a prefix of;
//! - big-endian integers sort numerically;
//! - the count of split `k` (kind 1) sorts after the matches of split `k` (kind 0) and
//!   before every record of the next split (larger `split_start`).
//!
//! A custom partitioner hashes only the path, so every record of a file reaches the
//! same reducer. The reducer keeps, for the current file, the number of lines in the
//! splits it has passed. A split with no line sends no count and adds nothing.
//!
//! Lines are matched as bytes (`regex::bytes`, so invalid UTF-8 is fine) without their
//! `\n`; a `\r` before it is kept, as GNU grep does. Output is sorted by path, then line
//! number, within each part; all the matches of a file are in one part, so with one
//! reducer the whole output is sorted.
//!
//! Parameters: `pattern` (required; Rust regex syntax), `ignore_case` (default `false`).

use regex::bytes::{Regex, RegexBuilder};

use crate::api::{
    Emit, HashPartitioner, JobDefinition, JobError, JobParams, Mapper, Partitioner, Record,
    Reducer, Values,
};
use crate::jobs::common::{bool_param, path_bytes, push_decimal};

/// Name of the job.
pub const NAME: &str = "grep";
/// Parameter: the regular expression (required).
pub const PATTERN_PARAM: &str = "pattern";
/// Parameter: match without regard to case (`true`/`false`, default `false`).
pub const IGNORE_CASE_PARAM: &str = "ignore_case";

const KIND_MATCH: u8 = 0;
const KIND_LINE_COUNT: u8 = 1;
/// Bytes after the path's NUL: split start, kind (and, for matches, the line number).
const SPLIT_AND_KIND_BYTES: usize = 8 + 1;

/// The `grep` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct Grep;

fn compile(params: &JobParams) -> Result<Regex, JobError> {
    let pattern = params.require(PATTERN_PARAM)?;
    let ignore_case = bool_param(params, IGNORE_CASE_PARAM, false)?;
    RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .build()
        .map_err(|error| {
            JobError::permanent(format!(
                "parameter `{PATTERN_PARAM}` = `{pattern}`: {error}"
            ))
        })
}

impl JobDefinition for Grep {
    fn name(&self) -> &str {
        NAME
    }

    /// Its map output depends on the splits and parameters alone.
    fn map_outputs_reusable(&self, _params: &JobParams) -> bool {
        true
    }

    fn description(&self) -> &str {
        "prints the lines matching `pattern` as `path:line_number:line`"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        compile(params).map(|_| ())
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(GrepMapper {
            regex: compile(params)?,
            current_split: None,
            key: Vec::new(),
        }))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(GrepReducer::default()))
    }

    fn partitioner(
        &self,
        _params: &JobParams,
        _step: usize,
    ) -> Result<Box<dyn Partitioner>, JobError> {
        Ok(Box::new(PathPartitioner))
    }
}

/// The split a mapper is reading, and how many lines of it it has seen.
struct SplitLines {
    path: Vec<u8>,
    split_start: u64,
    lines: u64,
}

struct GrepMapper {
    regex: Regex,
    /// The split of the last record; a mapper normally sees one, but reports each
    /// split it sees should it be handed several.
    current_split: Option<SplitLines>,
    /// The key, reused between emits.
    key: Vec<u8>,
}

/// Appends `path 0x00 split_start kind` to `key`.
fn push_key_prefix(key: &mut Vec<u8>, path: &[u8], split_start: u64, kind: u8) {
    key.extend_from_slice(path);
    key.push(0);
    key.extend_from_slice(&split_start.to_be_bytes());
    key.push(kind);
}

impl GrepMapper {
    fn emit_line_count(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        let Some(split) = self.current_split.take() else {
            return Ok(());
        };
        self.key.clear();
        push_key_prefix(
            &mut self.key,
            &split.path,
            split.split_start,
            KIND_LINE_COUNT,
        );
        out.emit(&self.key, &split.lines.to_be_bytes())
    }
}

impl Mapper for GrepMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let path = path_bytes(record.path);
        let same_split = self
            .current_split
            .as_ref()
            .is_some_and(|split| split.split_start == record.split_start && split.path == path);
        if !same_split {
            self.emit_line_count(out)?;
            self.current_split = Some(SplitLines {
                path: path.to_vec(),
                split_start: record.split_start,
                lines: 0,
            });
        }
        if let Some(split) = self.current_split.as_mut() {
            // Records come in order, so the last line number is the split's line count.
            split.lines = split.lines.max(record.line_in_split);
        }
        if self.regex.is_match(record.data) {
            self.key.clear();
            push_key_prefix(&mut self.key, path, record.split_start, KIND_MATCH);
            self.key
                .extend_from_slice(&record.line_in_split.to_be_bytes());
            out.emit(&self.key, record.data)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        self.emit_line_count(out)
    }
}

/// Splits a key into (path, kind, line_in_split); `None` when malformed.
fn parse_key(key: &[u8]) -> Option<(&[u8], u8, Option<u64>)> {
    let path_end = key.iter().position(|byte| *byte == 0)?;
    let (path, rest) = (&key[..path_end], &key[path_end + 1..]);
    let (split_and_kind, line) = rest.split_at_checked(SPLIT_AND_KIND_BYTES)?;
    let kind = split_and_kind[8];
    match kind {
        KIND_MATCH => Some((path, kind, Some(u64::from_be_bytes(line.try_into().ok()?)))),
        KIND_LINE_COUNT if line.is_empty() => Some((path, kind, None)),
        _ => None,
    }
}

/// Sends every record of a file to one reducer: hashes the path part of the key only.
#[derive(Debug, Clone, Copy)]
struct PathPartitioner;

impl Partitioner for PathPartitioner {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        let path_end = key.iter().position(|byte| *byte == 0).unwrap_or(key.len());
        HashPartitioner.partition(&key[..path_end], partitions)
    }
}

#[derive(Default)]
struct GrepReducer {
    /// The file whose records are arriving.
    path: Vec<u8>,
    /// Lines in the splits of `path` already passed.
    lines_before: u64,
    line: Vec<u8>,
}

impl Reducer for GrepReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let Some((path, kind, line_in_split)) = parse_key(key) else {
            return Err(JobError::permanent("grep: malformed intermediate key"));
        };
        if path != self.path.as_slice() {
            self.path = path.to_vec();
            self.lines_before = 0;
        }
        while let Some(value) = values.next_value()? {
            match line_in_split {
                None => {
                    let count: [u8; 8] = value
                        .try_into()
                        .map_err(|_| JobError::permanent("grep: malformed line count"))?;
                    self.lines_before += u64::from_be_bytes(count);
                }
                Some(line_in_split) => {
                    debug_assert_eq!(kind, KIND_MATCH, "only matches carry a line number");
                    self.line.clear();
                    self.line.extend_from_slice(path);
                    self.line.push(b':');
                    push_decimal(
                        &mut self.line,
                        i128::from(self.lines_before + line_in_split),
                    );
                    self.line.push(b':');
                    self.line.extend_from_slice(value);
                    out.emit(&self.line, b"")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::testing::lines_as_text as text;
    use crate::testing::{
        CollectEmit, InMemoryOptions, reduce_pairs, run_in_memory, run_in_memory_with,
    };

    fn params(pattern: &str) -> JobParams {
        let mut params = JobParams::default();
        params.set(PATTERN_PARAM, pattern);
        params
    }

    #[test]
    fn reports_matches_with_file_line_numbers_sorted_by_path_then_line() {
        let dir = tempfile::tempdir().unwrap();
        let second = dir.path().join("b.txt");
        let first = dir.path().join("a.txt");
        std::fs::write(&second, "error one\nfine\nERROR two\n").unwrap();
        std::fs::write(&first, "fine\r\nan error\r\n").unwrap();
        let output =
            run_in_memory(&Grep, &params("error"), &[second.clone(), first.clone()], 1).unwrap();
        let (first, second) = (first.display(), second.display());
        assert_eq!(
            text(&output),
            vec![
                format!("{first}:2:an error\r"),
                format!("{second}:1:error one")
            ]
        );

        let mut ignoring_case = params("error");
        ignoring_case.set(IGNORE_CASE_PARAM, "true");
        let inputs = [PathBuf::from(second.to_string())];
        let output = run_in_memory(&Grep, &ignoring_case, &inputs, 3).unwrap();
        assert_eq!(
            text(&output),
            vec![
                format!("{second}:1:error one"),
                format!("{second}:3:ERROR two")
            ]
        );
    }

    #[test]
    fn line_numbers_count_the_lines_of_earlier_splits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let lines: Vec<String> = (1..=23)
            .map(|number| {
                if number % 5 == 0 {
                    format!("hit {number}")
                } else {
                    format!("miss {number}")
                }
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let expected: Vec<String> = [5, 10, 15, 20]
            .iter()
            .map(|number| format!("{}:{number}:hit {number}", path.display()))
            .collect();
        for lines_per_split in [1, 2, 4, 7, 100] {
            let options = InMemoryOptions {
                combine: true,
                lines_per_split: NonZeroUsize::new(lines_per_split),
            };
            let output = run_in_memory_with(
                &Grep,
                &params("^hit"),
                std::slice::from_ref(&path),
                2,
                &options,
            )
            .unwrap();
            assert_eq!(text(&output), expected, "{lines_per_split} lines per split");
        }
    }

    #[test]
    fn mappers_of_two_splits_feed_one_reducer_that_numbers_lines_in_the_file() {
        // Two map tasks see two splits of the same file: the second starts at byte 12
        // after 2 lines. Its match is line 1 of its split, line 3 of the file.
        let path = Path::new("data/f");
        let job_params = params("x");
        let mut pairs = Vec::new();
        for (split_start, lines) in [(0u64, ["a x", "b"]), (12, ["c x", "d"])] {
            let mut mapper = Grep.mapper(&job_params, 0).unwrap();
            let mut out = CollectEmit::default();
            for (index, line) in lines.iter().enumerate() {
                let record = Record {
                    path,
                    offset: split_start + index as u64 * 4,
                    line_in_split: index as u64 + 1,
                    split_start,
                    data: line.as_bytes(),
                };
                mapper.map(&record, &mut out).unwrap();
            }
            mapper.finish(&mut out).unwrap();
            pairs.extend(out.pairs);
        }
        // Every record of the file goes to one partition.
        let partitions: Vec<u32> = pairs
            .iter()
            .map(|(key, _)| PathPartitioner.partition(key, 8))
            .collect();
        assert!(partitions.windows(2).all(|pair| pair[0] == pair[1]));
        // Sort as the framework does, then reduce.
        let mut reducer = Grep.reducer(&job_params, 0).unwrap();
        let out = reduce_pairs(reducer.as_mut(), pairs).unwrap();
        let lines: Vec<Vec<u8>> = out.into_iter().map(|(key, _)| key).collect();
        assert_eq!(
            text(&lines),
            vec!["data/f:1:a x".to_string(), "data/f:3:c x".to_string()]
        );
    }

    #[test]
    fn a_line_count_sorts_after_its_splits_matches_and_before_the_next_split() {
        let mut count_of_first = Vec::new();
        push_key_prefix(&mut count_of_first, b"p", 0, KIND_LINE_COUNT);
        let mut match_of_first = Vec::new();
        push_key_prefix(&mut match_of_first, b"p", 0, KIND_MATCH);
        match_of_first.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut match_of_second = Vec::new();
        push_key_prefix(&mut match_of_second, b"p", 1, KIND_MATCH);
        match_of_second.extend_from_slice(&1u64.to_be_bytes());
        let mut longer_path = Vec::new();
        push_key_prefix(&mut longer_path, b"p/q", 0, KIND_MATCH);
        assert!(match_of_first < count_of_first);
        assert!(count_of_first < match_of_second);
        assert!(match_of_second < longer_path);
    }

    #[test]
    fn a_missing_or_invalid_pattern_is_refused_by_name() {
        let error = Grep.validate(&JobParams::default()).unwrap_err();
        assert!(error.message.contains(PATTERN_PARAM) && !error.retryable);
        let error = Grep.validate(&params("(unclosed")).unwrap_err();
        assert!(error.message.contains(PATTERN_PARAM) && !error.retryable);
    }
}
