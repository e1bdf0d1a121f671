//! A served model: its primary slot, its candidate slot if it rolls one out, and the
//! path of one request through them.
//!
//! | rollout | who answers the caller | what else happens |
//! |---|---|---|
//! | none | the primary | — |
//! | split | the arm of the request's bucket (sticky per key) | — |
//! | shadow | the primary | the candidate scores a copy afterwards, compared |
//! | canary | the arm of the bucket; the primary if the candidate fails | the primary scores a copy of the candidate's rows, compared; a decision is sent to the registry task |
//!
//! Copies are scored by tracked background tasks after the caller's answer is ready,
//! so a candidate never adds latency to, nor fails, a request it does not answer.
//! Until the candidate is loaded, or while it names the primary's version, the primary
//! answers everything.

use crate::batch::Prediction;
use crate::config::{Rollout, ServedModelPlan};
use crate::loaded::{LoadedVersion, Slot};
use crate::metrics::{ArmLabels, ModelLabels, RunnerMetrics};
use crate::oip::{self, InferError, InferResponse, Rows};
use crate::rollout::{Arm, CanaryDecision, CandidateTally, choose_arm};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// A canary decision for the registry task to carry out.
#[derive(Debug, Clone)]
pub struct CanaryCommand {
    /// The served model.
    pub served_name: String,
    /// What to do.
    pub decision: CanaryDecision,
    /// The primary's version when decided.
    pub primary_version: u64,
    /// The candidate's version when decided.
    pub candidate_version: u64,
}

/// One model served at `/v2/models/{name}`.
pub struct ServedModel {
    /// The served name.
    pub name: String,
    /// The reference answering by default.
    pub primary: Slot,
    /// The candidate's slot, for a rollout.
    pub candidate: Option<Slot>,
    /// How traffic is shared.
    pub rollout: Rollout,
    sequence: AtomicU64,
    tally: Mutex<CandidateTally>,
    metrics: RunnerMetrics,
    tracker: TaskTracker,
    decisions_tx: mpsc::Sender<CanaryCommand>,
}

impl ServedModel {
    /// Returns a model with empty slots (loaded by the registry task).
    pub fn new(
        plan: ServedModelPlan,
        metrics: RunnerMetrics,
        tracker: TaskTracker,
        decisions_tx: mpsc::Sender<CanaryCommand>,
    ) -> Self {
        let candidate = plan
            .rollout
            .candidate()
            .map(|reference| Slot::new(reference.clone(), "candidate"));
        Self {
            name: plan.name,
            primary: Slot::new(plan.primary, "primary"),
            candidate,
            rollout: plan.rollout,
            sequence: AtomicU64::new(0),
            tally: Mutex::new(CandidateTally::default()),
            metrics,
            tracker,
            decisions_tx,
        }
    }

    /// Returns the slots, primary first.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        std::iter::once(&self.primary).chain(self.candidate.as_ref())
    }

    /// Returns the candidate if it is loaded and differs from `primary`.
    fn live_candidate(&self, primary: &LoadedVersion) -> Option<Arc<LoadedVersion>> {
        let candidate = self.candidate.as_ref()?.get()?;
        (candidate.version != primary.version).then_some(candidate)
    }

    /// Answers one request.
    pub async fn infer(self: &Arc<Self>, rows: Rows) -> Result<InferResponse, InferError> {
        let primary = self
            .primary
            .get()
            .ok_or_else(|| InferError::NotReady(self.name.clone()))?;
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let candidate = self.live_candidate(&primary);
        let (arm, answered_by, predictions) = match (&self.rollout, candidate) {
            (Rollout::None, _) | (_, None) => {
                let predictions = primary.predict(rows.texts).await?;
                (Arm::Primary, primary, predictions)
            }
            (Rollout::Split { percent, .. }, Some(candidate)) => {
                let arm = choose_arm(*percent, rows.key.as_deref(), sequence);
                let version = match arm {
                    Arm::Primary => primary,
                    Arm::Candidate => candidate,
                };
                let predictions = version.predict(rows.texts).await?;
                (arm, version, predictions)
            }
            (Rollout::Shadow { .. }, Some(candidate)) => {
                let copy = rows.texts.clone();
                let predictions = primary.predict(rows.texts).await?;
                let pair = (primary.clone(), candidate);
                self.compare_later(pair, Arm::Primary, copy, predictions.clone());
                (Arm::Primary, primary, predictions)
            }
            (Rollout::Canary { policy, .. }, Some(candidate)) => {
                match choose_arm(policy.percent, rows.key.as_deref(), sequence) {
                    Arm::Primary => {
                        let predictions = primary.predict(rows.texts).await?;
                        (Arm::Primary, primary, predictions)
                    }
                    Arm::Candidate => self.canary(primary, candidate, rows.texts).await?,
                }
            }
        };
        self.metrics
            .routed
            .get_or_create(&ArmLabels {
                model: self.name.clone(),
                arm: arm.as_str().into(),
            })
            .inc();
        Ok(oip::response(
            &self.name,
            answered_by.version,
            rows.id,
            &answered_by.classes,
            &predictions,
        ))
    }

    /// The candidate answers; the primary scores a copy to compare. A candidate that
    /// fails on the runner's side counts against it, and the primary answers instead.
    async fn canary(
        self: &Arc<Self>,
        primary: Arc<LoadedVersion>,
        candidate: Arc<LoadedVersion>,
        texts: Vec<String>,
    ) -> Result<(Arm, Arc<LoadedVersion>, Vec<Prediction>), InferError> {
        let copy = texts.clone();
        match candidate.predict(texts).await {
            Ok(predictions) => {
                let pair = (primary, candidate.clone());
                self.compare_later(pair, Arm::Candidate, copy, predictions.clone());
                Ok((Arm::Candidate, candidate, predictions))
            }
            Err(error) if error.is_server_fault() => {
                self.with_tally(&primary, &candidate, |tally| tally.record_error());
                let predictions = primary.predict(copy).await?;
                Ok((Arm::Primary, primary, predictions))
            }
            Err(error) => Err(error),
        }
    }

    /// Scores `texts` in the background with the arm of `(primary, candidate)` that
    /// did not answer, and compares its labels with `answer`, given by `answered`.
    fn compare_later(
        self: &Arc<Self>,
        (primary, candidate): (Arc<LoadedVersion>, Arc<LoadedVersion>),
        answered: Arm,
        texts: Vec<String>,
        answer: Vec<Prediction>,
    ) {
        let model = self.clone();
        self.tracker.spawn(async move {
            let (answered_by, other) = match answered {
                Arm::Primary => (&primary, &candidate),
                Arm::Candidate => (&candidate, &primary),
            };
            let Ok(others) = other.predict(texts).await else {
                // The copy is not scored (queue full): nothing to compare.
                let labels = ModelLabels {
                    model: model.name.clone(),
                };
                model.metrics.shadow_skipped.get_or_create(&labels).inc();
                return;
            };
            let disagreeing = answer
                .iter()
                .zip(&others)
                .filter(|(mine, theirs)| answered_by.classes[mine.0] != other.classes[theirs.0])
                .count() as u64;
            let rows = answer.len() as u64;
            let labels = ModelLabels {
                model: model.name.clone(),
            };
            model
                .metrics
                .compared_rows
                .get_or_create(&labels)
                .inc_by(rows);
            model
                .metrics
                .disagreeing_rows
                .get_or_create(&labels)
                .inc_by(disagreeing);
            model.with_tally(&primary, &candidate, |tally| {
                tally.record_comparison(rows, disagreeing)
            });
        });
    }

    /// Updates the tally of this pair of versions, exports its disagreement, and sends
    /// the canary's decision if one is due.
    fn with_tally(
        &self,
        primary: &LoadedVersion,
        candidate: &LoadedVersion,
        update: impl FnOnce(&mut CandidateTally),
    ) {
        let decision = {
            let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
            tally.follow_versions(primary.version, candidate.version);
            update(&mut tally);
            self.metrics
                .disagreement_ratio
                .get_or_create(&ModelLabels {
                    model: self.name.clone(),
                })
                .set(tally.disagreement());
            let Rollout::Canary { policy, .. } = &self.rollout else {
                return;
            };
            let decision = tally.decide(policy);
            if decision == CanaryDecision::Wait {
                return;
            }
            decision
        };
        let command = CanaryCommand {
            served_name: self.name.clone(),
            decision,
            primary_version: primary.version,
            candidate_version: candidate.version,
        };
        if self.decisions_tx.try_send(command).is_err() {
            // The registry task is busy or gone: decide again on the next request.
            self.retry_canary_decision();
        }
    }

    /// Lets the canary decide again (its registry call failed).
    pub fn retry_canary_decision(&self) {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retry_decision();
    }

    /// Returns the loaded versions, primary first (for metadata and readiness).
    pub fn loaded_versions(&self) -> Vec<Arc<LoadedVersion>> {
        self.slots().filter_map(Slot::get).collect()
    }
}
