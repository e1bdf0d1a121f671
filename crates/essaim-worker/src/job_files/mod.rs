//! Job files: the files a job brings with it (`--files map.py,lookup.csv`, as Hadoop's
//! `-files` and Spark's `--files`), so that its programs need not be installed on every
//! worker.
//!
//! The client uploads each file once to the coordinator's content-addressed artifact
//! store (`/registry/v1/artifacts`) and names it in the job by the SHA-256 of its bytes
//! ([`JobFiles`]: name → hash). A worker fetches each hash once into its cache
//! ([`JobFileCache`], under the scratch root), checks the hash as the bytes arrive, and
//! [`JobFileCache::stage`]s the files of an attempt into a working directory under their
//! names, where the job's commands run.
//!
//! Guarantees:
//! - a name is one plain file name ([`check_job_files`]): a job cannot place a file
//!   outside the working directory;
//! - bytes that do not hash to their name never reach the cache: the task fails with
//!   [`JobFilesError::Corrupt`], naming the file and both hashes;
//! - concurrent attempts that need the same hash download it once; a file is renamed
//!   into the cache only when whole and checked, so a reader never sees part of one.

mod cache;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use self::cache::JobFileCache;

/// A job's files: the name each appears under in the working directory → the SHA-256
/// (lowercase hex) of its bytes in the cluster's artifact store.
pub type JobFiles = BTreeMap<String, String>;

/// Longest file name accepted (the usual file-system limit, in bytes).
const MAX_NAME_BYTES: usize = 255;

/// Why a job's files are unusable, or could not be made available to an attempt.
#[derive(Debug, thiserror::Error)]
pub enum JobFilesError {
    /// A name is not one plain file name.
    #[error("job file name `{name}` is not allowed: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A hash is not 64 lowercase hex digits.
    #[error("job file `{name}`: `{sha256}` is not a SHA-256 (64 lowercase hex digits)")]
    InvalidHash {
        /// The file.
        name: String,
        /// The text given as its hash.
        sha256: String,
    },
    /// The downloaded bytes do not hash to the file's SHA-256.
    #[error(
        "job file `{name}` is corrupt: expected sha256 {expected}, the bytes received hash \
         to {actual}"
    )]
    Corrupt {
        /// The file.
        name: String,
        /// The SHA-256 the job names.
        expected: String,
        /// The SHA-256 of the bytes received.
        actual: String,
    },
    /// The artifact store does not hold the file (never uploaded, or uploaded to
    /// another coordinator).
    #[error("job file `{name}` (sha256 {sha256}) is not in the cluster's artifact store: {reason}")]
    NotFound {
        /// The file.
        name: String,
        /// Its SHA-256.
        sha256: String,
        /// The store's words.
        reason: String,
    },
    /// No coordinator gave the file.
    #[error("failed to fetch job file `{name}` (sha256 {sha256}): {reason}")]
    Fetch {
        /// The file.
        name: String,
        /// Its SHA-256.
        sha256: String,
        /// What each coordinator answered.
        reason: String,
    },
    /// The cache or the working directory could not be written.
    #[error("failed to {action} `{path}` for job file `{name}`")]
    Io {
        /// The file.
        name: String,
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The file system's words.
        #[source]
        source: std::io::Error,
    },
}

impl JobFilesError {
    /// Returns true when another attempt may succeed: a download that broke or arrived
    /// corrupt, a full disk. A bad name or a file the store lacks stays as it is.
    pub fn retryable(&self) -> bool {
        match self {
            Self::InvalidName { .. } | Self::InvalidHash { .. } | Self::NotFound { .. } => false,
            Self::Corrupt { .. } | Self::Fetch { .. } | Self::Io { .. } => true,
        }
    }
}

/// Checks that every name is one plain file name and every hash a SHA-256, so that
/// staging can join a name to a directory and a hash to the cache.
pub fn check_job_files(files: &JobFiles) -> Result<(), JobFilesError> {
    for (name, sha256) in files {
        check_job_file_name(name)?;
        let is_sha256 = sha256.len() == 64
            && sha256
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if !is_sha256 {
            return Err(JobFilesError::InvalidHash {
                name: name.clone(),
                sha256: sha256.clone(),
            });
        }
    }
    Ok(())
}

/// Checks that `name` is one plain file name: not empty, not `.` or `..`, without `/`
/// or NUL, at most 255 bytes.
pub fn check_job_file_name(name: &str) -> Result<(), JobFilesError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it names a directory")
    } else if name.contains('/') {
        Some("it contains `/`; a job file appears in the working directory itself")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else if name.len() > MAX_NAME_BYTES {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(JobFilesError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_and_hashes_sha256() {
        let hash = "a".repeat(64);
        for name in ["", ".", "..", "dir/map.py", "/etc/passwd", "a\0b"] {
            let files = JobFiles::from([(name.to_string(), hash.clone())]);
            let error = check_job_files(&files).unwrap_err();
            assert!(
                matches!(error, JobFilesError::InvalidName { .. }),
                "{name:?}"
            );
            assert!(!error.retryable());
        }
        for sha256 in ["", "abc", &"A".repeat(64), &"g".repeat(64)] {
            let files = JobFiles::from([("map.py".to_string(), sha256.to_string())]);
            let error = check_job_files(&files).unwrap_err();
            assert!(error.to_string().contains("map.py"), "{error}");
        }
        let fine = JobFiles::from([
            ("map.py".to_string(), hash.clone()),
            ("lookup table.csv".to_string(), hash),
        ]);
        check_job_files(&fine).unwrap();
    }
}
