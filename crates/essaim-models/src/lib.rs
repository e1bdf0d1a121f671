//! The model platform's training: models are trained and evaluated as ordinary
//! MapReduce jobs on the cluster (seed 002: training is one of the data platform's
//! jobs), then registered in `essaim-registry` by the client that ran them.
//!
//! The models stay simple on purpose: the platform around them is the point. Today
//! there is one, a multinomial naive Bayes text classifier:
//!
//! | module | concept |
//! |---|---|
//! | [`tokenize`] | text → terms (the tokenisation of scikit-learn's `CountVectorizer`) |
//! | [`rows`] | labelled rows of a CSV or TSV file with a header: which columns, which side of the split |
//! | [`naive_bayes`] | the model (artifact format, scoring), the training and evaluation jobs |
//! | [`metrics`] | the confusion matrix and accuracy, precision, recall, F1 |
#![warn(missing_docs)]

pub mod metrics;
pub mod naive_bayes;
pub mod rows;
pub mod tokenize;

use essaim_mapreduce::api::JobDefinition;
use std::sync::Arc;

/// Returns the jobs of the model platform, to register beside the built-in ones.
pub fn training_jobs() -> Vec<Arc<dyn JobDefinition>> {
    vec![
        Arc::new(naive_bayes::train::NaiveBayesTrain),
        Arc::new(naive_bayes::evaluate::NaiveBayesEvaluate),
    ]
}
