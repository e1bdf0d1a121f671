//! Reading the lines of an input split, as Hadoop's `LineRecordReader` does: a split
//! owns every line that *starts* in `[start, start + length)`.
//!
//! So a reader whose split does not start at byte 0 skips the partial line it starts
//! in (everything up to and including the first `\n` at or after `start - 1`), and every
//! reader reads past its end to finish its last line. Each line of a file is therefore
//! read by exactly one of the splits that tile it, whatever the cut points.
//!
//! Lines end at `\n`; a final line without one still counts; a `\r` before the `\n` is
//! kept (the mapper decides); bytes are not checked for UTF-8. The reader fills a large
//! buffer with big reads and finds line ends with `memchr`, so its cost is close to a
//! memory copy. A line longer than the buffer grows it, up to [`MAX_LINE_BYTES`].
//!
//! A compressed input (`.gz`, `.zst`, `.bz2`, or their magic numbers: see
//! [`essaim_storage::codec`]) is one split: the split starting at byte 0 reads every
//! decoded line to the end whatever its length says, offsets count decoded bytes, and
//! a split starting anywhere else owns nothing.
//!
//! The bytes come from [`essaim_storage::InputReader`]: a local file, or an object
//! (`s3://bucket/key`) read with one streamed GET from the split's first byte to the end
//! of the object, dropped once the split's last line is read.

use std::path::{Path, PathBuf};

use essaim_storage::{InputReader, Location, S3Options};

use crate::error::{TaskError, TaskResult};

/// Bytes read from the input file at once.
pub const READ_BUFFER_BYTES: usize = 1024 * 1024;
/// Longest line accepted: longer ones fail the task for good, rather than exhaust the
/// worker's memory on a file that is not line-oriented.
pub const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// The lines of one split, in file order.
#[derive(Debug)]
pub struct LineSplitReader {
    input: InputReader,
    path: PathBuf,
    buffer: Vec<u8>,
    /// Start of the unread bytes in `buffer`.
    cursor: usize,
    /// End of the valid bytes in `buffer`.
    filled: usize,
    /// File offset of the next line to return.
    next_line_offset: u64,
    /// File offset of the split's first line.
    first_line_offset: u64,
    /// First offset past the split: a line starting there belongs to the next split.
    split_end: u64,
    end_of_file: bool,
    max_line_bytes: usize,
}

impl LineSplitReader {
    /// Opens the split `[start, start + length)` of `path`.
    pub fn open(path: &Path, start: u64, length: u64) -> TaskResult<Self> {
        Self::with_buffer(path, start, length, READ_BUFFER_BYTES, MAX_LINE_BYTES)
    }

    /// Opens a split with a given initial buffer size and line limit (tests use tiny
    /// buffers to exercise lines that cross reads).
    pub fn with_buffer(
        path: &Path,
        start: u64,
        length: u64,
        buffer_bytes: usize,
        max_line_bytes: usize,
    ) -> TaskResult<Self> {
        let buffer = vec![0; buffer_bytes.max(1)];
        Self::reusing(
            path,
            start,
            length,
            buffer,
            max_line_bytes,
            &S3Options::default(),
        )
    }

    /// Opens a split of `path` (a local path or an `s3://` URL, reached with
    /// `storage`), reading through `buffer` (from [`LineSplitReader::into_buffer`] of
    /// the previous piece of a packed split: one allocation per task, not per file).
    pub fn open_reusing(
        path: &Path,
        start: u64,
        length: u64,
        buffer: Vec<u8>,
        storage: &S3Options,
    ) -> TaskResult<Self> {
        let buffer = if buffer.is_empty() {
            vec![0; READ_BUFFER_BYTES]
        } else {
            buffer
        };
        Self::reusing(path, start, length, buffer, MAX_LINE_BYTES, storage)
    }

    /// Returns the read buffer, for the next piece.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buffer
    }

    fn reusing(
        path: &Path,
        start: u64,
        length: u64,
        buffer: Vec<u8>,
        max_line_bytes: usize,
        storage: &S3Options,
    ) -> TaskResult<Self> {
        // Skipping the partial first line means starting after the first `\n` found at
        // or after `start - 1`: if byte `start - 1` is a `\n`, a line starts exactly at
        // `start` and is ours.
        let read_from = start.saturating_sub(1);
        let input = InputReader::open(&Location::from_path(path), read_from, storage)?;
        let split_end = match input.codec() {
            // A compressed file is one split, whose length counts compressed bytes.
            Some(_) if start == 0 => u64::MAX,
            _ => start.saturating_add(length),
        };
        let mut reader = Self {
            input,
            path: path.to_path_buf(),
            buffer,
            cursor: 0,
            filled: 0,
            next_line_offset: read_from,
            first_line_offset: read_from,
            split_end,
            end_of_file: false,
            max_line_bytes,
        };
        if start > 0 {
            reader.skip_partial_line()?;
        }
        reader.first_line_offset = reader.next_line_offset;
        Ok(reader)
    }

    /// Returns the path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the bytes of the lines returned so far, terminators included.
    pub fn bytes_read(&self) -> u64 {
        self.next_line_offset - self.first_line_offset
    }

    /// Discards bytes up to and including the first `\n`.
    fn skip_partial_line(&mut self) -> TaskResult<()> {
        loop {
            let unread = &self.buffer[self.cursor..self.filled];
            if let Some(newline) = memchr::memchr(b'\n', unread) {
                self.cursor += newline + 1;
                self.next_line_offset += newline as u64 + 1;
                return Ok(());
            }
            self.next_line_offset += unread.len() as u64;
            self.cursor = 0;
            self.filled = 0;
            if self.end_of_file || self.fill()? == 0 {
                return Ok(());
            }
        }
    }

    /// Reads more bytes after the valid ones; returns how many (0 at the end).
    fn fill(&mut self) -> TaskResult<usize> {
        let read = self.input.read_decoded(&mut self.buffer[self.filled..])?;
        if read == 0 {
            self.end_of_file = true;
        }
        self.filled += read;
        Ok(read)
    }

    /// Returns the next line of the split and its offset in the file, without its `\n`,
    /// or `None` after the split's last line.
    ///
    /// The line borrows the reader's buffer until the next call.
    #[inline]
    pub fn next_line(&mut self) -> TaskResult<Option<(u64, &[u8])>> {
        if self.next_line_offset >= self.split_end {
            return Ok(None);
        }
        // Bytes in `cursor..searched` are known to hold no `\n`.
        let mut searched = self.cursor;
        loop {
            if let Some(found) = memchr::memchr(b'\n', &self.buffer[searched..self.filled]) {
                let newline = searched + found;
                let start = self.cursor;
                let offset = self.next_line_offset;
                self.cursor = newline + 1;
                self.next_line_offset += (newline + 1 - start) as u64;
                return Ok(Some((offset, &self.buffer[start..newline])));
            }
            if self.end_of_file {
                if self.cursor == self.filled {
                    return Ok(None);
                }
                // The file's last line, without a `\n`.
                let start = self.cursor;
                let offset = self.next_line_offset;
                self.cursor = self.filled;
                self.next_line_offset += (self.filled - start) as u64;
                return Ok(Some((offset, &self.buffer[start..self.filled])));
            }
            self.make_room()?;
            searched = self.filled;
            self.fill()?;
        }
    }

    /// Moves the unread bytes to the front of the buffer, and grows the buffer when they
    /// fill it (one line longer than the buffer).
    #[cold]
    fn make_room(&mut self) -> TaskResult<()> {
        if self.cursor > 0 {
            self.buffer.copy_within(self.cursor..self.filled, 0);
            self.filled -= self.cursor;
            self.cursor = 0;
        }
        if self.filled == self.buffer.len() {
            if self.buffer.len() >= self.max_line_bytes {
                return Err(TaskError::LineTooLong {
                    path: self.path.clone(),
                    offset: self.next_line_offset,
                    limit: self.max_line_bytes,
                });
            }
            let grown = (self.buffer.len() * 2).min(self.max_line_bytes);
            self.buffer.resize(grown, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::rng::SeededRng;

    /// The oracle: every line with its offset, split the obvious way.
    fn naive_lines(content: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut lines = Vec::new();
        let mut start = 0;
        while start < content.len() {
            let end = content[start..]
                .iter()
                .position(|byte| *byte == b'\n')
                .map_or(content.len(), |found| start + found);
            lines.push((start as u64, content[start..end].to_vec()));
            start = end + 1;
        }
        lines
    }

    fn read_split(
        path: &Path,
        start: u64,
        length: u64,
        buffer_bytes: usize,
    ) -> Vec<(u64, Vec<u8>)> {
        let mut reader =
            LineSplitReader::with_buffer(path, start, length, buffer_bytes, 1 << 20).unwrap();
        let mut lines = Vec::new();
        while let Some((offset, line)) = reader.next_line().unwrap() {
            lines.push((offset, line.to_vec()));
        }
        lines
    }

    #[test]
    fn splits_of_random_files_read_every_line_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        for seed in 0..300 {
            let mut rng = SeededRng::new(seed);
            // Many short lines, empty lines, CRLF, sometimes a very long line, and
            // sometimes no final newline.
            let mut content = Vec::new();
            for _ in 0..rng.below(40) {
                let len = if rng.below(15) == 0 {
                    rng.below(300)
                } else {
                    rng.below(12)
                };
                content.extend(rng.bytes(len as usize, b"ab \t\r\xff"));
                content.extend_from_slice(if rng.below(4) == 0 { b"\r\n" } else { b"\n" });
            }
            if rng.below(2) == 0 {
                let len = rng.below(20) as usize;
                content.extend(rng.bytes(len, b"xyz"));
            }
            std::fs::write(&path, &content).unwrap();
            let split_size = 1 + rng.below(content.len() as u64 + 10);
            let buffer_bytes = 1 + rng.below(64) as usize;
            let mut lines = Vec::new();
            let mut start = 0;
            // Splits tile the file; the last may extend past its end.
            loop {
                lines.extend(read_split(&path, start, split_size, buffer_bytes));
                start += split_size;
                if start >= content.len() as u64 {
                    break;
                }
            }
            assert_eq!(
                lines,
                naive_lines(&content),
                "seed {seed}, split size {split_size}, buffer {buffer_bytes}"
            );
        }
    }

    #[test]
    fn an_empty_file_has_no_lines_and_a_lone_newline_one_empty_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        std::fs::write(&path, b"").unwrap();
        assert!(read_split(&path, 0, 100, 16).is_empty());
        std::fs::write(&path, b"\n").unwrap();
        assert_eq!(read_split(&path, 0, 1, 16), vec![(0, Vec::new())]);
        assert!(read_split(&path, 1, 1, 16).is_empty());
    }

    #[test]
    fn a_line_starting_exactly_at_the_split_start_belongs_to_the_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        std::fs::write(&path, b"abc\ndef\nghi").unwrap();
        assert_eq!(read_split(&path, 0, 4, 4), vec![(0, b"abc".to_vec())]);
        assert_eq!(
            read_split(&path, 4, 1, 4),
            vec![(4, b"def".to_vec())],
            "the split owns the line starting at its first byte, and finishes it"
        );
        assert_eq!(read_split(&path, 5, 100, 4), vec![(8, b"ghi".to_vec())]);
    }

    #[test]
    fn a_compressed_file_is_one_split_read_whole_from_byte_zero() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..3_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for codec in essaim_storage::Codec::ALL {
            let path = dir.path().join(format!("input{}", codec.extension()));
            let mut encoder = codec.encoder(Vec::new()).unwrap();
            encoder.write_all(&content).unwrap();
            let compressed = encoder.finish().unwrap();
            std::fs::write(&path, &compressed).unwrap();
            // The length counts compressed bytes, far fewer than the decoded ones.
            let length = compressed.len() as u64;
            assert_eq!(
                read_split(&path, 0, length, 64),
                naive_lines(&content),
                "{codec}"
            );
            assert!(read_split(&path, 10, length, 64).is_empty(), "{codec}");
        }
    }

    #[test]
    fn a_corrupt_compressed_file_fails_for_good_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.gz");
        std::fs::write(&path, b"\x1f\x8b this is not deflate").unwrap();
        let mut reader = LineSplitReader::open(&path, 0, 30).unwrap();
        let error = reader.next_line().unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains("broken.gz"), "{error}");
    }

    #[test]
    fn a_line_over_the_limit_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        std::fs::write(&path, vec![b'x'; 1000]).unwrap();
        let mut reader = LineSplitReader::with_buffer(&path, 0, 1000, 16, 256).unwrap();
        let error = reader.next_line().unwrap_err();
        assert!(
            matches!(error, TaskError::LineTooLong { offset: 0, .. }),
            "{error}"
        );
        assert!(!error.is_retryable());
    }
}
