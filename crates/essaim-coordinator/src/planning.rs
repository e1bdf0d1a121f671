//! Jobs the coordinator plans: a client names a job and its parameters, and the
//! coordinator lays out the tasks, so that a client in any language needs no planner of
//! its own (Spark's driver and Hadoop's job client do this work on the user's machine;
//! here it runs where the job runs).
//!
//! This module owns the *shape* of a submission (the JSON the REST API takes, described
//! in its OpenAPI document); what a MapReduce job or a pipeline becomes is decided by the
//! [`JobPlanner`] the binary installs (`essaim-planning`), which knows the jobs linked
//! into it. A task farm needs no planning: its tasks are given.

use std::collections::BTreeMap;

use essaim_proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A job to plan and submit (`POST /api/v1/jobs`), told apart by `kind`.
///
/// Each variant carries its `kind` as a field of its own, rather than serde's internal
/// tag, so that the document describes exactly what is accepted: every request type
/// refuses unknown fields (a misspelt `reducer` is an error, not a default), and a tag
/// outside the variant's schema would contradict that.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SubmitRequest {
    /// A task farm: the tasks are given.
    Tasks(TasksRequest),
    /// A MapReduce job the binary knows (`wordcount`, `sort`, `streaming`…).
    Mapreduce(MapReduceRequest),
    /// A streaming pipeline, from its TOML spec.
    Stream(StreamRequest),
}

impl<'de> Deserialize<'de> for SubmitRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let kinds = "`tasks`, `mapreduce` or `stream`";
        let request = match value.get("kind").and_then(serde_json::Value::as_str) {
            Some("tasks") => serde_json::from_value(value).map(Self::Tasks),
            Some("mapreduce") => serde_json::from_value(value).map(Self::Mapreduce),
            Some("stream") => serde_json::from_value(value).map(Self::Stream),
            Some(other) => {
                return Err(D::Error::custom(format!("unknown kind `{other}`: {kinds}")));
            }
            None => return Err(D::Error::custom(format!("missing field `kind`: {kinds}"))),
        };
        request.map_err(D::Error::custom)
    }
}

impl SubmitRequest {
    /// The labels a worker must carry to run the job's tasks, whatever its kind: the
    /// submission puts them on the planned spec (planners need not know them).
    pub fn required_labels(&self) -> &BTreeMap<String, String> {
        match self {
            Self::Tasks(request) => &request.required_labels,
            Self::Mapreduce(request) => &request.required_labels,
            Self::Stream(request) => &request.required_labels,
        }
    }
}

/// The `kind` of a task farm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TasksKind {
    /// A task farm.
    #[default]
    Tasks,
}

/// The `kind` of a MapReduce job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MapReduceKind {
    /// A MapReduce job.
    #[default]
    Mapreduce,
}

/// The `kind` of a pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// A streaming pipeline.
    #[default]
    Stream,
}

/// What a resubmitted pipeline does with state its units made under another spec
/// (without one, such state is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamMigration {
    /// Keep the state as it is: the new spec reads it.
    Keep,
    /// Drop the state, keep the positions: go on from where it was with empty state.
    Reset,
    /// Drop state and positions: read the sources again and replace the results.
    Rebuild,
}

impl std::str::FromStr for StreamMigration {
    type Err = String;

    fn from_str(text: &str) -> Result<StreamMigration, String> {
        match text {
            "keep" => Ok(StreamMigration::Keep),
            "reset" => Ok(StreamMigration::Reset),
            "rebuild" => Ok(StreamMigration::Rebuild),
            other => Err(format!(
                "unknown migration `{other}`: keep, reset or rebuild"
            )),
        }
    }
}

/// A task farm.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TasksRequest {
    /// Always `tasks`.
    pub kind: TasksKind,
    /// The job's name.
    pub name: String,
    /// Its tasks.
    pub tasks: Vec<TaskRequest>,
    /// Attempts per task before it is dead-lettered (default 4).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Higher runs first (default 0).
    #[serde(default)]
    pub priority: Option<i32>,
    /// At most this many attempts of the job at once (default unlimited).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Per-attempt timeout in milliseconds (default none).
    #[serde(default)]
    pub task_timeout_ms: Option<u64>,
    /// Labels a worker must carry, each with the same value, to run the job's tasks
    /// (`{"gpu": "yes"}`); default none: any worker.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
}

/// One task of a task farm.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// The executor that runs it (`command`, `sleep`, or one a worker registers).
    pub kind: String,
    /// What the executor reads: a string is passed as its UTF-8 bytes, any other JSON
    /// value as its JSON text.
    pub payload: serde_json::Value,
    /// Its stage: a stage starts once the previous one has finished (default 0).
    #[serde(default)]
    pub stage: u32,
}

/// A MapReduce job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MapReduceRequest {
    /// Always `mapreduce`.
    pub kind: MapReduceKind,
    /// The job: a name `GET /api/v1/mapreduce-jobs` lists (`wordcount`, `grep`, `sort`,
    /// `streaming`…).
    pub job: String,
    /// Input files, directories, globs or `s3://bucket/prefix` URLs, as the coordinator
    /// sees them (relative paths are relative to its working directory).
    pub inputs: Vec<String>,
    /// Output directory or `s3://bucket/prefix`; refused if it exists unless `overwrite`.
    pub output: String,
    /// The job's parameters (`pattern` of grep, `step.0.mapper` of streaming…).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Reduce tasks per step.
    #[serde(default)]
    pub reducers: Option<u32>,
    /// Split size in bytes.
    #[serde(default)]
    pub split_bytes: Option<u64>,
    /// Cost in bytes of opening one more file when small files are packed into a map
    /// task; 0 gives every file its own map task.
    #[serde(default)]
    pub open_cost_bytes: Option<u64>,
    /// Sort buffer of each map task, in bytes.
    #[serde(default)]
    pub sort_buffer_bytes: Option<u64>,
    /// Runs merged at once.
    #[serde(default)]
    pub merge_factor: Option<u32>,
    /// Compress the output parts: `gz` or `zst`.
    #[serde(default)]
    pub compress_output: Option<String>,
    /// Replace an earlier job's output (a directory holding `_SUCCESS` or `_temporary`,
    /// or an empty one; anything else is refused).
    #[serde(default)]
    pub overwrite: bool,
    /// Attempts per task before the job fails (default 4).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Slow start: the share of map tasks (0.0 to 1.0) that must have succeeded before
    /// the reducers start fetching the map outputs committed so far (default 0.05, as
    /// Hadoop's `mapreduce.job.reduce.slowstart.completedmaps`; 1.0 waits for every map).
    #[serde(default)]
    pub slow_start: Option<f64>,
    /// The object store of `s3://` locations (default: the coordinator's and workers'
    /// environment).
    #[serde(default)]
    pub s3: Option<S3Request>,
    /// Files the job brings (streaming jobs): the name each appears under in its
    /// commands' working directory → the SHA-256 of its bytes, uploaded first with
    /// `POST /registry/v1/artifacts`.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Labels a worker must carry, each with the same value, to run the job's tasks
    /// (`{"gpu": "yes"}`); default none: any worker.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
}

/// How to reach an S3-compatible store.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Request {
    /// Endpoint, e.g. `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Allow an `http://` endpoint.
    #[serde(default)]
    pub allow_http: bool,
}

/// A streaming pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    /// Always `stream`.
    pub kind: StreamKind,
    /// The pipeline's name: its state is keyed by it, and one job of a name runs at once.
    pub name: String,
    /// The pipeline spec, TOML text.
    pub spec: String,
    /// Dimension tables' CSV text by table name; a table not given here is read from its
    /// `path`, relative to `base_dir`.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
    /// Where relative paths of the spec are resolved, on the coordinator and workers.
    #[serde(default)]
    pub base_dir: Option<String>,
    /// PostgreSQL URL, where results, positions and checkpoints go.
    pub postgres: String,
    /// NATS server URL (NATS connectors).
    #[serde(default)]
    pub nats: Option<String>,
    /// Kafka bootstrap address (Kafka connectors).
    #[serde(default)]
    pub kafka: Option<String>,
    /// The model registry's URL, for `predict` operators (a coordinator's URL).
    #[serde(default)]
    pub registry: Option<String>,
    /// Tasks per stage (default one per unit).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Stop once every source partition has ended.
    #[serde(default)]
    pub exit_at_end: bool,
    /// Most messages per commit (default 2000).
    #[serde(default)]
    pub batch_max: Option<usize>,
    /// Longest wait for a batch, in milliseconds (default 20).
    #[serde(default)]
    pub batch_wait_ms: Option<u64>,
    /// What to do with state made under another spec (default: refuse to run).
    #[serde(default)]
    pub migrate: Option<StreamMigration>,
    /// Labels a worker must carry, each with the same value, to run the job's tasks
    /// (`{"gpu": "yes"}`); default none: any worker.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
}

/// What a submission became.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmitAnswer {
    /// The job's id.
    pub job_id: u64,
    /// Its name.
    pub name: String,
    /// Its tasks.
    pub tasks: u32,
    /// What planning decided, by job kind: map tasks, steps, reducers, input files and
    /// bytes, output of a MapReduce job; units of a pipeline.
    #[schema(value_type = Object)]
    pub plan: serde_json::Value,
}

/// A planned job, ready to submit.
#[derive(Debug, Clone)]
pub struct PlannedSubmission {
    /// The job.
    pub spec: v1::JobSpec,
    /// What planning decided, returned to the client as [`SubmitAnswer::plan`].
    pub plan: serde_json::Value,
    /// Refuse the job while a running job has the same name (a pipeline runs once).
    pub exclusive: bool,
}

/// Why a request could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanRefused {
    /// The request is the client's to fix.
    #[error("{0}")]
    Invalid(String),
    /// This coordinator cannot plan that kind of job.
    #[error("{0}")]
    Unsupported(String),
}

/// Turns MapReduce and streaming requests into job specs. Planning reads the inputs (to
/// list and size them, or sample them), so it is called off the async threads.
pub trait JobPlanner: Send + Sync + std::fmt::Debug + 'static {
    /// Plans `request`, which is never [`SubmitRequest::Tasks`].
    fn plan(&self, request: SubmitRequest) -> Result<PlannedSubmission, PlanRefused>;
    /// The MapReduce jobs it knows, with their descriptions.
    fn mapreduce_jobs(&self) -> Vec<(String, String)>;
    /// Whether `task` (of a kind other than `command`, which the coordinator knows)
    /// runs shell commands, such as a task of a streaming MapReduce job. False by
    /// default.
    fn runs_commands(&self, task: &v1::TaskSpec) -> bool {
        let _ = task;
        false
    }
}

/// Plans a task farm: its tasks are given.
pub fn plan_tasks(request: TasksRequest) -> PlannedSubmission {
    let tasks = request
        .tasks
        .into_iter()
        .map(|task| v1::TaskSpec {
            kind: task.kind,
            payload: match task.payload {
                serde_json::Value::String(text) => text.into_bytes(),
                other => other.to_string().into_bytes(),
            },
            stage: task.stage,
            locality: Vec::new(),
            anti_affinity_group: String::new(),
        })
        .collect();
    PlannedSubmission {
        spec: v1::JobSpec {
            name: request.name,
            tasks,
            priority: request.priority.unwrap_or(0),
            max_concurrency: request.max_concurrency.unwrap_or(0),
            max_attempts: request.max_attempts.unwrap_or(0),
            task_timeout_ms: request.task_timeout_ms.unwrap_or(0),
            ..Default::default()
        },
        plan: serde_json::json!({}),
        exclusive: false,
    }
}
