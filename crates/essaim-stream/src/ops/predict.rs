//! Prediction: adds a model's prediction to each record (`spam-filter@production` on
//! the text of a message → its label, and optionally the label's probability and the
//! model version that predicted it).
//!
//! The model itself is not this crate's business: loading it from the registry,
//! checking its hash and following its alias is I/O, done by the runtime. Here a model
//! is anything that implements [`PredictModel`], handed to the operator with
//! [`Predict::set_model`] (for a whole pipeline, `Pipeline::set_model`). The runtime
//! swaps it only between batches, so every record is predicted by exactly one version,
//! and the version is what [`PredictModel::version`] says.
//!
//! With `runner = URL` the model is a runner's (`essaim serve`) instead of one loaded
//! in process: the runtime hands the operator a model that asks the runner over HTTP,
//! and the runner decides which version answers each row (its alias, its A/B split),
//! so [`Prediction::version`] comes with each answer.
//!
//! A record reaching the operator before any model was set, or whose prediction failed
//! (a runner that could not be reached in time), leaves by `error`, marked with the
//! reason: it is counted and may be routed, never dropped silently. The
//! model is configuration, like an enrich operator's table: it is not checkpointed,
//! so a record replayed after an alias moved is predicted by the new version.

use std::sync::Arc;

use crate::ops::{Emitted, Port, with_error};
use crate::record::{Record, Value};

/// One prediction: the label and its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The predicted class.
    pub label: String,
    /// Its probability, in [0, 1].
    pub score: f64,
    /// The version that predicted it, when it is not [`PredictModel::version`] (a
    /// runner's answer names its version row by row).
    pub version: Option<u64>,
}

/// Why a model gave no prediction; the record leaves by `error` with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PredictFailure(pub String);

/// A loaded model version that predicts a batch of texts.
pub trait PredictModel: Send + Sync + std::fmt::Debug {
    /// The registry's version number of what predicts (for a runner's model, the
    /// version of its latest answer).
    fn version(&self) -> u64;
    /// Returns one prediction per text, in order.
    fn predict_batch(&self, texts: &[&str]) -> Result<Vec<Prediction>, PredictFailure>;
}

/// The validated configuration of a `predict` operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictConfig {
    /// The model reference, `NAME@ALIAS` or `NAME@VERSION` (checked by the runtime,
    /// which resolves it).
    pub model: String,
    /// The fields whose values, joined by a space, are the model's input text.
    pub text_fields: Vec<String>,
    /// The field the predicted label is written to.
    pub label_field: String,
    /// The field the label's probability is written to, if any.
    pub score_field: Option<String>,
    /// The field the predicting version's number is written to, if any.
    pub version_field: Option<String>,
    /// The URL of a runner (`essaim serve`) that predicts instead of a model loaded in
    /// process; the runner must serve the reference's model name.
    pub runner: Option<String>,
}

impl PredictConfig {
    /// The key the runtime hands this operator's model under
    /// ([`crate::pipeline::Pipeline::set_model`]): the reference for a model loaded in
    /// process, the reference and the runner's URL for a runner's.
    pub fn model_key(&self) -> String {
        match &self.runner {
            None => self.model.clone(),
            Some(runner) => format!("{} via {runner}", self.model),
        }
    }

    /// The model's name: the reference without its `@ALIAS` or `@VERSION` (what a
    /// runner serves it under).
    pub fn model_name(&self) -> &str {
        self.model
            .split_once('@')
            .map_or(self.model.as_str(), |(name, _)| name)
    }

    /// The fields the operator adds to a record on `out`.
    pub fn output_fields(&self) -> Vec<String> {
        let mut fields = vec![self.label_field.clone()];
        fields.extend(self.score_field.iter().cloned());
        fields.extend(self.version_field.iter().cloned());
        fields
    }
}

/// Adds a model's prediction to each record.
///
/// Ports: `out`, `error`.
#[derive(Debug, Clone)]
pub struct Predict {
    config: PredictConfig,
    model: Option<Arc<dyn PredictModel>>,
}

impl Predict {
    /// The port of records that could not be predicted (no model loaded yet).
    pub const ERROR: Port = Port(1);

    /// Returns the operator, with no model yet.
    pub fn new(config: PredictConfig) -> Predict {
        Predict {
            config,
            model: None,
        }
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        ["out", "error"].map(String::from).to_vec()
    }

    /// Returns the configuration.
    pub fn config(&self) -> &PredictConfig {
        &self.config
    }

    /// Makes `model` predict the next records; returns the version it replaces.
    pub fn set_model(&mut self, model: Arc<dyn PredictModel>) -> Option<u64> {
        self.model.replace(model).map(|previous| previous.version())
    }

    /// Returns the version predicting now, if one is set.
    pub fn model_version(&self) -> Option<u64> {
        self.model.as_ref().map(|model| model.version())
    }

    /// Returns a record's input text: its text fields' values joined by a space (a
    /// null or absent field counts as empty).
    pub fn text_of(&self, record: &Record) -> String {
        let pieces: Vec<String> = self
            .config
            .text_fields
            .iter()
            .map(|field| record.get(field).to_key_string())
            .collect();
        pieces.join(" ")
    }

    /// Processes one record.
    pub fn on_record(&self, mut record: Record, out: &mut Vec<Emitted>) {
        let Some(model) = &self.model else {
            let reason = format!("model `{}` is not loaded", self.config.model);
            return out.push(Emitted {
                port: Self::ERROR,
                record: with_error(record, reason),
            });
        };
        let text = self.text_of(&record);
        let predicted = model.predict_batch(&[&text]).and_then(|mut batch| {
            batch
                .pop()
                .ok_or_else(|| PredictFailure("no prediction".into()))
        });
        let prediction = match predicted {
            Ok(prediction) => prediction,
            Err(failure) => {
                let reason = format!("model `{}`: {failure}", self.config.model);
                return out.push(Emitted {
                    port: Self::ERROR,
                    record: with_error(record, reason),
                });
            }
        };
        let config = &self.config;
        record
            .fields
            .insert(config.label_field.clone(), Value::Str(prediction.label));
        if let Some(field) = &config.score_field {
            record
                .fields
                .insert(field.clone(), Value::Float(prediction.score));
        }
        if let Some(field) = &config.version_field {
            let version = prediction.version.unwrap_or_else(|| model.version());
            let version = i64::try_from(version).unwrap_or(i64::MAX);
            record.fields.insert(field.clone(), Value::Int(version));
        }
        out.push(Emitted::out(record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_models::naive_bayes::model::{Classifier, NaiveBayes};
    use essaim_models::tokenize::for_each_term;
    use std::collections::BTreeMap;

    /// A naive Bayes model trained on labelled lines, as the training job counts them.
    fn trained(lines: &[(&str, &str)]) -> NaiveBayes {
        let mut documents: BTreeMap<String, u64> = BTreeMap::new();
        let mut occurrences: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (label, text) in lines {
            *documents.entry(label.to_string()).or_default() += 1;
            for_each_term(text.as_bytes(), |term| {
                *occurrences
                    .entry(term.to_owned())
                    .or_default()
                    .entry(label.to_string())
                    .or_default() += 1;
            });
        }
        NaiveBayes::from_counts(1.0, &documents, &occurrences).unwrap()
    }

    #[derive(Debug)]
    struct Versioned {
        version: u64,
        classifier: Classifier,
    }

    impl PredictModel for Versioned {
        fn version(&self) -> u64 {
            self.version
        }
        fn predict_batch(&self, texts: &[&str]) -> Result<Vec<Prediction>, PredictFailure> {
            Ok(texts
                .iter()
                .map(|text| {
                    let (best, probabilities) = self.classifier.probabilities(text.as_bytes());
                    Prediction {
                        label: self.classifier.classes()[best].clone(),
                        score: probabilities[best],
                        version: None,
                    }
                })
                .collect())
        }
    }

    fn spam_model(version: u64, spam_word: &str, ham_word: &str) -> Arc<dyn PredictModel> {
        let spam = format!("{spam_word} free money now");
        let ham = format!("{ham_word} agenda for the team");
        let model = trained(&[("spam", &spam), ("ham", &ham), ("spam", spam_word)]);
        Arc::new(Versioned {
            version,
            classifier: model.classifier(),
        })
    }

    fn config() -> PredictConfig {
        PredictConfig {
            model: "spam-filter@production".into(),
            text_fields: vec!["subject".into(), "body".into()],
            label_field: "label".into(),
            score_field: Some("p".into()),
            version_field: Some("model_version".into()),
            runner: None,
        }
    }

    fn message(id: u64, subject: &str, body: &str) -> Record {
        Record::new(id, 0)
            .with("subject", subject)
            .with("body", body)
    }

    #[test]
    fn records_get_the_label_score_and_version_of_the_model() {
        let model = spam_model(1, "win", "meeting");
        let mut predict = Predict::new(config());
        assert_eq!(predict.set_model(Arc::clone(&model)), None);
        let mut out = Vec::new();
        predict.on_record(message(1, "win", "free money"), &mut out);
        predict.on_record(message(2, "meeting", "agenda"), &mut out);
        let labels: Vec<&Value> = out.iter().map(|e| e.record.get("label")).collect();
        assert_eq!(labels, [&Value::from("spam"), &Value::from("ham")]);
        // The same text predicted directly by the model gives the same label and score.
        let direct = model.predict_batch(&["win free money"]).unwrap().remove(0);
        assert_eq!(out[0].record.get("p"), &Value::Float(direct.score));
        assert!(direct.score > 0.5 && direct.score <= 1.0);
        assert_eq!(out[1].record.get("model_version"), &Value::Int(1));
        assert!(out.iter().all(|emitted| emitted.port == Port::OUT));
    }

    #[test]
    fn a_swapped_model_predicts_the_next_records() {
        let mut predict = Predict::new(config());
        predict.set_model(spam_model(1, "win", "meeting"));
        let mut out = Vec::new();
        predict.on_record(message(1, "win", ""), &mut out);
        assert_eq!(predict.set_model(spam_model(2, "meeting", "win")), Some(1));
        predict.on_record(message(2, "win", ""), &mut out);
        assert_eq!(out[0].record.get("label"), &Value::from("spam"));
        assert_eq!(out[1].record.get("label"), &Value::from("ham"));
        assert_eq!(out[1].record.get("model_version"), &Value::Int(2));
        assert_eq!(predict.model_version(), Some(2));
    }

    #[test]
    fn without_a_model_records_leave_by_error_and_null_fields_are_empty_text() {
        let predict = Predict::new(config());
        let mut out = Vec::new();
        predict.on_record(message(1, "win", ""), &mut out);
        assert_eq!(out[0].port, Predict::ERROR);
        assert_eq!(
            out[0].record.get(crate::ops::ERROR_FIELD),
            &Value::from("model `spam-filter@production` is not loaded")
        );
        assert_eq!(predict.text_of(&Record::new(2, 0).with("body", "x")), " x");
    }

    /// A runner's model: answers "ham" by version 7 row by row, or fails.
    #[derive(Debug)]
    struct Remote {
        reachable: bool,
    }

    impl PredictModel for Remote {
        fn version(&self) -> u64 {
            3
        }
        fn predict_batch(&self, texts: &[&str]) -> Result<Vec<Prediction>, PredictFailure> {
            if !self.reachable {
                return Err(PredictFailure("runner http://r:1 unreachable".into()));
            }
            Ok(texts
                .iter()
                .map(|_| Prediction {
                    label: "ham".into(),
                    score: 0.75,
                    version: Some(7),
                })
                .collect())
        }
    }

    #[test]
    fn a_rows_own_version_wins_and_a_failed_prediction_leaves_by_error_with_its_reason() {
        let mut predict = Predict::new(config());
        predict.set_model(Arc::new(Remote { reachable: true }));
        let mut out = Vec::new();
        predict.on_record(message(1, "win", ""), &mut out);
        assert_eq!(out[0].record.get("model_version"), &Value::Int(7));
        assert_eq!(out[0].record.get("p"), &Value::Float(0.75));
        predict.set_model(Arc::new(Remote { reachable: false }));
        predict.on_record(message(2, "win", ""), &mut out);
        assert_eq!(out[1].port, Predict::ERROR);
        assert_eq!(
            out[1].record.get(crate::ops::ERROR_FIELD),
            &Value::from("model `spam-filter@production`: runner http://r:1 unreachable")
        );
        assert_eq!(out[1].record.get("label"), &Value::Null);
    }

    #[test]
    fn a_pipeline_predicts_with_the_model_set_for_its_reference() {
        use crate::pipeline::Pipeline;
        use crate::spec::PipelineSpec;
        let text = r#"
version = 1
[[source]]
name = "mail"
time = "t"
columns = [{ name = "t", type = "int" }, { name = "subject", type = "string" }, { name = "body", type = "string" }]
[[operator]]
name = "classify"
kind = "predict"
input = "mail"
model = "spam-filter@production"
text_fields = ["subject", "body"]
label_field = "label"
[[sink]]
name = "labelled"
input = "classify"
[[sink]]
name = "unlabelled"
input = "classify.error"
"#;
        let spec = PipelineSpec::from_toml(text).unwrap();
        let mut pipeline = Pipeline::new(spec, &BTreeMap::new()).unwrap();
        let mut out = Vec::new();
        pipeline
            .push_line("mail", b"1,win,free", 0, &mut out)
            .unwrap();
        let model = spam_model(1, "win", "meeting");
        assert_eq!(pipeline.set_model("spam-filter@production", &model), 1);
        assert_eq!(pipeline.set_model("other@production", &model), 0);
        pipeline
            .push_line("mail", b"2,win,free", 1, &mut out)
            .unwrap();
        let sinks: Vec<(&str, &Value)> = out
            .iter()
            .map(|sunk| (sunk.sink.as_str(), sunk.record.get("label")))
            .collect();
        assert_eq!(
            sinks,
            [
                ("unlabelled", &Value::Null),
                ("labelled", &Value::from("spam"))
            ]
        );
        assert_eq!(pipeline.stats().emitted["classify.error"], 1);
    }

    #[test]
    fn runner_texts_are_those_of_the_operators_reading_the_entry_directly() {
        use crate::pipeline::Pipeline;
        use crate::spec::PipelineSpec;
        let text = r#"
version = 1
[[source]]
name = "mail"
time = "t"
columns = [{ name = "t", type = "int" }, { name = "subject", type = "string" }, { name = "body", type = "string" }]
[[operator]]
name = "direct"
kind = "predict"
input = "mail"
model = "spam-filter@production"
runner = "http://runner:1"
text_fields = ["subject", "body"]
label_field = "label"
[[operator]]
name = "reworded"
kind = "map"
input = "direct"
set = { body = "body + ' now'" }
[[operator]]
name = "later"
kind = "predict"
input = "reworded"
model = "other@production"
runner = "http://runner:1"
text_fields = ["body"]
label_field = "label2"
[[sink]]
name = "out"
input = "later"
"#;
        let pipeline = Pipeline::new(PipelineSpec::from_toml(text).unwrap(), &BTreeMap::new());
        let pipeline = pipeline.unwrap();
        let record = pipeline.parse_line("mail", b"1,win,free money", 1).unwrap();
        let mut texts = BTreeMap::new();
        pipeline.runner_texts("mail", &record, &mut texts);
        pipeline.runner_texts("elsewhere", &record, &mut texts);
        assert_eq!(
            texts,
            BTreeMap::from([(
                "spam-filter@production via http://runner:1".to_string(),
                vec!["win free money".to_string()]
            )])
        );
        assert!(pipeline.parse_line("nope", b"1,a,b", 1).is_none());
        assert!(
            pipeline
                .parse_line("mail", b"not a number,a,b", 1)
                .is_none()
        );
    }
}
