//! The models of a pipeline's `predict` operators: the I/O half of the operator
//! whose pure half is `essaim_stream::ops::predict`.
//!
//! A stream task loads, at its start, the version every model reference of its spec
//! names (`spam-filter@production`), from the registry, with the artifact's SHA-256
//! checked as it arrives; a reference the registry does not know, or a registry that
//! cannot be reached, fails the task with that reason before any record is read. Then
//! one follower task per stream task polls each reference every `poll_interval`, loads
//! a version the alias newly names aside, and swaps it into the reference's slot. Units
//! take the slots' versions once per batch, before processing it
//! ([`PipelineModels::current`]), so that each batch, and so each record, is predicted
//! by exactly one version. A registry that stops answering changes nothing that is
//! loaded: prediction goes on with the last version (degraded: logged once per outage,
//! `essaim_stream_model_registry_reachable` 0, failures counted).
//!
//! Beside it, a heartbeat tells the registry which version each reference has loaded
//! (`PUT /registry/v1/usage/{reporter}`, kind `pipeline`), the way runners do, so that
//! the governance view lists the pipeline among the version's users.
//!
//! The checkpoint does not hold the model: a batch replayed after a crash is predicted
//! by the version loaded at the replay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use essaim_models::naive_bayes::model::{Classifier, ModelError, NaiveBayes};
use essaim_registry::client::{ClientError, RegistryClient};
use essaim_registry::names::ModelRef;
use essaim_registry::usage::{ReporterKind, ServedUsage, SlotUsage, UsageReport};
use essaim_stream::ops::predict::{PredictFailure, PredictModel, Prediction};
use tokio_util::sync::CancellationToken;

pub mod metrics;
pub mod runner;
use metrics::ModelMetrics;

/// Default time between two polls of a followed reference.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default time between two usage heartbeats.
pub const DEFAULT_USAGE_INTERVAL: Duration = Duration::from_secs(5);

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    /// The spec's reference is not `NAME@ALIAS` or `NAME@VERSION`.
    #[error("model reference `{reference}`: {reason}")]
    Reference {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry did not answer, refused (an unknown model or alias), or sent
    /// corrupt bytes.
    #[error("model `{reference}`")]
    Registry {
        /// The reference.
        reference: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// The artifact is not a model the pipeline reads.
    #[error("model `{reference}` version {version}")]
    Artifact {
        /// The reference.
        reference: String,
        /// The version.
        version: u64,
        /// Why.
        #[source]
        source: ModelError,
    },
}

/// A naive Bayes version, as the predict operator sees it.
#[derive(Debug)]
pub struct NaiveBayesVersion {
    version: u64,
    classifier: Classifier,
}

impl NaiveBayesVersion {
    /// Reads an artifact's bytes.
    pub fn from_artifact(version: u64, bytes: &[u8]) -> Result<Self, ModelError> {
        let classifier = NaiveBayes::from_bytes(bytes)?.classifier();
        Ok(NaiveBayesVersion {
            version,
            classifier,
        })
    }
}

impl PredictModel for NaiveBayesVersion {
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

/// The version one reference names, as last loaded.
struct ModelSlot {
    reference: ModelRef,
    current: RwLock<Arc<dyn PredictModel>>,
}

impl ModelSlot {
    fn get(&self) -> Arc<dyn PredictModel> {
        // A poisoned lock still holds a valid pointer: the writer only stores one.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn swap(&self, loaded: Arc<dyn PredictModel>) -> u64 {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, loaded).version()
    }
}

/// Where a pipeline's models come from and how often they are polled.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// The registry's client.
    pub client: RegistryClient,
    /// The pipeline's name (metrics, logs, usage).
    pub pipeline: String,
    /// Where artifacts are downloaded before they are read.
    pub download_dir: PathBuf,
    /// Time between two polls of a reference.
    pub poll_interval: Duration,
}

/// The loaded models of a pipeline's `predict` operators, by reference as written.
pub struct PipelineModels {
    source: ModelSource,
    slots: BTreeMap<String, ModelSlot>,
    metrics: ModelMetrics,
}

impl PipelineModels {
    /// Loads the version each of `references` names now; fails on the first that
    /// cannot be loaded.
    pub async fn load(
        source: ModelSource,
        references: &[String],
        metrics: ModelMetrics,
    ) -> Result<PipelineModels, ModelLoadError> {
        let mut slots = BTreeMap::new();
        for written in references {
            let reference =
                ModelRef::parse(written).map_err(|error| ModelLoadError::Reference {
                    reference: written.clone(),
                    reason: error.to_string(),
                })?;
            let loaded = fetch(&source, &reference, written, None)
                .await?
                .expect("with nothing loaded, the version named is always new");
            metrics.loaded(&source.pipeline, written, loaded.version());
            tracing::info!(
                pipeline = %source.pipeline, model = %written, version = loaded.version(),
                "model version loaded for the pipeline's predict operators"
            );
            let slot = ModelSlot {
                reference,
                current: RwLock::new(loaded),
            };
            slots.insert(written.clone(), slot);
        }
        Ok(PipelineModels {
            source,
            slots,
            metrics,
        })
    }

    /// Returns the version each reference has loaded now, for the next batch.
    pub fn current(&self) -> Vec<(&str, Arc<dyn PredictModel>)> {
        self.slots
            .iter()
            .map(|(written, slot)| (written.as_str(), slot.get()))
            .collect()
    }

    /// Polls every reference until `shutdown`, swapping in the versions aliases newly
    /// name; a failed poll keeps what is loaded.
    pub async fn follow(&self, shutdown: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.source.poll_interval) => {}
            }
            let mut first_failure = None;
            for (written, slot) in &self.slots {
                if let Err(error) = self.refresh(written, slot).await {
                    self.metrics.refresh_failed(&self.source.pipeline, written);
                    first_failure.get_or_insert(error);
                }
            }
            let reachable = first_failure.is_none();
            self.metrics.reachable(&self.source.pipeline, reachable);
            match first_failure {
                Some(error) if !failing => {
                    failing = true;
                    tracing::warn!(
                        pipeline = %self.source.pipeline,
                        error = %essaim_connect::error_chain(&error),
                        "cannot refresh the pipeline's models; predicting with the versions loaded"
                    );
                }
                None if failing => {
                    failing = false;
                    tracing::info!(pipeline = %self.source.pipeline, "the registry answers again");
                }
                _ => {}
            }
        }
    }

    async fn refresh(&self, written: &str, slot: &ModelSlot) -> Result<(), ModelLoadError> {
        let loaded_now = slot.get().version();
        let Some(loaded) = fetch(&self.source, &slot.reference, written, Some(loaded_now)).await?
        else {
            return Ok(());
        };
        let version = loaded.version();
        let previous = slot.swap(loaded);
        self.metrics.loaded(&self.source.pipeline, written, version);
        tracing::info!(
            pipeline = %self.source.pipeline, model = %written, version, previous,
            "the alias moved: the pipeline predicts with the new version from its next batch"
        );
        Ok(())
    }

    /// Returns the usage report of these models, for the registry's governance view.
    pub fn usage_report(&self, interval: Duration) -> UsageReport {
        let models = self
            .slots
            .iter()
            .map(|(written, slot)| ServedUsage {
                name: written.clone(),
                rollout: "none".into(),
                slots: vec![SlotUsage {
                    role: "primary".into(),
                    model: slot.reference.model.to_string(),
                    reference: slot.reference.version.to_string(),
                    version: Some(slot.get().version()),
                }],
            })
            .collect();
        UsageReport {
            kind: ReporterKind::Pipeline,
            address: format!("stream:{}", self.source.pipeline),
            heartbeat_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            models,
        }
    }

    /// Reports the usage of these models as `reporter` every `interval` until
    /// `shutdown`, then withdraws it.
    pub async fn report_usage(
        &self,
        reporter: &str,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        self.source
            .client
            .heartbeat(
                reporter,
                interval,
                || self.usage_report(interval),
                shutdown.cancelled(),
            )
            .await;
    }

    /// Returns the directory artifacts are downloaded to.
    pub fn download_dir(&self) -> &Path {
        &self.source.download_dir
    }
}

/// Fetches the version `reference` names if it is not `loaded`, and reads it (on a
/// blocking thread: parsing an artifact and computing its logarithms is CPU work).
async fn fetch(
    source: &ModelSource,
    reference: &ModelRef,
    written: &str,
    loaded: Option<u64>,
) -> Result<Option<Arc<dyn PredictModel>>, ModelLoadError> {
    let fetched = source
        .client
        .fetch_if_moved(reference, loaded, &source.download_dir)
        .await
        .map_err(|source| ModelLoadError::Registry {
            reference: written.to_owned(),
            source,
        })?;
    let Some(fetched) = fetched else {
        return Ok(None);
    };
    let version = fetched.record.version;
    let parsed = tokio::task::spawn_blocking(move || {
        NaiveBayesVersion::from_artifact(version, &fetched.bytes)
    })
    .await
    .expect("reading a model does not panic")
    .map_err(|source| ModelLoadError::Artifact {
        reference: written.to_owned(),
        version,
        source,
    })?;
    Ok(Some(Arc::new(parsed)))
}
