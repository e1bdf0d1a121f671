//! Writing a file of segments: records go in, sorted by partition, and come out as
//! checksummed, compressed blocks plus a footer.

use std::io::{self, Write};

use super::{
    BLOCK_HEADER_BYTES, BlockHeader, FORMAT_VERSION, MAX_RECORD_BYTES, SEGMENT_MAGIC, SegmentEntry,
    TARGET_BLOCK_BYTES, block_crc, encode_footer, put_varint,
};

/// Writes a spill file or a map output: one segment per partition, in partition order,
/// then the footer. Records must arrive by non-decreasing partition (the writer opens
/// the segments of partitions that got no record, so every partition has one); within
/// a partition the writer keeps their order.
pub struct MapOutputWriter<W: Write> {
    output: W,
    /// Bytes written to `output` so far.
    position: u64,
    partitions: u32,
    /// Closed segments, one per partition before `open.partition`.
    entries: Vec<SegmentEntry>,
    open: OpenSegment,
    /// Raw bytes of the block being filled.
    raw: Vec<u8>,
    /// Scratch space for the compressed block, reused.
    compressed: Vec<u8>,
    block_records: u32,
}

/// The segment being written.
struct OpenSegment {
    /// `None` until the first segment is opened.
    partition: Option<u32>,
    offset: u64,
    records: u64,
    blocks: u32,
}

impl<W: Write> MapOutputWriter<W> {
    /// Returns a writer of a file with `partitions` partitions (≥ 1).
    pub fn new(output: W, partitions: u32) -> Self {
        debug_assert!(partitions >= 1, "a file has at least one partition");
        Self {
            output,
            position: 0,
            partitions,
            entries: Vec::with_capacity(partitions as usize),
            open: OpenSegment {
                partition: None,
                offset: 0,
                records: 0,
                blocks: 0,
            },
            raw: Vec::with_capacity(TARGET_BLOCK_BYTES + 1024),
            compressed: Vec::new(),
            block_records: 0,
        }
    }

    /// Appends one record to the segment of `partition`.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] when the partition goes backwards or is
    /// out of range, or the record is larger than [`MAX_RECORD_BYTES`].
    #[inline]
    pub fn write_record(&mut self, partition: u32, key: &[u8], value: &[u8]) -> io::Result<()> {
        if self.open.partition != Some(partition) {
            self.open_partition(partition)?;
        }
        if key.len() + value.len() > MAX_RECORD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "record of {} bytes over the limit of {MAX_RECORD_BYTES}",
                    key.len() + value.len()
                ),
            ));
        }
        put_varint(&mut self.raw, key.len() as u64);
        put_varint(&mut self.raw, value.len() as u64);
        self.raw.extend_from_slice(key);
        self.raw.extend_from_slice(value);
        self.block_records += 1;
        self.open.records += 1;
        if self.raw.len() >= TARGET_BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Closes every segment (opening those of partitions without records), writes the
    /// footer, and returns the output, the entries, and the file's length.
    pub fn finish(mut self) -> io::Result<(W, Vec<SegmentEntry>, u64)> {
        let last = self.partitions - 1;
        if self.open.partition != Some(last) {
            self.open_partition(last)?;
        }
        self.close_segment()?;
        let footer = encode_footer(&self.entries);
        self.output.write_all(&footer)?;
        self.position += footer.len() as u64;
        self.output.flush()?;
        Ok((self.output, self.entries, self.position))
    }

    /// Closes the open segment and opens those up to `partition`.
    #[cold]
    fn open_partition(&mut self, partition: u32) -> io::Result<()> {
        let goes_backwards = self.open.partition.is_some_and(|open| partition < open);
        if goes_backwards || partition >= self.partitions {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "partition {partition} after {:?} in a file of {} partitions",
                    self.open.partition, self.partitions
                ),
            ));
        }
        loop {
            let next = match self.open.partition {
                None => 0,
                Some(open) => {
                    self.close_segment()?;
                    open + 1
                }
            };
            self.open = OpenSegment {
                partition: Some(next),
                offset: self.position,
                records: 0,
                blocks: 0,
            };
            let mut header = [0u8; 8];
            header[..4].copy_from_slice(&SEGMENT_MAGIC);
            header[4..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            self.write_all(&header)?;
            if next == partition {
                return Ok(());
            }
        }
    }

    /// Flushes the last block and writes the end marker of the open segment.
    fn close_segment(&mut self) -> io::Result<()> {
        if !self.raw.is_empty() {
            self.flush_block()?;
        }
        let mut end = BlockHeader {
            stored_len: 0,
            raw_len: 0,
            records: self.open.blocks,
            crc: 0,
        }
        .encode();
        let crc = block_crc(&end, &[]);
        end[12..16].copy_from_slice(&crc.to_le_bytes());
        self.write_all(&end)?;
        self.entries.push(SegmentEntry {
            offset: self.open.offset,
            length: self.position - self.open.offset,
            records: self.open.records,
        });
        Ok(())
    }

    /// Compresses (when that saves bytes), checksums and writes the block being filled.
    fn flush_block(&mut self) -> io::Result<()> {
        let raw_len = self.raw.len();
        let bound = lz4_flex::block::get_maximum_output_size(raw_len);
        if self.compressed.len() < bound {
            self.compressed.resize(bound, 0);
        }
        let compressed_len = lz4_flex::block::compress_into(&self.raw, &mut self.compressed)
            .map_err(|error| io::Error::other(format!("lz4 compression failed: {error}")))?;
        let stored: &[u8] = if compressed_len < raw_len {
            &self.compressed[..compressed_len]
        } else {
            &self.raw
        };
        let mut header = BlockHeader {
            stored_len: stored.len() as u32,
            raw_len: raw_len as u32,
            records: self.block_records,
            crc: 0,
        }
        .encode();
        let crc = block_crc(&header, stored);
        header[12..16].copy_from_slice(&crc.to_le_bytes());
        self.output.write_all(&header)?;
        self.output.write_all(stored)?;
        self.position += (BLOCK_HEADER_BYTES + stored.len()) as u64;
        self.raw.clear();
        self.block_records = 0;
        self.open.blocks += 1;
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.output.write_all(bytes)?;
        self.position += bytes.len() as u64;
        Ok(())
    }
}
