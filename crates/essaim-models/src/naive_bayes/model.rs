//! The naive Bayes artifact and its scorer.
//!
//! The artifact stores counts, not probabilities: integers serialise exactly, the
//! same training data gives the same bytes (so the same SHA-256 in the registry), and
//! the smoothing `alpha` stays a visible parameter. It is JSON with a format name and
//! version, checked at load; the scorer computes the logarithms once:
//!
//! ```text
//!  log P(c)   = ln(documents(c) / documents)
//!  log P(t|c) = ln((count(t, c) + alpha) / (terms(c) + alpha · |vocabulary|))
//!  predict(d) = argmax_c log P(c) + Σ_{t ∈ d} n(t, d) · log P(t|c)
//! ```
//!
//! Terms outside the training vocabulary are ignored, and ties go to the first class
//! in sorted order, as scikit-learn's `MultinomialNB` does.

use crate::tokenize::for_each_term;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The artifact's format name.
pub const FORMAT: &str = "essaim.naive-bayes";
/// The artifact's format version.
pub const FORMAT_VERSION: u32 = 1;

/// Why an artifact cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not JSON of the expected shape.
    #[error("not a naive Bayes artifact: {0}")]
    Decode(#[from] serde_json::Error),
    /// Another format, or a version this build does not read.
    #[error(
        "artifact format `{format}` version {version}; this essaim reads `{FORMAT}` version {FORMAT_VERSION}"
    )]
    Format {
        /// The format found.
        format: String,
        /// The version found.
        version: u32,
    },
    /// Counts that cannot come from training.
    #[error("inconsistent naive Bayes artifact: {0}")]
    Inconsistent(String),
}

/// A trained model: counts per class and per (term, class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NaiveBayes {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Additive smoothing (1 is Laplace's).
    pub alpha: f64,
    /// The classes, sorted.
    pub classes: Vec<String>,
    /// Training documents per class.
    pub class_documents: Vec<u64>,
    /// Term occurrences per class.
    pub class_terms: Vec<u64>,
    /// Term → occurrences per class.
    pub terms: BTreeMap<String, Vec<u64>>,
}

impl NaiveBayes {
    /// Assembles a model from `(class, documents)` and `(class, term, occurrences)`.
    pub fn from_counts(
        alpha: f64,
        documents: &BTreeMap<String, u64>,
        occurrences: &BTreeMap<String, BTreeMap<String, u64>>,
    ) -> Result<Self, ModelError> {
        let classes: Vec<String> = documents.keys().cloned().collect();
        let index: HashMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(position, class)| (class.as_str(), position))
            .collect();
        let mut class_terms = vec![0u64; classes.len()];
        let mut terms = BTreeMap::new();
        for (term, per_class) in occurrences {
            let mut counts = vec![0u64; classes.len()];
            for (class, count) in per_class {
                let Some(&position) = index.get(class.as_str()) else {
                    return Err(ModelError::Inconsistent(format!(
                        "term `{term}` counted in class `{class}`, which has no document"
                    )));
                };
                counts[position] += count;
                class_terms[position] += count;
            }
            terms.insert(term.clone(), counts);
        }
        let model = Self {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            alpha,
            classes,
            class_documents: documents.values().copied().collect(),
            class_terms,
            terms,
        };
        model.check()?;
        Ok(model)
    }

    /// Returns the artifact's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a model always serialises")
    }

    /// Reads an artifact, checking its format and consistency.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let model: Self = serde_json::from_slice(bytes)?;
        if model.format != FORMAT || model.version != FORMAT_VERSION {
            return Err(ModelError::Format {
                format: model.format,
                version: model.version,
            });
        }
        model.check()?;
        Ok(model)
    }

    fn check(&self) -> Result<(), ModelError> {
        let classes = self.classes.len();
        let inconsistent = |what: &str| Err(ModelError::Inconsistent(what.to_string()));
        if classes == 0 {
            return inconsistent("no class (were all rows held out or malformed?)");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return inconsistent("alpha must be a positive number");
        }
        if self.class_documents.len() != classes || self.class_terms.len() != classes {
            return inconsistent("per-class counts do not match the classes");
        }
        if !self.classes.windows(2).all(|pair| pair[0] < pair[1]) {
            return inconsistent("classes are not sorted and distinct");
        }
        if self.terms.values().any(|counts| counts.len() != classes) {
            return inconsistent("a term's counts do not match the classes");
        }
        Ok(())
    }

    /// Returns the scorer of this model.
    pub fn classifier(&self) -> Classifier {
        let documents: u64 = self.class_documents.iter().sum();
        let vocabulary = self.terms.len() as f64;
        let log_prior = self
            .class_documents
            .iter()
            .map(|count| (*count as f64 / documents as f64).ln())
            .collect();
        let denominators: Vec<f64> = self
            .class_terms
            .iter()
            .map(|total| *total as f64 + self.alpha * vocabulary)
            .collect();
        let log_likelihood = self
            .terms
            .iter()
            .map(|(term, counts)| {
                let logs = counts
                    .iter()
                    .zip(&denominators)
                    .map(|(count, denominator)| ((*count as f64 + self.alpha) / denominator).ln())
                    .collect();
                (term.clone(), logs)
            })
            .collect();
        Classifier {
            classes: self.classes.clone(),
            log_prior,
            log_likelihood,
        }
    }
}

/// A model ready to predict: its logarithms computed once.
#[derive(Debug, Clone)]
pub struct Classifier {
    classes: Vec<String>,
    log_prior: Vec<f64>,
    log_likelihood: FxHashMap<String, Vec<f64>>,
}

impl Classifier {
    /// Returns the class predicted for `text`.
    pub fn predict(&self, text: &[u8]) -> &str {
        &self.classes[best_class(&self.log_scores(text))]
    }

    /// Returns the classes, sorted: the order of [`Self::probabilities`].
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Returns the position of the predicted class in [`Self::classes`] and the
    /// probability of every class (scikit-learn's `predict_proba`: the joint
    /// log-likelihoods normalised with log-sum-exp, so that long texts do not underflow).
    pub fn probabilities(&self, text: &[u8]) -> (usize, Vec<f64>) {
        let scores = self.log_scores(text);
        let best = best_class(&scores);
        let top = scores[best];
        let exponentials: Vec<f64> = scores.iter().map(|score| (score - top).exp()).collect();
        let total: f64 = exponentials.iter().sum();
        let probabilities = exponentials.iter().map(|value| value / total).collect();
        (best, probabilities)
    }

    /// Returns log P(c) + Σ n(t, d) · log P(t|c) for every class c.
    fn log_scores(&self, text: &[u8]) -> Vec<f64> {
        let mut scores = self.log_prior.clone();
        for_each_term(text, |term| {
            if let Some(logs) = self.log_likelihood.get(term) {
                for (score, log) in scores.iter_mut().zip(logs) {
                    *score += log;
                }
            }
        });
        scores
    }
}

/// Returns the position of the highest score; ties go to the first (sorted) class.
fn best_class(scores: &[f64]) -> usize {
    let mut best = 0;
    for (position, score) in scores.iter().enumerate() {
        if *score > scores[best] {
            best = position;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> NaiveBayes {
        let documents = BTreeMap::from([("ham".to_string(), 2), ("spam".to_string(), 2)]);
        let mut occurrences: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (term, class, count) in [
            ("win", "spam", 3),
            ("money", "spam", 2),
            ("meeting", "ham", 2),
            ("money", "ham", 1),
        ] {
            occurrences
                .entry(term.into())
                .or_default()
                .insert(class.into(), count);
        }
        NaiveBayes::from_counts(1.0, &documents, &occurrences).unwrap()
    }

    #[test]
    fn predictions_follow_the_counts() {
        let classifier = toy().classifier();
        assert_eq!(classifier.predict(b"WIN money now"), "spam");
        assert_eq!(classifier.predict(b"the meeting"), "ham");
        // Equal priors and no known term: the first class, as scikit-learn.
        assert_eq!(classifier.predict(b"unknown words"), "ham");
    }

    #[test]
    fn probabilities_sum_to_one_and_agree_with_the_prediction() {
        let classifier = toy().classifier();
        assert_eq!(classifier.classes(), ["ham", "spam"]);
        let (best, probabilities) = classifier.probabilities(b"win money win");
        assert_eq!(
            classifier.classes()[best],
            classifier.predict(b"win money win")
        );
        assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(probabilities[1] > 0.5, "{probabilities:?}");
        // A text long enough to underflow exp() of its joint log-likelihood.
        let long = "win ".repeat(5000);
        let (best, probabilities) = classifier.probabilities(long.as_bytes());
        assert_eq!((best, probabilities[1]), (1, 1.0), "{probabilities:?}");
    }

    #[test]
    fn the_likelihood_is_the_smoothed_ratio() {
        let model = toy();
        let classifier = model.classifier();
        // money|spam = (2 + 1) / (5 + 1 × 3 terms).
        let expected = (3.0f64 / 8.0).ln();
        assert!((classifier.log_likelihood["money"][1] - expected).abs() < 1e-12);
        assert_eq!(model.class_terms, [3, 5]);
    }

    #[test]
    fn artifacts_round_trip_and_foreign_bytes_are_refused() {
        let model = toy();
        let bytes = model.to_bytes();
        assert_eq!(NaiveBayes::from_bytes(&bytes).unwrap(), model);
        assert_eq!(bytes, toy().to_bytes(), "same counts, same bytes");
        assert!(matches!(
            NaiveBayes::from_bytes(b"not json"),
            Err(ModelError::Decode(_))
        ));
        let mut other = model.clone();
        other.version = 99;
        assert!(matches!(
            NaiveBayes::from_bytes(&other.to_bytes()),
            Err(ModelError::Format { version: 99, .. })
        ));
        let mut broken = model;
        broken.class_documents.pop();
        assert!(matches!(
            NaiveBayes::from_bytes(&broken.to_bytes()),
            Err(ModelError::Inconsistent(_))
        ));
    }
}
