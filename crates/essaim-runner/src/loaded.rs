//! A loaded model version (its scorer behind its own batcher) and the slot that holds
//! the version a reference names now.
//!
//! The hot reload's guarantee lives here: a request takes an `Arc` of the slot's
//! version once, at its start, and is answered by that version even if the slot is
//! swapped meanwhile (the old version's batcher ends only once its last request is
//! answered). The swap itself is one pointer store under a lock held for no `.await`,
//! so a request sees the old version or the new one, never none.

use crate::batch::{Admission, BatchLimits, BatchObserver, Batcher, Prediction, ScoreFn};
use crate::metrics::{ErrorLabels, RunnerMetrics, VersionLabels};
use crate::oip::InferError;
use essaim_models::naive_bayes::model::{ModelError, NaiveBayes};
use essaim_registry::names::ModelRef;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::{Arc, PoisonError, RwLock};
use tokio_util::task::TaskTracker;

/// One version of a model, ready to score.
pub struct LoadedVersion {
    /// The served name.
    pub served_name: String,
    /// The registry's version number.
    pub version: u64,
    /// The artifact's SHA-256 (checked by the registry client as it arrived).
    pub sha256: String,
    /// The classes, in the order of the scores.
    pub classes: Vec<String>,
    batcher: Batcher,
    duration: Histogram,
    metrics: RunnerMetrics,
}

/// Counts a version's batches into the runner's metrics.
struct VersionObserver {
    batch_rows: Histogram,
    admitted: Counter,
    left: Counter,
}

impl BatchObserver for VersionObserver {
    fn batch_scored(&self, _requests: usize, rows: usize) {
        self.batch_rows.observe(rows as f64);
    }
    fn admitted(&self) {
        self.admitted.inc();
    }
    fn left(&self) {
        self.left.inc();
    }
}

impl LoadedVersion {
    /// Reads an artifact's bytes and starts its batcher.
    pub fn start(
        served_name: &str,
        version: u64,
        sha256: &str,
        artifact: &[u8],
        limits: BatchLimits,
        metrics: &RunnerMetrics,
        tracker: &TaskTracker,
    ) -> Result<Self, ModelError> {
        let classifier = NaiveBayes::from_bytes(artifact)?.classifier();
        let classes = classifier.classes().to_vec();
        let score: ScoreFn = Arc::new(move |texts: &[String]| {
            texts
                .iter()
                .map(|text| classifier.probabilities(text.as_bytes()))
                .collect()
        });
        let labels = VersionLabels {
            model: served_name.to_string(),
            version: version.to_string(),
        };
        let observer = VersionObserver {
            batch_rows: metrics.batch_rows.get_or_create(&labels).clone(),
            admitted: metrics.queue_admitted.get_or_create(&labels).clone(),
            left: metrics.queue_left.get_or_create(&labels).clone(),
        };
        Ok(Self {
            served_name: served_name.to_string(),
            version,
            sha256: sha256.to_string(),
            classes,
            batcher: Batcher::start(score, limits, Arc::new(observer), tracker),
            duration: metrics.request_duration.get_or_create(&labels).clone(),
            metrics: metrics.clone(),
        })
    }

    /// Scores `texts` in this version's next batch.
    pub async fn predict(&self, texts: Vec<String>) -> Result<Vec<Prediction>, InferError> {
        let started = std::time::Instant::now();
        let answer = match self.batcher.submit(texts) {
            Admission::Full => Err(InferError::QueueFull {
                model: self.served_name.clone(),
                version: self.version,
            }),
            Admission::Queued(reply_rx) => reply_rx.await.map_err(|_| InferError::Failed {
                model: self.served_name.clone(),
                version: self.version,
            }),
        };
        match &answer {
            Ok(_) => self.duration.observe(started.elapsed().as_secs_f64()),
            Err(error) => self.count_error(error),
        }
        answer
    }

    fn count_error(&self, error: &InferError) {
        self.metrics
            .errors
            .get_or_create(&ErrorLabels {
                model: self.served_name.clone(),
                version: self.version.to_string(),
                reason: error.outcome().to_string(),
            })
            .inc();
    }
}

/// The version a reference names, as last loaded.
pub struct Slot {
    /// The reference followed (`spam-filter@production`).
    pub reference: ModelRef,
    /// `primary` or `candidate`: the slot's metric label.
    pub role: &'static str,
    current: RwLock<Option<Arc<LoadedVersion>>>,
}

impl Slot {
    /// Returns an empty slot following `reference`.
    pub fn new(reference: ModelRef, role: &'static str) -> Self {
        Self {
            reference,
            role,
            current: RwLock::new(None),
        }
    }

    /// Returns the version loaded now, if any.
    pub fn get(&self) -> Option<Arc<LoadedVersion>> {
        // A poisoned lock still holds a valid pointer: the writer only stores one.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `loaded` in the slot; returns the version it replaces.
    pub fn swap(&self, loaded: Arc<LoadedVersion>) -> Option<Arc<LoadedVersion>> {
        self.current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(loaded)
    }
}
