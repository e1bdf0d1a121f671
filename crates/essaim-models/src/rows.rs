//! Labelled rows of a CSV or TSV file with a header line, as the training and
//! evaluation jobs read them, and which side of the seeded split each row falls on.
//!
//! CSV is RFC 4180, split by the CSV reader of the MapReduce jobs (quoted fields may
//! hold the separator; a row whose quotes are malformed is skipped and counted). TSV is
//! the IANA form: fields separated by tabs, no quoting, so a `"` in a message body is
//! just a character. Every input file starts with the same header; the jobs find their
//! columns in it before anything runs (`prepare`) and skip each file's first line.
//!
//! The split is a pure function of the seed and the row's bytes: the same row is on the
//! same side in training, in evaluation, on every worker and in every run, and the
//! decision needs no coordination between map tasks.

use essaim_mapreduce::api::{JobError, JobParams};
use essaim_mapreduce::jobs::csv::CsvSplitter;

/// How fields are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// Comma-separated, RFC 4180 quoting.
    Csv,
    /// Tab-separated, no quoting.
    Tsv,
}

impl RowFormat {
    /// Parses `csv` or `tsv`.
    pub fn parse(text: &str) -> Result<Self, JobError> {
        match text {
            "csv" => Ok(Self::Csv),
            "tsv" => Ok(Self::Tsv),
            _ => Err(JobError::permanent(format!(
                "parameter `format` = `{text}`: expected csv or tsv"
            ))),
        }
    }

    /// Returns the format a file name implies: `.tsv` or `.tab` is TSV, anything else CSV.
    pub fn from_file_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tsv") || lower.ends_with(".tab") {
            Self::Tsv
        } else {
            Self::Csv
        }
    }

    /// Returns the parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Tsv => "tsv",
        }
    }
}

/// The split of rows into training and held-out evaluation rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// The seed: another seed, another split.
    pub seed: u64,
    /// Share of rows held out for evaluation, in [0, 1).
    pub holdout: f64,
}

impl Split {
    /// Reads `seed` (default 42) and `holdout` (default 0.2) from the parameters.
    pub fn from_params(params: &JobParams) -> Result<Self, JobError> {
        let seed = params.parse_or("seed", 42u64)?;
        let holdout = params.parse_or("holdout", 0.2f64)?;
        if !(0.0..1.0).contains(&holdout) {
            return Err(JobError::permanent(format!(
                "parameter `holdout` = {holdout}: expected a share in [0, 1)"
            )));
        }
        Ok(Self { seed, holdout })
    }

    /// Tells whether the row `line` (its bytes, without the line end) is held out.
    pub fn is_held_out(&self, line: &[u8]) -> bool {
        let hash =
            essaim_core::rng::mix(essaim_mapreduce::api::HashPartitioner::hash(line) ^ self.seed);
        // The top 53 bits as a uniform number in [0, 1).
        let uniform = (hash >> 11) as f64 / (1u64 << 53) as f64;
        uniform < self.holdout
    }
}

/// Finds the label and text columns of rows.
#[derive(Debug)]
pub struct RowReader {
    format: RowFormat,
    label_index: usize,
    text_index: usize,
    csv: CsvSplitter,
}

/// Why a row was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRow {
    /// Malformed CSV quoting.
    #[error("{0}")]
    Quoting(#[from] essaim_mapreduce::jobs::csv::Malformed),
    /// Fewer fields than the header named.
    #[error("the row has {found} fields; the label and text columns need {needed}")]
    TooShort {
        /// Fields found.
        found: usize,
        /// Fields needed.
        needed: usize,
    },
    /// An empty label, or one with control characters.
    #[error("the label is empty or holds a control character")]
    Label,
}

impl RowReader {
    /// A reader of rows whose label and text are the columns `label_index` and
    /// `text_index`.
    pub fn new(format: RowFormat, label_index: usize, text_index: usize) -> Self {
        Self {
            format,
            label_index,
            text_index,
            csv: CsvSplitter::new(b','),
        }
    }

    /// Reads `params`' `format`, `label_index` and `text_index` (set by `prepare`).
    pub fn from_params(params: &JobParams) -> Result<Self, JobError> {
        let format = RowFormat::parse(params.get("format").unwrap_or("csv"))?;
        let index = |name: &str| -> Result<usize, JobError> {
            params.require(name)?.parse().map_err(|_| {
                JobError::permanent(format!("parameter `{name}` is not a column index"))
            })
        };
        Ok(Self::new(
            format,
            index("label_index")?,
            index("text_index")?,
        ))
    }

    /// Calls `on_row(label, text)` for the row `line`, or says why it is skipped.
    pub fn read<T>(
        &mut self,
        line: &[u8],
        on_row: impl FnOnce(&str, &[u8]) -> T,
    ) -> Result<T, BadRow> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let needed = self.label_index.max(self.text_index) + 1;
        match self.format {
            RowFormat::Tsv => {
                let fields: Vec<&[u8]> = line.split(|byte| *byte == b'\t').collect();
                let (Some(label), Some(text)) =
                    (fields.get(self.label_index), fields.get(self.text_index))
                else {
                    return Err(BadRow::TooShort {
                        found: fields.len(),
                        needed,
                    });
                };
                Ok(on_row(checked_label(label)?, text))
            }
            RowFormat::Csv => {
                let fields = self.csv.split(line)?;
                let (Some(label), Some(text)) =
                    (fields.get(self.label_index), fields.get(self.text_index))
                else {
                    return Err(BadRow::TooShort {
                        found: fields.len(),
                        needed,
                    });
                };
                Ok(on_row(checked_label(label)?, text))
            }
        }
    }
}

/// A label becomes part of keys and output lines: no control characters, not empty.
fn checked_label(label: &[u8]) -> Result<&str, BadRow> {
    let label = std::str::from_utf8(label).map_err(|_| BadRow::Label)?;
    let label = label.trim();
    if label.is_empty() || label.chars().any(char::is_control) {
        return Err(BadRow::Label);
    }
    Ok(label)
}

/// Returns the column names of a header line.
pub fn header_columns(format: RowFormat, line: &[u8]) -> Result<Vec<String>, JobError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let fields: Vec<Vec<u8>> = match format {
        RowFormat::Tsv => line.split(|b| *b == b'\t').map(<[u8]>::to_vec).collect(),
        RowFormat::Csv => {
            let mut csv = CsvSplitter::new(b',');
            let fields = csv.split(line).map_err(|error| {
                JobError::permanent(format!("the header line is not CSV: {error}"))
            })?;
            fields.iter().map(<[u8]>::to_vec).collect()
        }
    };
    Ok(fields
        .iter()
        .map(|field| String::from_utf8_lossy(field).trim().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_quoted_commas_and_tsv_rows_keep_quotes() {
        let mut csv = RowReader::new(RowFormat::Csv, 0, 2);
        let row = csv.read(b"spam,x,\"win, now\"\r", |label, text| {
            (label.to_string(), text.to_vec())
        });
        assert_eq!(row, Ok(("spam".to_string(), b"win, now".to_vec())));
        assert!(matches!(
            csv.read(b"spam,\"open", |_, _| ()),
            Err(BadRow::Quoting(_))
        ));
        assert!(matches!(
            csv.read(b"spam", |_, _| ()),
            Err(BadRow::TooShort {
                found: 1,
                needed: 3
            })
        ));
        assert_eq!(csv.read(b",x,y", |_, _| ()), Err(BadRow::Label));

        let mut tsv = RowReader::new(RowFormat::Tsv, 1, 0);
        let row = tsv.read(b"say \"hi\", ok\tham", |label, text| {
            (label.to_string(), text.to_vec())
        });
        assert_eq!(row, Ok(("ham".to_string(), b"say \"hi\", ok".to_vec())));
    }

    #[test]
    fn the_split_is_seeded_and_holds_out_about_the_share_asked() {
        let split = Split {
            seed: 7,
            holdout: 0.25,
        };
        let rows: Vec<String> = (0..20_000).map(|i| format!("row {i}")).collect();
        let held = rows
            .iter()
            .filter(|r| split.is_held_out(r.as_bytes()))
            .count();
        assert!((4_500..5_500).contains(&held), "{held}");
        let other = Split { seed: 8, ..split };
        let differ = rows
            .iter()
            .filter(|r| split.is_held_out(r.as_bytes()) != other.is_held_out(r.as_bytes()))
            .count();
        assert!(differ > 1_000, "another seed, another split: {differ}");
        let none = Split {
            seed: 7,
            holdout: 0.0,
        };
        assert!(rows.iter().all(|r| !none.is_held_out(r.as_bytes())));
    }

    #[test]
    fn formats_follow_the_file_name_and_headers_are_split() {
        assert_eq!(RowFormat::from_file_name("a/B.TSV"), RowFormat::Tsv);
        assert_eq!(RowFormat::from_file_name("a.csv"), RowFormat::Csv);
        assert_eq!(
            header_columns(RowFormat::Csv, b"label,\"the body\"\r").unwrap(),
            ["label", "the body"]
        );
        assert_eq!(
            header_columns(RowFormat::Tsv, b"label\tgroup\tbody").unwrap(),
            ["label", "group", "body"]
        );
    }
}
