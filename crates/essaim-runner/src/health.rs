//! Readiness and degradation of a runner, as `/v2/health/ready` reports them.
//!
//! Ready means every served model's primary version is loaded: before that, a
//! prediction would be refused, so a load balancer must not send one. Degraded means
//! the last registry poll failed: the runner still answers with what it loaded, but
//! cannot follow an alias, and says so (with the registry's error) rather than
//! pretending to be current. The telemetry crate's [`Health`] (behind `/readyz`)
//! follows readiness too, so both probes agree.

use crate::metrics::RunnerMetrics;
use crate::served::ServedModel;
use essaim_telemetry::Health;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The body of `GET /v2/health/ready`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadyView {
    /// Every primary version is loaded.
    pub ready: bool,
    /// The registry could not be polled: serving what is loaded.
    pub degraded: bool,
    /// Why the runner is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Served model → loaded versions (primary first).
    pub models: BTreeMap<String, Vec<u64>>,
}

/// Shared readiness; clones observe the same state.
#[derive(Clone, Debug)]
pub struct RunnerHealth {
    view: Arc<Mutex<ReadyView>>,
    probe: Health,
}

impl RunnerHealth {
    /// Returns a state that is not ready, following `probe` (the `/readyz` flag).
    pub fn new(probe: Health) -> Self {
        probe.set_not_ready("models not loaded");
        Self {
            view: Arc::new(Mutex::new(ReadyView::default())),
            probe,
        }
    }

    /// Recomputes readiness from the slots, with the registry's last failure if any.
    pub fn update(
        &self,
        models: &[Arc<ServedModel>],
        registry_failure: Option<String>,
        metrics: &RunnerMetrics,
    ) {
        let loaded: BTreeMap<String, Vec<u64>> = models
            .iter()
            .map(|model| {
                let versions = model.loaded_versions().iter().map(|v| v.version).collect();
                (model.name.clone(), versions)
            })
            .collect();
        let ready = models.iter().all(|model| model.primary.get().is_some());
        // Degraded is a state of a serving runner; before it serves, it is not ready.
        let degraded = ready && registry_failure.is_some();
        metrics.degraded.set(i64::from(degraded));
        if ready {
            self.probe.set_ready();
        } else {
            self.probe.set_not_ready("models not loaded");
        }
        *self.view.lock().unwrap_or_else(PoisonError::into_inner) = ReadyView {
            ready,
            degraded,
            reason: registry_failure,
            models: loaded,
        };
    }

    /// Returns what `/v2/health/ready` answers.
    pub fn view(&self) -> ReadyView {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
