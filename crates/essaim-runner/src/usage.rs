//! The usage heartbeat: every `interval` the runner tells the registry which version
//! each of its slots has loaded now (`PUT /registry/v1/usage/{runner}`), so that the
//! governance view (`essaim models list --usage`, the dashboard's Models page) shows
//! where every version is used. The registry holds a report for three heartbeats only:
//! a runner killed without a word drops out of the view on its own; one stopping in
//! order withdraws its report at once.
//!
//! The loop itself is the registry client's
//! ([`RegistryClient::heartbeat`](essaim_registry::client::RegistryClient::heartbeat)),
//! shared with pipelines.

use crate::served::ServedModel;
use essaim_registry::client::RegistryClient;
use essaim_registry::usage::{ServedUsage, SlotUsage, UsageReport};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Default time between two heartbeats.
pub const DEFAULT_USAGE_INTERVAL: Duration = Duration::from_secs(5);

/// Who reports, and how often.
#[derive(Debug, Clone)]
pub struct UsageSettings {
    /// The runner's name in the view (default: `HOSTNAME:PORT`).
    pub name: Option<String>,
    /// Where clients reach it (default: `http://`, or `https://` for a runner serving
    /// TLS, and the address it listens on; `Runner::start` decides it).
    pub address: Option<String>,
    /// Time between two heartbeats.
    pub interval: Duration,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            name: None,
            address: None,
            interval: DEFAULT_USAGE_INTERVAL,
        }
    }
}

/// Returns the machine's name, or `runner` when it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "runner".into())
}

/// The task that sends the heartbeats.
pub struct UsageReporter {
    client: RegistryClient,
    runner: String,
    address: String,
    interval: Duration,
    models: Vec<Arc<ServedModel>>,
}

/// Returns what `models` have loaded now.
pub fn current_usage(models: &[Arc<ServedModel>]) -> Vec<ServedUsage> {
    models
        .iter()
        .map(|model| ServedUsage {
            name: model.name.clone(),
            rollout: model.rollout.mode().to_string(),
            slots: model
                .slots()
                .map(|slot| SlotUsage {
                    role: slot.role.to_string(),
                    model: slot.reference.model.to_string(),
                    reference: slot.reference.version.to_string(),
                    version: slot.get().map(|loaded| loaded.version),
                })
                .collect(),
        })
        .collect()
}

impl UsageReporter {
    /// Prepares the heartbeats of the runner listening on `local_addr`.
    pub fn new(
        client: RegistryClient,
        settings: UsageSettings,
        local_addr: std::net::SocketAddr,
        models: Vec<Arc<ServedModel>>,
    ) -> Self {
        let runner = settings
            .name
            .unwrap_or_else(|| format!("{}:{}", hostname(), local_addr.port()));
        let address = settings
            .address
            .unwrap_or_else(|| format!("http://{local_addr}"));
        Self {
            client,
            runner,
            address,
            interval: settings.interval,
            models,
        }
    }

    fn report(&self) -> UsageReport {
        UsageReport {
            kind: essaim_registry::usage::ReporterKind::Runner,
            address: self.address.clone(),
            heartbeat_ms: self.interval.as_millis() as u64,
            models: current_usage(&self.models),
        }
    }

    /// Beats until `shutdown`, then withdraws the report.
    pub async fn run(self, shutdown: CancellationToken) {
        self.client
            .heartbeat(
                &self.runner,
                self.interval,
                || self.report(),
                shutdown.cancelled(),
            )
            .await;
    }
}
