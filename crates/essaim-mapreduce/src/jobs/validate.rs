//! `sort-validate`: checks that its input, read in order, is sorted, and fingerprints
//! the set of its lines, TeraValidate style.
//!
//! Give it the part files of a `sort` output in part order. Each map task summarises
//! its split: first key, last key, number of lines, number of lines whose key sorts
//! before the previous line's key (and where the first one is), and a checksum. One
//! reducer receives every summary in (path, split start) order (the key is
//! `path 0x00 split_start`, big-endian, and a partitioner sends everything to
//! partition 0), checks the boundaries between consecutive splits and files, and
//! reports.
//!
//! The checksum is the wrapping sum of the 64-bit FNV-1a hashes of the lines (without
//! `\n`): it does not depend on order, so the checksum of a sort's output equals the
//! checksum of its input exactly when they hold the same lines (up to hash collisions),
//! and running `sort-validate` on the unsorted input gives the reference numbers.
//!
//! Output, from the reducer's `finish`:
//!
//! ```text
//! records <N>
//! checksum <16 hex digits>
//! misordered <M>
//! OK                                  (or: error: first misordered line at <path>:<line>)
//! ```
//!
//! Run it with one reducer: the other reducers receive nothing and write empty parts.
//! Keys are compared as `sort` compares them: the first `key_bytes` bytes (default 10).
//!
//! Parameters: `key_bytes` (default 10).

use crate::api::{
    Emit, HashPartitioner, JobDefinition, JobError, JobParams, Mapper, Partitioner, Record,
    Reducer, Values,
};
use crate::jobs::common::path_bytes;
use crate::jobs::sort::key_bytes_param;

/// Name of the job.
pub const NAME: &str = "sort-validate";

/// The `sort-validate` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct SortValidate;

impl JobDefinition for SortValidate {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "checks that the input is sorted by `key_bytes` and reports records, checksum, \
         misordered lines (run with one reducer)"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        key_bytes_param(params).map(|_| ())
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(SummaryMapper {
            key_bytes: key_bytes_param(params)?,
            current: None,
        }))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(ReportReducer::default()))
    }

    fn partitioner(
        &self,
        _params: &JobParams,
        _step: usize,
    ) -> Result<Box<dyn Partitioner>, JobError> {
        Ok(Box::new(FirstPartition))
    }
}

/// Sends every key to partition 0: one reducer must see every summary.
#[derive(Debug, Clone, Copy)]
struct FirstPartition;

impl Partitioner for FirstPartition {
    fn partition(&self, _key: &[u8], _partitions: u32) -> u32 {
        0
    }
}

/// What a map task learns about one split.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct SplitSummary {
    path: Vec<u8>,
    split_start: u64,
    lines: u64,
    misordered: u64,
    /// Line (within the split, from 1) of the first misordered line; 0 when none.
    first_misordered_line: u64,
    checksum: u64,
    first_key: Vec<u8>,
    last_key: Vec<u8>,
}

impl SplitSummary {
    fn key(&self) -> Vec<u8> {
        let mut key = self.path.clone();
        key.push(0);
        key.extend_from_slice(&self.split_start.to_be_bytes());
        key
    }

    /// Value layout: lines, misordered, first misordered line, checksum (u64 BE each),
    /// first key length (u32 BE), first key, last key.
    fn encode_value(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(36 + self.first_key.len() + self.last_key.len());
        for number in [
            self.lines,
            self.misordered,
            self.first_misordered_line,
            self.checksum,
        ] {
            value.extend_from_slice(&number.to_be_bytes());
        }
        let first_key_length =
            u32::try_from(self.first_key.len()).expect("a key is at most `key_bytes` long");
        value.extend_from_slice(&first_key_length.to_be_bytes());
        value.extend_from_slice(&self.first_key);
        value.extend_from_slice(&self.last_key);
        value
    }

    fn decode(key: &[u8], value: &[u8]) -> Option<Self> {
        let nul = key.iter().position(|byte| *byte == 0)?;
        let split_start = u64::from_be_bytes(key.get(nul + 1..)?.try_into().ok()?);
        let number = |index: usize| -> Option<u64> {
            Some(u64::from_be_bytes(
                value.get(index * 8..index * 8 + 8)?.try_into().ok()?,
            ))
        };
        let first_key_length = u32::from_be_bytes(value.get(32..36)?.try_into().ok()?) as usize;
        let keys = value.get(36..)?;
        let (first_key, last_key) = keys.split_at_checked(first_key_length)?;
        Some(Self {
            path: key[..nul].to_vec(),
            split_start,
            lines: number(0)?,
            misordered: number(1)?,
            first_misordered_line: number(2)?,
            checksum: number(3)?,
            first_key: first_key.to_vec(),
            last_key: last_key.to_vec(),
        })
    }
}

struct SummaryMapper {
    key_bytes: usize,
    current: Option<SplitSummary>,
}

impl SummaryMapper {
    fn emit_summary(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        match self.current.take() {
            Some(summary) => out.emit(&summary.key(), &summary.encode_value()),
            None => Ok(()),
        }
    }
}

impl Mapper for SummaryMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let path = path_bytes(record.path);
        let same_split = self.current.as_ref().is_some_and(|summary| {
            summary.split_start == record.split_start && summary.path == path
        });
        if !same_split {
            self.emit_summary(out)?;
        }
        let summary = self.current.get_or_insert_with(|| SplitSummary {
            path: path.to_vec(),
            split_start: record.split_start,
            ..SplitSummary::default()
        });
        let key = &record.data[..self.key_bytes.min(record.data.len())];
        if summary.lines == 0 {
            summary.first_key = key.to_vec();
        } else if key < summary.last_key.as_slice() {
            summary.misordered += 1;
            if summary.first_misordered_line == 0 {
                summary.first_misordered_line = record.line_in_split;
            }
        }
        summary.last_key.clear();
        summary.last_key.extend_from_slice(key);
        summary.lines += 1;
        summary.checksum = summary
            .checksum
            .wrapping_add(HashPartitioner::hash(record.data));
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        if self.current.is_none() {
            // A split without lines still reports, so that the reducer writes a
            // report (`records 0`) even when the whole input is empty.
            self.current = Some(SplitSummary::default());
        }
        self.emit_summary(out)
    }
}

/// Walks the summaries in order and writes the report in `finish`.
#[derive(Default)]
struct ReportReducer {
    saw_any_summary: bool,
    records: u64,
    checksum: u64,
    misordered: u64,
    first_error: Option<String>,
    /// Last key of the last non-empty split, across files.
    previous_last_key: Option<Vec<u8>>,
    /// The file being walked and the lines of its splits already passed.
    path: Vec<u8>,
    lines_before: u64,
}

impl ReportReducer {
    fn note_first_error(&mut self, path: &[u8], line_in_split: u64) {
        if self.first_error.is_none() {
            self.first_error = Some(format!(
                "error: first misordered line at {}:{}",
                String::from_utf8_lossy(path),
                self.lines_before + line_in_split
            ));
        }
    }
}

impl Reducer for ReportReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        _out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        while let Some(value) = values.next_value()? {
            self.saw_any_summary = true;
            let Some(summary) = SplitSummary::decode(key, value) else {
                return Err(JobError::permanent(
                    "sort-validate: malformed split summary",
                ));
            };
            if summary.lines == 0 {
                continue;
            }
            if summary.path != self.path {
                self.path.clone_from(&summary.path);
                self.lines_before = 0;
            }
            let crosses_boundary_out_of_order = self
                .previous_last_key
                .as_ref()
                .is_some_and(|previous| summary.first_key < *previous);
            if crosses_boundary_out_of_order {
                self.misordered += 1;
                self.note_first_error(&summary.path, 1);
            }
            if summary.misordered > 0 {
                self.misordered += summary.misordered;
                self.note_first_error(&summary.path, summary.first_misordered_line);
            }
            self.records += summary.lines;
            self.checksum = self.checksum.wrapping_add(summary.checksum);
            self.lines_before += summary.lines;
            self.previous_last_key = Some(summary.last_key);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        if !self.saw_any_summary {
            return Ok(());
        }
        let verdict = self.first_error.clone().unwrap_or_else(|| "OK".to_string());
        for line in [
            format!("records {}", self.records),
            format!("checksum {:016x}", self.checksum),
            format!("misordered {}", self.misordered),
            verdict,
        ] {
            out.emit(line.as_bytes(), b"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::jobs::sort::{CUTS_PARAM, Sort, format_cut_points, sample_cut_points};
    use crate::jobs::teragen::{generate_sort_input, generated_file_path};
    use crate::payload::part_file_name;
    use crate::testing::{InMemoryOptions, run_in_memory, run_in_memory_with};

    fn report(lines: &[Vec<u8>]) -> Vec<String> {
        lines
            .iter()
            .map(|line| String::from_utf8(line.clone()).unwrap())
            .collect()
    }

    fn split_every(lines: usize) -> InMemoryOptions {
        InMemoryOptions {
            combine: true,
            lines_per_split: NonZeroUsize::new(lines),
        }
    }

    /// Writes `lines` into part files of `per_file` lines each.
    fn write_parts(dir: &Path, lines: &[String], per_file: usize) -> Vec<PathBuf> {
        lines
            .chunks(per_file)
            .enumerate()
            .map(|(index, chunk)| {
                let path = dir.join(part_file_name(index as u32));
                std::fs::write(
                    &path,
                    chunk
                        .iter()
                        .map(|line| format!("{line}\n"))
                        .collect::<String>(),
                )
                .unwrap();
                path
            })
            .collect()
    }

    #[test]
    fn gen_then_sort_then_validate_reports_ok_with_the_inputs_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let input_dir = dir.path().join("in");
        generate_sort_input(
            crate::jobs::teragen::GeneratedFiles {
                out_dir: &input_dir,
                files: 3,
                codec: None,
            },
            2000,
            7,
        )
        .unwrap();
        let inputs: Vec<PathBuf> = (0..3)
            .map(|file| generated_file_path(&input_dir, file, None))
            .collect();
        let params = JobParams::default();

        let input_report = report(
            &run_in_memory_with(&SortValidate, &params, &inputs, 1, &split_every(300)).unwrap(),
        );
        assert_eq!(input_report[0], "records 2000");
        assert_ne!(
            input_report[2], "misordered 0",
            "random keys are not sorted"
        );
        assert!(input_report[3].starts_with("error: first misordered line at"));

        let reducers = 4;
        let cuts = sample_cut_points(&inputs, &Default::default(), reducers, 500, 10).unwrap();
        let mut sort_params = JobParams::default();
        sort_params.set(CUTS_PARAM, format_cut_points(&cuts));
        let sorted = run_in_memory(&Sort, &sort_params, &inputs, reducers).unwrap();
        let sorted: Vec<String> = report(&sorted);
        let output_dir = dir.path().join("out");
        std::fs::create_dir_all(&output_dir).unwrap();
        let parts = write_parts(&output_dir, &sorted, 512);

        let output_report = report(
            &run_in_memory_with(&SortValidate, &params, &parts, 1, &split_every(100)).unwrap(),
        );
        assert_eq!(
            output_report,
            vec![
                "records 2000".to_string(),
                input_report[1].clone(),
                "misordered 0".to_string(),
                "OK".to_string()
            ]
        );
    }

    #[test]
    fn a_swapped_line_is_found_inside_a_split_or_across_a_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let sorted: Vec<String> = (0..40)
            .map(|index| format!("key{index:03}....rest"))
            .collect();
        let params = JobParams::default();

        let parts = write_parts(dir.path(), &sorted, 10);
        let clean = report(
            &run_in_memory_with(&SortValidate, &params, &parts, 1, &split_every(4)).unwrap(),
        );
        assert_eq!(clean[2..], ["misordered 0".to_string(), "OK".to_string()]);

        // Lines 15 and 16 swapped: lines 5 and 6 of part-00001, both in its second
        // split (lines 5 to 8), so the mapper finds it at line 2 of that split.
        let mut swapped = sorted.clone();
        swapped.swap(14, 15);
        let parts = write_parts(dir.path(), &swapped, 10);
        let found = report(
            &run_in_memory_with(&SortValidate, &params, &parts, 1, &split_every(4)).unwrap(),
        );
        assert_eq!(found[0], "records 40");
        assert_eq!(found[1], clean[1], "same lines, same checksum");
        assert_eq!(found[2], "misordered 1");
        assert_eq!(
            found[3],
            format!("error: first misordered line at {}:6", parts[1].display())
        );

        // Lines 20 and 21 swapped: the last line of part-00001 and the first of
        // part-00002, a boundary between files.
        let mut swapped = sorted.clone();
        swapped.swap(19, 20);
        let parts = write_parts(dir.path(), &swapped, 10);
        let found = report(
            &run_in_memory_with(&SortValidate, &params, &parts, 2, &split_every(4)).unwrap(),
        );
        assert_eq!(found[2], "misordered 1");
        assert_eq!(
            found[3],
            format!("error: first misordered line at {}:1", parts[2].display())
        );
    }

    #[test]
    fn an_empty_input_reports_zero_records() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join(part_file_name(0));
        std::fs::write(&empty, "").unwrap();
        let output =
            report(&run_in_memory(&SortValidate, &JobParams::default(), &[empty], 1).unwrap());
        assert_eq!(
            output,
            vec![
                "records 0",
                "checksum 0000000000000000",
                "misordered 0",
                "OK"
            ]
        );
    }

    #[test]
    fn summaries_round_trip() {
        let summary = SplitSummary {
            path: b"out/part-00003".to_vec(),
            split_start: 1 << 40,
            lines: 12,
            misordered: 2,
            first_misordered_line: 5,
            checksum: u64::MAX,
            first_key: b"abc".to_vec(),
            last_key: b"xyz\x00".to_vec(),
        };
        let decoded = SplitSummary::decode(&summary.key(), &summary.encode_value()).unwrap();
        assert_eq!(decoded, summary);
        assert_eq!(SplitSummary::decode(b"no nul", b""), None);
    }
}
