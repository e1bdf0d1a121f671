//! `naive-bayes-eval`: the confusion matrix of a model over the held-out side of the
//! split (the rows training skipped, chosen by the same seed).
//!
//! Each map task loads the model once (the `model` parameter: the artifact's path,
//! readable by every worker like the inputs), predicts each held-out row and emits
//! `actual␟predicted → 1`; the combiner and the reducer sum. [`read_confusion`] reads
//! the result on the client.

use super::model::{Classifier, NaiveBayes};
use super::train::{AssembleError, for_each_output_line};
use super::{
    HELD_OUT_ROWS_COUNTER, KEY_SEPARATOR, MALFORMED_ROWS_COUNTER, TRAIN_ROWS_COUNTER,
    prepare_columns, split_bytes, validate_shared,
};
use crate::metrics::Confusion;
use crate::rows::{RowReader, Split};
use essaim_mapreduce::api::{
    Emit, InputAccess, JobDefinition, JobError, JobParams, Mapper, Record, Reducer,
};
use essaim_mapreduce::counters::Counters;
use essaim_mapreduce::jobs::common::DecimalSumReducer;
use std::path::{Path, PathBuf};

/// The job's name.
pub const NAME: &str = "naive-bayes-eval";

/// The evaluation job.
#[derive(Debug, Clone, Copy, Default)]
pub struct NaiveBayesEvaluate;

impl JobDefinition for NaiveBayesEvaluate {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "confusion matrix of a naive Bayes model over the held-out rows"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        validate_shared(params)?;
        params.require("model").map(|_| ())
    }

    fn path_params(&self) -> &[&str] {
        &["model"]
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
        let path = params.require("model")?;
        let bytes = std::fs::read(path).map_err(|error| {
            JobError::retryable(format!("cannot read the model `{path}`: {error}"))
        })?;
        let model = NaiveBayes::from_bytes(&bytes)
            .map_err(|error| JobError::permanent(format!("the model `{path}`: {error}")))?;
        Ok(Box::new(PredictMapper {
            rows: RowReader::from_params(params)?,
            split: Split::from_params(params)?,
            classifier: model.classifier(),
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

struct PredictMapper {
    rows: RowReader,
    split: Split,
    classifier: Classifier,
    key: String,
    counters: Counters,
}

impl Mapper for PredictMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let is_header = record.offset == 0;
        if is_header {
            return Ok(());
        }
        if !self.split.is_held_out(split_bytes(record.data)) {
            self.counters.add(TRAIN_ROWS_COUNTER, 1);
            return Ok(());
        }
        let classifier = &self.classifier;
        let key = &mut self.key;
        let read = self.rows.read(record.data, |label, text| {
            key.clear();
            key.push_str(label);
            key.push(KEY_SEPARATOR);
            key.push_str(classifier.predict(text));
        });
        if read.is_err() {
            self.counters.add(MALFORMED_ROWS_COUNTER, 1);
            return Ok(());
        }
        self.counters.add(HELD_OUT_ROWS_COUNTER, 1);
        out.emit(self.key.as_bytes(), b"1")
    }

    fn counters(&self, counters: &mut Counters) {
        counters.merge(&self.counters);
    }
}

/// Reads the evaluation job's output parts in `output_dir` into a confusion matrix.
pub fn read_confusion(output_dir: &Path) -> Result<Confusion, AssembleError> {
    let mut confusion = Confusion::default();
    for_each_output_line(output_dir, |path, line| {
        let bad = || AssembleError::Line {
            path: path.to_path_buf(),
            line: line.chars().take(200).collect(),
        };
        let (key, count) = line.rsplit_once('\t').ok_or_else(bad)?;
        let count: u64 = count.parse().map_err(|_| bad())?;
        let (actual, predicted) = key.split_once(KEY_SEPARATOR).ok_or_else(bad)?;
        confusion.add(actual, predicted, count);
        Ok(())
    })?;
    Ok(confusion)
}
