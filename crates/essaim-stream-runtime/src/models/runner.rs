//! `predict` operators that ask a runner (`runner = URL` in the spec) instead of loading
//! their model in process: the central-runners topology, where pipelines and other
//! callers share pooled runners (and their A/B split, shadow and canary).
//!
//! Per batch, before it runs, the unit collects the texts that the operators reading a
//! source (or a sharder) directly will need and asks the runner for all of them in
//! requests of up to 1,024 rows ([`RunnerModels::prefetch`]); the answers wait in the
//! model until the batch has run. A record whose text is not among them (an operator
//! further down, after a `map`) is asked for alone, on the unit's thread.
//!
//! A runner that is down, full or not ready is retried with backoff for
//! [`PREFETCH_DEADLINE`]; past it the unit fails with a retryable error, so the task is
//! placed again and the batch replayed from the last commit: no record is lost or
//! dead-lettered because a runner was briefly away. Only a record asked for alone whose
//! runner stays away leaves by the operator's `error` port, with the reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use essaim_runner::oip_client::{InferClient, InferClientError};
use essaim_stream::ops::predict::{PredictConfig, PredictFailure, PredictModel, Prediction};
use tokio_util::sync::CancellationToken;

/// How long a runner may stay away before the unit gives up on a batch.
pub const PREFETCH_DEADLINE: Duration = Duration::from_secs(30);
/// First wait before asking a runner again; doubled up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(50);
/// Longest wait between two tries.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);

/// Why a runner's models could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RunnerModelError {
    /// The runner refused for good (an unknown model, a malformed answer) or stayed
    /// away past the deadline.
    #[error("`predict` through {key}")]
    Runner {
        /// The operator's model key (reference and runner).
        key: String,
        /// The client's error.
        #[source]
        source: InferClientError,
    },
}

impl RunnerModelError {
    /// Tells whether trying later may succeed (the runner was away, not refusing).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Runner { source, .. } => source.is_retryable(),
        }
    }
}

/// One runner's model, as a `predict` operator sees it.
#[derive(Debug)]
pub struct RemoteModel {
    client: InferClient,
    model: String,
    /// The answers of the batch being run, by text.
    prefetched: Mutex<HashMap<String, Prediction>>,
    /// The version of the latest answer (0 before any).
    last_version: AtomicU64,
    runtime: tokio::runtime::Handle,
}

impl RemoteModel {
    /// Asks the runner for `texts`, retrying while it is away, up to the deadline.
    async fn ask(&self, texts: &[String]) -> Result<Vec<Prediction>, InferClientError> {
        let answers = while_away(|| self.client.infer(&self.model, texts)).await?;
        if let Some(version) = answers.last().and_then(|answer| answer.version) {
            self.last_version.store(version, Ordering::Relaxed);
        }
        Ok(answers
            .into_iter()
            .map(|answer| Prediction {
                label: answer.label,
                score: answer.score,
                version: answer.version,
            })
            .collect())
    }

    /// Replaces the prefetched answers with those for `texts` (each asked once).
    async fn prefetch(&self, mut texts: Vec<String>) -> Result<(), InferClientError> {
        texts.sort_unstable();
        texts.dedup();
        let answers = if texts.is_empty() {
            Vec::new()
        } else {
            self.ask(&texts).await?
        };
        let mut prefetched = self
            .prefetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        prefetched.clear();
        prefetched.extend(texts.into_iter().zip(answers));
        Ok(())
    }
}

impl PredictModel for RemoteModel {
    fn version(&self) -> u64 {
        self.last_version.load(Ordering::Relaxed)
    }

    fn predict_batch(&self, texts: &[&str]) -> Result<Vec<Prediction>, PredictFailure> {
        let known: Vec<Option<Prediction>> = {
            let prefetched = self
                .prefetched
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            texts
                .iter()
                .map(|text| prefetched.get(*text).cloned())
                .collect()
        };
        let missing: Vec<String> = texts
            .iter()
            .zip(&known)
            .filter(|(_, known)| known.is_none())
            .map(|(text, _)| (*text).to_owned())
            .collect();
        if missing.is_empty() {
            return Ok(known.into_iter().flatten().collect());
        }
        // Called on a unit's task of the multi-threaded runtime: the thread becomes a
        // blocking one for the call, and the runtime moves its other tasks elsewhere.
        let asked = tokio::task::block_in_place(|| self.runtime.block_on(self.ask(&missing)))
            .map_err(|error| PredictFailure(error.to_string()))?;
        let mut asked = asked.into_iter();
        known
            .into_iter()
            .map(|known| {
                known
                    .or_else(|| asked.next())
                    .ok_or_else(|| PredictFailure("the runner answered fewer rows".into()))
            })
            .collect()
    }
}

/// The runner models of a pipeline's `predict` operators, by model key.
#[derive(Debug, Default)]
pub struct RunnerModels {
    models: BTreeMap<String, Arc<RemoteModel>>,
}

impl RunnerModels {
    /// Connects to the runner of each of `configs` and waits, up to the deadline,
    /// until it serves the operator's model.
    pub async fn connect(
        configs: &[&PredictConfig],
        trust: &essaim_tls::ClientTrust,
        cancel: &CancellationToken,
    ) -> Result<RunnerModels, RunnerModelError> {
        let mut models = BTreeMap::new();
        for config in configs {
            let key = config.model_key();
            let failed = |source| RunnerModelError::Runner {
                key: key.clone(),
                source,
            };
            let url = config.runner.as_deref().unwrap_or_default();
            let client = InferClient::new(url, trust).map_err(failed)?;
            let model = config.model_name().to_owned();
            let ready = while_away(|| client.ready(&model));
            tokio::select! {
                () = cancel.cancelled() => {}
                ready = ready => ready.map_err(failed)?,
            }
            let remote = RemoteModel {
                client,
                model,
                prefetched: Mutex::default(),
                last_version: AtomicU64::new(0),
                runtime: tokio::runtime::Handle::current(),
            };
            models.insert(key, Arc::new(remote));
        }
        Ok(RunnerModels { models })
    }

    /// Asks each runner for the texts a batch will need (by model key, as
    /// [`essaim_stream::pipeline::Pipeline::runner_texts`] collects them).
    pub async fn prefetch(
        &self,
        texts: BTreeMap<String, Vec<String>>,
    ) -> Result<(), RunnerModelError> {
        for (key, model) in &self.models {
            let wanted = texts.get(key).cloned().unwrap_or_default();
            model
                .prefetch(wanted)
                .await
                .map_err(|source| RunnerModelError::Runner {
                    key: key.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Returns each model with its key, to hand to the pipeline.
    pub fn current(&self) -> Vec<(&str, Arc<dyn PredictModel>)> {
        self.models
            .iter()
            .map(|(key, model)| (key.as_str(), Arc::clone(model) as Arc<dyn PredictModel>))
            .collect()
    }
}

/// Runs `call` until it succeeds, fails for good, or the runner has been away for
/// [`PREFETCH_DEADLINE`], waiting longer between tries.
async fn while_away<T, F, Call>(mut call: F) -> Result<T, InferClientError>
where
    F: FnMut() -> Call,
    Call: Future<Output = Result<T, InferClientError>>,
{
    let deadline = tokio::time::Instant::now() + PREFETCH_DEADLINE;
    let mut wait = FIRST_RETRY_WAIT;
    loop {
        match call().await {
            Err(error) if error.is_retryable() && tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "runner away; asking again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
            outcome => return outcome,
        }
    }
}
