//! A multinomial naive Bayes text classifier, trained and evaluated on the cluster.
//!
//! ```text
//!  rows (CSV/TSV) ──▶ naive-bayes-train (map: terms per class of the training rows;
//!                     combine + reduce: sums) ──▶ count lines ──▶ client: NaiveBayes
//!                     (artifact) ──▶ naive-bayes-eval (map: predict each held-out row;
//!                     reduce: confusion counts) ──▶ client: metrics ──▶ registry
//! ```
//!
//! Training needs no coordination beyond the shuffle: the counts of a class and a term
//! are sums over rows, so map, combine and reduce are one sum. Memory is bounded by
//! the job's configuration whatever the corpus size (the framework spills); the model
//! itself holds one count per (class, term), so its size is the vocabulary's.
//!
//! | module | concept |
//! |---|---|
//! | [`model`] | the artifact (counts, JSON with a format name and version) and the scorer |
//! | [`train`] | the `naive-bayes-train` job: counts of the training rows |
//! | [`evaluate`] | the `naive-bayes-eval` job: the confusion matrix of the held-out rows |
//!
//! Parameters shared by both jobs: `label_column`, `text_column` (names in the header),
//! `format` (`csv` or `tsv`; default from the first input's extension), `seed`
//! (default 42) and `holdout` (default 0.2) of the split (see [`crate::rows::Split`]).

pub mod evaluate;
pub mod model;
pub mod train;

use crate::rows::{RowFormat, Split, header_columns};
use essaim_mapreduce::api::{InputAccess, JobError, JobParams};
use std::io::{BufRead, Read};
use std::path::PathBuf;

/// Counter of rows used for training.
pub const TRAIN_ROWS_COUNTER: &str = "naive_bayes.rows.train";
/// Counter of rows held out for evaluation.
pub const HELD_OUT_ROWS_COUNTER: &str = "naive_bayes.rows.held_out";
/// Counter of rows skipped as malformed.
pub const MALFORMED_ROWS_COUNTER: &str = "naive_bayes.rows.malformed";

/// Longest header line read.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Separates the parts of a count key: a byte no label or term holds (labels refuse
/// control characters, terms are word characters).
pub(crate) const KEY_SEPARATOR: char = '\u{1f}';

/// Checks the parameters both jobs share.
fn validate_shared(params: &JobParams) -> Result<(), JobError> {
    params.require("label_column")?;
    params.require("text_column")?;
    Split::from_params(params)?;
    if let Some(format) = params.get("format") {
        RowFormat::parse(format)?;
    }
    Ok(())
}

/// Reads the header of every input (local or an object, decoded, through `access`),
/// checks they agree, and sets `format`, `label_index` and `text_index`.
fn prepare_columns(
    params: &mut JobParams,
    inputs: &[PathBuf],
    access: &InputAccess,
) -> Result<(), JobError> {
    let Some(first) = inputs.first() else {
        return Err(JobError::permanent("the job has no input file"));
    };
    let format = match params.get("format") {
        Some(format) => RowFormat::parse(format)?,
        None => RowFormat::from_file_name(&first.to_string_lossy()),
    };
    let mut header: Option<Vec<String>> = None;
    for input in inputs {
        let columns = header_columns(format, &first_line(access, input)?)?;
        match &header {
            Some(expected) if *expected != columns => {
                return Err(JobError::permanent(format!(
                    "`{}` has the header {columns:?}, unlike the first input's {expected:?}",
                    input.display()
                )));
            }
            Some(_) => {}
            None => header = Some(columns),
        }
    }
    let columns = header.unwrap_or_default();
    let index_of = |name: &str| -> Result<usize, JobError> {
        let wanted = params.require(name)?;
        columns.iter().position(|c| c == wanted).ok_or_else(|| {
            JobError::permanent(format!(
                "parameter `{name}`: no column `{wanted}` in the header {columns:?}"
            ))
        })
    };
    let label_index = index_of("label_column")?;
    let text_index = index_of("text_column")?;
    params.set("format", format.as_str());
    params.set("label_index", label_index.to_string());
    params.set("text_index", text_index.to_string());
    Ok(())
}

fn first_line(access: &InputAccess, path: &std::path::Path) -> Result<Vec<u8>, JobError> {
    let unreadable = |error: std::io::Error| {
        JobError::permanent(format!("cannot read `{}`: {error}", path.display()))
    };
    let file = access.open(path)?;
    let mut line = Vec::new();
    std::io::BufReader::new(file)
        .take(MAX_HEADER_BYTES)
        .read_until(b'\n', &mut line)
        .map_err(unreadable)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.is_empty() {
        return Err(JobError::permanent(format!(
            "`{}` has no header line",
            path.display()
        )));
    }
    Ok(line)
}

/// The row's bytes as the split sees them (without a `\r` line end, so CRLF files
/// split as LF files do).
fn split_bytes(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}
