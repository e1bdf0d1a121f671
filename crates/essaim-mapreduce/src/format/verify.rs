//! Checking a segment as it streams in, without decompressing it: the shuffle runs this
//! on every chunk it downloads, so a corrupt or truncated map output is blamed on its
//! upstream task while the download is still attributable to it.

use super::{
    BLOCK_HEADER_BYTES, BlockHeader, FormatError, SEGMENT_HEADER_BYTES, check_segment_header,
};

/// A push parser that checks a segment's structure and every block's checksum, in
/// constant memory, from chunks of any size.
pub struct SegmentVerifier {
    segment: String,
    state: VerifierState,
    /// The header being assembled (segment header or block header).
    pending: [u8; BLOCK_HEADER_BYTES],
    pending_len: usize,
    expected_crc: u32,
    payload_left: usize,
    hasher: crc32fast::Hasher,
    block_records: u32,
    blocks: u64,
    records: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerifierState {
    SegmentHeader,
    BlockHeader,
    Payload,
    Done,
}

impl SegmentVerifier {
    /// Returns a verifier; `segment` names the segment in errors.
    pub fn new(segment: String) -> Self {
        Self {
            segment,
            state: VerifierState::SegmentHeader,
            pending: [0; BLOCK_HEADER_BYTES],
            pending_len: 0,
            expected_crc: 0,
            payload_left: 0,
            hasher: crc32fast::Hasher::new(),
            block_records: 0,
            blocks: 0,
            records: 0,
        }
    }

    /// Checks the next bytes of the segment.
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<(), FormatError> {
        while !bytes.is_empty() {
            match self.state {
                VerifierState::SegmentHeader | VerifierState::BlockHeader => {
                    let wanted = if self.state == VerifierState::SegmentHeader {
                        SEGMENT_HEADER_BYTES
                    } else {
                        BLOCK_HEADER_BYTES
                    };
                    let take = (wanted - self.pending_len).min(bytes.len());
                    self.pending[self.pending_len..self.pending_len + take]
                        .copy_from_slice(&bytes[..take]);
                    self.pending_len += take;
                    bytes = &bytes[take..];
                    if self.pending_len == wanted {
                        self.pending_len = 0;
                        self.header_complete()?;
                    }
                }
                VerifierState::Payload => {
                    let take = self.payload_left.min(bytes.len());
                    self.hasher.update(&bytes[..take]);
                    self.payload_left -= take;
                    bytes = &bytes[take..];
                    if self.payload_left == 0 {
                        self.payload_complete()?;
                    }
                }
                VerifierState::Done => {
                    return Err(FormatError::Malformed {
                        segment: self.segment.clone(),
                        block: self.blocks,
                        reason: "bytes after the end marker".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Returns the number of records of the segment once it is complete, or why it is
    /// not.
    pub fn finish(&self) -> Result<u64, FormatError> {
        if self.state != VerifierState::Done {
            return Err(FormatError::Truncated {
                segment: self.segment.clone(),
                block: self.blocks,
            });
        }
        Ok(self.records)
    }

    fn header_complete(&mut self) -> Result<(), FormatError> {
        if self.state == VerifierState::SegmentHeader {
            check_segment_header(&self.pending[..SEGMENT_HEADER_BYTES], &self.segment)?;
            self.state = VerifierState::BlockHeader;
            return Ok(());
        }
        let header = BlockHeader::parse(&self.pending);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.pending[..12]);
        if header.is_end() {
            let computed = hasher.finalize();
            if computed != header.crc {
                return Err(self.checksum_error(header.crc, computed));
            }
            if u64::from(header.records) != self.blocks {
                return Err(FormatError::Malformed {
                    segment: self.segment.clone(),
                    block: self.blocks,
                    reason: format!(
                        "end marker counts {} blocks, {} were read",
                        header.records, self.blocks
                    ),
                });
            }
            self.state = VerifierState::Done;
            return Ok(());
        }
        if let Err(reason) = header.check_data_block() {
            return Err(FormatError::Malformed {
                segment: self.segment.clone(),
                block: self.blocks,
                reason,
            });
        }
        self.hasher = hasher;
        self.expected_crc = header.crc;
        self.payload_left = header.stored_len as usize;
        self.block_records = header.records;
        self.state = VerifierState::Payload;
        Ok(())
    }

    fn payload_complete(&mut self) -> Result<(), FormatError> {
        let computed = std::mem::take(&mut self.hasher).finalize();
        if computed != self.expected_crc {
            return Err(self.checksum_error(self.expected_crc, computed));
        }
        self.records += u64::from(self.block_records);
        self.blocks += 1;
        self.state = VerifierState::BlockHeader;
        Ok(())
    }

    fn checksum_error(&self, stored: u32, computed: u32) -> FormatError {
        FormatError::Checksum {
            segment: self.segment.clone(),
            block: self.blocks,
            stored,
            computed,
        }
    }
}
