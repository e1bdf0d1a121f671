//! One unit of a stream task: a partition of the sources or of the shuffle, its
//! operators and its commit loop.
//!
//! Each turn of the loop reads a batch, runs it through the operators, publishes what
//! goes downstream (shuffle, message sinks) and waits for the broker's acks, then
//! commits in **one PostgreSQL transaction** the result rows, the positions read and
//! the unit's checkpoint (operator state and shuffle cursors), and only then
//! acknowledges the batch to the source. A crash anywhere in the turn leaves
//! PostgreSQL at the previous turn; the unit restarts from there (state restored,
//! readers reopened after the committed positions) and, being deterministic, redoes
//! the same work: rows are upserted by key and revision, shuffle records are
//! deduplicated by number (see [`crate::shuffle`]). The loop is sequential and the
//! source's unacknowledged window is bounded, so a slow sink slows the reads
//! (back-pressure) instead of filling memory.
//!
//! The unit is cut like a sans-I/O state machine:
//!
//! | module | part |
//! |---|---|
//! | [`state`] | [`UnitState`]: a fetched batch in, a [`Turn`] out (what to publish, commit and acknowledge); dedup, watermarks, end of stream, the checkpoint |
//! | [`routes`] | where each sink's results go, as rows or messages |
//! | [`io`] | [`UnitIo`]: readers, publisher, writers and the PostgreSQL sink, opened once per run |
//!
//! and [`run`] feeds one to the other.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use essaim_connect::error_chain;
use essaim_connect_nats::partition::now_ms;
use essaim_stream::ops::enrich::DimensionTable;
use tokio_util::sync::CancellationToken;

use crate::breakers::PipelineBreakers;
pub use crate::error::UnitError;
use crate::metrics::UnitMetrics;
use crate::task::{PlannedPipeline, StreamTaskSpec};
use io::UnitIo;
use routes::Routes;

/// How often a busy unit asks the broker for its lag.
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// Least time between two watermarks a first-stage unit sends to every shuffle
/// partition (see [`UnitState::set_watermark_interval`]).
const WATERMARK_INTERVAL_MS: i64 = 100;
pub use state::{Fetched, Input, Turn, UnitState};

pub mod io;
pub mod routes;
pub mod state;

/// Shared by the units of a task.
pub struct UnitContext {
    /// The task.
    pub task: Arc<StreamTaskSpec>,
    /// The checked pipeline.
    pub planned: Arc<PlannedPipeline>,
    /// The loaded dimension tables.
    pub tables: Arc<BTreeMap<String, Arc<DimensionTable>>>,
    /// The models of the `predict` operators, when the pipeline has some.
    pub models: Option<Arc<crate::models::PipelineModels>>,
    /// The runners its `predict` operators ask, if any do.
    pub runner_models: Option<Arc<crate::models::runner::RunnerModels>>,
    /// JetStream, when the pipeline uses it.
    pub nats: Option<jetstream::Context>,
    /// Metrics of the task's units.
    pub metrics: Arc<UnitMetrics>,
    /// The circuit breakers of the pipeline's connectors on this worker, which outlive
    /// a run of the unit.
    pub breakers: Arc<PipelineBreakers>,
    /// The attempt running the unit: its consumers are named after it, so that another
    /// owner of the unit (a task being replaced) never shares them.
    pub attempt_id: u64,
}

/// Runs one unit until it is cancelled or, with `exit_at_end`, until its input ended
/// and everything is committed. Retryable failures restart the unit from its last
/// commit after a backoff, or after the time left before the next probe when an open
/// circuit breaker refused a call (restarting earlier would only be refused again);
/// the others end it.
pub async fn run(
    context: Arc<UnitContext>,
    unit: u32,
    cancel: CancellationToken,
) -> Result<(), UnitError> {
    let mut retry = 0u32;
    loop {
        match run_once(&context, unit, &cancel).await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retryable() => {
                if cancel.is_cancelled() {
                    return Ok(());
                }
                let delay = essaim_connect::backoff(
                    retry,
                    Duration::from_millis(200),
                    Duration::from_secs(5),
                )
                .max(error.retry_in().unwrap_or_default());
                retry = retry.saturating_add(1);
                context.metrics.restarts.inc();
                let message = error_chain(&error);
                tracing::warn!(unit, %message, ?delay, "stream unit restarts from its last commit");
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// One run of the unit: opens its I/O, restores its state from the last commit, then
/// turns until cancelled, finished or failed.
async fn run_once(
    context: &UnitContext,
    unit: u32,
    cancel: &CancellationToken,
) -> Result<(), UnitError> {
    let task = &context.task;
    let routes = Routes::of(task, &context.planned)?;
    let inputs = Input::of(&context.planned, task.stage, unit);
    let (mut io, resume) = UnitIo::open(context, unit, &routes, &inputs).await?;
    let mut state = UnitState::restore(
        task,
        &context.planned,
        &context.tables,
        unit,
        routes,
        resume.checkpoint.as_deref(),
    )?;
    if let Some(runners) = &context.runner_models {
        state.use_runner_models(runners);
    }
    state.set_watermark_interval(WATERMARK_INTERVAL_MS);
    let metrics = &context.metrics;
    // Lag is asked of the broker when the unit is idle, and at most every
    // LAG_INTERVAL while it is busy, so that a unit falling behind shows it.
    let mut lag_measured: Option<Instant> = None;
    if cancel.is_cancelled() || (task.exit_at_end && state.is_finished()) {
        return Ok(());
    }
    let mut next = io.fetch(cancel).await?;
    loop {
        if cancel.is_cancelled() || (task.exit_at_end && state.is_finished()) {
            return Ok(());
        }
        let Some(batch) = next.take() else {
            return Ok(());
        };
        let turn_started = Instant::now();
        let due = lag_measured.is_none_or(|at| at.elapsed() >= LAG_INTERVAL);
        if let Some(models) = &context.models {
            // Taken once per batch: the whole batch is predicted by these versions.
            state.use_models(models);
        }
        if let Some(runners) = &context.runner_models {
            // One request per runner for the batch's texts, before it runs.
            runners.prefetch(state.runner_texts(&batch)).await?;
        }
        let processed = state.process_at(&batch, now_ms())?;
        if processed.is_none() || due {
            if let Some(lag) = io.lag().await {
                metrics.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
            lag_measured = Some(Instant::now());
        }
        let Some(mut turn) = processed else {
            next = io.fetch(cancel).await?;
            continue;
        };
        metrics.count_turn(&turn);
        let (committed, fetched) = io.commit_and_fetch(&mut turn, cancel).await;
        let committed = committed?;
        metrics.commit_seconds.observe(committed.took.as_secs_f64());
        metrics.observe_latency(&batch, committed.at_ms);
        io.acknowledge(&turn).await;
        metrics.batches.inc();
        metrics.last_commit_seconds.set(now_ms() as f64 / 1000.0);
        metrics.set_operator_counts(state.stats());
        metrics
            .turn_seconds
            .observe(turn_started.elapsed().as_secs_f64());
        if let Some(watermark) = state.watermark() {
            metrics
                .watermark_delay_seconds
                .set((now_ms() - watermark) / 1000);
        }
        next = fetched?;
    }
}
