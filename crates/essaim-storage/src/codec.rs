//! Compression codecs of input and output files: gzip, Zstandard and bzip2.
//!
//! A compressed file cannot be cut at arbitrary byte offsets (none of the three formats
//! says where a line starts without decoding everything before it), so, as in Hadoop,
//! a compressed input is **one split**: the planner never cuts it, and a reader asked
//! for a range that does not start at byte 0 of a compressed file owns no line.
//!
//! A file is compressed when its name ends in a codec's extension (`.gz`, `.zst`,
//! `.bz2`), or else when its first bytes are that codec's magic number. The name wins:
//! `notes.gz` that is not gzip is a corrupt input, not a text file. Magic numbers:
//! gzip `1f 8b`, Zstandard frame `28 b5 2f fd`, bzip2 `BZh1`..`BZh9` followed by a
//! block header (`31 41 59 26 53 59`) or the end of stream (`17 72 45 38 50 90`), so
//! that a text file starting with `BZh9` is still text.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// Bytes [`Codec::sniff`] looks at.
pub const SNIFF_BYTES: usize = 10;

/// A compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// gzip (RFC 1952), members concatenated or not.
    Gzip,
    /// Zstandard (RFC 8878), frames concatenated or not.
    Zstd,
    /// bzip2, streams concatenated or not.
    Bzip2,
}

impl Codec {
    /// Every codec, in the order their names are listed to users.
    pub const ALL: [Codec; 3] = [Codec::Gzip, Codec::Zstd, Codec::Bzip2];

    /// Returns the short name users type (`gz`, `zst`, `bz2`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gz",
            Self::Zstd => "zst",
            Self::Bzip2 => "bz2",
        }
    }

    /// Returns the file name extension, with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Gzip => ".gz",
            Self::Zstd => ".zst",
            Self::Bzip2 => ".bz2",
        }
    }

    /// Parses a short name (`gz`, `gzip`, `zst`, `zstd`, `bz2`, `bzip2`).
    pub fn from_name(name: &str) -> Option<Codec> {
        match name.to_ascii_lowercase().as_str() {
            "gz" | "gzip" => Some(Self::Gzip),
            "zst" | "zstd" => Some(Self::Zstd),
            "bz2" | "bzip2" => Some(Self::Bzip2),
            _ => None,
        }
    }

    /// Returns the codec a file name's extension names, if any.
    pub fn from_file_name(name: &str) -> Option<Codec> {
        Self::ALL
            .into_iter()
            .find(|codec| name.ends_with(codec.extension()) && name.len() > codec.extension().len())
    }

    /// Returns the codec whose magic number starts `head` (the file's first bytes, at
    /// most [`SNIFF_BYTES`] of them needed), if any.
    pub fn sniff(head: &[u8]) -> Option<Codec> {
        const BZIP2_BLOCK: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
        const BZIP2_END: [u8; 6] = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
        if head.starts_with(&[0x1f, 0x8b]) {
            return Some(Self::Gzip);
        }
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Some(Self::Zstd);
        }
        let bzip2 = head.len() >= SNIFF_BYTES
            && head.starts_with(b"BZh")
            && (b'1'..=b'9').contains(&head[3])
            && (head[4..10] == BZIP2_BLOCK || head[4..10] == BZIP2_END);
        bzip2.then_some(Self::Bzip2)
    }

    /// Returns the codec of a file: by its name, else by its first bytes.
    pub fn detect(name: &str, head: &[u8]) -> Option<Codec> {
        Self::from_file_name(name).or_else(|| Self::sniff(head))
    }

    /// Wraps `compressed` in a decoder of this codec. Concatenated members, frames and
    /// streams are all read, as `zcat`, `zstdcat` and `bzcat` do.
    pub fn decoder<'a>(self, compressed: impl Read + Send + 'a) -> Box<dyn Read + Send + 'a> {
        match self {
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
            Self::Zstd => match zstd::stream::read::Decoder::new(compressed) {
                Ok(decoder) => Box::new(decoder),
                // Only allocating the decompression context can fail: report it on read.
                Err(error) => Box::new(FailedReader(Some(error))),
            },
            Self::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(compressed)),
        }
    }

    /// Wraps `output` in an encoder of this codec, at the codec's default level.
    pub fn encoder<'a, W: Write + Send + 'a>(self, output: W) -> std::io::Result<Encoder<'a, W>> {
        let inner = match self {
            Self::Gzip => EncoderInner::Gzip(flate2::write::GzEncoder::new(
                output,
                flate2::Compression::default(),
            )),
            Self::Zstd => {
                let mut encoder =
                    zstd::stream::write::Encoder::new(output, zstd::DEFAULT_COMPRESSION_LEVEL)?;
                // The frame checksum is optional in the format; the `zstd` tool writes
                // it, and without it a flipped byte can decode to other text silently.
                encoder.include_checksum(true)?;
                EncoderInner::Zstd(encoder)
            }
            Self::Bzip2 => EncoderInner::Bzip2(bzip2::write::BzEncoder::new(
                output,
                bzip2::Compression::default(),
            )),
        };
        Ok(Encoder {
            inner,
            _lifetime: std::marker::PhantomData,
        })
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
        })
    }
}

/// A reader whose first read fails (a decoder that could not be created).
struct FailedReader(Option<std::io::Error>);

impl Read for FailedReader {
    fn read(&mut self, _buffer: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("the decoder could not be created")))
    }
}

/// A compressing writer; [`Encoder::finish`] writes the trailer and returns the output.
pub struct Encoder<'a, W: Write> {
    inner: EncoderInner<'a, W>,
    _lifetime: std::marker::PhantomData<&'a ()>,
}

enum EncoderInner<'a, W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'a, W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

impl<W: Write> Encoder<'_, W> {
    /// Writes the end of the compressed stream and returns the output: without it the
    /// file is truncated, so a part is committed only after this succeeds.
    pub fn finish(self) -> std::io::Result<W> {
        match self.inner {
            EncoderInner::Gzip(encoder) => encoder.finish(),
            EncoderInner::Zstd(encoder) => encoder.finish(),
            EncoderInner::Bzip2(encoder) => encoder.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            EncoderInner::Gzip(encoder) => encoder.write(bytes),
            EncoderInner::Zstd(encoder) => encoder.write(bytes),
            EncoderInner::Bzip2(encoder) => encoder.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            EncoderInner::Gzip(encoder) => encoder.flush(),
            EncoderInner::Zstd(encoder) => encoder.flush(),
            EncoderInner::Bzip2(encoder) => encoder.flush(),
        }
    }
}

impl<W: Write> std::fmt::Debug for Encoder<'_, W> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codec = match self.inner {
            EncoderInner::Gzip(_) => Codec::Gzip,
            EncoderInner::Zstd(_) => Codec::Zstd,
            EncoderInner::Bzip2(_) => Codec::Bzip2,
        };
        formatter
            .debug_struct("Encoder")
            .field("codec", &codec)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(codec: Codec, bytes: &[u8]) -> Vec<u8> {
        let mut encoder = codec.encoder(Vec::new()).unwrap();
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn decompress(codec: Codec, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut decoded = Vec::new();
        codec.decoder(bytes).read_to_end(&mut decoded)?;
        Ok(decoded)
    }

    #[test]
    fn every_codec_round_trips_and_reads_concatenated_members() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i} {}\n", i % 7).into_bytes())
            .collect();
        for codec in Codec::ALL {
            let compressed = compress(codec, &text);
            assert!(compressed.len() < text.len() / 3, "{codec}");
            assert_eq!(Codec::sniff(&compressed), Some(codec), "{codec}");
            assert_eq!(decompress(codec, &compressed).unwrap(), text, "{codec}");
            let mut twice = compressed.clone();
            twice.extend(compress(codec, b"tail\n"));
            let mut expected = text.clone();
            expected.extend_from_slice(b"tail\n");
            assert_eq!(decompress(codec, &twice).unwrap(), expected, "{codec}");
            assert_eq!(decompress(codec, &compress(codec, b"")).unwrap(), b"");
        }
    }

    #[test]
    fn corrupt_and_truncated_streams_are_errors_not_short_reads() {
        let text: Vec<u8> = (0..5_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        for codec in Codec::ALL {
            let compressed = compress(codec, &text);
            let truncated = &compressed[..compressed.len() / 2];
            assert!(decompress(codec, truncated).is_err(), "{codec} truncated");
            let mut flipped = compressed.clone();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 0x55;
            flipped[middle + 1] ^= 0xaa;
            assert!(decompress(codec, &flipped).is_err(), "{codec} flipped");
            assert!(decompress(codec, b"plain text\n").is_err(), "{codec} text");
        }
    }

    #[test]
    fn the_name_wins_over_the_magic_number_and_text_is_not_bzip2() {
        let gzip = compress(Codec::Gzip, b"x");
        assert_eq!(Codec::detect("a.txt", &gzip), Some(Codec::Gzip));
        assert_eq!(Codec::detect("a.zst", &gzip), Some(Codec::Zstd));
        assert_eq!(Codec::detect("a.txt", b"BZh9 is a line"), None);
        assert_eq!(Codec::detect("a.txt", b"hello"), None);
        assert_eq!(Codec::detect(".gz", b"hello"), None);
        assert_eq!(Codec::detect("b.bz2", b""), Some(Codec::Bzip2));
        for codec in Codec::ALL {
            assert_eq!(Codec::from_name(codec.name()), Some(codec));
        }
        assert_eq!(Codec::from_name("lz4"), None);
    }
}
