//! Opening an input file for reading from a byte offset, decoded when it is compressed.
//!
//! The split reader of MapReduce jobs reads every input through [`InputReader`], so a
//! compressed file is decoded in one place and a decoding error is told apart from an
//! I/O error: the source's own errors are tagged on the way into the decoder, and any
//! other error the decoder returns is about the bytes ([`StorageError::Corrupt`],
//! permanent), not the disk ([`StorageError::Io`], retryable).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::codec::{Codec, SNIFF_BYTES};
use crate::error::StorageError;
use crate::location::Location;
use crate::object::S3Options;

/// The decoded bytes of one input, from the offset it was opened at.
pub struct InputReader {
    reader: Box<dyn Read + Send>,
    codec: Option<Codec>,
    location: String,
}

impl std::fmt::Debug for InputReader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("InputReader")
            .field("location", &self.location)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl InputReader {
    /// Opens `location` at byte `start`: a local file, or an object read from `start`
    /// to its end with one ranged GET (streamed: a split stops reading after its last
    /// line, and dropping the reader ends the request).
    pub fn open(
        location: &Location,
        start: u64,
        options: &S3Options,
    ) -> Result<Self, StorageError> {
        match location {
            Location::Local(path) => Self::open_local(path, start),
            Location::S3 { bucket, key } => {
                let by_name = Codec::from_file_name(location.file_name());
                let (raw, codec) = match by_name {
                    // A compressed object's one split starts at 0: any other owns nothing.
                    Some(codec) if start > 0 => {
                        let nothing: Box<dyn Read + Send> = Box::new(std::io::empty());
                        return Ok(Self::new(nothing, Some(codec), start, location.to_string()));
                    }
                    Some(codec) => (
                        crate::object_read::open(bucket, key, 0, options)?,
                        Some(codec),
                    ),
                    None if start == 0 => {
                        let raw = crate::object_read::open(bucket, key, 0, options)?;
                        let codec = Codec::sniff(raw.peek());
                        (raw, codec)
                    }
                    None => {
                        let head =
                            crate::object::get_range(bucket, key, 0..SNIFF_BYTES as u64, options)?;
                        let codec = Codec::sniff(&head);
                        let from = if codec.is_some() { 0 } else { start };
                        (crate::object_read::open(bucket, key, from, options)?, codec)
                    }
                };
                Ok(Self::new(Box::new(raw), codec, start, location.to_string()))
            }
        }
    }

    /// Opens the local file `path` at byte `start`. A compressed file (see
    /// [`crate::codec`]) is decoded from its first byte when `start` is 0; opened at
    /// any other offset it reads as empty, since its one split starts at 0.
    pub fn open_local(path: &Path, start: u64) -> Result<Self, StorageError> {
        let location = path.display().to_string();
        let io = |action, source| StorageError::Io {
            action,
            location: location.clone(),
            source,
        };
        let mut file = File::open(path).map_err(|source| io("open", source))?;
        let head = read_head(&mut file).map_err(|source| io("read", source))?;
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        let codec = Codec::detect(name, &head);
        file.seek(SeekFrom::Start(if codec.is_some() { 0 } else { start }))
            .map_err(|source| io("seek in", source))?;
        Ok(Self::new(Box::new(file), codec, start, location))
    }

    /// Wraps the raw bytes of an input read from `start` (from 0 when `codec` is set).
    pub fn new(
        raw: Box<dyn Read + Send>,
        codec: Option<Codec>,
        start: u64,
        location: String,
    ) -> Self {
        let reader: Box<dyn Read + Send> = match codec {
            None => raw,
            Some(_) if start > 0 => Box::new(std::io::empty()),
            Some(codec) => codec.decoder(TaggedSource(raw)),
        };
        Self {
            reader,
            codec,
            location,
        }
    }

    /// Returns the codec the input is decoded with, `None` for plain bytes. Offsets in
    /// a compressed input count decoded bytes, and its split is the whole input.
    pub fn codec(&self) -> Option<Codec> {
        self.codec
    }

    /// Returns the file or object, as users name it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Reads decoded bytes into `buffer`; returns how many, 0 at the end.
    pub fn read_decoded(&mut self, buffer: &mut [u8]) -> Result<usize, StorageError> {
        loop {
            match self.reader.read(buffer) {
                Ok(read) => return Ok(read),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.classify(error)),
            }
        }
    }

    /// Tells a source failure (tagged by [`TaggedSource`]) from a decoding one.
    fn classify(&self, error: std::io::Error) -> StorageError {
        let location = self.location.clone();
        let from_source = error
            .get_ref()
            .is_some_and(|inner| inner.is::<SourceFailed>());
        match self.codec {
            Some(codec) if !from_source => StorageError::Corrupt {
                location,
                codec,
                source: error,
            },
            _ => StorageError::Io {
                action: "read",
                location,
                source: untag(error),
            },
        }
    }
}

/// Returns the codec of the local file `path` by its name, or, when `sniff` is set
/// and the name says nothing, by its first bytes (the planner sniffs only files large
/// enough to be cut: a smaller one is one split anyway).
pub fn local_codec(path: &Path, sniff: bool) -> Result<Option<Codec>, StorageError> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    if let Some(codec) = Codec::from_file_name(name) {
        return Ok(Some(codec));
    }
    if !sniff {
        return Ok(None);
    }
    let io = |action, source| StorageError::Io {
        action,
        location: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(|source| io("open", source))?;
    let head = read_head(&mut file).map_err(|source| io("read", source))?;
    Ok(Codec::sniff(&head))
}

/// Returns the size in bytes of the file or object at `location`, as stored (compressed
/// bytes for a compressed input): a local file's metadata, or an object's HEAD.
pub fn stored_size(location: &Location, options: &S3Options) -> Result<u64, StorageError> {
    match location {
        Location::Local(path) => std::fs::metadata(path)
            .map(|metadata| metadata.len())
            .map_err(|source| StorageError::Io {
                action: "read the size of",
                location: path.display().to_string(),
                source,
            }),
        Location::S3 { bucket, key } => crate::object::object_size(bucket, key, options),
    }
}

/// For readers that want `std::io::Read` (a header line, a whole small file): the
/// error keeps the [`StorageError`] as its source.
impl Read for InputReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.read_decoded(buffer).map_err(std::io::Error::other)
    }
}

/// Reads up to [`SNIFF_BYTES`] from the start of `file`.
fn read_head(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    file.by_ref()
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// An error of the raw source, passed through a decoder.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct SourceFailed(std::io::Error);

/// The raw source under a decoder, tagging its errors as [`SourceFailed`].
struct TaggedSource(Box<dyn Read + Send>);

impl Read for TaggedSource {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buffer).map_err(|error| {
            if error.kind() == std::io::ErrorKind::Interrupted {
                return error;
            }
            std::io::Error::new(error.kind(), SourceFailed(error))
        })
    }
}

/// Returns the source's own error out of its tag.
fn untag(error: std::io::Error) -> std::io::Error {
    if !error
        .get_ref()
        .is_some_and(|inner| inner.is::<SourceFailed>())
    {
        return error;
    }
    match error
        .into_inner()
        .map(|inner| inner.downcast::<SourceFailed>())
    {
        Some(Ok(tagged)) => tagged.0,
        Some(Err(other)) => std::io::Error::other(other),
        None => std::io::Error::other("unknown read error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(reader: &mut InputReader) -> Result<Vec<u8>, StorageError> {
        let mut all = Vec::new();
        let mut buffer = [0; 7];
        loop {
            let read = reader.read_decoded(&mut buffer)?;
            if read == 0 {
                return Ok(all);
            }
            all.extend_from_slice(&buffer[..read]);
        }
    }

    fn compressed(codec: Codec, bytes: &[u8]) -> Vec<u8> {
        let mut encoder = codec.encoder(Vec::new()).unwrap();
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn plain_files_read_from_their_offset_and_compressed_ones_whole_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, b"hello\nworld\n").unwrap();
        let mut reader = InputReader::open_local(&plain, 6).unwrap();
        assert_eq!(reader.codec(), None);
        assert_eq!(read_all(&mut reader).unwrap(), b"world\n");
        for codec in Codec::ALL {
            // Detected by name, and by magic number under a plain name.
            for name in [format!("in{}", codec.extension()), format!("{codec}.log")] {
                let path = dir.path().join(&name);
                std::fs::write(&path, compressed(codec, b"hello\nworld\n")).unwrap();
                let mut reader = InputReader::open_local(&path, 0).unwrap();
                assert_eq!(reader.codec(), Some(codec), "{name}");
                assert_eq!(read_all(&mut reader).unwrap(), b"hello\nworld\n");
                let mut later = InputReader::open_local(&path, 3).unwrap();
                assert_eq!(read_all(&mut later).unwrap(), b"", "{name} at 3");
            }
        }
    }

    #[test]
    fn a_corrupt_compressed_file_is_a_permanent_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        for codec in Codec::ALL {
            let path = dir.path().join(format!("bad{}", codec.extension()));
            let mut bytes = compressed(codec, &vec![b'x'; 100_000]);
            bytes.truncate(bytes.len() / 2);
            std::fs::write(&path, bytes).unwrap();
            let mut reader = InputReader::open_local(&path, 0).unwrap();
            let error = read_all(&mut reader).unwrap_err();
            assert!(matches!(error, StorageError::Corrupt { .. }), "{error:?}");
            assert!(!error.is_retryable());
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(&codec.to_string()), "{message}");
        }
    }

    #[test]
    fn a_failing_source_under_a_decoder_is_an_io_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _buffer: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                ))
            }
        }
        let mut reader = InputReader::new(Box::new(Broken), Some(Codec::Gzip), 0, "x.gz".into());
        let error = read_all(&mut reader).unwrap_err();
        let StorageError::Io { source, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::ConnectionReset);
        assert!(error.is_retryable());
    }
}
