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

use std::io::Write;
use std::path::{Path, PathBuf};

use essaim_core::rng::mix;

/// Bytes of one generated line, `\n` included.
pub const LINE_BYTES: usize = 100;
/// Bytes of a generated key.
pub const KEY_BYTES: usize = 10;
const ROW_ID_DIGITS: usize = 32;
const FILLER_BYTES: usize = LINE_BYTES - KEY_BYTES - 1 - ROW_ID_DIGITS - 1 - 1;

/// Returns the path of generated file `index` in `out_dir`: `input-00000`, …
pub fn generated_file_path(out_dir: &Path, index: u32) -> PathBuf {
    out_dir.join(format!("input-{index:05}"))
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

/// Writes one generated file holding rows `first_row..end_row`.
fn write_file(path: &Path, seed: u64, first_row: u64, end_row: u64) -> std::io::Result<()> {
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut line = [0u8; LINE_BYTES];
    for row in first_row..end_row {
        fill_line(&mut line, seed, row);
        writer.write_all(&line)?;
    }
    writer
        .into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()
}

/// Writes `rows` generated lines into `files` files `input-NNNNN` of `out_dir`
/// (created if missing), deterministically from `seed`; see the module doc.
pub fn generate_sort_input(
    out_dir: &Path,
    rows: u64,
    files: u32,
    seed: u64,
) -> std::io::Result<()> {
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
                        let path = generated_file_path(out_dir, file);
                        write_file(&path, seed, first_row_of(file), first_row_of(file + 1))?;
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

    #[test]
    fn generated_lines_are_100_bytes_with_printable_keys_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        generate_sort_input(dir.path(), 1001, 3, 42).unwrap();
        let mut all = Vec::new();
        for file in 0..3 {
            all.extend(std::fs::read(generated_file_path(dir.path(), file)).unwrap());
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
        generate_sort_input(again.path(), 1001, 3, 42).unwrap();
        let other = tempfile::tempdir().unwrap();
        generate_sort_input(other.path(), 1001, 3, 43).unwrap();
        let first_file = |dir: &Path| std::fs::read(generated_file_path(dir, 0)).unwrap();
        assert_eq!(first_file(dir.path()), first_file(again.path()));
        assert_ne!(first_file(dir.path()), first_file(other.path()));
    }

    #[test]
    fn zero_files_is_refused_and_zero_rows_writes_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(generate_sort_input(dir.path(), 10, 0, 1).is_err());
        generate_sort_input(dir.path(), 0, 2, 1).unwrap();
        assert_eq!(
            std::fs::metadata(generated_file_path(dir.path(), 1))
                .unwrap()
                .len(),
            0
        );
    }
}
