//! What crosses a process boundary, as JSON: the `model.serve` task's payload and a
//! replica's registration with the front.
//!
//! The payload carries the runner's configuration as `essaim serve` was given it (the
//! `--model` references and the model file's text), so the replica builds its models
//! with the same parser as a runner on its own. It never carries a token: a replica
//! reaches the registry with its worker's own token.
use std::time::Duration;

use essaim_runner::batch::{BatchLimits, default_scorers};
use essaim_runner::config::{ConfigError, ServedModelPlan, parse_model_arg, parse_model_file};
use serde::{Deserialize, Serialize};

/// The task kind workers advertise for model runners.
pub const MODEL_SERVE_TASK_KIND: &str = "model.serve";

/// Everything a worker needs to run one replica (the task payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelServeSpec {
    /// `NAME@ALIAS` or `NAME@VERSION`, as `--model` gave them.
    pub models: Vec<String>,
    /// The model file's text (`--model-config`), if any.
    pub model_file: Option<String>,
    /// Batching of every loaded version.
    pub batch: BatchSettings,
    /// Time between two polls of the registry, in milliseconds.
    pub reload_interval_ms: u64,
    /// Time between two usage heartbeats, in milliseconds.
    pub usage_interval_ms: u64,
    /// The registry's URL.
    pub registry_url: String,
    /// The front's URL, where the replica registers.
    pub front_url: String,
    /// The name of the served set in the governance view; each replica reports as
    /// `NAME/replica-R`.
    pub name: String,
    /// Which replica this is, `0..R`.
    pub replica: u32,
}

/// Batching limits as the payload carries them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Most requests per batch.
    pub max_batch: usize,
    /// Longest wait for a batch to fill, in microseconds.
    pub max_delay_us: u64,
    /// Most requests admitted per version.
    pub max_queue: usize,
    /// Most batches scored at once; `None`: one per core of the worker.
    pub scorers: Option<usize>,
}

impl BatchSettings {
    /// Returns the settings of `limits`; `scorers` only if chosen by the user.
    pub fn new(limits: BatchLimits, scorers_chosen: bool) -> Self {
        Self {
            max_batch: limits.max_batch,
            max_delay_us: limits.max_delay.as_micros() as u64,
            max_queue: limits.max_queue,
            scorers: scorers_chosen.then_some(limits.scorers),
        }
    }

    /// Returns the limits on this machine.
    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_batch: self.max_batch,
            max_delay: Duration::from_micros(self.max_delay_us),
            max_queue: self.max_queue,
            scorers: self.scorers.unwrap_or_else(default_scorers),
        }
    }
}

impl ModelServeSpec {
    /// Returns the models to serve, parsed and checked as `essaim serve` parses them.
    pub fn plans(&self) -> Result<Vec<ServedModelPlan>, ConfigError> {
        plans(&self.models, self.model_file.as_deref())
    }

    /// Returns this replica's name in the governance view.
    pub fn replica_name(&self) -> String {
        format!("{}/replica-{}", self.name, self.replica)
    }
}

/// Parses `--model` references and a model file's text into the plans of a runner.
pub fn plans(
    models: &[String],
    model_file: Option<&str>,
) -> Result<Vec<ServedModelPlan>, ConfigError> {
    let mut plans = models
        .iter()
        .map(|text| parse_model_arg(text))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(text) = model_file {
        plans.extend(parse_model_file(text)?);
    }
    essaim_runner::config::check_distinct(&plans)?;
    Ok(plans)
}

/// A replica telling the front where it serves (sent every `REGISTER_EVERY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Its replica number.
    pub replica: u32,
    /// Its base URL (`http://host:port`).
    pub url: String,
    /// The worker it runs on.
    pub worker: String,
    /// Its attempt id: a newer attempt of the same replica replaces an older one.
    pub attempt: u64,
}

/// An error body: what was refused and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The reason, for people.
    pub error: String,
}
