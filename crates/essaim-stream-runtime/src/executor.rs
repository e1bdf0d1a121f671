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
use crate::task::{self, StreamTaskSpec};
use crate::unit::{self, UnitContext, UnitError};
use essaim_connect::{BreakerConfig, error_chain};

/// Runs stream tasks.
#[derive(Debug, Clone)]
pub struct StreamExecutor {
    metrics: StreamMetrics,
    breakers: BreakerBoard,
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
        StreamExecutor { metrics, breakers }
    }
}

fn failure(message: String, retryable: bool) -> TaskFailure {
    TaskFailure {
        message,
        exit_code: None,
        stderr_tail: String::new(),
        retryable,
        lost_inputs: Vec::new(),
    }
}

impl Executor for StreamExecutor {
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture {
        let metrics = self.metrics.clone();
        let breakers = self.breakers.clone();
        Box::pin(async move { run_task(attempt, cancel, metrics, breakers).await })
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
) -> Result<TaskOutput, TaskFailure> {
    let mut spec: StreamTaskSpec = serde_json::from_slice(&attempt.payload)
        .map_err(|error| failure(format!("malformed stream task: {error}"), false))?;
    // Secrets named in the endpoints exist only on this worker, and only from here on.
    spec.endpoints = spec
        .endpoints
        .resolve_secrets()
        // A configuration error, not a passing fault: fail at once (a stream task is
        // otherwise retried a hundred times) and say what is missing.
        .map_err(|error| failure(error_chain(&error), false))?;
    let planned = task::check(&spec.spec_toml, &spec.tables)
        .map_err(|error| failure(error_chain(&error), false))?;
    let tables = Pipeline::load_tables(&planned.spec, &spec.tables)
        .map_err(|error| failure(error_chain(&error), false))?;
    let nats = match &spec.endpoints.nats_url {
        Some(nats_url) => Some(tokio::select! {
            () = cancel.cancelled() => return Ok(TaskOutput::default()),
            connected = broker::connect(nats_url, broker::DEFAULT_REQUEST_TIMEOUT) => {
                connected.map_err(|error| failure(error_chain(&error), true))?
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
    metrics.forget_units(&spec.pipeline, stage, &units);
    if let Some((unit, error)) = first_error {
        let message = format!("unit {unit}: {}", error_chain(&error));
        return Err(failure(message, error.is_retryable()));
    }
    let mut counters = BTreeMap::new();
    counters.insert("stream_units".to_owned(), units.len() as u64);
    Ok(TaskOutput {
        inline: Vec::new(),
        file: None,
        counters,
    })
}
