//! The registry task: the part of the runner that reads the registry (the usage
//! heartbeat of `crate::usage` only reports to it). It
//! resolves every slot's reference at start and then every `reload_interval`, loads a
//! version the reference newly names (aside, while the old one keeps serving) and
//! swaps it in; and it carries out the canaries' decisions as registry calls, so
//! that each automatic promotion or rollback is an entry of the registry's audit log.
//!
//! A registry that cannot be reached, or refuses, changes nothing that is loaded: the
//! runner keeps serving and reports itself degraded (in `/v2/health/ready` and
//! `essaim_runner_degraded`) until a poll succeeds again. A version whose artifact
//! does not hash to its SHA-256 is refused by the registry client and never loaded.

use crate::batch::BatchLimits;
use crate::health::RunnerHealth;
use crate::loaded::{LoadedVersion, Slot};
use crate::metrics::{DecisionLabels, ModelLabels, RunnerMetrics, SlotLabels};
use crate::rollout::CanaryDecision;
use crate::served::{CanaryCommand, ServedModel};
use essaim_models::naive_bayes::model::ModelError;
use essaim_registry::client::{ClientError, RegistryClient};
use essaim_registry::http::PromoteRequest;
use essaim_registry::names::{ModelRef, VersionRef};
use essaim_registry::record::AuditEntry;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a slot could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The registry did not answer, refused, or sent corrupt bytes.
    #[error("registry: {0}")]
    Registry(#[from] ClientError),
    /// The artifact is not a model this runner reads.
    #[error("artifact of {reference} version {version}: {source}")]
    Artifact {
        /// The reference.
        reference: String,
        /// The version.
        version: u64,
        /// Why.
        #[source]
        source: ModelError,
    },
    /// A canary's side is not an alias, so its decision cannot move it.
    #[error("{0} is not an alias: a canary's decision cannot move it")]
    NotAnAlias(String),
}

impl ReloadError {
    /// Returns true when trying again later can succeed: the registry could not be
    /// reached, was overloaded or briefly unavailable, or a local file failed. An
    /// unknown model or alias, a missing or corrupt artifact, or an artifact this
    /// runner does not read stays so however often it is asked.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Registry(ClientError::Unreachable { .. } | ClientError::TimedOut { .. }) => true,
            Self::Registry(ClientError::Io { .. }) => true,
            Self::Registry(ClientError::Refused { status, .. }) => {
                matches!(status, 408 | 429 | 502 | 503 | 504)
            }
            Self::Registry(_) | Self::Artifact { .. } | Self::NotAnAlias(_) => false,
        }
    }
}

/// What the registry task needs.
pub struct RegistryTask {
    /// The registry's client (its actor signs the canaries' changes).
    pub client: RegistryClient,
    /// The served models.
    pub models: Vec<Arc<ServedModel>>,
    /// Time between polls.
    pub reload_interval: Duration,
    /// Batching of every loaded version.
    pub limits: BatchLimits,
    /// The runner's metrics.
    pub metrics: RunnerMetrics,
    /// Readiness and degradation.
    pub health: RunnerHealth,
    /// Where batchers are tracked.
    pub tracker: TaskTracker,
    /// Where artifacts are downloaded before they are read.
    pub download_dir: PathBuf,
    /// Told the failures of the first poll (none: every slot loaded), once.
    pub first_poll: Option<oneshot::Sender<Vec<ReloadError>>>,
}

impl RegistryTask {
    /// Polls and carries out decisions until `shutdown`.
    pub async fn run(
        mut self,
        mut decisions_rx: mpsc::Receiver<CanaryCommand>,
        shutdown: CancellationToken,
    ) {
        loop {
            let failures = self.poll_every_slot().await;
            if let Some(first_poll) = self.first_poll.take() {
                let _ = first_poll.send(failures);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.reload_interval) => {}
                Some(command) = decisions_rx.recv() => self.carry_out(command).await,
            }
        }
    }

    /// Refreshes every slot; then updates readiness and degradation. Returns the
    /// failures.
    async fn poll_every_slot(&self) -> Vec<ReloadError> {
        let mut failures = Vec::new();
        for model in &self.models {
            for slot in model.slots() {
                if let Err(error) = self.refresh(model, slot).await {
                    let labels = ModelLabels {
                        model: model.name.clone(),
                    };
                    self.metrics.reload_failures.get_or_create(&labels).inc();
                    tracing::warn!(
                        model = %model.name, reference = %slot.reference,
                        error = %essaim_core::error_chain::error_chain(&error),
                        "cannot refresh the model version; serving what is loaded"
                    );
                    failures.push(error);
                }
            }
        }
        let first_failure = failures.first().map(ToString::to_string);
        let reachable = first_failure.is_none();
        self.metrics.registry_reachable.set(i64::from(reachable));
        self.health
            .update(&self.models, first_failure, &self.metrics);
        failures
    }

    /// Loads the version `slot`'s reference names now, if it is not the loaded one.
    async fn refresh(&self, model: &ServedModel, slot: &Slot) -> Result<(), ReloadError> {
        let loaded_now = slot.get().map(|loaded| loaded.version);
        let Some(fetched) = self
            .client
            .fetch_if_moved(&slot.reference, loaded_now, &self.download_dir)
            .await?
        else {
            return Ok(());
        };
        let (record, bytes) = (fetched.record, fetched.bytes);
        let sha256 = record.artifact.sha256.clone();
        let (name, limits, metrics, tracker) = (
            model.name.clone(),
            self.limits,
            self.metrics.clone(),
            self.tracker.clone(),
        );
        let version = record.version;
        // Parsing a large artifact and computing its logarithms is CPU work.
        let loaded = tokio::task::spawn_blocking(move || {
            LoadedVersion::start(&name, version, &sha256, &bytes, limits, &metrics, &tracker)
        })
        .await
        .expect("loading a model does not panic")
        .map_err(|source| ReloadError::Artifact {
            reference: slot.reference.to_string(),
            version,
            source,
        })?;
        let previous = slot.swap(Arc::new(loaded));
        let labels = SlotLabels {
            model: model.name.clone(),
            slot: slot.role.into(),
        };
        self.metrics
            .loaded_version
            .get_or_create(&labels)
            .set(version as i64);
        if previous.is_some() {
            let labels = ModelLabels {
                model: model.name.clone(),
            };
            self.metrics.reloads.get_or_create(&labels).inc();
        }
        tracing::info!(
            model = %model.name, reference = %slot.reference, version,
            previous = previous.map(|p| p.version), sha256 = %record.artifact.sha256,
            "model version loaded"
        );
        Ok(())
    }

    /// Moves an alias in the registry as a canary decided, then polls at once.
    async fn carry_out(&self, command: CanaryCommand) {
        let Some(model) = self.models.iter().find(|m| m.name == command.served_name) else {
            return;
        };
        let Some(candidate) = model.candidate.as_ref() else {
            return;
        };
        let result = match &command.decision {
            CanaryDecision::Wait => return,
            CanaryDecision::Promote => {
                self.promote(&model.primary.reference, command.candidate_version)
                    .await
            }
            CanaryDecision::RollBack(_) => {
                self.roll_back(&candidate.reference, command.primary_version)
                    .await
            }
        };
        let (word, reason) = match &command.decision {
            CanaryDecision::RollBack(reason) => ("roll_back", reason.as_str()),
            _ => ("promote", "within thresholds"),
        };
        match result {
            Ok(entry) => {
                let labels = DecisionLabels {
                    model: model.name.clone(),
                    decision: word.into(),
                };
                self.metrics.canary_decisions.get_or_create(&labels).inc();
                tracing::info!(
                    model = %model.name, decision = word, reason,
                    primary = command.primary_version, candidate = command.candidate_version,
                    audit_sequence = entry.sequence, "canary decided"
                );
                self.poll_every_slot().await;
            }
            Err(error) => {
                tracing::warn!(
                    model = %model.name, decision = word,
                    error = %essaim_core::error_chain::error_chain(&error),
                    "cannot carry out the canary's decision; it will be taken again"
                );
                model.retry_canary_decision();
            }
        }
    }

    /// Points the primary's alias at the candidate's version (a stage is promoted, so
    /// the audit log says `promote`).
    async fn promote(&self, primary: &ModelRef, version: u64) -> Result<AuditEntry, ReloadError> {
        let VersionRef::Alias(alias) = &primary.version else {
            return Err(ReloadError::NotAnAlias(primary.to_string()));
        };
        if alias.is_stage() {
            let request = PromoteRequest {
                version: Some(version.to_string()),
                to: alias.to_string(),
                from: "staging".into(),
            };
            return Ok(self.client.promote(&primary.model, &request).await?);
        }
        Ok(self
            .client
            .set_alias(&primary.model, alias, &version.to_string())
            .await?)
    }

    /// Withdraws the candidate: its alias goes back to the version it named before (a
    /// `rollback` entry), or, if it named none, to the primary's version.
    async fn roll_back(
        &self,
        candidate: &ModelRef,
        primary_version: u64,
    ) -> Result<AuditEntry, ReloadError> {
        let VersionRef::Alias(alias) = &candidate.version else {
            return Err(ReloadError::NotAnAlias(candidate.to_string()));
        };
        let entry = match self.client.rollback(&candidate.model, alias).await {
            Err(ClientError::Refused { status: 409, .. }) => {
                self.client
                    .set_alias(&candidate.model, alias, &primary_version.to_string())
                    .await
            }
            other => other,
        };
        Ok(entry?)
    }
}
