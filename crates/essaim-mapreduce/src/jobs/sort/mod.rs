//! `sort`: a total order of text lines across every output part, TeraSort style.
//!
//! Each line's key is its first `key_bytes` bytes (10 by default, the whole line when
//! shorter); lines are ordered by key bytes, and lines with equal keys keep the order
//! the API gives values (map task, then input order), so the sort is stable and its
//! output deterministic. Output bytes are exactly the input lines, reordered.
//!
//! Why a range partitioner: hashing keys to reducers would give sorted parts that
//! interleave. Instead the client samples keys before submitting
//! ([`sample_cut_points`], called by [`JobDefinition::prepare`] unless `sort.cuts` is
//! already set; local files, objects and compressed files alike, see `sample.rs`) and
//! passes `R - 1` cut keys in `sort.cuts`; reducer `p` receives the keys in
//! `[cut[p-1], cut[p])`, so `part-00000`, `part-00001`, … read in order are globally
//! sorted, and sampling keeps the parts about the same size. With an empty
//! `sort.cuts` every line goes to partition 0 (sorted, but one reducer does all the
//! work); with more cuts than `R - 1`, the keys past the last partition all go to it.
//!
//! The mapper emits `(key, rest of line)`, the reducer is the identity, and
//! [`JobDefinition::format_output`] glues key and rest back together (no tab).
//!
//! Gen → sort → validate, the TeraSort benchmark round trip:
//!
//! 1. `generate_sort_input(files, rows, seed)` ([`super::teragen`]) writes 100-byte
//!    lines with random 10-byte keys, plain or compressed;
//! 2. run `sort` with `R` reducers: `prepare` samples the cut points (by hand:
//!    `sort.cuts = format_cut_points(&sample_cut_points(&inputs, &access, R, 10_000, 10)?)`);
//! 3. run `sort-validate` ([`super::validate`]) with one reducer over the part files in
//!    order: it reports `OK` and the same `records` and `checksum` as `sort-validate`
//!    run over the generated input (which, unsorted, reports misordered lines).
//!
//! Parameters: `key_bytes` (default 10), `sort.cuts` (default none: hex-encoded cut
//! keys separated by commas, in non-decreasing order).

mod sample;

use std::fmt::Write as _;
use std::path::PathBuf;

pub use self::sample::sample_cut_points;
use crate::api::{
    Emit, IdentityReducer, InputAccess, JobDefinition, JobError, JobParams, Mapper, Partitioner,
    Record, Reducer,
};

/// Name of the job.
pub const NAME: &str = "sort";
/// Parameter: how many leading bytes of a line are its key (default 10).
pub const KEY_BYTES_PARAM: &str = "key_bytes";
/// Parameter: the cut keys of the range partitioner (see [`format_cut_points`]).
pub const CUTS_PARAM: &str = "sort.cuts";
/// Default length of a key, TeraSort's.
pub const DEFAULT_KEY_BYTES: usize = 10;

/// The `sort` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sort;

/// Reads the `key_bytes` parameter, which must be at least 1.
pub(crate) fn key_bytes_param(params: &JobParams) -> Result<usize, JobError> {
    let key_bytes = params.parse_or(KEY_BYTES_PARAM, DEFAULT_KEY_BYTES)?;
    if key_bytes == 0 {
        return Err(JobError::permanent(format!(
            "parameter `{KEY_BYTES_PARAM}` must be at least 1"
        )));
    }
    Ok(key_bytes)
}

/// Encodes cut keys as the value of [`CUTS_PARAM`]: lower-case hex, comma-separated.
pub fn format_cut_points(cuts: &[Vec<u8>]) -> String {
    let mut text = String::new();
    for (index, cut) in cuts.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        for byte in cut {
            let _ = write!(text, "{byte:02x}");
        }
    }
    text
}

/// Decodes [`CUTS_PARAM`]; refuses bad hex and cuts out of order.
pub fn parse_cut_points(text: &str) -> Result<Vec<Vec<u8>>, JobError> {
    let malformed = |why: &str| JobError::permanent(format!("parameter `{CUTS_PARAM}`: {why}"));
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut cuts: Vec<Vec<u8>> = Vec::new();
    for hex in text.split(',') {
        if hex.len() % 2 != 0 {
            return Err(malformed("a cut has an odd number of hex digits"));
        }
        let mut cut = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks(2) {
            let digits = std::str::from_utf8(pair).map_err(|_| malformed("not hex"))?;
            cut.push(u8::from_str_radix(digits, 16).map_err(|_| malformed("not hex"))?);
        }
        if cuts.last().is_some_and(|previous| *previous > cut) {
            return Err(malformed("cuts must be in non-decreasing order"));
        }
        cuts.push(cut);
    }
    Ok(cuts)
}

impl JobDefinition for Sort {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "sorts lines by their first `key_bytes` bytes, globally across parts (`sort.cuts`)"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        key_bytes_param(params)?;
        parse_cut_points(params.get(CUTS_PARAM).unwrap_or(""))?;
        Ok(())
    }

    /// Samples the inputs for the cut points, unless `sort.cuts` was given.
    fn prepare(
        &self,
        params: &mut JobParams,
        inputs: &[PathBuf],
        access: &InputAccess,
        reducers: u32,
    ) -> Result<(), JobError> {
        if params.get(CUTS_PARAM).is_some() || reducers < 2 {
            return Ok(());
        }
        let key_bytes = key_bytes_param(params)?;
        let samples = (reducers as usize * 1000).clamp(10_000, 1_000_000);
        let cuts =
            sample_cut_points(inputs, access, reducers, samples, key_bytes).map_err(|error| {
                JobError {
                    message: format!("sampling the input for cut points: {}", error.message),
                    ..error
                }
            })?;
        params.set(CUTS_PARAM, format_cut_points(&cuts));
        Ok(())
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(KeyMapper {
            key_bytes: key_bytes_param(params)?,
        }))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(IdentityReducer))
    }

    fn partitioner(
        &self,
        params: &JobParams,
        _step: usize,
    ) -> Result<Box<dyn Partitioner>, JobError> {
        Ok(Box::new(RangePartitioner {
            cuts: parse_cut_points(params.get(CUTS_PARAM).unwrap_or(""))?,
        }))
    }

    /// The original line: key and rest, with nothing between.
    fn format_output(&self, key: &[u8], value: &[u8], line: &mut Vec<u8>) {
        line.extend_from_slice(key);
        line.extend_from_slice(value);
    }
}

/// Cuts a line into its key and the rest.
struct KeyMapper {
    key_bytes: usize,
}

impl Mapper for KeyMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let (key, rest) = record.data.split_at(self.key_bytes.min(record.data.len()));
        out.emit(key, rest)
    }
}

/// Partition `p` holds the keys `k` with `cuts[p - 1] <= k < cuts[p]`.
#[derive(Debug, Clone)]
struct RangePartitioner {
    cuts: Vec<Vec<u8>>,
}

impl Partitioner for RangePartitioner {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        let cuts_at_or_below = self.cuts.partition_point(|cut| cut.as_slice() <= key);
        let last = partitions.max(1) - 1;
        u32::try_from(cuts_at_or_below).map_or(last, |partition| partition.min(last))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;
    use crate::testing::{InMemoryOptions, run_in_memory_with};

    #[test]
    fn cut_points_round_trip_through_the_parameter_and_must_be_ordered() {
        let cuts = vec![
            b"\x00a".to_vec(),
            b"m".to_vec(),
            b"m".to_vec(),
            b"\xff".to_vec(),
        ];
        let text = format_cut_points(&cuts);
        assert_eq!(text, "0061,6d,6d,ff");
        assert_eq!(parse_cut_points(&text).unwrap(), cuts);
        assert!(parse_cut_points("").unwrap().is_empty());
        for bad in ["6d,61", "6", "zz"] {
            let error = parse_cut_points(bad).unwrap_err();
            assert!(
                error.message.contains(CUTS_PARAM) && !error.retryable,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_range_partitioner_sends_keys_between_cuts_to_their_partition() {
        let partitioner = RangePartitioner {
            cuts: vec![b"g".to_vec(), b"p".to_vec()],
        };
        let partition = |key: &[u8]| partitioner.partition(key, 3);
        assert_eq!(partition(b""), 0);
        assert_eq!(partition(b"f~"), 0);
        assert_eq!(partition(b"g"), 1);
        assert_eq!(partition(b"ozz"), 1);
        assert_eq!(partition(b"p"), 2);
        assert_eq!(partition(b"\xff"), 2);
        // Fewer partitions than cuts + 1: clamped to the last partition.
        assert_eq!(partitioner.partition(b"z", 2), 1);
        assert_eq!(partitioner.partition(b"z", 1), 0);
    }

    /// Lines with pseudo-random 3-letter keys and a row id.
    fn write_lines(dir: &std::path::Path, files: usize, lines_per_file: usize) -> Vec<PathBuf> {
        let mut state = 12345u64;
        let mut inputs = Vec::new();
        for file in 0..files {
            let mut text = String::new();
            for line in 0..lines_per_file {
                let mut key = String::new();
                for _ in 0..3 {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    key.push(char::from(b'a' + ((state >> 33) % 6) as u8));
                }
                text.push_str(&format!("{key} row {file}-{line}\n"));
            }
            let path = dir.join(format!("in-{file}"));
            std::fs::write(&path, text).unwrap();
            inputs.push(path);
        }
        inputs
    }

    #[test]
    fn sampled_cuts_give_a_globally_sorted_stable_concatenation() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = write_lines(dir.path(), 3, 200);
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for path in &inputs {
            let bytes = std::fs::read(path).unwrap();
            expected.extend(
                bytes
                    .split(|byte| *byte == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
        // Stable sort on the 3-byte key: equal keys keep input order, as the API's
        // (map task, emission order) promises.
        expected.sort_by(|left, right| left[..3].cmp(&right[..3]));

        for reducers in [1u32, 2, 5] {
            let cuts =
                sample_cut_points(&inputs, &InputAccess::default(), reducers, 100, 3).unwrap();
            assert_eq!(cuts.len(), reducers as usize - 1);
            let mut params = JobParams::default();
            params.set(KEY_BYTES_PARAM, "3");
            params.set(CUTS_PARAM, format_cut_points(&cuts));
            Sort.validate(&params).unwrap();
            let options = InMemoryOptions {
                combine: true,
                lines_per_split: NonZeroUsize::new(64),
            };
            let output = run_in_memory_with(&Sort, &params, &inputs, reducers, &options).unwrap();
            assert_eq!(output, expected, "{reducers} reducers");

            // Without `sort.cuts`, `prepare` samples the cut points itself.
            params.0.remove(CUTS_PARAM);
            let output = run_in_memory_with(&Sort, &params, &inputs, reducers, &options).unwrap();
            assert_eq!(output, expected, "{reducers} reducers, cuts from prepare");
        }
    }
}
