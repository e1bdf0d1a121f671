//! `matvec`: a sparse matrix times a vector, `y = A·v`, with neither the matrix nor the
//! vector held whole by any task.
//!
//! Inputs, told apart by path prefix (params `matrix` and `vector`, the longer prefix
//! winning when both match): matrix entries `i j a_ij` and vector entries `j v_j`, one
//! per line, fields separated by spaces or tabs, indices unsigned 64-bit integers,
//! values decimal floating point (as Rust parses `f64`). Empty lines and lines starting
//! with `#` are skipped; anything else malformed fails the task, naming the file and
//! offset.
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
//! `math.fsum`): the result is the correctly rounded value of the exact sum, so it does
//! not depend on the order products arrive in, the number of reducers or the splits.
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

use crate::api::{
    Emit, HashPartitioner, JobDefinition, JobError, JobParams, Mapper, Partitioner, Record,
    Reducer, Values,
};
use crate::jobs::common::{non_empty_param, path_bytes, record_location};

/// Name of the job.
pub const NAME: &str = "matvec";
/// Parameter: path prefix of the matrix input (required).
pub const MATRIX_PARAM: &str = "matrix";
/// Parameter: path prefix of the vector input (required).
pub const VECTOR_PARAM: &str = "vector";

/// Digits of a zero-padded index: `u64::MAX` has 20.
const INDEX_DIGITS: usize = 20;
const TAG_VECTOR: u8 = b'0';
const TAG_MATRIX: u8 = b'1';

/// The `matvec` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct MatVec;

#[derive(Debug, Clone)]
struct Settings {
    matrix: String,
    vector: String,
}

impl Settings {
    fn parse(params: &JobParams) -> Result<Self, JobError> {
        let settings = Self {
            matrix: non_empty_param(params, MATRIX_PARAM)?.to_string(),
            vector: non_empty_param(params, VECTOR_PARAM)?.to_string(),
        };
        if settings.matrix == settings.vector {
            return Err(JobError::permanent(format!(
                "parameters `{MATRIX_PARAM}` and `{VECTOR_PARAM}` must differ"
            )));
        }
        Ok(settings)
    }

    /// True for a matrix input, false for a vector input, `None` for neither.
    fn is_matrix(&self, path: &std::path::Path) -> Option<bool> {
        let path = path_bytes(path);
        let matches_matrix = path.starts_with(self.matrix.as_bytes());
        let matches_vector = path.starts_with(self.vector.as_bytes());
        match (matches_matrix, matches_vector) {
            (true, true) => Some(self.matrix.len() > self.vector.len()),
            (true, false) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        }
    }
}

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
        Settings::parse(params).map(|_| ())
    }

    fn steps(&self, _params: &JobParams) -> usize {
        2
    }

    fn mapper(&self, params: &JobParams, step: usize) -> Result<Box<dyn Mapper>, JobError> {
        match step {
            0 => Ok(Box::new(EntryMapper {
                settings: Settings::parse(params)?,
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
            0 => Ok(Box::new(ColumnPartitioner)),
            _ => Ok(Box::new(HashPartitioner)),
        }
    }

    /// Prints the row index without its zero padding.
    fn format_output(&self, key: &[u8], value: &[u8], line: &mut Vec<u8>) {
        let first_significant = key
            .iter()
            .position(|byte| *byte != b'0')
            .unwrap_or(key.len().saturating_sub(1));
        line.extend_from_slice(&key[first_significant..]);
        line.push(b'\t');
        line.extend_from_slice(value);
    }
}

/// Appends `index` zero-padded to [`INDEX_DIGITS`] digits.
fn push_padded_index(out: &mut Vec<u8>, index: u64) {
    out.extend_from_slice(format!("{index:0INDEX_DIGITS$}").as_bytes());
}

/// Parses whitespace-separated fields of an entry line; `None` when malformed.
fn parse_fields<const N: usize>(line: &[u8]) -> Option<[&str; N]> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let mut parsed = [""; N];
    for slot in &mut parsed {
        *slot = fields.next()?;
    }
    fields.next().is_none().then_some(parsed)
}

/// Step 1's mapper: tags matrix and vector entries with their column.
struct EntryMapper {
    settings: Settings,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Mapper for EntryMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let line = record.data.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            return Ok(());
        }
        let Some(is_matrix) = self.settings.is_matrix(record.path) else {
            return Err(JobError::permanent(format!(
                "input `{}` is under neither `{MATRIX_PARAM}` = `{}` nor `{VECTOR_PARAM}` = `{}`",
                record.path.display(),
                self.settings.matrix,
                self.settings.vector
            )));
        };
        let malformed = |expected: &str| {
            JobError::permanent(format!(
                "entry {} is not `{expected}`",
                record_location(record.path, record.offset)
            ))
        };
        self.key.clear();
        self.value.clear();
        if is_matrix {
            let parsed = parse_fields::<3>(line).and_then(|[row, column, value]| {
                Some((
                    row.parse::<u64>().ok()?,
                    column.parse::<u64>().ok()?,
                    value.parse::<f64>().ok()?,
                ))
            });
            let Some((row, column, value)) = parsed else {
                return Err(malformed("i j a_ij"));
            };
            push_padded_index(&mut self.key, column);
            self.key.push(TAG_MATRIX);
            self.value.extend_from_slice(&row.to_be_bytes());
            self.value.extend_from_slice(&value.to_bits().to_be_bytes());
        } else {
            let parsed = parse_fields::<2>(line).and_then(|[column, value]| {
                Some((column.parse::<u64>().ok()?, value.parse::<f64>().ok()?))
            });
            let Some((column, value)) = parsed else {
                return Err(malformed("j v_j"));
            };
            push_padded_index(&mut self.key, column);
            self.key.push(TAG_VECTOR);
            self.value.extend_from_slice(&value.to_bits().to_be_bytes());
        }
        out.emit(&self.key, &self.value)
    }
}

/// Sends a column's vector entry and matrix entries to the same reducer: hashes `j`
/// only, not the tag.
#[derive(Debug, Clone, Copy)]
struct ColumnPartitioner;

impl Partitioner for ColumnPartitioner {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        let column = &key[..key.len().min(INDEX_DIGITS)];
        HashPartitioner.partition(column, partitions)
    }
}

fn malformed_intermediate() -> JobError {
    JobError::permanent("matvec: malformed intermediate record")
}

fn f64_from_be(bytes: &[u8]) -> Result<f64, JobError> {
    let bits: [u8; 8] = bytes.try_into().map_err(|_| malformed_intermediate())?;
    Ok(f64::from_bits(u64::from_be_bytes(bits)))
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

/// A sum of finite values whose exact total is finite but an intermediate float is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IntermediateOverflow;

/// An exact sum of floats: Shewchuk's non-overlapping partials, as in Python's
/// `math.fsum` (whose handling of specials and final rounding this follows). The short
/// names `x` and `y` are those of that source, so the two can be compared line by line.
#[derive(Debug, Default, Clone)]
struct ExactSum {
    /// Non-overlapping, increasing in magnitude; their exact sum is the exact sum of
    /// the finite values added.
    partials: Vec<f64>,
    /// Sum of the infinities and NaNs added (NaN when they cancel or any was NaN).
    special_sum: f64,
    /// Sum of the infinities added (NaN when +inf and -inf were both added).
    infinity_sum: f64,
}

impl ExactSum {
    /// Adds a value. Fails when a finite intermediate overflows (Python raises too).
    fn add(&mut self, value: f64) -> Result<(), IntermediateOverflow> {
        let mut x = value;
        let mut kept = 0;
        for index in 0..self.partials.len() {
            let mut y = self.partials[index];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let high = x + y;
            let low = y - (high - x);
            if low != 0.0 {
                self.partials[kept] = low;
                kept += 1;
            }
            x = high;
        }
        self.partials.truncate(kept);
        if x == 0.0 {
            return Ok(());
        }
        if x.is_finite() {
            self.partials.push(x);
            return Ok(());
        }
        if value.is_finite() {
            return Err(IntermediateOverflow);
        }
        if value.is_infinite() {
            self.infinity_sum += value;
        }
        self.special_sum += value;
        // Specials decide the result; the finite partials no longer matter.
        self.partials.clear();
        Ok(())
    }

    /// Values whose exact sum is the exact sum so far: the partials, or the special
    /// value when an infinity or NaN was added.
    fn partials(&self) -> Vec<f64> {
        if self.special_sum != 0.0 {
            return vec![self.total()];
        }
        self.partials.clone()
    }

    /// The exact sum, correctly rounded to the nearest float (ties to even).
    fn total(&self) -> f64 {
        if self.special_sum != 0.0 {
            return if self.infinity_sum.is_nan() {
                f64::NAN
            } else {
                self.special_sum
            };
        }
        let partials = &self.partials;
        let mut remaining = partials.len();
        let Some(&last) = partials.last() else {
            return 0.0;
        };
        remaining -= 1;
        let mut high = last;
        let mut low = 0.0;
        // Add partials from the largest down until the sum becomes inexact.
        while remaining > 0 {
            let x = high;
            remaining -= 1;
            let y = partials[remaining];
            high = x + y;
            let y_rounded = high - x;
            low = y - y_rounded;
            if low != 0.0 {
                break;
            }
        }
        // Half-way case: make the rounding of `high + low` see the partials below.
        if remaining > 0 {
            let next = partials[remaining - 1];
            let same_sign = (low < 0.0 && next < 0.0) || (low > 0.0 && next > 0.0);
            if same_sign {
                let y = low * 2.0;
                let x = high + y;
                let y_rounded = x - high;
                if y == y_rounded {
                    high = x;
                }
            }
        }
        high
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

    fn exact_sum(values: &[f64]) -> f64 {
        let mut sum = ExactSum::default();
        for value in values {
            sum.add(*value).unwrap();
        }
        sum.total()
    }

    #[test]
    fn exact_sums_are_correctly_rounded_in_any_order() {
        assert_eq!(exact_sum(&[1e16, 1.0, -1e16]), 1.0);
        assert_eq!(exact_sum(&[0.1; 10]), 1.0);
        // Python raises too: the exact total is finite but an intermediate is not.
        let mut overflowing = ExactSum::default();
        overflowing.add(1e308).unwrap();
        assert!(overflowing.add(1e308).is_err());
        assert_eq!(exact_sum(&[]), 0.0);
        // Python: math.fsum([1, 1e100, 1, -1e100] * 10000) == 20000.0
        let many: Vec<f64> = [1.0, 1e100, 1.0, -1e100].repeat(10_000);
        assert_eq!(exact_sum(&many), 20000.0);
        let mut reversed = many.clone();
        reversed.reverse();
        assert_eq!(exact_sum(&reversed), 20000.0);
        assert!(exact_sum(&[f64::INFINITY, 1.0]).is_infinite());
        assert!(exact_sum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert!(exact_sum(&[f64::NAN, 1.0]).is_nan());
        // Ties to even across partials: 1 + 2^-53 + 2^-106 rounds up.
        let tiny = f64::EPSILON / 2.0;
        assert_eq!(exact_sum(&[1.0, tiny, tiny * tiny]), 1.0 + f64::EPSILON);
    }

    #[test]
    fn partial_sums_add_up_to_the_same_exact_total() {
        let values: Vec<f64> = (1..200).map(|index| 1.0 / f64::from(index)).collect();
        let mut combined = ExactSum::default();
        for chunk in values.chunks(17) {
            let mut partial = ExactSum::default();
            for value in chunk {
                partial.add(*value).unwrap();
            }
            for value in partial.partials() {
                combined.add(value).unwrap();
            }
        }
        assert_eq!(combined.total(), exact_sum(&values));
    }

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
