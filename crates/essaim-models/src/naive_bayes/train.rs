//! `naive-bayes-train`: the counts a multinomial naive Bayes model is made of, over the
//! training side of the split.
//!
//! For each training row the mapper emits `D␟class → 1` and, for each distinct term of
//! the text, `T␟class␟term → occurrences`; the combiner and the reducer sum. The output
//! lines are `key<TAB>count`, which [`assemble_model`] turns into the artifact on the
//! client. Held-out and malformed rows are counted (`naive_bayes.rows.*`), never used.
//!
//! Extra parameter: `alpha` (default 1), the smoothing recorded in the model.

use super::model::{ModelError, NaiveBayes};
use super::{
    HELD_OUT_ROWS_COUNTER, KEY_SEPARATOR, MALFORMED_ROWS_COUNTER, TRAIN_ROWS_COUNTER,
    prepare_columns, split_bytes, validate_shared,
};
use crate::rows::{RowReader, Split};
use crate::tokenize::for_each_term;
use essaim_mapreduce::api::{
    Emit, InputAccess, JobDefinition, JobError, JobParams, Mapper, Record, Reducer,
};
use essaim_mapreduce::counters::Counters;
use essaim_mapreduce::jobs::common::DecimalSumReducer;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The job's name.
pub const NAME: &str = "naive-bayes-train";
/// The job definition's version, recorded in a model's lineage: it changes when the
/// job would count differently.
pub const JOB_VERSION: u32 = 1;

/// The training job.
#[derive(Debug, Clone, Copy, Default)]
pub struct NaiveBayesTrain;

/// Reads `alpha` (default 1): a positive number.
pub fn alpha_param(params: &JobParams) -> Result<f64, JobError> {
    let alpha = params.parse_or("alpha", 1.0f64)?;
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(JobError::permanent(format!(
            "parameter `alpha` = {alpha}: expected a positive number"
        )));
    }
    Ok(alpha)
}

impl JobDefinition for NaiveBayesTrain {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "term counts per class of labelled CSV/TSV rows, for a naive Bayes model"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        validate_shared(params)?;
        alpha_param(params).map(|_| ())
    }

    fn prepare(
        &self,
        params: &mut JobParams,
        inputs: &[PathBuf],
        access: &InputAccess,
        _reducers: u32,
    ) -> Result<(), JobError> {
        prepare_columns(params, inputs, access)
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(CountMapper {
            rows: RowReader::from_params(params)?,
            split: Split::from_params(params)?,
            terms: HashMap::new(),
            key: String::new(),
            counters: Counters::default(),
        }))
    }

    fn combiner(
        &self,
        _params: &JobParams,
        _step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        Ok(Some(Box::new(DecimalSumReducer::default())))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(DecimalSumReducer::default()))
    }
}

struct CountMapper {
    rows: RowReader,
    split: Split,
    /// The terms of the current row and their occurrences (cleared per row).
    terms: HashMap<String, u64>,
    key: String,
    counters: Counters,
}

impl Mapper for CountMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let is_header = record.offset == 0;
        if is_header {
            return Ok(());
        }
        if self.split.is_held_out(split_bytes(record.data)) {
            self.counters.add(HELD_OUT_ROWS_COUNTER, 1);
            return Ok(());
        }
        self.terms.clear();
        let terms = &mut self.terms;
        let label = self.rows.read(record.data, |label, text| {
            for_each_term(text, |term| match terms.get_mut(term) {
                Some(count) => *count += 1,
                None => {
                    terms.insert(term.to_string(), 1);
                }
            });
            label.to_string()
        });
        let Ok(label) = label else {
            self.counters.add(MALFORMED_ROWS_COUNTER, 1);
            return Ok(());
        };
        self.counters.add(TRAIN_ROWS_COUNTER, 1);
        self.key.clear();
        self.key.extend(['D', KEY_SEPARATOR]);
        self.key.push_str(&label);
        out.emit(self.key.as_bytes(), b"1")?;
        for (term, count) in &self.terms {
            self.key.clear();
            self.key.extend(['T', KEY_SEPARATOR]);
            self.key.push_str(&label);
            self.key.push(KEY_SEPARATOR);
            self.key.push_str(term);
            out.emit(self.key.as_bytes(), count.to_string().as_bytes())?;
        }
        Ok(())
    }

    fn counters(&self, counters: &mut Counters) {
        counters.merge(&self.counters);
    }
}

/// Why the training output cannot be assembled into a model.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// A part file could not be read.
    #[error("cannot read the training output `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not one this job writes.
    #[error("unexpected line in `{path}`: {line}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, lossily.
        line: String,
    },
    /// The counts do not make a model.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Reads the training job's output parts in `output_dir` and assembles the model.
/// Blocks on file I/O; memory is the model's (one count per class and term).
pub fn assemble_model(alpha: f64, output_dir: &Path) -> Result<NaiveBayes, AssembleError> {
    let mut documents: BTreeMap<String, u64> = BTreeMap::new();
    let mut occurrences: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for_each_output_line(output_dir, |path, line| {
        let bad = || AssembleError::Line {
            path: path.to_path_buf(),
            line: line.chars().take(200).collect(),
        };
        let (key, count) = line.rsplit_once('\t').ok_or_else(bad)?;
        let count: u64 = count.parse().map_err(|_| bad())?;
        let mut parts = key.split(KEY_SEPARATOR);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("D"), Some(class), None, None) => {
                documents.insert(class.to_string(), count);
            }
            (Some("T"), Some(class), Some(term), None) => {
                occurrences
                    .entry(term.to_string())
                    .or_default()
                    .insert(class.to_string(), count);
            }
            _ => return Err(bad()),
        }
        Ok(())
    })?;
    Ok(NaiveBayes::from_counts(alpha, &documents, &occurrences)?)
}

/// Calls `on_line` for every line of every `part-*` file of a job's output directory,
/// in part order.
pub fn for_each_output_line(
    output_dir: &Path,
    mut on_line: impl FnMut(&Path, &str) -> Result<(), AssembleError>,
) -> Result<(), AssembleError> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AssembleError::Read { path, source }
    };
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(output_dir).map_err(read_error(output_dir))? {
        let path = entry.map_err(read_error(output_dir))?.path();
        let is_part = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("part-"));
        if is_part {
            parts.push(path);
        }
    }
    parts.sort();
    for path in parts {
        let file = std::fs::File::open(&path).map_err(read_error(&path))?;
        for line in std::io::BufReader::new(file).lines() {
            on_line(&path, &line.map_err(read_error(&path))?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
