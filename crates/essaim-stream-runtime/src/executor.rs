//! The worker side: the executor of [`STREAM_TASK_KIND`](crate::STREAM_TASK_KIND) tasks.
//!
//! A stream task runs its units side by side on the worker's runtime until the
//! coordinator revokes it (stop, rescale, the worker drains) or, with `exit_at_end`,
//! until every unit's input has ended. When a worker dies, the coordinator hands the
//! task to another worker, whose units resume from PostgreSQL.
use std::collections::BTreeMap;
use std::sync::Arc;

use essaim_connect_nats::broker;
use essaim_core::{TaskFailure, TaskOutput};
use essaim_stream::pipeline::Pipeline;
use essaim_worker::{AttemptContext, ExecutionFuture, Executor};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::breakers::BreakerBoard;
use crate::metrics::StreamMetrics;
use crate::models::runner::RunnerModels;
use crate::models::{DEFAULT_POLL_INTERVAL, DEFAULT_USAGE_INTERVAL, ModelSource, PipelineModels};
use crate::task::{self, StreamTaskSpec};
use crate::unit::{self, UnitContext, UnitError};
use essaim_connect::{BreakerConfig, error_chain};
use essaim_registry::client::RegistryClient;

/// Runs stream tasks.
#[derive(Debug, Clone)]
pub struct StreamExecutor {
    metrics: StreamMetrics,
    breakers: BreakerBoard,
    /// The worker's own token, offered to the model registry by `predict` operators
    /// (the coordinator's registry by default, where the worker's role reads models
    /// and reports their use).
    registry_token: Option<Arc<str>>,
}

impl Default for StreamExecutor {
    fn default() -> Self {
        StreamExecutor::new()
    }
}

impl StreamExecutor {
    /// Returns the executor with its metric families and the connectors' breakers
    /// (with `essaim_connect`'s default thresholds).
    pub fn new() -> StreamExecutor {
        let metrics = StreamMetrics::new();
        let breakers = BreakerBoard::new(metrics.clone(), BreakerConfig::default());
        StreamExecutor {
            metrics,
            breakers,
            registry_token: None,
        }
    }

    /// Returns the executor offering `token` (the worker's own) to the model registry.
    pub fn with_registry_token(mut self, token: Option<String>) -> StreamExecutor {
        self.registry_token = token.map(Arc::from);
        self
    }
}

impl Executor for StreamExecutor {
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture {
        let metrics = self.metrics.clone();
        let breakers = self.breakers.clone();
        let registry_token = self.registry_token.clone();
        Box::pin(async move { run_task(attempt, cancel, metrics, breakers, registry_token).await })
    }

    fn needs_scratch_dir(&self, _payload: &[u8]) -> bool {
        false
    }

    fn stream_progress(&self) -> Vec<essaim_proto::v1::StreamUnitProgress> {
        self.metrics.progress()
    }

    /// A stream task runs until revoked: it holds no slot, and the coordinator spreads
    /// a pipeline's tasks over the workers and moves some when workers join or leave
    /// (their units resume from their commits).
    fn long_running(&self) -> bool {
        true
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }
}

async fn run_task(
    attempt: AttemptContext,
    cancel: CancellationToken,
    metrics: StreamMetrics,
    breakers: BreakerBoard,
    registry_token: Option<Arc<str>>,
) -> Result<TaskOutput, TaskFailure> {
    let mut spec: StreamTaskSpec = serde_json::from_slice(&attempt.payload)
        .map_err(|error| TaskFailure::new(format!("malformed stream task: {error}"), false))?;
    // Secrets named in the endpoints exist only on this worker, and only from here on.
    spec.endpoints = spec
        .endpoints
        .resolve_secrets()
        // A configuration error, not a passing fault: fail at once (a stream task is
        // otherwise retried a hundred times) and say what is missing.
        .map_err(|error| TaskFailure::new(error_chain(&error), false))?;
    let planned = task::check(&spec.spec_toml, &spec.tables)
        .map_err(|error| TaskFailure::new(error_chain(&error), false))?;
    let tables = Pipeline::load_tables(&planned.spec, &spec.tables)
        .map_err(|error| TaskFailure::new(error_chain(&error), false))?;
    let registry = RegistryAccess {
        token: registry_token.as_deref(),
        attempt_id: attempt.attempt_id.0,
        trust: &attempt.tls.trust,
    };
    let models = load_models(&spec, &planned, &metrics, registry, &cancel)
        .await?
        .map(Arc::new);
    let runner_models = connect_runners(&planned, &attempt.tls.trust, &cancel)
        .await?
        .map(Arc::new);
    let nats = match &spec.endpoints.nats_url {
        Some(nats_url) => Some(tokio::select! {
            () = cancel.cancelled() => return Ok(TaskOutput::default()),
            connected = broker::connect(nats_url, broker::DEFAULT_REQUEST_TIMEOUT) => {
                connected.map_err(|error| TaskFailure::new(error_chain(&error), true))?
            }
        }),
        None => None,
    };
    let stage = spec.stage.as_str();
    let units = spec.units.clone();
    let spec = Arc::new(spec);
    let planned = Arc::new(planned);
    let tables = Arc::new(tables);
    // Held until every unit has ended: the last task of the pipeline here removes its
    // breakers' series.
    let breakers = Arc::new(breakers.enter(&spec.pipeline));
    let stop_units = cancel.child_token();
    let mut running = JoinSet::new();
    for unit in units.iter().copied() {
        let context = Arc::new(UnitContext {
            task: Arc::clone(&spec),
            planned: Arc::clone(&planned),
            tables: Arc::clone(&tables),
            models: models.clone(),
            runner_models: runner_models.clone(),
            nats: nats.clone(),
            metrics: metrics.unit(&spec.pipeline, stage, unit),
            breakers: Arc::clone(&breakers),
            attempt_id: attempt.attempt_id.0,
        });
        let stop = stop_units.clone();
        running.spawn(async move { (unit, unit::run(context, unit, stop).await) });
    }
    tracing::info!(
        pipeline = %spec.pipeline,
        stage,
        units = ?units,
        correlation_id = %attempt.correlation_id,
        "stream task started"
    );
    // The models follow their aliases and report their usage while the units run.
    let model_tasks = models.as_ref().map(|models| {
        let reporter = format!(
            "pipeline:{}/{stage}-{}",
            spec.pipeline,
            units.first().copied().unwrap_or(0)
        );
        tokio::spawn(follow_models(
            Arc::clone(models),
            reporter,
            stop_units.child_token(),
        ))
    });
    let mut first_error: Option<(u32, UnitError)> = None;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((unit, Err(error))) => {
                stop_units.cancel();
                first_error.get_or_insert((unit, error));
            }
            Err(join_error) => {
                stop_units.cancel();
                first_error.get_or_insert((u32::MAX, UnitError::Panicked(join_error)));
            }
        }
    }
    stop_units.cancel();
    if let Some(model_tasks) = model_tasks {
        let _ended = model_tasks.await;
    }
    if let Some(models) = &models {
        let _removed = tokio::fs::remove_dir_all(models.download_dir()).await;
    }
    metrics.forget_units(&spec.pipeline, stage, &units);
    if let Some((unit, error)) = first_error {
        let message = format!("unit {unit}: {}", error_chain(&error));
        return Err(TaskFailure::new(message, error.is_retryable()));
    }
    let mut counters = BTreeMap::new();
    counters.insert("stream_units".to_owned(), units.len() as u64);
    Ok(TaskOutput {
        inline: Vec::new(),
        file: None,
        counters,
    })
}

/// Loads the models of the spec's `predict` operators from the registry, or returns
/// `None` when it has none. Any failure here (an unknown model or alias, a registry that
/// cannot be reached) is final: the task fails with its reason before reading a record.
/// How a task reaches the model registry: the worker's token and trust, and the
/// attempt that names its download directory.
#[derive(Clone, Copy)]
struct RegistryAccess<'a> {
    token: Option<&'a str>,
    attempt_id: u64,
    trust: &'a essaim_tls::ClientTrust,
}

async fn load_models(
    spec: &StreamTaskSpec,
    planned: &task::PlannedPipeline,
    metrics: &StreamMetrics,
    registry: RegistryAccess<'_>,
    cancel: &CancellationToken,
) -> Result<Option<PipelineModels>, TaskFailure> {
    let references = planned.spec.model_references();
    if references.is_empty() {
        return Ok(None);
    }
    let Some(url) = &spec.endpoints.registry_url else {
        let message = "a model registry URL is required by the `predict` operators";
        return Err(TaskFailure::new(message.to_owned(), false));
    };
    let actor = format!("pipeline:{}", spec.pipeline);
    let client = RegistryClient::new_trusting(url, registry.token, &actor, registry.trust)
        .map_err(|error| TaskFailure::new(error_chain(&error), false))?;
    let download_dir = std::env::temp_dir().join(format!(
        "essaim-models-{}-{}",
        std::process::id(),
        registry.attempt_id
    ));
    std::fs::create_dir_all(&download_dir).map_err(|error| {
        TaskFailure::new(
            format!("cannot create `{}`: {error}", download_dir.display()),
            true,
        )
    })?;
    let source = ModelSource {
        client,
        pipeline: spec.pipeline.clone(),
        download_dir,
        poll_interval: DEFAULT_POLL_INTERVAL,
    };
    let loading = PipelineModels::load(source, &references, metrics.models.clone());
    tokio::select! {
        () = cancel.cancelled() => Err(TaskFailure::new("cancelled while loading models".to_owned(), true)),
        loaded = loading => loaded
            .map(Some)
            .map_err(|error| TaskFailure::new(format!("cannot start: {}", error_chain(&error)), false)),
    }
}

/// Connects to the runners the spec's `predict` operators ask, or returns `None` when
/// none does. A runner away past the deadline fails the task as retryable (it is placed
/// again); one that does not serve the model fails it for good.
async fn connect_runners(
    planned: &task::PlannedPipeline,
    trust: &essaim_tls::ClientTrust,
    cancel: &CancellationToken,
) -> Result<Option<RunnerModels>, TaskFailure> {
    let configs = planned.spec.runner_models();
    if configs.is_empty() {
        return Ok(None);
    }
    RunnerModels::connect(&configs, trust, cancel)
        .await
        .map(Some)
        .map_err(|error| {
            let message = format!("cannot start: {}", error_chain(&error));
            TaskFailure::new(message, error.is_retryable())
        })
}

/// Runs the alias follower and the usage heartbeat of `models` until `stop`.
async fn follow_models(models: Arc<PipelineModels>, reporter: String, stop: CancellationToken) {
    let usage = models.report_usage(&reporter, DEFAULT_USAGE_INTERVAL, stop.clone());
    tokio::join!(models.follow(stop.clone()), usage);
}
