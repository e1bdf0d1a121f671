//! A pipeline request → its stream tasks, as one job named `stream:<pipeline>` whose
//! tasks keep failing for a long while before giving up (brokers and databases come
//! back).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use essaim_coordinator::planning::{StreamMigration, StreamRequest};
use essaim_proto::v1;
use essaim_stream_runtime::{Endpoints, Migration, PlanOptions, STREAM_TASK_KIND, plan_tasks};
use essaim_telemetry::BuildInfo;

/// Default of [`StreamRequest::batch_max`].
pub const DEFAULT_BATCH_MAX: usize = 2000;
/// Default of [`StreamRequest::batch_wait_ms`].
pub const DEFAULT_BATCH_WAIT_MS: u64 = 20;

/// Why a pipeline could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum StreamPlanError {
    /// The pipeline's name is unusable.
    #[error("{0}")]
    Name(String),
    /// The spec is malformed.
    #[error("the pipeline spec: {0}")]
    Spec(String),
    /// A table has neither text nor a path.
    #[error("table `{0}` has no `path`: name its CSV file, relative to the spec")]
    TableWithoutPath(String),
    /// A table must come inline (over the API).
    #[error(
        "table `{0}` must be sent inline, as `tables.{0}`: the coordinator reads no table file for a remote caller"
    )]
    TableNotInline(String),
    /// A table's file cannot be read.
    #[error("table `{table}`: cannot read `{path}`: {error}")]
    Table {
        /// The table.
        table: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The tasks could not be laid out.
    #[error("the pipeline spec: {0}")]
    Tasks(String),
}

/// The name of the job a pipeline runs as.
pub fn job_name(pipeline: &str) -> String {
    format!("stream:{pipeline}")
}

/// Where a pipeline's dimension tables may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// Inline, else read from the spec's `path` relative to `base_dir` (the CLI: the
    /// user's own files).
    InlineOrFiles,
    /// Inline only (the API: a remote caller must not make the coordinator read its
    /// files into task payloads, which the API serves back).
    InlineOnly,
}

/// Reads the pipeline's tables (given, or from files relative to `base_dir` when
/// `tables` allows it) and cuts it into tasks.
pub fn job_spec(request: &StreamRequest, tables: Tables) -> Result<v1::JobSpec, StreamPlanError> {
    let allowed = tables;
    essaim_stream_runtime::task::check_pipeline_name(&request.name)
        .map_err(|error| StreamPlanError::Name(error.to_string()))?;
    let spec = essaim_stream::spec::PipelineSpec::from_toml(&request.spec)
        .map_err(|error| StreamPlanError::Spec(error.to_string()))?;
    let base_dir = request.base_dir.as_deref().map(Path::new);
    let mut tables = BTreeMap::new();
    for table in &spec.tables {
        if let Some(text) = request.tables.get(&table.name) {
            tables.insert(table.name.clone(), text.clone().into_bytes());
            continue;
        }
        if allowed == Tables::InlineOnly {
            return Err(StreamPlanError::TableNotInline(table.name.clone()));
        }
        let Some(path) = &table.path else {
            return Err(StreamPlanError::TableWithoutPath(table.name.clone()));
        };
        let path = base_dir.unwrap_or(Path::new(".")).join(path);
        let bytes = std::fs::read(&path).map_err(|error| StreamPlanError::Table {
            table: table.name.clone(),
            path,
            error,
        })?;
        tables.insert(table.name.clone(), bytes);
    }
    let options = PlanOptions {
        pipeline: request.name.clone(),
        parallelism: request.parallelism.unwrap_or(u32::MAX),
        exit_at_end: request.exit_at_end,
        endpoints: Endpoints {
            nats_url: request.nats.clone(),
            postgres_url: Some(request.postgres.clone()),
            kafka_bootstrap: request.kafka.clone(),
            registry_url: request.registry.clone(),
        },
        base_dir: base_dir.and_then(|dir| std::path::absolute(dir).ok()),
        batch_max: request.batch_max.unwrap_or(DEFAULT_BATCH_MAX).max(1),
        batch_wait_ms: request.batch_wait_ms.unwrap_or(DEFAULT_BATCH_WAIT_MS),
        migration: match request.migrate {
            None => Migration::Refuse,
            Some(StreamMigration::Keep) => Migration::Keep,
            Some(StreamMigration::Reset) => Migration::Reset,
            Some(StreamMigration::Rebuild) => Migration::Rebuild,
        },
    };
    let tasks = plan_tasks(&request.spec, tables, &options)
        .map_err(|error| StreamPlanError::Tasks(error.to_string()))?;
    let mut job = v1::JobSpec {
        name: job_name(&request.name),
        max_attempts: 100,
        speculation_multiplier: -1.0,
        retry_backoff_base_ms: 500,
        retry_backoff_max_ms: 10_000,
        processing_version: BuildInfo::of_this_process().processing_version(Some("pipeline")),
        ..Default::default()
    };
    for task in tasks {
        job.tasks.push(v1::TaskSpec {
            kind: STREAM_TASK_KIND.to_owned(),
            payload: serde_json::to_vec(&task).expect("stream tasks are plain data"),
            ..Default::default()
        });
    }
    Ok(job)
}
