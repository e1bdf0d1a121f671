//! Planning a job on the client: expand the inputs, check the output directory, cut the
//! inputs into splits and lay out the tasks of every stage.
//!
//! Splits are laid out by [`crate::packing`]: large files cut, small ones packed.
//!
//! Everything a job needs is decided here, before submission, so that a malformed
//! request (missing input, output directory that exists, unknown parameter) is refused
//! with a clear error before any task runs, and so that the coordinator only sees task
//! kinds and payloads.
//!
//! Inputs follow Hadoop's conventions: a directory stands for the files it holds
//! (recursively), skipping names that start with `_` or `.` (markers such as `_SUCCESS`
//! and hidden files); a pattern with `*`, `?` or `[` is a glob. Paths are made absolute,
//! since workers do not share the client's working directory.

use std::path::{Path, PathBuf};

use essaim_core::spec::MAX_LOCALITY_PATHS;

use crate::api::{JobDefinition, JobError, JobParams};
use crate::config::{ConfigError, JobConfig, check_job_options, check_split_bytes};
use crate::inputs::expand_input_files;
use crate::packing::{SplitLayout, locality_of, plan_splits};
use crate::payload::{
    COMMIT_KIND, CommitTaskPayload, MAP_KIND, MapTaskPayload, PAYLOAD_VERSION, REDUCE_KIND,
    ReduceTaskPayload,
};
use crate::skip::SkipConfig;

/// Why a job could not be planned. Every variant is the user's to fix.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An input matched nothing.
    #[error("input `{0}` does not exist or matches no file")]
    MissingInput(String),
    /// An input could not be read.
    #[error("input `{path}` cannot be read: {error}")]
    UnreadableInput {
        /// The path.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A glob pattern is malformed.
    #[error("input pattern `{pattern}` is invalid: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// No input was given.
    #[error("no input: give at least one --input")]
    NoInput,
    /// The output directory exists.
    #[error("output directory `{0}` already exists (pass --overwrite to replace it)")]
    OutputExists(PathBuf),
    /// The output directory cannot be prepared.
    #[error("output directory `{path}`: {error}")]
    Output {
        /// The path.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A path parameter cannot be made absolute (the working directory is gone).
    #[error("parameter `{name}` = `{value}`: {error}")]
    PathParam {
        /// The parameter.
        name: String,
        /// Its value.
        value: String,
        /// Why.
        error: std::io::Error,
    },
    /// The output directory is among the inputs.
    #[error("output directory `{0}` is also an input")]
    OutputIsInput(PathBuf),
    /// An input or the output could not be reached, or is not a usable location.
    #[error(transparent)]
    Storage(#[from] essaim_storage::StorageError),
    /// An option is out of range (see [`crate::config`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The job refused its parameters.
    #[error("job `{job}`: {error}")]
    Job {
        /// The job.
        job: String,
        /// What it said.
        error: JobError,
    },
}

/// What a user asks for.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Parameters of the job.
    pub params: JobParams,
    /// Input files, directories or globs, as given.
    pub inputs: Vec<String>,
    /// Output directory, or an `s3://bucket/prefix` URL.
    pub output_dir: PathBuf,
    /// Reducers per step.
    pub reducers: u32,
    /// Split size.
    pub split_bytes: u64,
    /// Cost of opening one more file when small files are packed into splits
    /// ([`crate::packing`]); `None` gives every file its own map task.
    pub open_cost_bytes: Option<u64>,
    /// Sort buffer of each map task.
    pub sort_buffer_bytes: u64,
    /// Runs merged at once.
    pub merge_factor: u32,
    /// Codec of the output parts, `None` for plain text.
    pub output_codec: Option<essaim_storage::Codec>,
    /// How the client and workers reach the object store of `s3://` locations.
    pub storage: essaim_storage::S3Options,
    /// Files the job brings, already in the cluster's artifact store: name → SHA-256
    /// ([`JobConfig::files`]); empty for most jobs.
    pub files: essaim_worker::job_files::JobFiles,
}

/// One task of the planned job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTask {
    /// Its stage.
    pub stage: u32,
    /// Its kind.
    pub kind: &'static str,
    /// Its JSON payload.
    pub payload: Vec<u8>,
    /// Paths it reads, for data locality.
    pub locality: Vec<String>,
}

/// A job ready to submit.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The tasks, stage by stage.
    pub tasks: Vec<PlannedTask>,
    /// The expanded input files.
    pub input_files: Vec<PathBuf>,
    /// Bytes of input.
    pub input_bytes: u64,
    /// Map tasks.
    pub map_tasks: u32,
    /// Steps.
    pub steps: u32,
    /// The shared configuration, as every task received it.
    pub config: JobConfig,
    /// How long planning took (listing and sizing the inputs, the job's `prepare`,
    /// laying out the tasks): reported, since it grows with the number of files.
    pub planning: std::time::Duration,
}

/// Plans `job` for `request`: expands inputs, validates parameters, runs the job's
/// client-side `prepare`, and lays out map, reduce and commit tasks. Does not touch the
/// output directory (see [`prepare_output_dir`]).
pub fn plan_job(job: &dyn JobDefinition, request: &JobRequest) -> Result<PlannedJob, PlanError> {
    let started = std::time::Instant::now();
    let job_error = |error: JobError| PlanError::Job {
        job: job.name().to_string(),
        error,
    };
    check_job_options(
        request.reducers,
        request.sort_buffer_bytes,
        request.merge_factor,
    )?;
    check_split_bytes(request.split_bytes)?;
    let mut params = request.params.clone();
    // Skipping mode's settings are the framework's, not the job's.
    let skip = SkipConfig::take_from_params(&mut params)?;
    absolutise_path_params(job, &mut params)?;
    job.validate(&params).map_err(job_error)?;
    if !request.files.is_empty() && !job.uses_job_files(&params) {
        return Err(job_error(JobError::permanent(
            "this job runs no program of its own, so it has no use for --files",
        )));
    }
    let files = expand_input_files(&request.inputs, &request.storage, request.split_bytes)?;
    let input_files: Vec<PathBuf> = files.iter().map(|file| file.path.clone()).collect();
    let output_dir = essaim_storage::Location::from_path(&request.output_dir)
        .absolute()
        .map_err(|error| PlanError::Output {
            path: request.output_dir.clone(),
            error,
        })?;
    let output_path = output_dir.to_path();
    if input_files
        .iter()
        .any(|file| file.starts_with(&output_path))
    {
        return Err(PlanError::OutputIsInput(output_path));
    }
    let access = crate::input_access::InputAccess::new(request.storage.clone());
    job.prepare(&mut params, &input_files, &access, request.reducers)
        .map_err(job_error)?;
    let steps = job.steps(&params);
    let config = JobConfig {
        version: PAYLOAD_VERSION,
        job: job.name().to_string(),
        params,
        steps: u32::try_from(steps).unwrap_or(u32::MAX),
        reducers: request.reducers,
        output_dir,
        sort_buffer_bytes: request.sort_buffer_bytes,
        merge_factor: request.merge_factor,
        output_codec: request.output_codec,
        storage: request.storage.clone(),
        files: request.files.clone(),
        skip,
    }
    .validated()?;
    let input_bytes = files.iter().map(|file| file.size).sum();
    let layout = SplitLayout {
        split_bytes: request.split_bytes,
        open_cost_bytes: request
            .open_cost_bytes
            .filter(|_| job.packs_small_files(&config.params)),
        format: job.input_format(&config.params),
    };
    let mut tasks = Vec::new();
    for splits in plan_splits(&files, layout) {
        tasks.push(PlannedTask {
            stage: 0,
            kind: MAP_KIND,
            locality: locality_of(&splits, MAX_LOCALITY_PATHS),
            payload: to_json(&MapTaskPayload {
                config: config.clone(),
                splits,
            }),
        });
    }
    let map_tasks = tasks.len() as u32;
    for step in 0..config.steps {
        for partition in 0..config.reducers {
            tasks.push(PlannedTask {
                stage: step + 1,
                kind: REDUCE_KIND,
                payload: to_json(&ReduceTaskPayload {
                    config: config.clone(),
                    step,
                    partition,
                }),
                locality: Vec::new(),
            });
        }
    }
    tasks.push(PlannedTask {
        stage: config.steps + 1,
        kind: COMMIT_KIND,
        payload: to_json(&CommitTaskPayload {
            config: config.clone(),
        }),
        locality: Vec::new(),
    });
    Ok(PlannedJob {
        tasks,
        input_files,
        input_bytes,
        map_tasks,
        steps: config.steps,
        config,
        planning: started.elapsed(),
    })
}

/// Expands files, directories and globs into a sorted, deduplicated list of absolute
/// paths of regular files.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<PathBuf>, PlanError> {
    if inputs.is_empty() {
        return Err(PlanError::NoInput);
    }
    let mut files = Vec::new();
    for input in inputs {
        let before = files.len();
        if input.contains(['*', '?', '[']) {
            let matches = glob::glob(input).map_err(|error| PlanError::BadPattern {
                pattern: input.clone(),
                reason: error.to_string(),
            })?;
            for entry in matches {
                let path = entry.map_err(|error| PlanError::UnreadableInput {
                    path: error.path().to_path_buf(),
                    error: std::io::Error::other(error.to_string()),
                })?;
                collect_files(&path, &mut files)?;
            }
        } else {
            let path = PathBuf::from(input);
            if !path.exists() {
                return Err(PlanError::MissingInput(input.clone()));
            }
            collect_files(&path, &mut files)?;
        }
        if files.len() == before && !Path::new(input).is_dir() {
            return Err(PlanError::MissingInput(input.clone()));
        }
    }
    let mut absolute_files = files
        .iter()
        .map(|file| absolute(file))
        .collect::<Result<Vec<_>, _>>()?;
    absolute_files.sort();
    absolute_files.dedup();
    if absolute_files.is_empty() {
        return Err(PlanError::MissingInput(inputs.join(" ")));
    }
    Ok(absolute_files)
}

/// Adds `path` (a file) or the files under it (a directory), skipping `_` and `.` names.
fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), PlanError> {
    let unreadable = |error| PlanError::UnreadableInput {
        path: path.to_path_buf(),
        error,
    };
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if metadata.is_file() {
        std::fs::File::open(path).map_err(unreadable)?;
        files.push(path.to_path_buf());
        return Ok(());
    }
    if !metadata.is_dir() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name();
        let hidden = name
            .to_str()
            .is_some_and(|name| name.starts_with('_') || name.starts_with('.'));
        if !hidden {
            collect_files(&entry.path(), files)?;
        }
    }
    Ok(())
}

/// Makes the job's path parameters ([`JobDefinition::path_params`]) absolute, as input
/// paths are: a worker compares them with its inputs' absolute paths, and may run in
/// another directory than the client.
fn absolutise_path_params(
    job: &dyn JobDefinition,
    params: &mut JobParams,
) -> Result<(), PlanError> {
    for name in job.path_params() {
        if let Some(value) = params.get(name) {
            // An `s3://` value stays as it is, as inputs do: a local path's rules would
            // turn it into `CWD/s3:/bucket`.
            let location = essaim_storage::Location::parse(value)?;
            let absolute = location.absolute().map_err(|error| PlanError::PathParam {
                name: (*name).to_string(),
                value: value.to_string(),
                error,
            })?;
            params.set(*name, absolute.to_path().to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, PlanError> {
    std::path::absolute(path).map_err(|error| PlanError::Output {
        path: path.to_path_buf(),
        error,
    })
}

/// Makes the output directory ready: refuses an existing one unless `overwrite`, in which
/// case it is removed first; then creates it with its `_temporary` directory. Returns
/// its absolute path.
pub fn prepare_output_dir(dir: &Path, overwrite: bool) -> Result<PathBuf, PlanError> {
    let dir = absolute(dir)?;
    let output = essaim_storage::OutputDir::new(dir.clone().into(), Default::default());
    output.prepare(overwrite).map_err(|error| match error {
        essaim_storage::StorageError::OutputExists { .. } => PlanError::OutputExists(dir.clone()),
        other => PlanError::Storage(other),
    })?;
    Ok(dir)
}

/// Makes a planned job's output ready, a directory or an object prefix: see
/// [`prepare_output_dir`] and [`essaim_storage::OutputDir::prepare`].
pub fn prepare_output(config: &JobConfig, overwrite: bool) -> Result<(), PlanError> {
    match config.output_dir.as_local() {
        Some(dir) => prepare_output_dir(dir, overwrite).map(|_| ()),
        None => Ok(config.output().prepare(overwrite)?),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("payloads are plain data and always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::TEMPORARY_DIR;

    /// Files travel in every task's configuration, checked; a job that runs no program
    /// of its own refuses them.
    #[test]
    fn job_files_reach_every_task_and_only_jobs_that_run_programs_take_them() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        std::fs::write(&input, "a\n").unwrap();
        let request = |params: &[(&str, &str)], name: &str| JobRequest {
            params: JobParams::from_pairs(params),
            inputs: vec![input.display().to_string()],
            output_dir: dir.path().join("out"),
            reducers: 2,
            split_bytes: crate::config::DEFAULT_SPLIT_BYTES,
            open_cost_bytes: None,
            sort_buffer_bytes: crate::config::DEFAULT_SORT_BUFFER_BYTES,
            merge_factor: crate::config::DEFAULT_MERGE_FACTOR,
            output_codec: None,
            storage: Default::default(),
            files: [(name.to_string(), "ab".repeat(32))].into(),
        };
        let streaming = request(&[("step.0.mapper", "python3 map.py")], "map.py");
        let planned = plan_job(&crate::streaming::StreamingJob, &streaming).unwrap();
        assert_eq!(planned.tasks.len(), 1 + 2 + 1);
        for task in &planned.tasks {
            let payload: serde_json::Value = serde_json::from_slice(&task.payload).unwrap();
            assert_eq!(payload["config"]["files"]["map.py"], "ab".repeat(32));
        }
        let error = plan_job(
            &crate::streaming::StreamingJob,
            &request(&[("step.0.mapper", "cat")], "../map.py"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("../map.py"), "{error}");
        let error =
            plan_job(&crate::jobs::wordcount::WordCount, &request(&[], "map.py")).unwrap_err();
        assert!(error.to_string().contains("--files"), "{error}");
    }

    /// `-D left=left.csv` with relative inputs (as typed in a shell) used to fail every
    /// map task with "input is under neither left nor right": the inputs were made
    /// absolute, the parameters were not.
    #[test]
    fn relative_path_params_are_made_absolute_like_inputs() {
        let cwd = std::env::current_dir().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("plan-path-params-")
            .tempdir_in(&cwd)
            .unwrap();
        let relative = |name: &str| {
            let path = dir.path().strip_prefix(&cwd).unwrap().join(name);
            std::fs::write(dir.path().join(name), "id,x\n1,a\n").unwrap();
            path.to_string_lossy().into_owned()
        };
        let (left, right) = (relative("left.csv"), relative("right.csv"));
        let request = JobRequest {
            params: JobParams::from_pairs(&[
                ("left", &left),
                ("right", &right),
                ("left_key", "id"),
                ("right_key", "id"),
            ]),
            inputs: vec![left.clone(), right.clone()],
            output_dir: dir.path().join("out"),
            reducers: 1,
            split_bytes: crate::config::DEFAULT_SPLIT_BYTES,
            open_cost_bytes: Some(crate::config::DEFAULT_OPEN_COST_BYTES),
            sort_buffer_bytes: crate::config::DEFAULT_SORT_BUFFER_BYTES,
            merge_factor: crate::config::DEFAULT_MERGE_FACTOR,
            output_codec: None,
            storage: Default::default(),
            files: Default::default(),
        };
        let planned = plan_job(&crate::jobs::join::Join, &request).unwrap();
        let params = &planned.config.params;
        for (name, typed) in [("left", &left), ("right", &right)] {
            let value = Path::new(params.get(name).unwrap());
            assert!(value.is_absolute(), "{name} = {value:?}");
            assert_eq!(value, cwd.join(typed));
            assert!(
                planned.input_files.iter().any(|input| input == value),
                "{value:?} is not among the inputs {:?}",
                planned.input_files
            );
        }
        assert_eq!(
            params.get("left_key"),
            Some("id"),
            "other parameters untouched"
        );
    }

    #[test]
    fn inputs_expand_directories_and_globs_and_skip_markers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
        std::fs::write(dir.path().join(".hidden"), "").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c.log"), "c").unwrap();
        let all = expand_inputs(&[dir.path().to_string_lossy().into_owned()]).unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, vec!["a.txt", "b.txt", "sub/c.log"]);
        let pattern = format!("{}/*.txt", dir.path().display());
        assert_eq!(expand_inputs(&[pattern]).unwrap().len(), 2);
        let missing = format!("{}/nope", dir.path().display());
        assert!(matches!(
            expand_inputs(&[missing]),
            Err(PlanError::MissingInput(_))
        ));
        let no_match = format!("{}/*.csv", dir.path().display());
        assert!(matches!(
            expand_inputs(&[no_match]),
            Err(PlanError::MissingInput(_))
        ));
        assert!(matches!(expand_inputs(&[]), Err(PlanError::NoInput)));
    }

    #[test]
    fn an_existing_output_directory_is_refused_unless_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("part-00000"), "old").unwrap();
        assert!(matches!(
            prepare_output_dir(&out, false),
            Err(PlanError::OutputExists(_))
        ));
        prepare_output_dir(&out, true).unwrap();
        assert!(!out.join("part-00000").exists());
        assert!(out.join(TEMPORARY_DIR).is_dir());
    }
}
