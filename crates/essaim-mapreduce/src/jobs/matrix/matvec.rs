//! `matvec`: a sparse matrix times a vector, `y = A·v`, with neither the matrix nor the
//! vector held whole by any task.
//!
//! Inputs, told apart by path prefix (params `matrix` and `vector`, the longer prefix
//! winning when both match): matrix entries `i j a_ij` and vector entries `j v_j`, one
//! per line, in the format of [`super::entries`]. Two entries for the same `(i, j)` add
//! up (a coordinate list, as scipy's COO matrices read it).
//!
//! Two steps, the textbook way:
//!
//! 1. **Join on `j`.** Mappers emit vector entries under key `(j, 0)` and matrix entries
//!    under `(j, 1)`; a partitioner that hashes only `j` sends both to one reducer,
//!    where the byte order of keys (zero-padded `j`, then the tag) brings `v_j` just
//!    before the entries of column `j` (a secondary sort). The reducer remembers `v_j`
//!    and streams out `(i, a_ij · v_j)` for each entry, so it holds one vector value,
//!    never a column. A column with no vector entry is multiplied by 0 and emits
//!    nothing (a sparse vector); two entries for the same `j` are an error.
//! 2. **Sum by `i`.** The second step's mapper reads the products (`i<TAB>product`),
//!    and the reducer sums each row.
//!
//! The sums are exact, then rounded once (Shewchuk's algorithm, as Python's
//! `math.fsum`, in `exact_sum.rs`): the result is the correctly rounded value of the
//! exact sum, so it does not depend on the order products arrive in, the number of
//! reducers or the splits.
//! That also makes a combiner legal: it emits the exact partial sums (a handful of
//! non-overlapping floats) instead of one rounded number. A sum that overflows an
//! intermediate float is an error; infinities and NaN propagate as IEEE says.
//!
//! Output lines: `i<TAB>y_i`, rows sorted numerically within each part, only rows with
//! at least one product. Values are printed with Rust's shortest round-trip formatting
//! (`{:?}`: `0.1`, `3.0`, `1e-7`, `inf`, `NaN`), so parsing a printed value gives back
//! the exact float. Keys between steps are `i` and `j` zero-padded to 20 digits, so
//! byte order is numeric order.
//!
//! Parameters: `matrix`, `vector` (required, path prefixes).

use super::entries::{
    INDEX_DIGITS, InputSides, LeadingIndexPartitioner, Side, format_index_line, parse_matrix_entry,
    parse_vector_entry, push_padded_index,
};
use super::exact_sum::{ExactSum, IntermediateOverflow};
use crate::api::{
    Emit, HashPartitioner, JobDefinition, JobError, JobParams, Mapper, Partitioner, Record,
    Reducer, Values,
};

pub use super::entries::{MATRIX_PARAM, VECTOR_PARAM};

/// Name of the job.
pub const NAME: &str = "matvec";

const TAG_VECTOR: u8 = b'0';
const TAG_MATRIX: u8 = b'1';

/// The `matvec` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct MatVec;

impl JobDefinition for MatVec {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "multiplies a sparse matrix (`i j a`) by a vector (`j v`) in two steps: `i<TAB>y_i`"
    }

    fn path_params(&self) -> &[&str] {
        &[MATRIX_PARAM, VECTOR_PARAM]
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        InputSides::from_params(params).map(|_| ())
    }

    fn steps(&self, _params: &JobParams) -> usize {
        2
    }

    fn mapper(&self, params: &JobParams, step: usize) -> Result<Box<dyn Mapper>, JobError> {
        match step {
            0 => Ok(Box::new(EntryMapper {
                sides: InputSides::from_params(params)?,
                key: Vec::new(),
                value: Vec::new(),
            })),
            _ => Ok(Box::new(ProductMapper)),
        }
    }

    fn combiner(
        &self,
        _params: &JobParams,
        step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        Ok(match step {
            0 => None,
            _ => Some(Box::new(ExactSumReducer { combine: true })),
        })
    }

    fn reducer(&self, _params: &JobParams, step: usize) -> Result<Box<dyn Reducer>, JobError> {
        match step {
            0 => Ok(Box::new(ColumnReducer::default())),
            _ => Ok(Box::new(ExactSumReducer { combine: false })),
        }
    }

    fn partitioner(
        &self,
        _params: &JobParams,
        step: usize,
    ) -> Result<Box<dyn Partitioner>, JobError> {
        match step {
            0 => Ok(Box::new(LeadingIndexPartitioner)),
            _ => Ok(Box::new(HashPartitioner)),
        }
    }

    /// Prints the row index without its zero padding.
    fn format_output(&self, key: &[u8], value: &[u8], line: &mut Vec<u8>) {
        format_index_line(key, value, line);
    }
}

/// Step 1's mapper: tags matrix and vector entries with their column.
struct EntryMapper {
    sides: InputSides,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Mapper for EntryMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        self.key.clear();
        self.value.clear();
        match self.sides.side(record.path)? {
            Side::Matrix => {
                let Some(entry) = parse_matrix_entry(record)? else {
                    return Ok(());
                };
                push_padded_index(&mut self.key, entry.column);
                self.key.push(TAG_MATRIX);
                self.value.extend_from_slice(&entry.row.to_be_bytes());
                self.value
                    .extend_from_slice(&entry.value.to_bits().to_be_bytes());
            }
            Side::Vector => {
                let Some(entry) = parse_vector_entry(record)? else {
                    return Ok(());
                };
                push_padded_index(&mut self.key, entry.index);
                self.key.push(TAG_VECTOR);
                self.value
                    .extend_from_slice(&entry.value.to_bits().to_be_bytes());
            }
        }
        out.emit(&self.key, &self.value)
    }
}

fn malformed_intermediate() -> JobError {
    super::entries::malformed_intermediate(NAME)
}

fn f64_from_be(bytes: &[u8]) -> Result<f64, JobError> {
    super::entries::f64_from_be(bytes, NAME)
}

/// Step 1's reducer: multiplies each entry of column `j` by `v_j`.
#[derive(Default)]
struct ColumnReducer {
    /// The last vector entry seen: `(j as its padded digits, v_j)`.
    vector_entry: Option<(Vec<u8>, f64)>,
    key: Vec<u8>,
}

impl Reducer for ColumnReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let (column, tag) = key
            .split_at_checked(INDEX_DIGITS)
            .ok_or_else(malformed_intermediate)?;
        match tag {
            [TAG_VECTOR] => {
                let value = values.next_value()?.ok_or_else(malformed_intermediate)?;
                let value = f64_from_be(value)?;
                if values.next_value()?.is_some() {
                    return Err(JobError::permanent(format!(
                        "the vector has two entries for index {}",
                        String::from_utf8_lossy(column)
                    )));
                }
                self.vector_entry = Some((column.to_vec(), value));
            }
            [TAG_MATRIX] => {
                // Keys come sorted, so column j's vector entry (tag 0), if any, was
                // the key just before.
                let vector_value = match &self.vector_entry {
                    Some((vector_column, value)) if vector_column == column => *value,
                    _ => return Ok(()),
                };
                while let Some(value) = values.next_value()? {
                    let (row, entry) = value
                        .split_at_checked(8)
                        .ok_or_else(malformed_intermediate)?;
                    let row =
                        u64::from_be_bytes(row.try_into().map_err(|_| malformed_intermediate())?);
                    let product = f64_from_be(entry)? * vector_value;
                    self.key.clear();
                    push_padded_index(&mut self.key, row);
                    out.emit(&self.key, format!("{product:?}").as_bytes())?;
                }
            }
            _ => return Err(malformed_intermediate()),
        }
        Ok(())
    }
}

/// Step 2's mapper: parses step 1's `i<TAB>product` lines.
struct ProductMapper;

impl Mapper for ProductMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let parsed = record
            .data
            .iter()
            .position(|byte| *byte == b'\t')
            .and_then(|tab| {
                let product = std::str::from_utf8(&record.data[tab + 1..]).ok()?;
                Some((&record.data[..tab], product.parse::<f64>().ok()?))
            });
        let Some((row, product)) = parsed else {
            return Err(malformed_intermediate());
        };
        out.emit(row, &product.to_bits().to_be_bytes())
    }
}

/// Sums each row exactly. As a combiner it emits the exact partial sums (so the
/// reducer still sees the exact total); as the reducer it emits the rounded total.
struct ExactSumReducer {
    combine: bool,
}

impl Reducer for ExactSumReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let mut sum = ExactSum::default();
        while let Some(value) = values.next_value()? {
            sum.add(f64_from_be(value)?)
                .map_err(|IntermediateOverflow| {
                    JobError::permanent(format!(
                        "the sum of row {} overflows",
                        String::from_utf8_lossy(key)
                    ))
                })?;
        }
        if self.combine {
            for partial in sum.partials() {
                out.emit(key, &partial.to_bits().to_be_bytes())?;
            }
            return Ok(());
        }
        out.emit(key, format!("{:?}", sum.total()).as_bytes())
    }
}
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    use std::num::NonZeroUsize;
    use std::path::PathBuf;

    use super::*;
    use crate::testing::{InMemoryOptions, run_in_memory, run_in_memory_with};

    /// A deterministic sparse matrix and vector; values are multiples of 1/8 so every
    /// product and sum is exact in f64 and a direct multiplication gives the same bits.
    fn write_inputs(dir: &std::path::Path) -> (Vec<PathBuf>, BTreeMap<u64, f64>) {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        let (rows, columns) = (40u64, 25u64);
        let mut vector = BTreeMap::new();
        let mut vector_text = String::from("# j v\n");
        for column in 0..columns {
            if next() % 5 == 0 {
                continue; // a missing vector entry is 0
            }
            let value = (next() % 64) as f64 / 8.0 - 4.0;
            vector.insert(column, value);
            writeln!(vector_text, "{column} {value}").unwrap();
        }
        let mut matrix_files = [String::new(), String::new()];
        let mut expected = BTreeMap::new();
        for row in 0..rows {
            for column in 0..columns {
                if next() % 3 != 0 {
                    continue;
                }
                let value = (next() % 128) as f64 / 8.0 - 8.0;
                writeln!(matrix_files[(row % 2) as usize], "{row}\t{column}\t{value}").unwrap();
                if let Some(vector_value) = vector.get(&column) {
                    *expected.entry(row).or_insert(0.0) += value * vector_value;
                }
            }
        }
        let mut inputs = Vec::new();
        for (index, text) in matrix_files.iter().enumerate() {
            let path = dir.join(format!("matrix-{index}"));
            std::fs::write(&path, text).unwrap();
            inputs.push(path);
        }
        let path = dir.join("vector");
        std::fs::write(&path, vector_text).unwrap();
        inputs.push(path);
        (inputs, expected)
    }

    fn params(dir: &std::path::Path) -> JobParams {
        let mut params = JobParams::default();
        params.set(MATRIX_PARAM, dir.join("matrix").display().to_string());
        params.set(VECTOR_PARAM, dir.join("vector").display().to_string());
        params
    }

    #[test]
    fn the_product_matches_a_direct_multiplication() {
        let dir = tempfile::tempdir().unwrap();
        let (inputs, expected) = write_inputs(dir.path());
        let expected: Vec<String> = expected
            .iter()
            .map(|(row, value)| format!("{row}\t{value:?}"))
            .collect();
        for (reducers, combine, lines_per_split) in
            [(1, true, None), (3, false, Some(7)), (4, true, Some(1))]
        {
            let options = InMemoryOptions {
                combine,
                lines_per_split: lines_per_split.and_then(NonZeroUsize::new),
            };
            let output =
                run_in_memory_with(&MatVec, &params(dir.path()), &inputs, reducers, &options)
                    .unwrap();
            let mut output: Vec<String> = output
                .iter()
                .map(|line| String::from_utf8(line.clone()).unwrap())
                .collect();
            // With one reducer rows come sorted; with several, each part is sorted.
            if reducers == 1 {
                assert_eq!(output, expected);
            }
            output.sort();
            let mut sorted_expected = expected.clone();
            sorted_expected.sort();
            assert_eq!(output, sorted_expected, "{reducers} reducers");
        }
    }

    #[test]
    fn rounding_does_not_depend_on_the_order_of_products() {
        let dir = tempfile::tempdir().unwrap();
        let matrix = dir.path().join("matrix");
        let vector = dir.path().join("vector");
        // Row 0: 1e16·1 + 1·1 + (-1e16)·1 = 1 exactly, whatever the order.
        std::fs::write(&matrix, "0 0 1e16\n0 1 1\n0 2 -1e16\n7 1 0.1\n").unwrap();
        std::fs::write(&vector, "2 1\n0 1\n1 1\n").unwrap();
        for reducers in 1..=3 {
            let output = run_in_memory(
                &MatVec,
                &params(dir.path()),
                &[matrix.clone(), vector.clone()],
                reducers,
            )
            .unwrap();
            let mut output: Vec<String> = output
                .iter()
                .map(|line| String::from_utf8(line.clone()).unwrap())
                .collect();
            output.sort();
            assert_eq!(output, vec!["0\t1.0", "7\t0.1"], "{reducers} reducers");
        }
    }

    #[test]
    fn malformed_entries_and_duplicate_vector_entries_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let matrix = dir.path().join("matrix");
        let vector = dir.path().join("vector");
        std::fs::write(&matrix, "0 0 1\n0 x 2\n").unwrap();
        std::fs::write(&vector, "0 1\n").unwrap();
        let inputs = [matrix.clone(), vector.clone()];
        let error = run_in_memory(&MatVec, &params(dir.path()), &inputs, 1).unwrap_err();
        assert!(
            !error.retryable && error.message.contains("byte 6"),
            "{error}"
        );

        std::fs::write(&matrix, "0 0 1\n").unwrap();
        std::fs::write(&vector, "0 1\n0 2\n").unwrap();
        let error = run_in_memory(&MatVec, &params(dir.path()), &inputs, 1).unwrap_err();
        assert!(
            !error.retryable && error.message.contains("two entries"),
            "{error}"
        );

        let mut bad = params(dir.path());
        bad.0.remove(VECTOR_PARAM);
        assert!(
            MatVec
                .validate(&bad)
                .unwrap_err()
                .message
                .contains(VECTOR_PARAM)
        );
    }
}
