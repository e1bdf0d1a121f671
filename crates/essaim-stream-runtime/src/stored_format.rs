//! The version header of the runtime's stored and transferred formats: a unit's
//! checkpoint (kept in PostgreSQL) and a batch of shuffle messages (kept in JetStream).
//!
//! Both outlive the process that wrote them, so a newer build may read what an older
//! one wrote, and an older build (a rolling upgrade, a rollback) may meet a newer
//! format. Every encoding therefore starts with a header, written here and nowhere else:
//!
//! ```text
//! magic (4 bytes, one per format) | version (u16, little-endian) | postcard body
//! ```
//!
//! Decoding checks the magic and refuses a version this build does not read with an
//! error naming the format, the version found and the versions supported, instead of
//! misreading the body.
//!
//! **Data written before the header** (format version 1 without a header) is read as
//! version 1, so that an upgrade keeps every pipeline's state and the shuffle messages
//! still in flight. Telling the two apart is unambiguous: every magic starts with
//! `ES`, and no headerless encoding can: a checkpoint starts with the tag of an
//! `Option` (0 or 1), a shuffle batch with its length and then the tag of its first
//! message (0, 1 or 2, never `S`), or is the single byte 0 when empty.
//!
//! (The MapReduce block format carries its own magic and version, in
//! `essaim-mapreduce`'s `format` module.)

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ops::RangeInclusive;

/// The first two bytes of every magic, never the start of a headerless encoding.
const MAGIC_PREFIX: [u8; 2] = *b"ES";

/// Bytes of the header: the magic and the version.
pub const HEADER_LEN: usize = 6;

/// One stored format: its name in errors, its magic, and the versions this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFormat {
    /// What the format is, as errors name it.
    pub name: &'static str,
    /// The magic at the start of every encoding of it.
    pub magic: [u8; 4],
    /// The version written; the newest this build reads.
    pub version: u16,
    /// The oldest version this build reads.
    pub oldest_version: u16,
}

/// A unit's checkpoint: operator state, upstream cursors, ended sources.
pub const CHECKPOINT: StoredFormat = StoredFormat {
    name: "stream checkpoint",
    magic: *b"ESCK",
    version: 1,
    oldest_version: 1,
};

/// A batch of shuffle messages, one JetStream message.
pub const SHUFFLE_BATCH: StoredFormat = StoredFormat {
    name: "shuffle batch",
    magic: *b"ESSH",
    version: 1,
    oldest_version: 1,
};

/// The version that headerless data (written before the header existed) is read as.
const HEADERLESS_VERSION: u16 = 1;

/// Why bytes are not a readable encoding of a format, or a value could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum StoredFormatError {
    /// The bytes carry another format's header.
    #[error("not a {format}: magic {found:?}, expected {expected:?}")]
    WrongMagic {
        /// The format expected.
        format: &'static str,
        /// The magic found, as text where printable.
        found: String,
        /// The magic of the format.
        expected: String,
    },
    /// The bytes stop inside the header.
    #[error("{format}: truncated header ({len} bytes)")]
    TruncatedHeader {
        /// The format expected.
        format: &'static str,
        /// How many bytes there were.
        len: usize,
    },
    /// A version this build does not read (written by a newer build, or too old).
    #[error(
        "{format} version {found} is not supported: this build reads versions {}..={}",
        supported.start(), supported.end()
    )]
    UnsupportedVersion {
        /// The format.
        format: &'static str,
        /// The version in the header.
        found: u16,
        /// The versions this build reads.
        supported: RangeInclusive<u16>,
    },
    /// The body does not decode as the version says it should.
    #[error("{format} version {version}: unreadable body")]
    Body {
        /// The format.
        format: &'static str,
        /// The version it was read as.
        version: u16,
        /// The decoder's error.
        #[source]
        source: postcard::Error,
    },
    /// The value does not encode.
    #[error("{format}: encoding failed")]
    Encode {
        /// The format.
        format: &'static str,
        /// The encoder's error.
        #[source]
        source: postcard::Error,
    },
}

impl StoredFormat {
    /// Returns the versions this build reads.
    pub fn supported(&self) -> RangeInclusive<u16> {
        self.oldest_version..=self.version
    }

    /// Encodes `value` with the header of the current version.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, StoredFormatError> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + 64);
        bytes.extend_from_slice(&self.magic);
        bytes.extend_from_slice(&self.version.to_le_bytes());
        postcard::to_extend(value, bytes).map_err(|source| StoredFormatError::Encode {
            format: self.name,
            source,
        })
    }

    /// Decodes `bytes`: checks the header (or reads headerless data as version 1),
    /// then the body.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StoredFormatError> {
        let (version, body) = self.split_header(bytes)?;
        // One body layout so far: version 1. A version 2 would branch here.
        postcard::from_bytes(body).map_err(|source| StoredFormatError::Body {
            format: self.name,
            version,
            source,
        })
    }

    /// Returns the version of `bytes` and their body, refusing a wrong magic or an
    /// unsupported version.
    pub fn split_header<'a>(&self, bytes: &'a [u8]) -> Result<(u16, &'a [u8]), StoredFormatError> {
        if !bytes.starts_with(&MAGIC_PREFIX) {
            return Ok((HEADERLESS_VERSION, bytes));
        }
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(StoredFormatError::TruncatedHeader {
                format: self.name,
                len: bytes.len(),
            });
        };
        let (magic, version) = header.split_at(4);
        if magic != self.magic {
            return Err(StoredFormatError::WrongMagic {
                format: self.name,
                found: String::from_utf8_lossy(magic).into_owned(),
                expected: String::from_utf8_lossy(&self.magic).into_owned(),
            });
        }
        let version = u16::from_le_bytes([version[0], version[1]]);
        if !self.supported().contains(&version) {
            return Err(StoredFormatError::UnsupportedVersion {
                format: self.name,
                found: version,
                supported: self.supported(),
            });
        }
        Ok((version, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_behind_its_header() {
        let value = (7_u32, "state".to_owned());
        let bytes = CHECKPOINT.encode(&value).expect("encodes");
        assert_eq!(&bytes[..4], b"ESCK");
        assert_eq!(&bytes[4..6], &1_u16.to_le_bytes());
        let decoded: (u32, String) = CHECKPOINT.decode(&bytes).expect("decodes");
        assert_eq!(decoded, value);
    }

    #[test]
    fn headerless_data_is_read_as_version_one() {
        let value = (Some(3_u8), vec![1_u32, 2]);
        let legacy = postcard::to_stdvec(&value).expect("encodes");
        let decoded: (Option<u8>, Vec<u32>) = CHECKPOINT.decode(&legacy).expect("decodes");
        assert_eq!(decoded, value);
        assert_eq!(SHUFFLE_BATCH.split_header(&[0]).expect("empty batch").0, 1);
    }

    #[test]
    fn an_unknown_version_names_the_format_and_the_supported_versions() {
        let mut bytes = SHUFFLE_BATCH.encode(&1_u8).expect("encodes");
        bytes[4..6].copy_from_slice(&2_u16.to_le_bytes());
        let error = SHUFFLE_BATCH.decode::<u8>(&bytes).expect_err("refused");
        assert!(
            matches!(
                error,
                StoredFormatError::UnsupportedVersion { found: 2, .. }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "shuffle batch version 2 is not supported: this build reads versions 1..=1"
        );
    }

    #[test]
    fn another_formats_bytes_are_refused_by_their_magic() {
        let checkpoint = CHECKPOINT.encode(&1_u8).expect("encodes");
        let error = SHUFFLE_BATCH
            .decode::<u8>(&checkpoint)
            .expect_err("refused");
        assert_eq!(
            error.to_string(),
            "not a shuffle batch: magic \"ESCK\", expected \"ESSH\""
        );
    }

    #[test]
    fn a_truncated_header_or_body_is_refused() {
        let error = CHECKPOINT.decode::<u8>(b"ESC").expect_err("refused");
        assert!(matches!(
            error,
            StoredFormatError::TruncatedHeader { len: 3, .. }
        ));
        let header_only = &CHECKPOINT.encode(&1_u32).expect("encodes")[..HEADER_LEN];
        let error = CHECKPOINT.decode::<u32>(header_only).expect_err("refused");
        assert!(
            matches!(error, StoredFormatError::Body { version: 1, .. }),
            "{error:?}"
        );
    }
}
