//! A MapReduce request → the tasks of [`essaim_mapreduce::plan`], with its output made
//! ready. The defaults of every option are [`essaim_mapreduce::config`]'s.

use std::path::{Path, PathBuf};

use essaim_coordinator::planning::MapReduceRequest;
use essaim_mapreduce::api::JobParams;
use essaim_mapreduce::config::{
    DEFAULT_MERGE_FACTOR, DEFAULT_OPEN_COST_BYTES, DEFAULT_REDUCERS, DEFAULT_SORT_BUFFER_BYTES,
    DEFAULT_SPLIT_BYTES,
};
use essaim_mapreduce::plan::{JobRequest, PlanError, PlannedJob, plan_job, prepare_output};
use essaim_mapreduce::registry::JobRegistry;
use essaim_proto::v1;
use essaim_storage::Codec;
use essaim_telemetry::BuildInfo;

/// Why a MapReduce request could not be planned; every variant is the submitter's to fix.
#[derive(Debug, thiserror::Error)]
pub enum MapReducePlanError {
    /// No job of that name is linked in.
    #[error("unknown job `{name}`; known jobs: {known}")]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The names known, comma-separated.
        known: String,
    },
    /// The output codec is not one parts are written with.
    #[error("`{0}` is not an output codec: gz or zst")]
    OutputCodec(String),
    /// Overwriting would remove something that is not a job's output.
    #[error(
        "`{0}` exists and is not an earlier job's committed output (no `_SUCCESS` in it): \
         it is not replaced; choose another output"
    )]
    NotAnOutput(PathBuf),
    /// Skipping mode is on, but the attempts per task leave none to isolate bad records.
    #[error(
        "{}={start} leaves no attempt to isolate bad records: give at least \
         {needed} attempts per task (--max-attempts {needed}), or a smaller {}",
        essaim_mapreduce::skip::SKIP_START_ATTEMPTS_PARAM,
        essaim_mapreduce::skip::SKIP_START_ATTEMPTS_PARAM
    )]
    NoAttemptToSkip {
        /// Failed attempts before one isolates.
        start: u32,
        /// Attempts per task needed.
        needed: u32,
    },
    /// The job could not be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// What `overwrite` may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Whatever is at the output path (the CLI: the user named it on their own machine).
    Anything,
    /// Only an empty directory or an earlier job's committed output, local or in a
    /// bucket (the API: a remote caller must not be able to remove any directory or
    /// prefix the coordinator can write).
    EarlierOutputOnly,
}

/// Plans `request` with the jobs of `jobs` and prepares its output (created, or replaced
/// when `request.overwrite` and `policy` allow).
pub fn plan(
    jobs: &JobRegistry,
    request: &MapReduceRequest,
    policy: Overwrite,
) -> Result<PlannedJob, MapReducePlanError> {
    let Some(job) = jobs.get(&request.job) else {
        return Err(MapReducePlanError::UnknownJob {
            name: request.job.clone(),
            known: jobs.names().join(", "),
        });
    };
    let planned = plan_job(job.as_ref(), &job_request(request)?)?;
    check_attempts_for_skipping(&planned, request.max_attempts)?;
    let overwrite = request.overwrite && may_replace(&planned, policy)?;
    prepare_output(&planned.config, overwrite).map_err(|error| match error {
        // Over the API, an output that may not be replaced is reported as such.
        PlanError::OutputExists(dir) if request.overwrite => MapReducePlanError::NotAnOutput(dir),
        PlanError::Storage(essaim_storage::StorageError::OutputExists { location })
            if request.overwrite =>
        {
            MapReducePlanError::NotAnOutput(PathBuf::from(location))
        }
        other => other.into(),
    })?;
    Ok(planned)
}

/// Refuses a job in skipping mode whose tasks would run out of attempts before one
/// isolates their bad records (`max_attempts` 0 or absent is the scheduler's default).
fn check_attempts_for_skipping(
    planned: &PlannedJob,
    max_attempts: Option<u32>,
) -> Result<(), MapReducePlanError> {
    let skip = planned.config.skip;
    let attempts = match max_attempts {
        None | Some(0) => essaim_core::spec::DEFAULT_MAX_ATTEMPTS,
        Some(given) => given,
    };
    if skip.is_off() || attempts >= skip.attempts_needed() {
        return Ok(());
    }
    Err(MapReducePlanError::NoAttemptToSkip {
        start: skip.start_attempts,
        needed: skip.attempts_needed(),
    })
}

/// Whether `overwrite` may remove what is at the planned output: anything for the CLI;
/// over the API only an empty local directory or a committed output (`_SUCCESS`).
/// A `_temporary` directory proves nothing: anyone can create one by naming it as an
/// output, and a running job's output holds one.
fn may_replace(planned: &PlannedJob, policy: Overwrite) -> Result<bool, MapReducePlanError> {
    if policy == Overwrite::Anything {
        return Ok(true);
    }
    if let Some(dir) = planned.config.output_dir.as_local()
        && empty_dir(dir)
    {
        return Ok(true);
    }
    Ok(planned
        .config
        .output()
        .is_committed()
        .map_err(PlanError::Storage)?)
}

fn job_request(request: &MapReduceRequest) -> Result<JobRequest, MapReducePlanError> {
    let output_codec = match &request.compress_output {
        None => None,
        Some(name) => match Codec::from_name(name) {
            Some(codec @ (Codec::Gzip | Codec::Zstd)) => Some(codec),
            _ => return Err(MapReducePlanError::OutputCodec(name.clone())),
        },
    };
    let s3 = request.s3.clone().unwrap_or_default();
    Ok(JobRequest {
        params: JobParams(request.params.clone()),
        inputs: request.inputs.clone(),
        output_dir: PathBuf::from(&request.output),
        reducers: request.reducers.unwrap_or(DEFAULT_REDUCERS),
        split_bytes: request.split_bytes.unwrap_or(DEFAULT_SPLIT_BYTES),
        open_cost_bytes: match request.open_cost_bytes {
            Some(0) => None,
            given => Some(given.unwrap_or(DEFAULT_OPEN_COST_BYTES)),
        },
        sort_buffer_bytes: request
            .sort_buffer_bytes
            .unwrap_or(DEFAULT_SORT_BUFFER_BYTES),
        merge_factor: request.merge_factor.unwrap_or(DEFAULT_MERGE_FACTOR),
        output_codec,
        storage: essaim_storage::S3Options {
            endpoint: s3.endpoint,
            region: s3.region,
            allow_http: s3.allow_http,
        },
        files: request.files.clone(),
    })
}

/// Whether `dir` is an existing, empty directory.
fn empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Between a MapReduce job's name and its output in the name of the cluster's job
/// (`wordcount → /data/out`), which is how a client finds the output of a job id.
const JOB_NAME_OUTPUT_SEPARATOR: &str = " → ";

/// Returns the output named in the name of a MapReduce job the cluster runs, `None`
/// for a name [`job_spec`] did not make.
pub fn output_of_job_name(name: &str) -> Option<&str> {
    name.split_once(JOB_NAME_OUTPUT_SEPARATOR)
        .map(|(_, output)| output)
        .filter(|output| !output.is_empty())
}

/// Returns the wire spec of a planned job: one task per map, reduce or commit task. Its
/// reducers start once `slow_start` of the map tasks succeeded (see
/// [`essaim_mapreduce::config::DEFAULT_SLOW_START`]).
pub fn job_spec(max_attempts: u32, slow_start: f64, planned: &PlannedJob) -> v1::JobSpec {
    let tasks = planned
        .tasks
        .iter()
        .map(|task| v1::TaskSpec {
            kind: task.kind.to_string(),
            payload: task.payload.clone(),
            stage: task.stage,
            locality: task.locality.clone(),
            anti_affinity_group: String::new(),
        })
        .collect();
    v1::JobSpec {
        name: format!(
            "{}{JOB_NAME_OUTPUT_SEPARATOR}{}",
            planned.config.job, planned.config.output_dir
        ),
        tasks,
        max_attempts,
        processing_version: BuildInfo::of_this_process()
            .processing_version(Some(&format!("mapreduce {}", planned.config.job))),
        slow_start: Some(slow_start),
        ..Default::default()
    }
}

/// What planning decided, as the API answers it.
pub fn summary(planned: &PlannedJob) -> serde_json::Value {
    serde_json::json!({
        "job": planned.config.job,
        "output": planned.config.output_dir.to_string(),
        "input_files": planned.input_files.len(),
        "input_bytes": planned.input_bytes,
        "map_tasks": planned.map_tasks,
        "steps": planned.steps,
        "reducers": planned.config.reducers,
        "plan_seconds": planned.planning.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests;
