//! The cache key of a query's answer: which served index, and what the query means.
//!
//! A cached answer may be reused only for a query that asks the same thing of the same
//! data. So the key is a SHA-256 over two parts:
//! - the **served index's identity** ([`IndexIdentity`]): a hash of the shard set's
//!   manifest (the shard count and every shard file's SHA-256, which each leaf checks
//!   again at load). Serving another index, or the same one cut differently, changes
//!   it, so a re-served index never answers from an entry of the one before;
//! - the **normalised query**: the parsed alternatives (each a set of folded terms),
//!   deduplicated and sorted, not the raw text. `a  b`, `b a` and `B, a!` mean the same
//!   query and share an entry; `a OR b` and `b OR a` too; `a b` and `a OR b` do not.
//!
//! The encoding is versioned (`FORMAT`): a change in what is hashed or in what is stored
//! under the key changes every key, so an old entry is never read as a new one.
use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::query::Query;
use crate::shard::Manifest;

/// The version of the key's encoding and of the stored answer's format.
const FORMAT: &str = "essaim-serve-answer/v1";

/// Prefix of every answer key, so that an operator can tell them in the cache.
pub const ANSWER_KEY_PREFIX: &str = "serve-answer:";

/// Identifies the data a root serves: equal exactly when the shard files are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexIdentity(String);

impl IndexIdentity {
    /// Returns the identity of the shard set `manifest` describes (lowercase hex).
    pub fn of_manifest(manifest: &Manifest) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(FORMAT.as_bytes());
        hasher.update(manifest.shards.to_le_bytes());
        for entry in &manifest.entries {
            // Shard number and hash, each length-delimited by the fixed-width number
            // and the hex digest's fixed length.
            hasher.update(entry.shard.0.to_le_bytes());
            hasher.update(entry.sha256.as_bytes());
        }
        Self(hex(&hasher.finalize()))
    }

    /// Returns the identity as lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Returns the cache key of `query`'s answer over the index `index`.
pub fn answer_key(index: &IndexIdentity, query: &Query) -> String {
    let alternatives: BTreeSet<&BTreeSet<String>> = query.alternatives().iter().collect();
    // JSON of sorted sets: unambiguous whatever bytes a term holds.
    let normalised = serde_json::to_vec(&alternatives).expect("sets of strings always serialize");
    let mut hasher = Sha256::new();
    hasher.update(FORMAT.as_bytes());
    hasher.update([0]);
    hasher.update(index.0.as_bytes());
    hasher.update([0]);
    hasher.update(&normalised);
    format!("{ANSWER_KEY_PREFIX}{}", hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::QueryLimits;
    use crate::shard::{MANIFEST_VERSION, ShardEntry, ShardId};

    fn manifest(hashes: &[&str]) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            shards: hashes.len() as u32,
            entries: hashes
                .iter()
                .enumerate()
                .map(|(index, hash)| ShardEntry {
                    shard: ShardId(index as u32),
                    file: format!("shard-{index:05}"),
                    sha256: (*hash).to_owned(),
                    terms: 1,
                    documents: 1,
                })
                .collect(),
        }
    }

    fn key(index: &IndexIdentity, text: &str, lowercase: bool) -> String {
        let query = Query::parse(text, QueryLimits::default(), lowercase).unwrap();
        answer_key(index, &query)
    }

    #[test]
    fn spellings_of_one_query_share_a_key() {
        let index = IndexIdentity::of_manifest(&manifest(&["aa", "bb"]));
        let reference = key(&index, "cat dog", true);
        for same in [
            "cat  dog",
            "  cat\tdog ",
            "dog cat",
            "Cat, DOG!",
            "cat dog cat",
        ] {
            assert_eq!(key(&index, same, true), reference, "{same:?}");
        }
        let union = key(&index, "cat OR dog", true);
        assert_eq!(key(&index, "dog OR cat", true), union);
        assert_eq!(key(&index, "dog OR cat OR dog", true), union);
        assert!(reference.starts_with(ANSWER_KEY_PREFIX));
    }

    #[test]
    fn different_queries_have_different_keys() {
        let index = IndexIdentity::of_manifest(&manifest(&["aa"]));
        let keys: BTreeSet<String> = [
            "cat dog",
            "cat OR dog",
            "cat",
            "dog",
            "cat dog OR bird",
            "cat OR dog bird",
            "catdog",
        ]
        .iter()
        .map(|text| key(&index, text, true))
        .collect();
        assert_eq!(keys.len(), 7);
        // Without case folding, case is part of the query.
        assert_ne!(key(&index, "Cat", false), key(&index, "cat", false));
    }

    #[test]
    fn another_index_or_cut_changes_every_key() {
        let served = IndexIdentity::of_manifest(&manifest(&["aa", "bb"]));
        let same = IndexIdentity::of_manifest(&manifest(&["aa", "bb"]));
        let changed_shard = IndexIdentity::of_manifest(&manifest(&["aa", "bc"]));
        let other_cut = IndexIdentity::of_manifest(&manifest(&["aa", "bb", "cc"]));
        assert_eq!(served, same);
        assert_ne!(served, changed_shard);
        assert_ne!(served, other_cut);
        assert_eq!(served.as_str().len(), 64);
        assert_ne!(key(&served, "cat", true), key(&changed_shard, "cat", true));
        assert_ne!(key(&served, "cat", true), key(&other_cut, "cat", true));
    }
}
