//! Shards: an index's documents cut into N deterministic parts, each a file with its
//! SHA-256 in a manifest, and loaded into memory only when the bytes still match.
//!
//! The `index` job writes `part-*` files of `term<TAB>path1,path2,…` lines. Serving
//! them as N shards starts with [`prepare_shards`]: it reads every part once and
//! writes, under `<index>/_serve/shards-N/`, one file per shard (the same line format,
//! each posting list restricted to the shard's documents, terms in byte order) and a
//! `manifest.json` naming each file's SHA-256. A leaf then [`load_shard`]s its shard:
//! the bytes are hashed before they are parsed, and a file whose hash differs from the
//! manifest's is refused with [`ShardError::Corrupt`], naming the file and both hashes.
//! A corrupt shard is never served: a leaf that cannot load stays out of the pool.
//!
//! A document belongs to shard `fnv1a_64(path) mod N` ([`shard_of_document`]), the
//! stable hash the streaming sharder uses too: the same on every machine and run.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod prepare;

pub use prepare::{prepare_shards, read_manifest, verify_shards};

/// Directory under the index output where shard files live (`_` so that readers of
/// the job's output skip it, like `_SUCCESS`).
pub const SERVE_DIR: &str = "_serve";
/// The manifest's file name inside a shard set's directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this version writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Most shards an index may be cut into.
pub const MAX_SHARDS: u32 = 1024;

/// A shard's number, `0..N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId(pub u32);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Returns the shard that holds `document` among `shards` shards.
pub fn shard_of_document(document: &str, shards: u32) -> ShardId {
    debug_assert!(shards > 0, "a shard set has at least one shard");
    ShardId((essaim_stream::hash::fnv1a_64(document.as_bytes()) % u64::from(shards)) as u32)
}

/// Returns the directory of the `shards`-way shard set of an index.
pub fn shard_set_dir(index_dir: &Path, shards: u32) -> PathBuf {
    index_dir.join(SERVE_DIR).join(format!("shards-{shards}"))
}

/// The description of one shard set: which file holds which shard, and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// N.
    pub shards: u32,
    /// One entry per shard, in shard order.
    pub entries: Vec<ShardEntry>,
}

/// One shard's file in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// The shard.
    pub shard: ShardId,
    /// The file name, relative to the shard set's directory.
    pub file: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Distinct terms in the shard.
    pub terms: u64,
    /// Distinct documents in the shard.
    pub documents: u64,
}

/// Why an index or one of its shards cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The directory is not a finished output of the `index` job.
    #[error("`{path}` is not a finished index: {reason}")]
    NotAnIndex {
        /// The directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A line of a part or shard file is not `term<TAB>path,…` in UTF-8.
    #[error("`{path}` line {line}: not an index line (`term<TAB>path1,path2,…` in UTF-8)")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
    },
    /// A shard file's bytes do not hash to the manifest's SHA-256.
    #[error(
        "shard {shard} is corrupt: `{path}` has SHA-256 {found}, the manifest says {expected}; \
         delete `{}` to cut the shards again from the index", .path.parent().map(|dir| dir.display().to_string()).unwrap_or_default()
    )]
    Corrupt {
        /// The shard.
        shard: ShardId,
        /// Its file.
        path: PathBuf,
        /// The manifest's hash.
        expected: String,
        /// The file's hash.
        found: String,
    },
    /// The manifest does not describe the shard asked for or does not parse.
    #[error("the manifest `{path}` is invalid: {reason}")]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Zero or too many shards asked for.
    #[error("the number of shards must be 1 to {MAX_SHARDS}, not {shards}")]
    ShardCount {
        /// The number asked for.
        shards: u32,
    },
    /// A file could not be read or written.
    #[error("failed to {action} `{path}`")]
    Io {
        /// What was tried.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ShardError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Returns true when loading again may succeed (a file system hiccup), false when
    /// the data or the request is wrong and an operator must act.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

/// One shard in memory: each term's postings restricted to the shard's documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardIndex {
    /// Term → documents, sorted by bytes and distinct.
    postings: BTreeMap<String, Vec<String>>,
}

impl ShardIndex {
    /// Returns the documents that contain `term` (sorted), empty for an unknown term.
    pub fn postings(&self, term: &str) -> &[String] {
        self.postings.get(term).map_or(&[], Vec::as_slice)
    }

    /// Returns the number of distinct terms.
    pub fn term_count(&self) -> usize {
        self.postings.len()
    }

    /// Builds a shard from `term → documents` (documents are sorted and deduplicated).
    pub fn from_postings(postings: BTreeMap<String, Vec<String>>) -> Self {
        let postings = postings
            .into_iter()
            .map(|(term, mut documents)| {
                documents.sort_unstable();
                documents.dedup();
                (term, documents)
            })
            .collect();
        Self { postings }
    }

    /// Parses index lines (`term<TAB>path1,path2,…`).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, ShardError> {
        let mut postings = BTreeMap::new();
        for (number, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let (term, documents) = parse_line(line, path, number as u64 + 1)?;
            postings.insert(term.to_owned(), documents);
        }
        Ok(Self::from_postings(postings))
    }
}

/// Splits one index line into its term and its documents.
pub(crate) fn parse_line<'a>(
    line: &'a [u8],
    path: &Path,
    number: u64,
) -> Result<(&'a str, Vec<String>), ShardError> {
    let malformed = || ShardError::Malformed {
        path: path.to_path_buf(),
        line: number,
    };
    let text = std::str::from_utf8(line).map_err(|_| malformed())?;
    let (term, documents) = text.split_once('\t').ok_or_else(malformed)?;
    if term.is_empty() || documents.is_empty() {
        return Err(malformed());
    }
    Ok((term, documents.split(',').map(str::to_owned).collect()))
}

/// Loads shard `shard` of the `shards`-way shard set of `index_dir`, refusing it when
/// its bytes do not hash to the manifest's SHA-256.
pub fn load_shard(index_dir: &Path, shards: u32, shard: ShardId) -> Result<ShardIndex, ShardError> {
    let manifest = read_manifest(index_dir, shards)?;
    let directory = shard_set_dir(index_dir, shards);
    let Some(entry) = manifest.entries.iter().find(|entry| entry.shard == shard) else {
        return Err(ShardError::BadManifest {
            path: directory.join(MANIFEST_FILE),
            reason: format!("no entry for shard {shard}"),
        });
    };
    let path = directory.join(&entry.file);
    let bytes = std::fs::read(&path).map_err(|source| ShardError::io("read", &path, source))?;
    let found = sha256_hex(&bytes);
    if found != entry.sha256 {
        return Err(ShardError::Corrupt {
            shard,
            path,
            expected: entry.sha256.clone(),
            found,
        });
    }
    ShardIndex::parse(&bytes, &path)
}

/// Returns the SHA-256 of `bytes` in lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests;
