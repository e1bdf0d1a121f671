//! Queries: a few words, answered with the documents that contain them.
//!
//! The language is the smallest that covers both set operations of an inverted index:
//! words side by side must all be in a document (intersection), and `OR` (upper case,
//! a word of its own) separates alternatives (union): `cat dog OR bird` finds the
//! documents with both `cat` and `dog`, and those with `bird`. Words are cut and folded
//! by the index job's own function ([`essaim_mapreduce::jobs::index::terms_of`]), so a
//! query word and an indexed term cannot disagree about punctuation or case.
//!
//! Limits are checked before any work: an empty query (or an alternative with no
//! term) and an oversized one are refused with a [`QueryError`] that says which limit.
use std::collections::BTreeSet;

use crate::shard::ShardIndex;

/// Default longest query text, in bytes.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 4096;
/// Default most terms in a query, over all alternatives.
pub const DEFAULT_MAX_QUERY_TERMS: usize = 32;

/// What a query may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Longest query text, in bytes (default [`DEFAULT_MAX_QUERY_BYTES`]).
    pub max_bytes: usize,
    /// Most terms, over all alternatives (default [`DEFAULT_MAX_QUERY_TERMS`]).
    pub max_terms: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_QUERY_BYTES,
            max_terms: DEFAULT_MAX_QUERY_TERMS,
        }
    }
}

/// A query refused before it ran; always the caller's fault (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No term at all, or an `OR` with nothing on one side.
    #[error("the query is empty: give at least one word (and words on both sides of `OR`)")]
    Empty,
    /// Too many bytes.
    #[error("the query is {bytes} bytes long; the limit is {max}")]
    TooLong {
        /// Its length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Too many terms.
    #[error("the query has {terms} terms; the limit is {max}")]
    TooManyTerms {
        /// Its terms.
        terms: usize,
        /// The limit.
        max: usize,
    },
}

/// A parsed query: alternatives (union) of term sets (intersection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Each alternative's distinct terms, sorted.
    alternatives: Vec<BTreeSet<String>>,
}

impl Query {
    /// Parses `text`, refusing an empty or oversized query. `lowercase` must be the
    /// index job's own setting (its default is `true`).
    pub fn parse(text: &str, limits: QueryLimits, lowercase: bool) -> Result<Self, QueryError> {
        if text.len() > limits.max_bytes {
            return Err(QueryError::TooLong {
                bytes: text.len(),
                max: limits.max_bytes,
            });
        }
        let mut alternatives = Vec::new();
        let mut terms_seen = 0;
        for alternative in split_on_or(text) {
            let terms = essaim_mapreduce::jobs::index::terms_of(alternative.as_bytes(), lowercase);
            terms_seen += terms.len();
            let terms: BTreeSet<String> = terms
                .into_iter()
                .map(|term| String::from_utf8_lossy(&term).into_owned())
                .collect();
            if terms.is_empty() {
                return Err(QueryError::Empty);
            }
            alternatives.push(terms);
        }
        if alternatives.is_empty() {
            return Err(QueryError::Empty);
        }
        if terms_seen > limits.max_terms {
            return Err(QueryError::TooManyTerms {
                terms: terms_seen,
                max: limits.max_terms,
            });
        }
        Ok(Self { alternatives })
    }

    /// Returns the alternatives, each a sorted set of terms.
    pub fn alternatives(&self) -> &[BTreeSet<String>] {
        &self.alternatives
    }

    /// Returns the documents of `shard` that match, sorted and distinct.
    pub fn evaluate(&self, shard: &ShardIndex) -> Vec<String> {
        let mut matches = BTreeSet::new();
        for terms in &self.alternatives {
            matches.extend(intersect(shard, terms));
        }
        matches.into_iter().collect()
    }
}

/// Cuts a query at the words `OR`.
fn split_on_or(text: &str) -> Vec<String> {
    let mut alternatives = vec![String::new()];
    for word in text.split_whitespace() {
        if word == "OR" {
            alternatives.push(String::new());
            continue;
        }
        let current = alternatives
            .last_mut()
            .expect("starts with one alternative");
        current.push(' ');
        current.push_str(word);
    }
    if alternatives.len() == 1 && alternatives[0].trim().is_empty() {
        return Vec::new();
    }
    alternatives
}

/// Returns the documents holding every term, starting from the shortest posting list.
fn intersect(shard: &ShardIndex, terms: &BTreeSet<String>) -> Vec<String> {
    let mut lists: Vec<&[String]> = terms.iter().map(|term| shard.postings(term)).collect();
    lists.sort_by_key(|list| list.len());
    let Some((shortest, others)) = lists.split_first() else {
        return Vec::new();
    };
    shortest
        .iter()
        .filter(|document| {
            others
                .iter()
                .all(|list| list.binary_search(document).is_ok())
        })
        .cloned()
        .collect()
}

/// Merges shards' answers (each sorted) into one sorted, distinct list.
pub fn merge_answers<'a>(answers: impl IntoIterator<Item = &'a [String]>) -> Vec<String> {
    let mut merged = BTreeSet::new();
    for answer in answers {
        merged.extend(answer.iter().cloned());
    }
    merged.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn shard() -> ShardIndex {
        let mut postings = BTreeMap::new();
        let mut put = |term: &str, documents: &[&str]| {
            postings.insert(
                term.to_owned(),
                documents.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            );
        };
        put("cat", &["a", "b", "c"]);
        put("dog", &["b", "c", "d"]);
        put("bird", &["e"]);
        ShardIndex::from_postings(postings)
    }

    fn answer(text: &str) -> Vec<String> {
        Query::parse(text, QueryLimits::default(), true)
            .unwrap()
            .evaluate(&shard())
    }

    #[test]
    fn words_side_by_side_intersect_and_or_unites() {
        assert_eq!(answer("cat dog"), ["b", "c"]);
        assert_eq!(answer("Cat, DOG!"), ["b", "c"]);
        assert_eq!(answer("cat dog OR bird"), ["b", "c", "e"]);
        assert_eq!(answer("bird OR unknown"), ["e"]);
        assert!(answer("cat unknown").is_empty());
    }

    #[test]
    fn empty_queries_are_refused() {
        for text in ["", "   ", "-- !!", "cat OR", "OR dog", "OR"] {
            let refused = Query::parse(text, QueryLimits::default(), true);
            assert_eq!(refused, Err(QueryError::Empty), "{text:?}");
        }
    }

    #[test]
    fn oversized_queries_are_refused() {
        let limits = QueryLimits {
            max_bytes: 20,
            max_terms: 3,
        };
        assert_eq!(
            Query::parse(&"x".repeat(21), limits, true),
            Err(QueryError::TooLong { bytes: 21, max: 20 })
        );
        assert_eq!(
            Query::parse("a b c d", limits, true),
            Err(QueryError::TooManyTerms { terms: 4, max: 3 })
        );
        assert!(Query::parse("a b c", limits, true).is_ok());
    }

    #[test]
    fn merged_answers_are_sorted_and_distinct() {
        let left = ["b".to_owned(), "d".to_owned()];
        let right = ["a".to_owned(), "d".to_owned()];
        assert_eq!(merge_answers([&left[..], &right[..]]), ["a", "b", "d"]);
    }
}
