//! The on-disk format of spill files and map outputs, shared by the map side (which
//! writes it), the shuffle (which checks it while it downloads) and the merges (which
//! read it back).
//!
//! Every byte that crosses a disk or a network is checksummed, so that a flipped bit is
//! an error that names the file and the segment, never a silently wrong answer.
//!
//! ```text
//! file     := segment{P} footer              (P = number of partitions)
//! segment  := "EMRS" version:u32le block* end
//! block    := stored_len:u32le raw_len:u32le records:u32le crc:u32le stored[stored_len]
//! end      := 0:u32le 0:u32le blocks:u32le crc:u32le
//! footer   := entry{P} partitions:u32le crc:u32le "EMRI" version:u32le
//! entry    := offset:u64le length:u64le records:u64le
//! record   := varint(key_len) varint(value_len) key value   (inside a block's raw bytes)
//! ```
//!
//! - A block holds whole records, about [`TARGET_BLOCK_BYTES`] of them before
//!   compression. Its `stored` bytes are LZ4 (block format) when that is smaller than
//!   `raw_len`, and the raw bytes otherwise (`stored_len == raw_len`).
//! - A block's CRC32 covers its first 12 header bytes and its stored bytes; the end
//!   marker's covers its 12 bytes. The end marker counts the blocks, so a segment cut at
//!   a block boundary or missing a block is detected too.
//! - A segment is self-contained (it starts with the magic number and the version), so a
//!   reducer can fetch one partition with an HTTP range request and check it alone.
//! - The footer is the index: where each partition's segment is and how many records it
//!   holds. Its length depends only on the number of partitions ([`footer_len`]), so a
//!   reducer that knows the file's size fetches it with a second range request.
//!   Segments are contiguous, in partition order, starting at offset 0.
//!
//! Parsing is separate from I/O where it can be: [`decode_footer`] and
//! [`SegmentVerifier`] take bytes; [`SegmentReader`] reads from any [`std::io::Read`].

mod reader;
mod verify;
mod writer;

pub use reader::SegmentReader;
pub use verify::SegmentVerifier;
pub use writer::MapOutputWriter;

/// Magic number at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 4] = *b"EMRS";
/// Magic number near the end of a footer.
pub const FOOTER_MAGIC: [u8; 4] = *b"EMRI";
/// Version of the format; a reader refuses any other.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of a segment's header (magic number and version).
pub const SEGMENT_HEADER_BYTES: usize = 8;
/// Bytes of a block's header (and of the end marker).
pub const BLOCK_HEADER_BYTES: usize = 16;
/// Bytes of one partition's entry in the footer.
pub const FOOTER_ENTRY_BYTES: usize = 24;
/// Bytes of the footer after its entries.
pub const FOOTER_TRAILER_BYTES: usize = 16;
/// Raw bytes at which a block is closed. Big enough to amortise the per-block costs
/// (a header, a checksum, a compression call), small enough that a merge of
/// `merge_factor` segments keeps only a few megabytes of blocks in memory.
pub const TARGET_BLOCK_BYTES: usize = 64 * 1024;
/// Largest key plus value of one record. A larger record is refused with a permanent
/// error rather than risk running the worker out of memory.
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;
/// Largest raw or stored length of a block a reader accepts: one maximal record, its
/// length prefixes, and a block's worth of records before it.
pub const MAX_BLOCK_BYTES: usize = MAX_RECORD_BYTES + TARGET_BLOCK_BYTES + 64;
/// Bytes of a segment without records: its header and its end marker.
pub const EMPTY_SEGMENT_BYTES: u64 = (SEGMENT_HEADER_BYTES + BLOCK_HEADER_BYTES) as u64;

/// Returns the length of the footer of a file with `partitions` partitions.
pub fn footer_len(partitions: u32) -> u64 {
    partitions as u64 * FOOTER_ENTRY_BYTES as u64 + FOOTER_TRAILER_BYTES as u64
}

/// Where one partition's segment lies in a file, and how many records it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentEntry {
    /// Offset of the segment's first byte in the file.
    pub offset: u64,
    /// Bytes of the segment, header and end marker included.
    pub length: u64,
    /// Records in the segment.
    pub records: u64,
}

/// Why bytes could not be read as this format. Every variant names the segment (a file
/// and a partition, or an upstream task and a partition).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The bytes do not start with the magic number: not a map output at all.
    #[error("{segment}: bad magic number {found:02x?}")]
    BadMagic {
        /// The segment or file.
        segment: String,
        /// The four bytes found.
        found: [u8; 4],
    },
    /// Written by a format this reader does not know.
    #[error("{segment}: format version {found}, expected {FORMAT_VERSION}")]
    UnsupportedVersion {
        /// The segment or file.
        segment: String,
        /// The version found.
        found: u32,
    },
    /// The bytes end before the segment does.
    #[error("{segment}: truncated in block {block}")]
    Truncated {
        /// The segment.
        segment: String,
        /// Index of the block being read (the end marker counts as a block).
        block: u64,
    },
    /// A block's bytes do not match its checksum.
    #[error(
        "{segment}: checksum mismatch in block {block} (stored {stored:08x}, computed {computed:08x})"
    )]
    Checksum {
        /// The segment.
        segment: String,
        /// Index of the block.
        block: u64,
        /// The checksum written with the block.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The structure is wrong although the checksum (if any) matched.
    #[error("{segment}: malformed block {block}: {reason}")]
    Malformed {
        /// The segment.
        segment: String,
        /// Index of the block.
        block: u64,
        /// What is wrong.
        reason: String,
    },
    /// The footer is wrong.
    #[error("{segment}: malformed footer: {reason}")]
    BadFooter {
        /// The file.
        segment: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading the bytes failed.
    #[error("{segment}: read failed")]
    Io {
        /// The segment.
        segment: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Appends `value` as an LEB128 varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads an LEB128 varint at `*position`, advancing it; `None` when the bytes end first
/// or the varint is longer than ten bytes.
#[inline]
pub(crate) fn get_varint(bytes: &[u8], position: &mut usize) -> Option<u64> {
    // One-byte lengths are by far the most common: keys and values under 128 bytes.
    let first = *bytes.get(*position)?;
    if first < 0x80 {
        *position += 1;
        return Some(u64::from(first));
    }
    let mut value = 0u64;
    for shift in 0..10 {
        let byte = *bytes.get(*position)?;
        *position += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// Returns the CRC32 of a block: its first 12 header bytes, then its stored bytes.
pub(crate) fn block_crc(header: &[u8], stored: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..12]);
    hasher.update(stored);
    hasher.finalize()
}

/// The fields of a block header, before they are checked against the limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockHeader {
    pub stored_len: u32,
    pub raw_len: u32,
    pub records: u32,
    pub crc: u32,
}

impl BlockHeader {
    pub(crate) fn parse(bytes: &[u8; BLOCK_HEADER_BYTES]) -> Self {
        let word = |index: usize| {
            u32::from_le_bytes([
                bytes[4 * index],
                bytes[4 * index + 1],
                bytes[4 * index + 2],
                bytes[4 * index + 3],
            ])
        };
        Self {
            stored_len: word(0),
            raw_len: word(1),
            records: word(2),
            crc: word(3),
        }
    }

    pub(crate) fn encode(&self) -> [u8; BLOCK_HEADER_BYTES] {
        let mut bytes = [0u8; BLOCK_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&self.stored_len.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.raw_len.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.records.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.crc.to_le_bytes());
        bytes
    }

    /// True for the end marker.
    pub(crate) fn is_end(&self) -> bool {
        self.stored_len == 0 && self.raw_len == 0
    }

    /// Checks a data block's lengths against the limits, so that no reader allocates
    /// what the bytes cannot justify. LZ4 expands at most 255 times (a match-length
    /// byte of 255 adds 255 bytes).
    pub(crate) fn check_data_block(&self) -> Result<(), String> {
        let stored = self.stored_len as usize;
        let raw = self.raw_len as usize;
        if raw == 0 || stored == 0 {
            return Err("a data block with no bytes".into());
        }
        if self.records == 0 {
            return Err("a data block with no records".into());
        }
        if raw > MAX_BLOCK_BYTES {
            return Err(format!("raw length {raw} over the limit {MAX_BLOCK_BYTES}"));
        }
        if stored > raw {
            return Err(format!("stored length {stored} over raw length {raw}"));
        }
        if stored < raw && raw as u64 > stored as u64 * 255 + 64 {
            return Err(format!(
                "raw length {raw} impossible for {stored} compressed bytes"
            ));
        }
        if self.records as usize > raw / 2 {
            return Err(format!(
                "{} records cannot fit in {raw} bytes",
                self.records
            ));
        }
        Ok(())
    }
}

/// Reads the segment header in `bytes` (exactly [`SEGMENT_HEADER_BYTES`]).
pub(crate) fn check_segment_header(bytes: &[u8], segment: &str) -> Result<(), FormatError> {
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != SEGMENT_MAGIC {
        return Err(FormatError::BadMagic {
            segment: segment.to_string(),
            found: magic,
        });
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            segment: segment.to_string(),
            found: version,
        });
    }
    Ok(())
}

/// Encodes the footer of a file whose segments are `entries` (one per partition).
pub(crate) fn encode_footer(entries: &[SegmentEntry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(footer_len(entries.len() as u32) as usize);
    for entry in entries {
        bytes.extend_from_slice(&entry.offset.to_le_bytes());
        bytes.extend_from_slice(&entry.length.to_le_bytes());
        bytes.extend_from_slice(&entry.records.to_le_bytes());
    }
    bytes.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(&FOOTER_MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes
}

/// Decodes the footer `bytes` (the last [`footer_len`]`(partitions)` bytes of a file of
/// `file_len` bytes) into one entry per partition, checking that the segments tile the
/// file before the footer exactly.
pub fn decode_footer(
    bytes: &[u8],
    partitions: u32,
    file_len: u64,
    segment: &str,
) -> Result<Vec<SegmentEntry>, FormatError> {
    let bad = |reason: String| FormatError::BadFooter {
        segment: segment.to_string(),
        reason,
    };
    let expected_len = footer_len(partitions);
    if bytes.len() as u64 != expected_len {
        return Err(bad(format!(
            "{} bytes, expected {expected_len} for {partitions} partitions",
            bytes.len()
        )));
    }
    if file_len < expected_len {
        return Err(bad(format!(
            "file of {file_len} bytes is shorter than its footer"
        )));
    }
    let trailer = &bytes[bytes.len() - FOOTER_TRAILER_BYTES..];
    let read_u32 = |at: &[u8]| u32::from_le_bytes([at[0], at[1], at[2], at[3]]);
    if trailer[8..12] != FOOTER_MAGIC {
        return Err(FormatError::BadMagic {
            segment: format!("{segment} (footer)"),
            found: [trailer[8], trailer[9], trailer[10], trailer[11]],
        });
    }
    let version = read_u32(&trailer[12..16]);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            segment: format!("{segment} (footer)"),
            found: version,
        });
    }
    let stored_crc = read_u32(&trailer[4..8]);
    let covered = &bytes[..bytes.len() - 12];
    let computed_crc = crc32fast::hash(covered);
    if stored_crc != computed_crc {
        return Err(bad(format!(
            "checksum mismatch (stored {stored_crc:08x}, computed {computed_crc:08x})"
        )));
    }
    let found_partitions = read_u32(&trailer[0..4]);
    if found_partitions != partitions {
        return Err(bad(format!(
            "{found_partitions} partitions, expected {partitions}"
        )));
    }
    let data_len = file_len - expected_len;
    let read_u64 = |at: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&at[..8]);
        u64::from_le_bytes(word)
    };
    let mut entries = Vec::with_capacity(partitions as usize);
    let mut next_offset = 0u64;
    for (partition, raw) in bytes[..partitions as usize * FOOTER_ENTRY_BYTES]
        .chunks_exact(FOOTER_ENTRY_BYTES)
        .enumerate()
    {
        let entry = SegmentEntry {
            offset: read_u64(&raw[0..8]),
            length: read_u64(&raw[8..16]),
            records: read_u64(&raw[16..24]),
        };
        if entry.offset != next_offset || entry.length < EMPTY_SEGMENT_BYTES {
            return Err(bad(format!(
                "partition {partition} at offset {} length {} does not follow the previous one (at {next_offset})",
                entry.offset, entry.length
            )));
        }
        next_offset = entry
            .offset
            .checked_add(entry.length)
            .filter(|end| *end <= data_len)
            .ok_or_else(|| bad(format!("partition {partition} ends past the footer")))?;
        entries.push(entry);
    }
    if next_offset != data_len {
        return Err(bad(format!(
            "segments end at {next_offset} but the footer starts at {data_len}"
        )));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
