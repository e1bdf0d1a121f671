//! How a job reads its input files itself, beyond the records the framework hands it:
//! a whole file (`dedup by=file`), a CSV header line (`join`), samples of keys (`sort`).
//!
//! Such reads go through the storage layer the map tasks' splits go through
//! ([`essaim_storage::InputReader`]), so a job that opens a file itself sees what its
//! mapper's records come from: local paths and `s3://` objects alike, reached with the
//! job's storage options (`--s3-endpoint`, `--s3-region`, `--s3-allow-http`, which travel
//! with the job), and a compressed file decoded as a map task decodes it. A job that
//! opened a path with `std::fs` would take an object for a missing file and hash or
//! sample a `.gz` file's compressed bytes.
//!
//! The framework hands one to the job's client-side [`JobDefinition::prepare`] and, on
//! the worker, to every mapper ([`Mapper::use_input_access`]).
//!
//! [`JobDefinition::prepare`]: crate::api::JobDefinition::prepare
//! [`Mapper::use_input_access`]: crate::api::Mapper::use_input_access

use std::path::Path;

use essaim_storage::{InputReader, Location, S3Options, StorageError};

use crate::api::JobError;

/// Opens a job's input files, local or in an object store, decoded when compressed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputAccess {
    storage: S3Options,
}

impl InputAccess {
    /// Returns the access of a job whose object store is reached with `storage`.
    pub fn new(storage: S3Options) -> Self {
        Self { storage }
    }

    /// Returns the job's storage options.
    pub fn storage(&self) -> &S3Options {
        &self.storage
    }

    /// Opens `path` (a local path, or an `s3://` URL as input paths carry it) from its
    /// first byte, decoded when it is compressed (by name or magic number).
    pub fn open(&self, path: &Path) -> Result<InputReader, JobError> {
        self.open_at(path, 0)
    }

    /// Opens `path` at byte `start`: a plain file from there (an object with one ranged
    /// request, read as it is consumed); a compressed one reads as empty past 0, since
    /// its bytes cannot be entered in the middle.
    pub fn open_at(&self, path: &Path, start: u64) -> Result<InputReader, JobError> {
        let location = Location::from_path(path);
        InputReader::open(&location, start, &self.storage).map_err(job_error)
    }

    /// Returns the size of `path` as stored (compressed bytes for a compressed file).
    pub fn stored_size(&self, path: &Path) -> Result<u64, JobError> {
        let location = Location::from_path(path);
        essaim_storage::input::stored_size(&location, &self.storage).map_err(job_error)
    }
}

/// A storage error as a job's error: retryable when the storage says another attempt
/// may pass (a reset connection), permanent otherwise (corrupt bytes, no such bucket).
pub fn job_error(error: StorageError) -> JobError {
    let message = essaim_core::error_chain::error_chain(&error);
    if error.is_retryable() {
        JobError::retryable(message)
    } else {
        JobError::permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_compressed_file_opens_decoded_and_a_plain_one_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, b"hello\nworld\n").unwrap();
        let packed = dir.path().join("packed.gz");
        let mut encoder = essaim_storage::Codec::Gzip.encoder(Vec::new()).unwrap();
        encoder.write_all(b"hello\nworld\n").unwrap();
        let gzipped = encoder.finish().unwrap();
        std::fs::write(&packed, &gzipped).unwrap();
        let access = InputAccess::default();
        let read = |mut reader: InputReader| {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(read(access.open(&packed).unwrap()), b"hello\nworld\n");
        assert_eq!(read(access.open_at(&plain, 6).unwrap()), b"world\n");
        assert_eq!(
            access.stored_size(&packed).unwrap(),
            gzipped.len() as u64,
            "the stored size counts compressed bytes"
        );
        let missing = access.open(&dir.path().join("missing")).unwrap_err();
        assert!(missing.message.contains("missing"), "{}", missing.message);
    }
}
