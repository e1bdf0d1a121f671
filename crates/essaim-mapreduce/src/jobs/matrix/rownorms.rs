//! `rownorms`: the Euclidean norm of every row of a sparse matrix,
//! `‖A_i‖ = sqrt(Σ_j a_ij²)`, with no row held whole by any task.
//!
//! Every input file is the matrix, entries `i j a_ij` in the format of
//! [`super::entries`]; an entry listed twice counts once with the sum of its values (as
//! in `matvec`, where duplicates add up), so the norm is that of the matrix `matvec`
//! multiplies.
//!
//! One step. Mappers emit each entry under the key `(i, j)` (both zero-padded); the
//! partitioner hashes `i` only, so a row reaches one reducer, where the sorted keys bring
//! its entries one after the other (a secondary sort). The reducer adds `a_ij` of each
//! key (several values: a duplicated entry), squares it, adds the square to the row's
//! exact sum, and writes the row's norm when the next row starts: it holds one running
//! sum, never a row. No combiner: every key is one entry, there is nothing to combine.
//!
//! Accuracy: each square is rounded once, the sum of squares is exact and rounded once,
//! then the square root rounds once, so the norm is within 2 units in the last place of
//! the exact one and does not depend on the splits or the number of reducers. An entry
//! whose square overflows (above about 1.3e154 in magnitude), or a sum of squares that
//! does, fails the job; squares of entries below about 1.5e-154 lose precision to
//! underflow (a row of such entries alone can have the norm 0).
//!
//! Bad input fails the job with a permanent error naming the file and offset: a
//! malformed line, a value that is not finite (`inf`, `NaN`), and, when the parameter
//! `columns` gives the matrix's width `n`, an entry in a column `j ≥ n` (a row longer
//! than the others). Rows shorter than `n` are sparse rows: their missing entries are 0.
//!
//! Output lines: `i<TAB>‖A_i‖`, rows sorted numerically within each part, one line per
//! row with at least one entry (a row of zeros has the norm `0.0`), values printed with
//! Rust's shortest round-trip formatting (`{:?}`).
//!
//! Parameters: `columns` (optional: the number of columns).

use super::entries::{
    EntryChecks, INDEX_DIGITS, LeadingIndexPartitioner, checked_product, entry_value,
    format_index_line, index_text, malformed_intermediate, parse_matrix_entry, push_padded_index,
};
use super::exact_sum::ExactSum;
use crate::api::{
    Emit, JobDefinition, JobError, JobParams, Mapper, Partitioner, Record, Reducer, Values,
};

pub use super::entries::COLUMNS_PARAM;

/// Name of the job.
pub const NAME: &str = "rownorms";

/// The `rownorms` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct RowNorms;

impl JobDefinition for RowNorms {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "Euclidean norm of every row of a sparse matrix (`i j a`): `i<TAB>norm`"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        EntryChecks::from_params(params).map(|_| ())
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(RowEntryMapper {
            checks: EntryChecks::from_params(params)?,
            key: Vec::new(),
        }))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(RowNormReducer::default()))
    }

    fn partitioner(
        &self,
        _params: &JobParams,
        _step: usize,
    ) -> Result<Box<dyn Partitioner>, JobError> {
        Ok(Box::new(LeadingIndexPartitioner))
    }

    /// Prints the row index without its zero padding.
    fn format_output(&self, key: &[u8], value: &[u8], line: &mut Vec<u8>) {
        format_index_line(key, value, line);
    }
}

/// Emits each matrix entry under `(i, j)`.
struct RowEntryMapper {
    checks: EntryChecks,
    key: Vec<u8>,
}

impl Mapper for RowEntryMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let Some(entry) = parse_matrix_entry(record)? else {
            return Ok(());
        };
        self.checks.check(record, entry.column, entry.value)?;
        self.key.clear();
        push_padded_index(&mut self.key, entry.row);
        push_padded_index(&mut self.key, entry.column);
        out.emit(&self.key, &entry.value.to_bits().to_be_bytes())
    }
}

/// Sums the squares of a row's entries, which arrive as consecutive keys, and writes
/// the row's norm once the next row (or the end) comes.
#[derive(Default)]
struct RowNormReducer {
    /// The row being summed, as its padded digits; empty before the first key.
    row: Vec<u8>,
    squares: ExactSum,
}

impl RowNormReducer {
    /// Writes the norm of the row being summed, if any, and forgets it.
    fn write_row(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        if self.row.is_empty() {
            return Ok(());
        }
        let norm = self.squares.total().sqrt();
        out.emit(&self.row, format!("{norm:?}").as_bytes())?;
        self.row.clear();
        self.squares = ExactSum::default();
        Ok(())
    }
}

impl Reducer for RowNormReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let Some((row, column)) = key.split_at_checked(INDEX_DIGITS) else {
            return Err(malformed_intermediate(NAME));
        };
        if column.len() != INDEX_DIGITS {
            return Err(malformed_intermediate(NAME));
        }
        let describe = || format!("entry ({}, {})", index_text(row), index_text(column));
        let value = entry_value(values, NAME, describe)?;
        let square = checked_product(value, value, || format!("the square of {}", describe()))?;
        // Keys come sorted: a new row means the previous one is complete.
        if self.row != row {
            self.write_row(out)?;
            self.row.extend_from_slice(row);
        }
        self.squares.add(square).map_err(|_| {
            JobError::permanent(format!(
                "the sum of squares of row {} overflows a 64-bit float",
                index_text(row)
            ))
        })
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        self.write_row(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::num::NonZeroUsize;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::testing::{InMemoryOptions, run_in_memory, run_in_memory_with};

    /// Parameters as `(name, value)` pairs.
    type Params<'a> = &'a [(&'a str, &'a str)];

    fn lines(output: Vec<Vec<u8>>) -> Vec<String> {
        let mut lines: Vec<String> = output
            .into_iter()
            .map(|line| String::from_utf8(line).unwrap())
            .collect();
        lines.sort();
        lines
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_norms_of_the_exercise_matrix_are_exact_where_they_can_be() {
        // The course's 4×4 matrix, one row per file, rows out of order.
        let dir = tempfile::tempdir().unwrap();
        let inputs = [
            write(dir.path(), "a", "3 0 3\n3 1 3\n3 2 3\n3 3 3\n"),
            write(dir.path(), "b", "# i j a\n0 0 1\n0 1 2\n0 2 3\n0 3 4\n"),
            write(dir.path(), "c", "1 0 7\n1 1 6\n1 2 5\n1 3 4\n2 0 6\n"),
            write(dir.path(), "d", "2 1 7\n2 2 8\n2 3 9\n"),
        ];
        let expected = vec![
            format!("0\t{:?}", 30f64.sqrt()),
            format!("1\t{:?}", 126f64.sqrt()),
            format!("2\t{:?}", 230f64.sqrt()),
            "3\t6.0".to_string(),
        ];
        for reducers in 1..=3 {
            let output = run_in_memory(&RowNorms, &JobParams::default(), &inputs, reducers);
            assert_eq!(lines(output.unwrap()), expected, "{reducers} reducers");
        }
    }

    #[test]
    fn norms_match_a_direct_computation_and_do_not_depend_on_splits_or_reducers() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = essaim_core::rng::SeededRng::new(17);
        let mut rows: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        let mut files = [String::new(), String::new(), String::new()];
        for row in 0..60u64 {
            for column in 0..40u64 {
                if !rng.chance(1, 3) {
                    continue;
                }
                let value = (rng.unit() - 0.5) * 10f64.powi(rng.below(7) as i32 - 3);
                rows.entry(row).or_default().push(value);
                files[rng.below(3) as usize].push_str(&format!("{row} {column} {value:?}\n"));
            }
        }
        let inputs: Vec<PathBuf> = files
            .iter()
            .enumerate()
            .map(|(index, text)| write(dir.path(), &format!("part-{index}"), text))
            .collect();
        let mut first: Option<Vec<String>> = None;
        for (reducers, lines_per_split) in [(1, None), (2, Some(5)), (5, Some(1))] {
            let options = InMemoryOptions {
                combine: true,
                lines_per_split: lines_per_split.and_then(NonZeroUsize::new),
            };
            let params = JobParams::default();
            let output = run_in_memory_with(&RowNorms, &params, &inputs, reducers, &options);
            let output = lines(output.unwrap());
            assert_eq!(output.len(), rows.len());
            for line in &output {
                let (row, norm) = line.split_once('\t').unwrap();
                let norm: f64 = norm.parse().unwrap();
                // The oracle: squares summed naively, in input order.
                let squares: f64 = rows[&row.parse::<u64>().unwrap()]
                    .iter()
                    .map(|value| value * value)
                    .sum();
                let expected = squares.sqrt();
                assert!(
                    (norm - expected).abs() <= 1e-14 * expected,
                    "row {row}: {norm} vs {expected}"
                );
            }
            // Exact sums: the same bits whatever the splits and the reducers.
            match &first {
                None => first = Some(output),
                Some(first) => assert_eq!(&output, first, "{reducers} reducers"),
            }
        }
    }

    #[test]
    fn duplicate_entries_add_up_and_a_row_of_zeros_has_the_norm_zero() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [
            write(dir.path(), "a", "0 0 1.5\n5 3 0\n"),
            write(dir.path(), "b", "0 0 1.5\n0 1 4\n5 4 -0.0\n"),
        ];
        let output = run_in_memory(&RowNorms, &JobParams::default(), &inputs, 2).unwrap();
        assert_eq!(lines(output), vec!["0\t5.0", "5\t0.0"]);
    }

    #[test]
    fn bad_entries_fail_the_job_naming_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let run = |text: &str, params: &[(&str, &str)]| {
            let input = write(dir.path(), "m", text);
            run_in_memory(&RowNorms, &JobParams::from_pairs(params), &[input], 1).unwrap_err()
        };
        // (input, parameters, what the error says)
        let cases: [(&str, Params, &str); 6] = [
            ("0 0 1\n0 1 x\n", &[], "at byte 6 is not `i j a_ij`"),
            ("0 0 1\n0 1\n", &[], "at byte 6 is not `i j a_ij`"),
            ("0 0 1 2\n", &[], "at byte 0 is not `i j a_ij`"),
            (
                "0 0 NaN\n",
                &[],
                "`NaN`: norms and cosines need finite values",
            ),
            (
                "0 0 1\n0 4 1\n",
                &[("columns", "4")],
                "column 4, outside `columns` = 4",
            ),
            ("0 0 1e200\n", &[], "the square of entry (0, 0) overflows"),
        ];
        for (text, params, expected) in cases {
            let error = run(text, params);
            assert!(!error.retryable, "{error}");
            assert!(error.message.contains(expected), "{text:?}: {error}");
        }
        let bad_columns = JobParams::from_pairs(&[("columns", "0")]);
        assert!(RowNorms.validate(&bad_columns).is_err());
    }
}
