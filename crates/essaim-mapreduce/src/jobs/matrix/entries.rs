//! The input format the matrix jobs share, and the keys they shuffle by.
//!
//! Inputs are text, one entry per line: matrix entries `i j a_ij` and vector entries
//! `j v_j`, fields separated by spaces or tabs, indices unsigned 64-bit integers, values
//! decimal floating point (as Rust parses `f64`: `3`, `-0.5`, `1e-7`). Empty lines and
//! lines starting with `#` are skipped; anything else malformed (a field missing or one
//! too many, an index or a value that does not parse) fails the task with a permanent
//! error naming the file and byte offset. The matrix is sparse (a missing entry is 0) and
//! has no declared size. A job that reads both tells them apart by path prefix
//! (`InputSides`).
//!
//! Keys carry indices zero-padded to 20 digits (`INDEX_DIGITS`), so the byte order
//! the shuffle sorts keys by is numeric order, and a partitioner can hash the leading
//! index alone (`LeadingIndexPartitioner`) while the rest of the key orders the values
//! that partition receives (a secondary sort).

use std::path::Path;

use super::exact_sum::ExactSum;
use crate::api::{HashPartitioner, JobError, JobParams, Partitioner, Record, Values};
use crate::jobs::common::{non_empty_param, path_bytes, record_location};

/// Parameter: path prefix of the matrix input (required by jobs that read a vector too).
pub const MATRIX_PARAM: &str = "matrix";
/// Parameter: path prefix of the vector input (required by jobs that read one).
pub const VECTOR_PARAM: &str = "vector";
/// Parameter: the matrix's number of columns, which is the vector's length (optional).
pub const COLUMNS_PARAM: &str = "columns";

/// Digits of a zero-padded index: `u64::MAX` has 20.
pub(crate) const INDEX_DIGITS: usize = 20;

/// A parsed matrix line `i j a_ij`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MatrixEntry {
    pub(crate) row: u64,
    pub(crate) column: u64,
    pub(crate) value: f64,
}

/// A parsed vector line `j v_j`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VectorEntry {
    pub(crate) index: u64,
    pub(crate) value: f64,
}

/// True for the lines every matrix job skips: empty ones and `#` comments.
fn is_skipped(line: &[u8]) -> bool {
    line.is_empty() || line.starts_with(b"#")
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

fn malformed_entry(record: &Record<'_>, expected: &str) -> JobError {
    JobError::permanent(format!(
        "entry {} is not `{expected}`",
        record_location(record.path, record.offset)
    ))
}

/// Parses a matrix line; `None` for a skipped line.
pub(crate) fn parse_matrix_entry(record: &Record<'_>) -> Result<Option<MatrixEntry>, JobError> {
    let line = record.data.trim_ascii();
    if is_skipped(line) {
        return Ok(None);
    }
    let parsed = parse_fields::<3>(line).and_then(|[row, column, value]| {
        Some(MatrixEntry {
            row: row.parse().ok()?,
            column: column.parse().ok()?,
            value: value.parse().ok()?,
        })
    });
    parsed
        .map(Some)
        .ok_or_else(|| malformed_entry(record, "i j a_ij"))
}

/// Parses a vector line; `None` for a skipped line.
pub(crate) fn parse_vector_entry(record: &Record<'_>) -> Result<Option<VectorEntry>, JobError> {
    let line = record.data.trim_ascii();
    if is_skipped(line) {
        return Ok(None);
    }
    let parsed = parse_fields::<2>(line).and_then(|[index, value]| {
        Some(VectorEntry {
            index: index.parse().ok()?,
            value: value.parse().ok()?,
        })
    });
    parsed
        .map(Some)
        .ok_or_else(|| malformed_entry(record, "j v_j"))
}

/// Which input a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Matrix,
    Vector,
}

/// The path prefixes that tell the matrix from the vector (params `matrix` and
/// `vector`, the longer prefix winning when both match).
#[derive(Debug, Clone)]
pub(crate) struct InputSides {
    matrix: String,
    vector: String,
}

impl InputSides {
    /// Reads both prefixes: required, not empty, and different.
    pub(crate) fn from_params(params: &JobParams) -> Result<Self, JobError> {
        let sides = Self {
            matrix: non_empty_param(params, MATRIX_PARAM)?.to_string(),
            vector: non_empty_param(params, VECTOR_PARAM)?.to_string(),
        };
        if sides.matrix == sides.vector {
            return Err(JobError::permanent(format!(
                "parameters `{MATRIX_PARAM}` and `{VECTOR_PARAM}` must differ"
            )));
        }
        Ok(sides)
    }

    /// Returns the side of an input file; an error names both prefixes when it is
    /// under neither.
    pub(crate) fn side(&self, path: &Path) -> Result<Side, JobError> {
        let bytes = path_bytes(path);
        let matches_matrix = bytes.starts_with(self.matrix.as_bytes());
        let matches_vector = bytes.starts_with(self.vector.as_bytes());
        match (matches_matrix, matches_vector) {
            (true, true) if self.matrix.len() > self.vector.len() => Ok(Side::Matrix),
            (true, true) => Ok(Side::Vector),
            (true, false) => Ok(Side::Matrix),
            (false, true) => Ok(Side::Vector),
            (false, false) => Err(JobError::permanent(format!(
                "input `{}` is under neither `{MATRIX_PARAM}` = `{}` nor `{VECTOR_PARAM}` = `{}`",
                path.display(),
                self.matrix,
                self.vector
            ))),
        }
    }
}

/// The checks `rownorms` and `cosine` make of every entry, beyond its syntax: a finite
/// value (a norm or a cosine of an infinite or NaN entry means nothing), and, when the
/// `columns` parameter gives the matrix's width `n`, a column (or vector index) below
/// `n`: an entry beyond it is a row longer than the others.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryChecks {
    columns: Option<u64>,
}

impl EntryChecks {
    /// Reads the optional `columns` parameter (at least 1).
    pub(crate) fn from_params(params: &JobParams) -> Result<Self, JobError> {
        let columns = match params.get(COLUMNS_PARAM) {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(columns) if columns >= 1 => Some(columns),
                _ => {
                    return Err(JobError::permanent(format!(
                        "parameter `{COLUMNS_PARAM}` = `{text}`: expected a whole number of \
                         columns, at least 1"
                    )));
                }
            },
        };
        Ok(Self { columns })
    }

    /// The matrix's width, when given.
    pub(crate) fn columns(&self) -> Option<u64> {
        self.columns
    }

    /// Checks the value and the column (or vector index) of the entry of `record`.
    pub(crate) fn check(
        &self,
        record: &Record<'_>,
        column: u64,
        value: f64,
    ) -> Result<(), JobError> {
        if !value.is_finite() {
            return Err(JobError::permanent(format!(
                "entry {} has the value `{value:?}`: norms and cosines need finite values",
                record_location(record.path, record.offset)
            )));
        }
        match self.columns {
            Some(columns) if column >= columns => Err(JobError::permanent(format!(
                "entry {} is in column {column}, outside `{COLUMNS_PARAM}` = {columns} \
                 (columns 0 to {})",
                record_location(record.path, record.offset),
                columns - 1
            ))),
            _ => Ok(()),
        }
    }
}

/// Appends `index` zero-padded to [`INDEX_DIGITS`] digits.
pub(crate) fn push_padded_index(out: &mut Vec<u8>, index: u64) {
    out.extend_from_slice(format!("{index:0INDEX_DIGITS$}").as_bytes());
}

/// Returns padded digits without their leading zeros (`0` stays `0`).
fn without_padding(digits: &[u8]) -> &[u8] {
    let first_significant = digits
        .iter()
        .position(|byte| *byte != b'0')
        .unwrap_or(digits.len().saturating_sub(1));
    &digits[first_significant..]
}

/// Returns a padded index as it is written in the input, for messages.
pub(crate) fn index_text(digits: &[u8]) -> String {
    String::from_utf8_lossy(without_padding(digits)).into_owned()
}

/// Formats an output pair `padded index → value` as `index<TAB>value`, the index without
/// its zero padding: the output line of every matrix job.
pub(crate) fn format_index_line(key: &[u8], value: &[u8], line: &mut Vec<u8>) {
    line.extend_from_slice(without_padding(key));
    line.push(b'\t');
    line.extend_from_slice(value);
}

/// Hashes a key's leading index only, so every key that starts with one index (a
/// column's vector entry and its matrix entries, a row's entries) reaches the same
/// reducer, whatever follows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeadingIndexPartitioner;

impl Partitioner for LeadingIndexPartitioner {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        let index = &key[..key.len().min(INDEX_DIGITS)];
        HashPartitioner.partition(index, partitions)
    }
}

/// Returns the value of a matrix entry from its values in the shuffle: one value, or the
/// exact sum of several when the entry was listed more than once (a coordinate list,
/// whose duplicates add up). `describe` names the entry in errors.
pub(crate) fn entry_value(
    values: &mut dyn Values,
    job: &str,
    describe: impl Fn() -> String,
) -> Result<f64, JobError> {
    let first = values
        .next_value()?
        .ok_or_else(|| malformed_intermediate(job))?;
    let first = f64_from_be(first, job)?;
    let Some(second) = values.next_value()? else {
        return Ok(first);
    };
    let overflow = |_| {
        JobError::permanent(format!(
            "the entries listed for {} overflow when added up",
            describe()
        ))
    };
    let mut sum = ExactSum::default();
    sum.add(first).map_err(overflow)?;
    sum.add(f64_from_be(second, job)?).map_err(overflow)?;
    while let Some(value) = values.next_value()? {
        sum.add(f64_from_be(value, job)?).map_err(overflow)?;
    }
    Ok(sum.total())
}

/// Returns `left · right` for finite factors, or an error saying that `what` overflows
/// (a square above `f64::MAX`, from an entry above about 1.3e154 in magnitude).
pub(crate) fn checked_product(
    left: f64,
    right: f64,
    what: impl Fn() -> String,
) -> Result<f64, JobError> {
    let product = left * right;
    if product.is_finite() {
        return Ok(product);
    }
    Err(JobError::permanent(format!(
        "{} overflows a 64-bit float",
        what()
    )))
}

/// The error of an intermediate record the job itself did not write: a bug or a foreign
/// file, never the user's input.
pub(crate) fn malformed_intermediate(job: &str) -> JobError {
    JobError::permanent(format!("{job}: malformed intermediate record"))
}

/// Reads a float written as its 8 big-endian bytes.
pub(crate) fn f64_from_be(bytes: &[u8], job: &str) -> Result<f64, JobError> {
    let bits: [u8; 8] = bytes.try_into().map_err(|_| malformed_intermediate(job))?;
    Ok(f64::from_bits(u64::from_be_bytes(bits)))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn record<'a>(path: &'a Path, data: &'a [u8]) -> Record<'a> {
        Record {
            path,
            offset: 12,
            line_in_split: 1,
            split_start: 0,
            data,
        }
    }

    #[test]
    fn entries_parse_with_spaces_or_tabs_and_skip_comments() {
        let path = PathBuf::from("m");
        let parse = |line: &[u8]| parse_matrix_entry(&record(&path, line));
        assert_eq!(
            parse(b"3\t4  -0.5\r").unwrap(),
            Some(MatrixEntry {
                row: 3,
                column: 4,
                value: -0.5
            })
        );
        assert_eq!(parse(b"# i j a").unwrap(), None);
        assert_eq!(parse(b"   ").unwrap(), None);
        for malformed in [&b"1 2"[..], b"1 2 3 4", b"1 x 3", b"-1 2 3", b"1 2 3,5"] {
            let error = parse(malformed).unwrap_err();
            assert!(!error.retryable);
            assert!(error.message.contains("`m` at byte 12"), "{error}");
        }
        let vector = parse_vector_entry(&record(&path, b"7 1e-3")).unwrap();
        assert_eq!(
            vector,
            Some(VectorEntry {
                index: 7,
                value: 1e-3
            })
        );
        assert!(parse_vector_entry(&record(&path, b"7 1 2")).is_err());
    }

    #[test]
    fn the_longer_prefix_decides_the_side() {
        let params = JobParams::from_pairs(&[("matrix", "/d/m"), ("vector", "/d/m-vector")]);
        let sides = InputSides::from_params(&params).unwrap();
        assert_eq!(sides.side(Path::new("/d/m/part-0")).unwrap(), Side::Matrix);
        assert_eq!(
            sides.side(Path::new("/d/m-vector/0")).unwrap(),
            Side::Vector
        );
        let error = sides.side(Path::new("/elsewhere")).unwrap_err();
        assert!(error.message.contains("neither"), "{error}");
        let same = JobParams::from_pairs(&[("matrix", "/d"), ("vector", "/d")]);
        assert!(InputSides::from_params(&same).is_err());
    }

    #[test]
    fn checks_refuse_non_finite_values_and_columns_beyond_the_width() {
        let path = PathBuf::from("m");
        let line = record(&path, b"");
        let unchecked = EntryChecks::from_params(&JobParams::default()).unwrap();
        assert!(unchecked.check(&line, u64::MAX, 1.0).is_ok());
        assert!(unchecked.check(&line, 0, f64::NAN).is_err());
        assert!(unchecked.check(&line, 0, f64::NEG_INFINITY).is_err());
        let four = EntryChecks::from_params(&JobParams::from_pairs(&[("columns", "4")])).unwrap();
        assert!(four.check(&line, 3, 1.0).is_ok());
        let error = four.check(&line, 4, 1.0).unwrap_err();
        assert!(
            error.message.contains("column 4, outside `columns` = 4"),
            "{error}"
        );
        for bad in ["0", "-1", "four", ""] {
            let params = JobParams::from_pairs(&[("columns", bad)]);
            assert!(EntryChecks::from_params(&params).is_err(), "{bad}");
        }
    }

    #[test]
    fn output_lines_drop_the_padding_but_keep_a_zero() {
        let mut key = Vec::new();
        push_padded_index(&mut key, 42);
        assert_eq!(key.len(), INDEX_DIGITS);
        let mut line = Vec::new();
        format_index_line(&key, b"1.5", &mut line);
        assert_eq!(line, b"42\t1.5");
        key.clear();
        push_padded_index(&mut key, 0);
        line.clear();
        format_index_line(&key, b"0.0", &mut line);
        assert_eq!(line, b"0\t0.0");
    }
}
