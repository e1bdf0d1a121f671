//! Input for the sort benchmark, TeraGen style: deterministic 100-byte lines with
//! random keys.
//!
//! Each line is
//!
//! ```text
//! key (10 random printable ASCII bytes, ' '..='~') ' ' row id (32 hex digits) ' ' filler (55 letters) '\n'
//! ```
//!
//! Row `r`'s bytes depend only on `(seed, r)`, so the same arguments always write the
//! same files, and rows can be written in parallel: file `f` of `files` holds rows
//! `f * rows / files .. (f + 1) * rows / files`, and the files are written by up to as
//! many threads as the machine has cores. See [`super::sort`] for the gen → sort →
//! validate round trip.
//!
//! The files may be written compressed (`input-00000.zst`): a sort larger than the disk
//! can hold as plain text still fits when its input, intermediate data and output are
//! compressed, as TeraGen's output can be with Hadoop's output compression. A
//! compressed file is read whole by one map task, so more files give more parallelism.

use std::io::Write;
use std::path::{Path, PathBuf};

use essaim_core::rng::mix;
use essaim_storage::Codec;

/// Bytes of one generated line, `\n` included.
pub const LINE_BYTES: usize = 100;
/// Bytes of a generated key.
pub const KEY_BYTES: usize = 10;
const ROW_ID_DIGITS: usize = 32;
const FILLER_BYTES: usize = LINE_BYTES - KEY_BYTES - 1 - ROW_ID_DIGITS - 1 - 1;

/// Returns the path of generated file `index` in `out_dir`: `input-00000`, … (with the
/// codec's extension when compressed: `input-00000.zst`).
pub fn generated_file_path(out_dir: &Path, index: u32, codec: Option<Codec>) -> PathBuf {
    let extension = codec.map_or("", Codec::extension);
    out_dir.join(format!("input-{index:05}{extension}"))
}

/// Writes row `row` of the data set `seed` into `line`.
fn fill_line(line: &mut [u8; LINE_BYTES], seed: u64, row: u64) {
    let mut random = mix(seed ^ mix(row));
    for (index, byte) in line[..KEY_BYTES].iter_mut().enumerate() {
        // 95 printable characters; 64 random bits give 9 draws, re-mix for the 10th.
        if index == 9 {
            random = mix(random);
        }
        *byte = b' ' + (random % 95) as u8;
        random /= 95;
    }
    line[KEY_BYTES] = b' ';
    let row_id = format!("{row:0ROW_ID_DIGITS$X}");
    let row_id_start = KEY_BYTES + 1;
    line[row_id_start..row_id_start + ROW_ID_DIGITS].copy_from_slice(row_id.as_bytes());
    let filler_start = row_id_start + ROW_ID_DIGITS + 1;
    line[filler_start - 1] = b' ';
    for (index, byte) in line[filler_start..filler_start + FILLER_BYTES]
        .iter_mut()
        .enumerate()
    {
        *byte = b'A' + ((row as usize / 4 + index / 5) % 26) as u8;
    }
    line[LINE_BYTES - 1] = b'\n';
}

/// Where the generated files go: a directory, how many files, and their codec.
#[derive(Debug, Clone, Copy)]
pub struct GeneratedFiles<'a> {
    /// The directory (created if missing).
    pub out_dir: &'a Path,
    /// How many files the rows are spread over; at least one.
    pub files: u32,
    /// The files' codec, or `None` for plain text.
    pub codec: Option<Codec>,
}

/// Writes rows `first_row..end_row` into `writer`.
fn write_rows(
    writer: &mut impl Write,
    seed: u64,
    first_row: u64,
    end_row: u64,
) -> std::io::Result<()> {
    let mut line = [0u8; LINE_BYTES];
    for row in first_row..end_row {
        fill_line(&mut line, seed, row);
        writer.write_all(&line)?;
    }
    Ok(())
}

/// Writes one generated file holding rows `first_row..end_row`, compressed by `codec`.
fn write_file(
    path: &Path,
    codec: Option<Codec>,
    seed: u64,
    rows: std::ops::Range<u64>,
) -> std::io::Result<()> {
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut file = match codec {
        None => {
            let mut file = file;
            write_rows(&mut file, seed, rows.start, rows.end)?;
            file
        }
        Some(codec) => {
            let mut encoder = codec.encoder(file)?;
            write_rows(&mut encoder, seed, rows.start, rows.end)?;
            encoder.finish()?
        }
    };
    file.flush()?;
    file.into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()
}

/// Writes `rows` generated lines into the files `input-NNNNN` of `to`,
/// deterministically from `seed`; see the module doc.
pub fn generate_sort_input(to: GeneratedFiles<'_>, rows: u64, seed: u64) -> std::io::Result<()> {
    let GeneratedFiles {
        out_dir,
        files,
        codec,
    } = to;
    if files == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "generate_sort_input needs at least one file",
        ));
    }
    std::fs::create_dir_all(out_dir)?;
    let first_row_of = |file: u32| (u128::from(rows) * u128::from(file) / u128::from(files)) as u64;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(files as usize);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || -> std::io::Result<()> {
                    // Worker w writes files w, w + threads, w + 2·threads, …
                    for file in (worker as u32..files).step_by(threads) {
                        let path = generated_file_path(out_dir, file, codec);
                        let rows = first_row_of(file)..first_row_of(file + 1);
                        write_file(&path, codec, seed, rows)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for worker in workers {
            let outcome = worker
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a generator thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Plain files in `out_dir`.
    fn plain(out_dir: &Path, files: u32) -> GeneratedFiles<'_> {
        GeneratedFiles {
            out_dir,
            files,
            codec: None,
        }
    }

    #[test]
    fn generated_lines_are_100_bytes_with_printable_keys_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        generate_sort_input(plain(dir.path(), 3), 1001, 42).unwrap();
        let mut all = Vec::new();
        for file in 0..3 {
            all.extend(std::fs::read(generated_file_path(dir.path(), file, None)).unwrap());
        }
        assert_eq!(all.len(), 1001 * LINE_BYTES);
        for (row, line) in all.chunks(LINE_BYTES).enumerate() {
            assert!(
                line[..KEY_BYTES]
                    .iter()
                    .all(|byte| (b' '..=b'~').contains(byte))
            );
            assert_eq!(line[LINE_BYTES - 1], b'\n');
            assert!(!line[..LINE_BYTES - 1].contains(&b'\n'));
            let row_id = std::str::from_utf8(&line[KEY_BYTES + 1..KEY_BYTES + 33]).unwrap();
            assert_eq!(u64::from_str_radix(row_id, 16).unwrap(), row as u64);
        }

        // Same arguments, same bytes; another seed, other keys.
        let again = tempfile::tempdir().unwrap();
        generate_sort_input(plain(again.path(), 3), 1001, 42).unwrap();
        let other = tempfile::tempdir().unwrap();
        generate_sort_input(plain(other.path(), 3), 1001, 43).unwrap();
        let first_file = |dir: &Path| std::fs::read(generated_file_path(dir, 0, None)).unwrap();
        assert_eq!(first_file(dir.path()), first_file(again.path()));
        assert_ne!(first_file(dir.path()), first_file(other.path()));
    }

    #[test]
    fn zero_files_is_refused_and_zero_rows_writes_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(generate_sort_input(plain(dir.path(), 0), 10, 1).is_err());
        generate_sort_input(plain(dir.path(), 2), 0, 1).unwrap();
        assert_eq!(
            std::fs::metadata(generated_file_path(dir.path(), 1, None))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn compressed_files_decode_to_the_plain_files_bytes() {
        let plain_dir = tempfile::tempdir().unwrap();
        generate_sort_input(plain(plain_dir.path(), 3), 1001, 42).unwrap();
        let zstd_dir = tempfile::tempdir().unwrap();
        let compressed = GeneratedFiles {
            out_dir: zstd_dir.path(),
            files: 3,
            codec: Some(Codec::Zstd),
        };
        generate_sort_input(compressed, 1001, 42).unwrap();
        for file in 0..3 {
            let path = generated_file_path(zstd_dir.path(), file, Some(Codec::Zstd));
            assert!(path.to_string_lossy().ends_with(".zst"));
            let bytes = std::fs::read(&path).unwrap();
            let mut decoded = Vec::new();
            Codec::Zstd
                .decoder(bytes.as_slice())
                .read_to_end(&mut decoded)
                .unwrap();
            let expected = std::fs::read(generated_file_path(plain_dir.path(), file, None));
            assert_eq!(decoded, expected.unwrap());
            assert!(bytes.len() < decoded.len() / 3, "{} bytes", bytes.len());
        }
    }
}
