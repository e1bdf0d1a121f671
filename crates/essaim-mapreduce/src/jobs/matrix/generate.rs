//! A random sparse matrix and a dense vector for the matrix jobs (`essaim gen matrix`).
//!
//! `DIR/matrix/part-NNNNN` hold the entries `i j a_ij`, rows in order, file `f` of `F`
//! holding rows `f·R/F .. (f+1)·R/F`; `DIR/vector/part-NNNNN` hold the vector `j v_j`,
//! every index from 0 to `columns − 1` (zeros are possible but unlikely), cut into `F`
//! files the same way. Run them as
//! `essaim run cosine -i DIR -D matrix=DIR/matrix -D vector=DIR/vector -D columns=C`.
//!
//! Each cell of the matrix is an entry with probability `density`, drawn by geometric
//! jumps from one entry to the next, so the cost is that of the entries written, not
//! of the cells. Values are uniform in `[-1, 1)` and printed with Rust's shortest
//! round-trip formatting, so a reader parses back the exact floats. Row `r` depends
//! only on `(seed, r)` and vector entry `j` only on `(seed, j)`: the number of files
//! changes where lines go, never what they say.

use std::io::Write;
use std::path::{Path, PathBuf};

use essaim_core::rng::{SeededRng, mix};

/// What [`generate_matrix_input`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedMatrix {
    /// Matrix entries written.
    pub entries: u64,
}

/// Returns the path of file `index` of `part` (`matrix` or `vector`) in `out_dir`.
pub fn generated_part_path(out_dir: &Path, part: &str, index: u32) -> PathBuf {
    out_dir.join(part).join(format!("part-{index:05}"))
}

/// Keeps the vector's draws apart from row 0's.
const VECTOR_SALT: u64 = 0x7665_6374_6f72;

/// Appends the entries of row `row` to `out`; returns how many.
fn write_row(
    out: &mut impl Write,
    seed: u64,
    row: u64,
    columns: u64,
    density: f64,
) -> std::io::Result<u64> {
    let mut rng = SeededRng::new(mix(seed ^ mix(row)));
    let mut written = 0;
    let mut column = next_gap(&mut rng, density);
    while column < columns {
        let value = rng.unit() * 2.0 - 1.0;
        writeln!(out, "{row} {column} {value:?}")?;
        written += 1;
        column = column.saturating_add(1 + next_gap(&mut rng, density));
    }
    Ok(written)
}

/// Returns how many cells to skip before the next entry: geometric with success
/// probability `density`.
fn next_gap(rng: &mut SeededRng, density: f64) -> u64 {
    if density >= 1.0 {
        return 0;
    }
    // 1 − unit() is in (0, 1], so its logarithm is finite.
    let uniform = 1.0 - rng.unit();
    (uniform.ln() / (1.0 - density).ln()).floor() as u64
}

/// Writes the file `path` with the lines `write_line` gives for `range`.
fn write_file(
    path: &Path,
    range: std::ops::Range<u64>,
    mut write_line: impl FnMut(&mut std::io::BufWriter<std::fs::File>, u64) -> std::io::Result<u64>,
) -> std::io::Result<u64> {
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut written = 0;
    for index in range {
        written += write_line(&mut writer, index)?;
    }
    writer
        .into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()?;
    Ok(written)
}

/// Writes a `rows × columns` matrix of the given `density` (in `(0, 1]`) and a vector of
/// `columns` entries, each in `files` files under `out_dir`; see the module doc.
pub fn generate_matrix_input(
    out_dir: &Path,
    rows: u64,
    columns: u64,
    density: f64,
    files: u32,
    seed: u64,
) -> std::io::Result<GeneratedMatrix> {
    let invalid = |message: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    if files == 0 {
        return Err(invalid("a matrix needs at least one file"));
    }
    if columns == 0 {
        return Err(invalid("a matrix needs at least one column"));
    }
    if !(density > 0.0 && density <= 1.0) {
        return Err(invalid("the density must be above 0 and at most 1"));
    }
    for part in ["matrix", "vector"] {
        std::fs::create_dir_all(out_dir.join(part))?;
    }
    let first_of =
        |count: u64, file: u32| (u128::from(count) * u128::from(file) / u128::from(files)) as u64;
    let mut entries = 0;
    for file in 0..files {
        let rows_of_file = first_of(rows, file)..first_of(rows, file + 1);
        entries += write_file(
            &generated_part_path(out_dir, "matrix", file),
            rows_of_file,
            |out, row| write_row(out, seed, row, columns, density),
        )?;
        let indices_of_file = first_of(columns, file)..first_of(columns, file + 1);
        write_file(
            &generated_part_path(out_dir, "vector", file),
            indices_of_file,
            |out, index| {
                let value = SeededRng::new(mix(seed ^ VECTOR_SALT ^ mix(index))).unit() * 2.0 - 1.0;
                writeln!(out, "{index} {value:?}").map(|()| 1)
            },
        )?;
    }
    Ok(GeneratedMatrix { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(dir: &Path, part: &str, files: u32) -> String {
        (0..files)
            .map(|file| std::fs::read_to_string(generated_part_path(dir, part, file)).unwrap())
            .collect()
    }

    #[test]
    fn the_files_split_the_same_matrix_whatever_their_number() {
        let one = tempfile::tempdir().unwrap();
        let three = tempfile::tempdir().unwrap();
        let written = generate_matrix_input(one.path(), 200, 50, 0.1, 1, 7).unwrap();
        generate_matrix_input(three.path(), 200, 50, 0.1, 3, 7).unwrap();
        let matrix = read_all(one.path(), "matrix", 1);
        assert_eq!(matrix, read_all(three.path(), "matrix", 3));
        assert_eq!(
            read_all(one.path(), "vector", 1),
            read_all(three.path(), "vector", 3)
        );
        assert_eq!(matrix.lines().count() as u64, written.entries);
        // About 10% of 10,000 cells, each in range, rows in order, columns increasing.
        assert!((800..1200).contains(&written.entries), "{written:?}");
        let mut previous = (0u64, None::<u64>);
        for line in matrix.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (row, column): (u64, u64) =
                (fields[0].parse().unwrap(), fields[1].parse().unwrap());
            let value: f64 = fields[2].parse().unwrap();
            assert!(
                row < 200 && column < 50 && (-1.0..1.0).contains(&value),
                "{line}"
            );
            let increasing = row > previous.0
                || (row == previous.0 && previous.1.is_none_or(|last| column > last));
            assert!(increasing, "{line} after {previous:?}");
            previous = (row, Some(column));
        }
        let vector = read_all(one.path(), "vector", 1);
        let indices: Vec<u64> = vector
            .lines()
            .map(|line| line.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(indices, (0..50).collect::<Vec<u64>>());
    }

    #[test]
    fn a_full_density_writes_every_cell_and_bad_arguments_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate_matrix_input(dir.path(), 4, 3, 1.0, 2, 1).unwrap();
        assert_eq!(written.entries, 12);
        for (rows, columns, density, files) in [
            (4, 3, 0.0, 1),
            (4, 3, 1.5, 1),
            (4, 0, 0.5, 1),
            (4, 3, 0.5, 0),
        ] {
            assert!(generate_matrix_input(dir.path(), rows, columns, density, files, 1).is_err());
        }
    }
}
