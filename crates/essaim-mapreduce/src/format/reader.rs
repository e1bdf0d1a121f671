//! Reading one segment back, record by record, checking every block.

use std::io::{self, Read};

use super::{
    BLOCK_HEADER_BYTES, BlockHeader, FormatError, SEGMENT_HEADER_BYTES, block_crc,
    check_segment_header, get_varint,
};

/// A cursor over the records of one segment. Reads one block at a time, so its memory
/// is about two blocks whatever the segment's size; every block's checksum is checked
/// before any of its records is returned, and the end marker must be there, followed by
/// nothing.
pub struct SegmentReader<R: Read> {
    input: R,
    segment: String,
    /// The block as read (compressed or not).
    stored: Vec<u8>,
    /// The block's raw records.
    block: Vec<u8>,
    /// Where the next record starts in `block`.
    position: usize,
    records_left_in_block: u32,
    blocks_read: u64,
    records_read: u64,
    finished: bool,
    key_start: usize,
    value_start: usize,
    value_end: usize,
}

impl<R: Read> SegmentReader<R> {
    /// Reads the segment header from `input`; `segment` names the segment in errors.
    pub fn new(mut input: R, segment: String) -> Result<Self, FormatError> {
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        let read = read_full(&mut input, &mut header).map_err(|source| FormatError::Io {
            segment: segment.clone(),
            source,
        })?;
        if read < header.len() {
            return Err(FormatError::Truncated { segment, block: 0 });
        }
        check_segment_header(&header, &segment)?;
        Ok(Self {
            input,
            segment,
            stored: Vec::new(),
            block: Vec::new(),
            position: 0,
            records_left_in_block: 0,
            blocks_read: 0,
            records_read: 0,
            finished: false,
            key_start: 0,
            value_start: 0,
            value_end: 0,
        })
    }

    /// Moves to the next record; returns false after the last one (the end marker was
    /// read and checked).
    #[inline]
    pub fn advance(&mut self) -> Result<bool, FormatError> {
        while self.records_left_in_block == 0 {
            if self.finished {
                return Ok(false);
            }
            self.load_block()?;
        }
        let block = &self.block;
        let mut position = self.position;
        let lengths = get_varint(block, &mut position).zip(get_varint(block, &mut position));
        let Some((key_len, value_len)) = lengths else {
            return Err(self.malformed("record lengths cut short"));
        };
        let key_end = (position as u64).checked_add(key_len);
        let value_end = key_end.and_then(|end| end.checked_add(value_len));
        let Some(value_end) = value_end.filter(|end| *end <= block.len() as u64) else {
            return Err(self.malformed("record longer than its block"));
        };
        self.key_start = position;
        self.value_start = position + key_len as usize;
        self.value_end = value_end as usize;
        self.position = self.value_end;
        self.records_left_in_block -= 1;
        self.records_read += 1;
        if self.records_left_in_block == 0 && self.position != self.block.len() {
            return Err(self.malformed("bytes after the last record of the block"));
        }
        Ok(true)
    }

    /// Returns the key of the current record.
    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.block[self.key_start..self.value_start]
    }

    /// Returns the value of the current record.
    #[inline]
    pub fn value(&self) -> &[u8] {
        &self.block[self.value_start..self.value_end]
    }

    /// Returns how many records [`SegmentReader::advance`] has returned.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// Returns the name used in errors.
    pub fn segment(&self) -> &str {
        &self.segment
    }

    fn malformed(&self, reason: &str) -> FormatError {
        FormatError::Malformed {
            segment: self.segment.clone(),
            block: self.blocks_read.saturating_sub(1),
            reason: reason.to_string(),
        }
    }

    /// Refuses a block whose checksum is not the one stored in its header.
    fn check_crc(&self, block: u64, stored: u32, computed: u32) -> Result<(), FormatError> {
        if computed == stored {
            return Ok(());
        }
        Err(FormatError::Checksum {
            segment: self.segment.clone(),
            block,
            stored,
            computed,
        })
    }

    fn io_error(&self, source: io::Error) -> FormatError {
        FormatError::Io {
            segment: self.segment.clone(),
            source,
        }
    }

    /// Reads, checks and decompresses the next block, or reads the end marker.
    fn load_block(&mut self) -> Result<(), FormatError> {
        let block_index = self.blocks_read;
        let truncated = |segment: &str| FormatError::Truncated {
            segment: segment.to_string(),
            block: block_index,
        };
        let mut header_bytes = [0u8; BLOCK_HEADER_BYTES];
        let read = read_full(&mut self.input, &mut header_bytes)
            .map_err(|source| self.io_error(source))?;
        if read < header_bytes.len() {
            return Err(truncated(&self.segment));
        }
        let header = BlockHeader::parse(&header_bytes);
        if header.is_end() {
            self.check_crc(block_index, header.crc, block_crc(&header_bytes, &[]))?;
            if u64::from(header.records) != self.blocks_read {
                return Err(FormatError::Malformed {
                    segment: self.segment.clone(),
                    block: block_index,
                    reason: format!(
                        "end marker counts {} blocks, {} were read",
                        header.records, self.blocks_read
                    ),
                });
            }
            let mut extra = [0u8; 1];
            let trailing =
                read_full(&mut self.input, &mut extra).map_err(|source| self.io_error(source))?;
            if trailing > 0 {
                return Err(FormatError::Malformed {
                    segment: self.segment.clone(),
                    block: block_index,
                    reason: "bytes after the end marker".into(),
                });
            }
            self.finished = true;
            return Ok(());
        }
        if let Err(reason) = header.check_data_block() {
            return Err(FormatError::Malformed {
                segment: self.segment.clone(),
                block: block_index,
                reason,
            });
        }
        // `take` + `read_to_end` grows the buffer as bytes arrive: a lying length in a
        // short input costs what the input holds, not what the header claims.
        self.stored.clear();
        let stored_len = header.stored_len as usize;
        (&mut self.input)
            .take(stored_len as u64)
            .read_to_end(&mut self.stored)
            .map_err(|source| self.io_error(source))?;
        if self.stored.len() < stored_len {
            return Err(truncated(&self.segment));
        }
        self.check_crc(
            block_index,
            header.crc,
            block_crc(&header_bytes, &self.stored),
        )?;
        let raw_len = header.raw_len as usize;
        if stored_len == raw_len {
            std::mem::swap(&mut self.stored, &mut self.block);
        } else {
            self.block.resize(raw_len, 0);
            let decompressed = lz4_flex::block::decompress_into(&self.stored, &mut self.block);
            if decompressed.ok() != Some(raw_len) {
                return Err(FormatError::Malformed {
                    segment: self.segment.clone(),
                    block: block_index,
                    reason: "lz4 data does not decompress to the raw length".into(),
                });
            }
        }
        self.position = 0;
        self.records_left_in_block = header.records;
        self.blocks_read += 1;
        Ok(())
    }
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
