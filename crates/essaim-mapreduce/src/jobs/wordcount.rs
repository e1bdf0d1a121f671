//! `wordcount`: how many times each word occurs, Hadoop's WordCount.
//!
//! A word is a maximal run of bytes that are not ASCII whitespace (space, `\t`, `\n`,
//! `\r`, form feed, vertical tab), counted exactly and, by default, without case
//! folding. Input is bytes: invalid UTF-8 is counted like anything else. Output lines
//! are `word<TAB>count`.
//!
//! Why the mapper counts by itself (in-mapper combining) instead of emitting `(word,
//! 1)`: emitting one pair per word makes the framework copy, sort and spill every word
//! occurrence, which costs an order of magnitude more than counting. The mapper keeps
//! a hash table of the words of its split (looked up by `&[u8]`, so a word already in
//! the table costs no allocation) and emits each distinct word once in `finish`. To
//! keep memory bounded on inputs with a huge vocabulary it also emits and clears the
//! table whenever it holds more than `wordcount.max_map_entries` words or
//! `wordcount.max_map_bytes` bytes of words; the combiner and the reducer add the
//! partial counts up, so early flushes never change the result.
//!
//! Parameters:
//! - `lowercase` (default `false`): fold ASCII letters to lower case first;
//! - `wordcount.max_map_entries` (default 1,000,000): distinct words a mapper holds
//!   before flushing;
//! - `wordcount.max_map_bytes` (default 64 MiB): bytes of distinct words a mapper
//!   holds before flushing.

use rustc_hash::FxHashMap;

use crate::api::{Emit, JobDefinition, JobError, JobParams, Mapper, Record, Reducer};
use crate::jobs::common::{DecimalSumReducer, bool_param, for_each_word, push_decimal};

/// Name of the job.
pub const NAME: &str = "wordcount";
/// Parameter: fold ASCII case (`true`/`false`, default `false`).
pub const LOWERCASE_PARAM: &str = "lowercase";
/// Parameter: distinct words a mapper holds before it flushes its table.
pub const MAX_MAP_ENTRIES_PARAM: &str = "wordcount.max_map_entries";
/// Parameter: bytes of distinct words a mapper holds before it flushes its table.
pub const MAX_MAP_BYTES_PARAM: &str = "wordcount.max_map_bytes";
const DEFAULT_MAX_MAP_ENTRIES: usize = 1_000_000;
const DEFAULT_MAX_MAP_BYTES: usize = 64 << 20;

/// The `wordcount` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct WordCount;

/// Parsed parameters.
#[derive(Debug, Clone, Copy)]
struct Settings {
    lowercase: bool,
    max_entries: usize,
    max_bytes: usize,
}

impl Settings {
    fn parse(params: &JobParams) -> Result<Self, JobError> {
        let settings = Self {
            lowercase: bool_param(params, LOWERCASE_PARAM, false)?,
            max_entries: params.parse_or(MAX_MAP_ENTRIES_PARAM, DEFAULT_MAX_MAP_ENTRIES)?,
            max_bytes: params.parse_or(MAX_MAP_BYTES_PARAM, DEFAULT_MAX_MAP_BYTES)?,
        };
        if settings.max_entries == 0 || settings.max_bytes == 0 {
            return Err(JobError::permanent(format!(
                "parameters `{MAX_MAP_ENTRIES_PARAM}` and `{MAX_MAP_BYTES_PARAM}` must be at least 1"
            )));
        }
        Ok(settings)
    }
}

impl JobDefinition for WordCount {
    fn name(&self) -> &str {
        NAME
    }

    /// Its map output depends on the splits and parameters alone.
    fn map_outputs_reusable(&self, _params: &JobParams) -> bool {
        true
    }

    fn description(&self) -> &str {
        "counts each word (run of non-whitespace bytes): `word<TAB>count`"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        Settings::parse(params).map(|_| ())
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(WordCountMapper::new(Settings::parse(params)?)))
    }

    fn combiner(
        &self,
        _params: &JobParams,
        _step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        Ok(Some(Box::new(DecimalSumReducer::default())))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(DecimalSumReducer::default()))
    }
}

/// Counts the words of its split in a bounded hash table (see the module doc).
struct WordCountMapper {
    settings: Settings,
    counts: FxHashMap<Box<[u8]>, u64>,
    /// Bytes of the words held in `counts`.
    held_bytes: usize,
    /// The lower-cased word, reused between words.
    folded: Vec<u8>,
    /// The decimal count, reused between emits.
    count_text: Vec<u8>,
}

impl WordCountMapper {
    fn new(settings: Settings) -> Self {
        Self {
            settings,
            counts: FxHashMap::default(),
            held_bytes: 0,
            folded: Vec::new(),
            count_text: Vec::new(),
        }
    }

    /// Adds one occurrence of `word`; true when the table is now over its bounds.
    #[inline]
    fn count(&mut self, word: &[u8]) -> bool {
        if let Some(count) = self.counts.get_mut(word) {
            *count += 1;
            return false;
        }
        self.counts.insert(Box::from(word), 1);
        self.held_bytes += word.len();
        self.counts.len() >= self.settings.max_entries || self.held_bytes >= self.settings.max_bytes
    }

    /// Emits every held count and empties the table. The order is the table's, which
    /// is deterministic (FxHash has no random seed) and irrelevant: the framework sorts.
    fn flush(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        for (word, count) in self.counts.drain() {
            self.count_text.clear();
            push_decimal(&mut self.count_text, i128::from(count));
            out.emit(&word, &self.count_text)?;
        }
        self.held_bytes = 0;
        Ok(())
    }
}

impl Mapper for WordCountMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let mut full = false;
        if self.settings.lowercase {
            let mut folded = std::mem::take(&mut self.folded);
            for_each_word::<JobError>(record.data, |word| {
                folded.clear();
                folded.extend(word.iter().map(u8::to_ascii_lowercase));
                full |= self.count(&folded);
                Ok(())
            })?;
            self.folded = folded;
        } else {
            for_each_word::<JobError>(record.data, |word| {
                full |= self.count(word);
                Ok(())
            })?;
        }
        // Flushing at a record boundary rather than mid-line keeps the loop above
        // simple; a line adds at most its own length over the bounds.
        if full {
            self.flush(out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        self.flush(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::num::NonZeroUsize;
    use std::path::PathBuf;

    use super::*;
    use crate::testing::{CollectEmit, InMemoryOptions, run_in_memory, run_in_memory_with};

    fn lines_to_map(lines: &[Vec<u8>]) -> HashMap<Vec<u8>, u64> {
        let mut counts = HashMap::new();
        for line in lines {
            let tab = line.iter().rposition(|byte| *byte == b'\t').unwrap();
            let count = std::str::from_utf8(&line[tab + 1..])
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                counts.insert(line[..tab].to_vec(), count).is_none(),
                "duplicate word"
            );
        }
        counts
    }

    fn naive_count(bytes: &[u8], lowercase: bool) -> HashMap<Vec<u8>, u64> {
        let mut counts = HashMap::new();
        let is_space = |byte: &u8| matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
        for word in bytes.split(is_space).filter(|word| !word.is_empty()) {
            let word = if lowercase {
                word.to_ascii_lowercase()
            } else {
                word.to_vec()
            };
            *counts.entry(word).or_insert(0) += 1;
        }
        counts
    }

    /// A small deterministic generator: xorshift64*.
    fn random_bytes(seed: u64, length: usize) -> Vec<u8> {
        let mut state = seed | 1;
        let alphabet: &[u8] = b"aAbB \t\n\r\x0b\x0c\xff\xc3\xa9z";
        (0..length)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let random = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                // Mostly a small alphabet (many repeats), sometimes any byte.
                if random.is_multiple_of(7) {
                    (random >> 32) as u8
                } else {
                    alphabet[((random >> 40) % alphabet.len() as u64) as usize]
                }
            })
            .collect()
    }

    #[test]
    fn counts_words_exactly_without_case_folding() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a");
        let second = dir.path().join("b");
        std::fs::write(&first, b"the cat\tThe cat\r\nsat\n").unwrap();
        std::fs::write(&second, b"the\x0bend").unwrap();
        let output = run_in_memory(&WordCount, &JobParams::default(), &[first, second], 1).unwrap();
        let expected: Vec<Vec<u8>> = ["The\t1", "cat\t2", "end\t1", "sat\t1", "the\t2"]
            .iter()
            .map(|line| line.as_bytes().to_vec())
            .collect();
        assert_eq!(output, expected);
    }

    #[test]
    fn matches_a_naive_count_on_random_bytes_with_any_flush_bound_and_reducers() {
        let dir = tempfile::tempdir().unwrap();
        let mut inputs = Vec::new();
        let mut all_bytes = Vec::new();
        for seed in 1..=3u64 {
            let bytes = random_bytes(seed, 20_000);
            let path = dir.path().join(format!("in{seed}"));
            std::fs::write(&path, &bytes).unwrap();
            inputs.push(path);
            // Files are counted separately: a word does not continue across files.
            all_bytes.extend_from_slice(&bytes);
            all_bytes.push(b'\n');
        }
        for (lowercase, max_entries, reducers, combine) in [
            (false, 1_000_000, 1, true),
            (false, 3, 4, true),
            (true, 1, 3, false),
            (true, 50, 2, true),
        ] {
            let mut params = JobParams::default();
            params.set(LOWERCASE_PARAM, lowercase.to_string());
            params.set(MAX_MAP_ENTRIES_PARAM, max_entries.to_string());
            let options = InMemoryOptions {
                combine,
                lines_per_split: NonZeroUsize::new(37),
            };
            let output =
                run_in_memory_with(&WordCount, &params, &inputs, reducers, &options).unwrap();
            assert_eq!(
                lines_to_map(&output),
                naive_count(&all_bytes, lowercase),
                "lowercase {lowercase}, max entries {max_entries}, reducers {reducers}"
            );
        }
    }

    #[test]
    fn the_mapper_flushes_when_its_table_is_full() {
        let mut params = JobParams::default();
        params.set(MAX_MAP_ENTRIES_PARAM, "2");
        let mut mapper = WordCount.mapper(&params, 0).unwrap();
        let mut out = CollectEmit::default();
        let path = PathBuf::from("x");
        let record = Record {
            path: &path,
            offset: 0,
            line_in_split: 1,
            split_start: 0,
            data: b"a a b c",
        };
        mapper.map(&record, &mut out).unwrap();
        let mut flushed = out.pairs.clone();
        flushed.sort();
        assert_eq!(
            flushed,
            vec![
                (b"a".to_vec(), b"2".to_vec()),
                (b"b".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"1".to_vec()),
            ]
        );
        mapper.finish(&mut out).unwrap();
        assert_eq!(out.pairs.len(), 3, "nothing held after a flush");
    }

    #[test]
    fn malformed_parameters_are_refused_by_name() {
        for (name, value) in [
            (MAX_MAP_ENTRIES_PARAM, "lots"),
            (MAX_MAP_ENTRIES_PARAM, "0"),
            (LOWERCASE_PARAM, "yes"),
        ] {
            let mut params = JobParams::default();
            params.set(name, value);
            let error = WordCount.validate(&params).unwrap_err();
            assert!(!error.retryable);
            assert!(error.message.contains(name), "{}", error.message);
        }
    }
}
