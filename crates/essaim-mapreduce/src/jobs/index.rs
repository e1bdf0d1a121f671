//! `index`: an inverted index, from each term to the files that contain it.
//!
//! Terms are words as `wordcount` cuts them (maximal runs of non-whitespace bytes),
//! with ASCII punctuation stripped from both ends (`"Hello,"` → `Hello`, `(x)` → `x`,
//! while `don't` and `a.b` keep their inner punctuation) and, by default, ASCII letters
//! folded to lower case. A word that is only punctuation is no term.
//!
//! Output lines are `term<TAB>path1,path2,…`: the postings list is the set of paths
//! (as the job was given them) in which the term occurs, sorted by bytes and without
//! duplicates. Paths only, not `path:count` pairs: the classic boolean index, and a
//! line that stays readable. A path containing `,` makes the list ambiguous; such
//! inputs should be renamed.
//!
//! The mapper keeps the distinct terms of the current file in a bounded set (so a term
//! that occurs a million times in a file is emitted once per flush, not a million
//! times), the combiner removes duplicate paths, and the reducer sorts and joins them.
//!
//! Parameters: `lowercase` (default `true`), `index.max_map_entries` (default
//! 1,000,000 distinct terms held by a mapper before it flushes).

use std::collections::BTreeSet;

use rustc_hash::FxHashSet;

use crate::api::{Emit, JobDefinition, JobError, JobParams, Mapper, Record, Reducer, Values};
use crate::jobs::common::{bool_param, for_each_word, path_bytes};

/// Name of the job.
pub const NAME: &str = "index";
/// Parameter: fold ASCII case (`true`/`false`, default `true`).
pub const LOWERCASE_PARAM: &str = "lowercase";
/// Parameter: distinct terms a mapper holds before it flushes them.
pub const MAX_MAP_ENTRIES_PARAM: &str = "index.max_map_entries";
const DEFAULT_MAX_MAP_ENTRIES: usize = 1_000_000;

/// The `index` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct InvertedIndex;

#[derive(Debug, Clone, Copy)]
struct Settings {
    lowercase: bool,
    max_entries: usize,
}

impl Settings {
    fn parse(params: &JobParams) -> Result<Self, JobError> {
        let max_entries = params.parse_or(MAX_MAP_ENTRIES_PARAM, DEFAULT_MAX_MAP_ENTRIES)?;
        if max_entries == 0 {
            return Err(JobError::permanent(format!(
                "parameter `{MAX_MAP_ENTRIES_PARAM}` must be at least 1"
            )));
        }
        Ok(Self {
            lowercase: bool_param(params, LOWERCASE_PARAM, true)?,
            max_entries,
        })
    }
}

impl JobDefinition for InvertedIndex {
    fn name(&self) -> &str {
        NAME
    }

    /// Its map output depends on the splits and parameters alone.
    fn map_outputs_reusable(&self, _params: &JobParams) -> bool {
        true
    }

    fn description(&self) -> &str {
        "builds an inverted index: `term<TAB>path1,path2,…` (sorted, distinct paths)"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        Settings::parse(params).map(|_| ())
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(IndexMapper {
            settings: Settings::parse(params)?,
            path: Vec::new(),
            terms: FxHashSet::default(),
            term: Vec::new(),
        }))
    }

    fn combiner(
        &self,
        _params: &JobParams,
        _step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        Ok(Some(Box::new(DistinctPaths)))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(JoinPaths))
    }
}

/// Returns the terms of `text` exactly as the index job cuts and folds them, in order
/// and with repeats: what a query over the index must look up (the serving layer's
/// queries use it, so a query term and an indexed term can never disagree).
pub fn terms_of(text: &[u8], lowercase: bool) -> Vec<Vec<u8>> {
    let mut terms = Vec::new();
    let _ = for_each_word::<std::convert::Infallible>(text, |word| {
        let stripped = strip_punctuation(word);
        if stripped.is_empty() {
            return Ok(());
        }
        let term = if lowercase {
            stripped.to_ascii_lowercase()
        } else {
            stripped.to_vec()
        };
        terms.push(term);
        Ok(())
    });
    terms
}

/// Strips ASCII punctuation from both ends of a word.
fn strip_punctuation(word: &[u8]) -> &[u8] {
    let start = word
        .iter()
        .position(|byte| !byte.is_ascii_punctuation())
        .unwrap_or(word.len());
    let end = word
        .iter()
        .rposition(|byte| !byte.is_ascii_punctuation())
        .map_or(start, |last| last + 1);
    &word[start..end]
}

struct IndexMapper {
    settings: Settings,
    /// The file whose terms `terms` holds.
    path: Vec<u8>,
    terms: FxHashSet<Box<[u8]>>,
    /// The current term after case folding, reused.
    term: Vec<u8>,
}

impl IndexMapper {
    fn flush(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        for term in self.terms.drain() {
            out.emit(&term, &self.path)?;
        }
        Ok(())
    }
}

impl Mapper for IndexMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let path = path_bytes(record.path);
        if path != self.path.as_slice() {
            self.flush(out)?;
            self.path = path.to_vec();
        }
        let mut term = std::mem::take(&mut self.term);
        let lowercase = self.settings.lowercase;
        let terms = &mut self.terms;
        for_each_word::<JobError>(record.data, |word| {
            let stripped = strip_punctuation(word);
            if stripped.is_empty() {
                return Ok(());
            }
            term.clear();
            if lowercase {
                term.extend(stripped.iter().map(u8::to_ascii_lowercase));
            } else {
                term.extend_from_slice(stripped);
            }
            if !terms.contains(term.as_slice()) {
                terms.insert(Box::from(term.as_slice()));
            }
            Ok(())
        })?;
        self.term = term;
        if self.terms.len() >= self.settings.max_entries {
            self.flush(out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        self.flush(out)
    }
}

/// Reads every value of a key into a sorted set.
fn distinct_values(values: &mut dyn Values) -> Result<BTreeSet<Vec<u8>>, JobError> {
    let mut distinct = BTreeSet::new();
    while let Some(value) = values.next_value()? {
        if !distinct.contains(value) {
            distinct.insert(value.to_vec());
        }
    }
    Ok(distinct)
}

/// The combiner: emits each distinct path of a term once, in byte order.
struct DistinctPaths;

impl Reducer for DistinctPaths {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        for path in distinct_values(values)? {
            out.emit(key, &path)?;
        }
        Ok(())
    }
}

/// The reducer: joins the distinct paths of a term with `,`.
struct JoinPaths;

impl Reducer for JoinPaths {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let postings = distinct_values(values)?;
        let joined = postings.into_iter().collect::<Vec<_>>().join(&b","[..]);
        out.emit(key, &joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{InMemoryOptions, run_in_memory, run_in_memory_with};

    #[test]
    fn query_terms_are_cut_and_folded_like_indexed_terms() {
        let terms = terms_of(b"The cat. (don't) -- DOG!", true);
        let expected: Vec<&[u8]> = vec![b"the", b"cat", b"don't", b"dog"];
        assert_eq!(terms, expected);
        assert_eq!(terms_of(b"Cat", false), vec![b"Cat".to_vec()]);
    }

    #[test]
    fn punctuation_is_stripped_at_word_ends_only() {
        assert_eq!(strip_punctuation(b"Hello,"), b"Hello");
        assert_eq!(strip_punctuation(b"(don't)"), b"don't");
        assert_eq!(strip_punctuation(b"--"), b"");
        assert_eq!(strip_punctuation(b"a.b"), b"a.b");
        assert_eq!(
            strip_punctuation(b"\xc3\xa9t\xc3\xa9!"),
            b"\xc3\xa9t\xc3\xa9"
        );
    }

    #[test]
    fn postings_are_sorted_distinct_paths_per_term() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("b");
        let a = dir.path().join("a");
        std::fs::write(&b, "The cat. the DOG!\n-- cat\n").unwrap();
        std::fs::write(&a, "a dog, (a) Cat\n").unwrap();
        let inputs = [b.clone(), a.clone()];
        let (a, b) = (a.display(), b.display());
        let expected: Vec<String> = vec![
            format!("a\t{a}"),
            format!("cat\t{a},{b}"),
            format!("dog\t{a},{b}"),
            format!("the\t{b}"),
        ];
        for (reducers, combine, max_entries) in [(1, true, "1000"), (1, false, "1"), (3, true, "2")]
        {
            let mut params = JobParams::default();
            params.set(MAX_MAP_ENTRIES_PARAM, max_entries);
            let options = InMemoryOptions {
                combine,
                lines_per_split: None,
            };
            let mut output: Vec<String> =
                run_in_memory_with(&InvertedIndex, &params, &inputs, reducers, &options)
                    .unwrap()
                    .iter()
                    .map(|line| String::from_utf8(line.clone()).unwrap())
                    .collect();
            // Several reducers: each part is sorted, the parts are not merged.
            output.sort();
            assert_eq!(output, expected, "{reducers} reducers");
        }

        let mut case_kept = JobParams::default();
        case_kept.set(LOWERCASE_PARAM, "false");
        let output = run_in_memory(&InvertedIndex, &case_kept, &inputs[1..], 1).unwrap();
        let output: Vec<String> = output
            .iter()
            .map(|line| String::from_utf8(line.clone()).unwrap())
            .collect();
        assert_eq!(
            output,
            vec![format!("Cat\t{a}"), format!("a\t{a}"), format!("dog\t{a}")]
        );
    }

    #[test]
    fn malformed_parameters_are_refused_by_name() {
        let mut params = JobParams::default();
        params.set(LOWERCASE_PARAM, "maybe");
        let error = InvertedIndex.validate(&params).unwrap_err();
        assert!(error.message.contains(LOWERCASE_PARAM) && !error.retryable);
    }
}
