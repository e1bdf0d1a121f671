//! `cosine`: the cosine similarity of a vector and every row of a sparse matrix,
//! `cos_i = A_i·v / (‖A_i‖ ‖v‖)`, with neither the matrix nor the vector held whole by
//! any task.
//!
//! Inputs as [`super::matvec`]'s, told apart by path prefix (params `matrix` and
//! `vector`): matrix entries `i j a_ij` and vector entries `j v_j` in the format of
//! [`super::entries`]. An entry listed twice counts once with the sum of its values.
//!
//! Two steps, `matvec`'s join with the norms carried along:
//!
//! 1. **Join on `j`.** Mappers emit vector entries under key `(j, 0)` and matrix entries
//!    under `(j, 1, i)`; a partitioner that hashes only `j` sends both to one reducer,
//!    where the sorted keys bring `v_j` just before the entries of column `j`. For each
//!    entry the reducer emits, under `i`, the pair `(a_ij · v_j, a_ij²)` (the product is
//!    0 in a column the vector has no entry for: a sparse vector). It also sums `v_j²`
//!    over its columns, and at the end sends that partial sum of `‖v‖²` (exact
//!    partials, and its count of vector entries) to *every* reducer of step 2, under a
//!    key `!p` that step 2's partitioner sends to partition `p`. Sending it everywhere
//!    needs the number of reducers, which the job records at planning
//!    (`cosine.reducers`, set by [`JobDefinition::prepare`]).
//! 2. **Sum by `i`.** Keys starting with `!` sort before the rows, so each reducer first
//!    adds up the R partial sums of `‖v‖²` (and checks that all R came), then, for each
//!    row, sums the products and the squares and writes
//!    `cos_i = (A_i·v / ‖A_i‖) / ‖v‖`.
//!
//! Accuracy: products and squares are rounded once each, every sum is exact and
//! rounded once (`exact_sum.rs`), so the result does not depend on the splits,
//! the number of reducers or the order values arrive in, and each cosine is within
//! about 1e-15 of the exact value. Rounding can put a row parallel to `v` a hair past
//! ±1, where the exact cosine never is: the result is clamped to `[-1, 1]`.
//!
//! Undefined cosines, and bad input:
//! - a row of zeros (every listed entry 0) has no direction: its line says `NaN`;
//! - a zero vector (every entry 0, or no entry at all) makes every cosine undefined:
//!   the job fails, and writes nothing, with an error saying the vector is zero;
//! - a malformed line, a value that is not finite, two vector entries for one index, a
//!   product or square that overflows: the job fails with a permanent error naming the
//!   file and offset, or the entry;
//! - with `columns = n` (the matrix's width, the vector's length): an index `j ≥ n` in
//!   the matrix (a row longer than `n`) or the vector fails the job, and so does a
//!   vector that does not list `n` entries (a vector of the wrong length: list each
//!   index from 0 to n − 1 once, zeros included). Without `columns` the vector is
//!   sparse, and nothing checks its length.
//!
//! Output lines: `i<TAB>cos_i`, rows sorted numerically within each part, one line per
//! row with at least one entry, values printed with Rust's shortest round-trip
//! formatting (`{:?}`).
//!
//! Parameters: `matrix`, `vector` (required, path prefixes), `columns` (optional).

use super::entries::{
    EntryChecks, INDEX_DIGITS, InputSides, LeadingIndexPartitioner, Side, checked_product,
    entry_value, f64_from_be, format_index_line, index_text, malformed_intermediate,
    parse_matrix_entry, parse_vector_entry, push_padded_index,
};
use super::exact_sum::ExactSum;
use crate::api::{
    Emit, JobDefinition, JobError, JobParams, Mapper, Partitioner, Record, Reducer, Values,
};

pub use super::entries::{COLUMNS_PARAM, MATRIX_PARAM, VECTOR_PARAM};

/// Name of the job.
pub const NAME: &str = "cosine";
/// Parameter set at planning: the number of reducers, so that step 1 can send the
/// vector's norm to each of them. A value given by the user is replaced.
pub const REDUCERS_PARAM: &str = "cosine.reducers";

/// Step 1's tags, after the column: the vector entry sorts before the column's entries.
const TAG_VECTOR: u8 = b'0';
const TAG_MATRIX: u8 = b'1';
/// The first byte of step 2's keys that carry the vector's norm: below every digit, so
/// they come before the rows.
const VECTOR_REPORT_MARK: u8 = b'!';

/// The `cosine` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cosine;

/// Reads `cosine.reducers`.
fn reducers_param(params: &JobParams) -> Result<u32, JobError> {
    match params.get(REDUCERS_PARAM).map(str::parse::<u32>) {
        Some(Ok(reducers)) if reducers >= 1 => Ok(reducers),
        _ => Err(JobError::permanent(format!(
            "parameter `{REDUCERS_PARAM}` must be the number of reducers (planning sets it)"
        ))),
    }
}

impl JobDefinition for Cosine {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "cosine similarity of a vector (`j v`) and every row of a sparse matrix (`i j a`): \
         `i<TAB>cos`"
    }

    fn path_params(&self) -> &[&str] {
        &[MATRIX_PARAM, VECTOR_PARAM]
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        InputSides::from_params(params)?;
        EntryChecks::from_params(params)?;
        if params.get(REDUCERS_PARAM).is_some() {
            reducers_param(params)?;
        }
        Ok(())
    }

    /// Records the number of reducers (see the module doc).
    fn prepare(
        &self,
        params: &mut JobParams,
        _inputs: &[std::path::PathBuf],
        _access: &crate::api::InputAccess,
        reducers: u32,
    ) -> Result<(), JobError> {
        params.set(REDUCERS_PARAM, reducers.to_string());
        Ok(())
    }

    fn steps(&self, _params: &JobParams) -> usize {
        2
    }

    fn mapper(&self, params: &JobParams, step: usize) -> Result<Box<dyn Mapper>, JobError> {
        match step {
            0 => Ok(Box::new(EntryMapper {
                sides: InputSides::from_params(params)?,
                checks: EntryChecks::from_params(params)?,
                key: Vec::new(),
            })),
            _ => Ok(Box::new(ChainedPairMapper)),
        }
    }

    fn reducer(&self, params: &JobParams, step: usize) -> Result<Box<dyn Reducer>, JobError> {
        let reducers = reducers_param(params)?;
        match step {
            0 => Ok(Box::new(ColumnJoinReducer {
                reducers,
                vector_entry: None,
                vector_squares: ExactSum::default(),
                vector_entries: 0,
            })),
            _ => Ok(Box::new(RowCosineReducer {
                reducers,
                columns: EntryChecks::from_params(params)?.columns(),
                vector_norm: None,
            })),
        }
    }

    fn partitioner(
        &self,
        _params: &JobParams,
        step: usize,
    ) -> Result<Box<dyn Partitioner>, JobError> {
        match step {
            0 => Ok(Box::new(LeadingIndexPartitioner)),
            _ => Ok(Box::new(RowPartitioner)),
        }
    }

    /// Prints the row index without its zero padding.
    fn format_output(&self, key: &[u8], value: &[u8], line: &mut Vec<u8>) {
        format_index_line(key, value, line);
    }
}

/// Returns `dot / (‖row‖ ‖v‖)` from the row's sum of squares, clamped to `[-1, 1]`, or
/// NaN for a row of zeros. Two divisions rather than one by the product of the norms,
/// which can overflow where the cosine cannot: `|dot| / ‖row‖ ≤ ‖v‖`.
fn cosine(dot: f64, row_squares: f64, vector_norm: f64) -> f64 {
    if row_squares == 0.0 {
        return f64::NAN;
    }
    (dot / row_squares.sqrt() / vector_norm).clamp(-1.0, 1.0)
}

/// Step 1's mapper: matrix entries under `(j, 1, i)`, vector entries under `(j, 0)`.
struct EntryMapper {
    sides: InputSides,
    checks: EntryChecks,
    key: Vec<u8>,
}

impl Mapper for EntryMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        self.key.clear();
        let value = match self.sides.side(record.path)? {
            Side::Matrix => {
                let Some(entry) = parse_matrix_entry(record)? else {
                    return Ok(());
                };
                self.checks.check(record, entry.column, entry.value)?;
                push_padded_index(&mut self.key, entry.column);
                self.key.push(TAG_MATRIX);
                push_padded_index(&mut self.key, entry.row);
                entry.value
            }
            Side::Vector => {
                let Some(entry) = parse_vector_entry(record)? else {
                    return Ok(());
                };
                self.checks.check(record, entry.index, entry.value)?;
                push_padded_index(&mut self.key, entry.index);
                self.key.push(TAG_VECTOR);
                entry.value
            }
        };
        out.emit(&self.key, &value.to_bits().to_be_bytes())
    }
}

/// Step 1's reducer: joins each column's entries with `v_j`, and sums `v_j²`.
struct ColumnJoinReducer {
    reducers: u32,
    /// The last vector entry seen: `(j as its padded digits, v_j)`.
    vector_entry: Option<(Vec<u8>, f64)>,
    /// `Σ v_j²` over the columns of this reducer, exact.
    vector_squares: ExactSum,
    /// How many vector entries this reducer saw.
    vector_entries: u64,
}

impl ColumnJoinReducer {
    fn add_vector_entry(&mut self, column: &[u8], values: &mut dyn Values) -> Result<(), JobError> {
        let value = values
            .next_value()?
            .ok_or_else(|| malformed_intermediate(NAME))?;
        let value = f64_from_be(value, NAME)?;
        if values.next_value()?.is_some() {
            return Err(JobError::permanent(format!(
                "the vector has two entries for index {}",
                index_text(column)
            )));
        }
        let square = checked_product(value, value, || {
            format!("the square of vector entry {}", index_text(column))
        })?;
        self.vector_squares.add(square).map_err(|_| {
            JobError::permanent("the sum of the vector's squares overflows a 64-bit float")
        })?;
        self.vector_entries += 1;
        self.vector_entry = Some((column.to_vec(), value));
        Ok(())
    }

    fn join_matrix_entry(
        &mut self,
        column: &[u8],
        row: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let describe = || format!("entry ({}, {})", index_text(row), index_text(column));
        let value = entry_value(values, NAME, describe)?;
        // Keys come sorted, so column j's vector entry (tag 0), if any, was the key
        // just before its first matrix entry.
        let vector_value = match &self.vector_entry {
            Some((vector_column, vector_value)) if vector_column == column => *vector_value,
            _ => 0.0,
        };
        let product = checked_product(value, vector_value, || {
            format!("the product of {} and the vector", describe())
        })?;
        let square = checked_product(value, value, || format!("the square of {}", describe()))?;
        let mut pair = [0u8; 16];
        pair[..8].copy_from_slice(&product.to_bits().to_be_bytes());
        pair[8..].copy_from_slice(&square.to_bits().to_be_bytes());
        out.emit(row, &pair)
    }
}

impl Reducer for ColumnJoinReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let Some((column, rest)) = key.split_at_checked(INDEX_DIGITS) else {
            return Err(malformed_intermediate(NAME));
        };
        match rest.split_first() {
            Some((&TAG_VECTOR, [])) => self.add_vector_entry(column, values),
            Some((&TAG_MATRIX, row)) if row.len() == INDEX_DIGITS => {
                self.join_matrix_entry(column, row, values, out)
            }
            _ => Err(malformed_intermediate(NAME)),
        }
    }

    /// Sends this reducer's part of `‖v‖²` to every reducer of step 2: the count of
    /// vector entries (8 bytes), then the exact partials.
    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        let mut report = self.vector_entries.to_be_bytes().to_vec();
        for partial in self.vector_squares.partials() {
            report.extend_from_slice(&partial.to_bits().to_be_bytes());
        }
        let mut key = Vec::with_capacity(1 + INDEX_DIGITS);
        for partition in 0..self.reducers {
            key.clear();
            key.push(VECTOR_REPORT_MARK);
            push_padded_index(&mut key, u64::from(partition));
            out.emit(&key, &report)?;
        }
        Ok(())
    }
}

/// Step 2's mapper: step 1's `key<TAB>value` lines back into pairs (the values are
/// bytes; the keys hold no tab).
struct ChainedPairMapper;

impl Mapper for ChainedPairMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let Some(tab) = record.data.iter().position(|byte| *byte == b'\t') else {
            return Err(malformed_intermediate(NAME));
        };
        out.emit(&record.data[..tab], &record.data[tab + 1..])
    }
}

/// Step 2's partitioner: a vector report `!p` goes to partition `p`, a row by the hash
/// of its index.
#[derive(Debug, Clone, Copy)]
struct RowPartitioner;

impl Partitioner for RowPartitioner {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        let Some((&VECTOR_REPORT_MARK, digits)) = key.split_first() else {
            return LeadingIndexPartitioner.partition(key, partitions);
        };
        // Only step 1 writes these keys. Should one ever name a partition that does not
        // exist, the reducer that receives it sees one report too many and fails.
        let partition = std::str::from_utf8(digits)
            .ok()
            .and_then(|text| text.parse::<u32>().ok())
            .unwrap_or(0);
        partition % partitions
    }
}

/// Step 2's reducer: reads `‖v‖` first, then writes each row's cosine.
struct RowCosineReducer {
    reducers: u32,
    columns: Option<u64>,
    vector_norm: Option<f64>,
}

impl RowCosineReducer {
    /// Adds up the reports of step 1's reducers into `‖v‖`, and checks the vector.
    fn read_vector_reports(&mut self, values: &mut dyn Values) -> Result<(), JobError> {
        let mut reports = 0u32;
        let mut entries = 0u64;
        let mut squares = ExactSum::default();
        while let Some(report) = values.next_value()? {
            let Some((count, partials)) = report.split_at_checked(8) else {
                return Err(malformed_intermediate(NAME));
            };
            let count: [u8; 8] = count.try_into().expect("split at 8 bytes");
            reports += 1;
            entries = entries.saturating_add(u64::from_be_bytes(count));
            for partial in partials.chunks(8) {
                squares.add(f64_from_be(partial, NAME)?).map_err(|_| {
                    JobError::permanent("the sum of the vector's squares overflows a 64-bit float")
                })?;
            }
        }
        if reports != self.reducers {
            return Err(JobError::permanent(format!(
                "{NAME}: the vector's norm came from {reports} of {} reducers",
                self.reducers
            )));
        }
        if let Some(columns) = self.columns
            && entries != columns
        {
            return Err(JobError::permanent(format!(
                "the vector has {entries} entries but `{COLUMNS_PARAM}` = {columns}: a vector \
                 of the wrong length (list each index from 0 to {} once, zeros included)",
                columns - 1
            )));
        }
        let squares = squares.total();
        if squares == 0.0 {
            return Err(JobError::permanent(
                "the vector is zero (it has no non-zero entry): the cosine similarity of a \
                 row and a zero vector is undefined",
            ));
        }
        self.vector_norm = Some(squares.sqrt());
        Ok(())
    }
}

impl Reducer for RowCosineReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        if key.first() == Some(&VECTOR_REPORT_MARK) {
            return self.read_vector_reports(values);
        }
        // The reports sort before every row, so the norm is known by now.
        let Some(vector_norm) = self.vector_norm else {
            return Err(malformed_intermediate(NAME));
        };
        if key.len() != INDEX_DIGITS {
            return Err(malformed_intermediate(NAME));
        }
        let overflow = |what: &str| {
            JobError::permanent(format!(
                "the {what} of row {} overflows a 64-bit float",
                index_text(key)
            ))
        };
        let mut dot = ExactSum::default();
        let mut squares = ExactSum::default();
        while let Some(pair) = values.next_value()? {
            let Some((product, square)) = pair.split_at_checked(8) else {
                return Err(malformed_intermediate(NAME));
            };
            dot.add(f64_from_be(product, NAME)?)
                .map_err(|_| overflow("dot product"))?;
            squares
                .add(f64_from_be(square, NAME)?)
                .map_err(|_| overflow("sum of squares"))?;
        }
        let similarity = cosine(dot.total(), squares.total(), vector_norm);
        out.emit(key, format!("{similarity:?}").as_bytes())
    }
}

#[cfg(test)]
mod tests;
