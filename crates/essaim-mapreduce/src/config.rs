//! The one owner of a MapReduce job's configuration: what every task of a job shares
//! ([`JobConfig`], carried in each task's payload), its defaults, and its limits.
//!
//! The client's planner, the worker's executor and the command line's defaults all read
//! the constants and the checks here, so that a default or a limit has one value. The
//! client refuses an out-of-range request before submitting anything; a worker that
//! receives a payload out of range (an old or hand-written client) refuses it with the
//! same message, as a permanent task failure, and never replaces a value by a default.

use essaim_storage::{Location, OutputDir, S3Options};
use essaim_worker::job_files::{JobFiles, check_job_files};
use serde::{Deserialize, Serialize};

use crate::api::JobParams;
use crate::payload::PAYLOAD_VERSION;
use crate::skip::SkipConfig;

/// Default size of an input split (Hadoop's block size).
pub const DEFAULT_SPLIT_BYTES: u64 = 64 * 1024 * 1024;
/// Smallest split size accepted: smaller splits cost more in tasks than they read.
pub const MIN_SPLIT_BYTES: u64 = 4 * 1024;
/// Default cost of opening one more file when small files are packed into splits
/// (`crate::packing`): about what a map task reads in the time it takes to open, read and
/// close a small local file, rounded up generously. Spark's `openCostInBytes` is 4 MiB,
/// priced for remote object stores.
pub const DEFAULT_OPEN_COST_BYTES: u64 = 64 * 1024;
/// Default sort buffer of a map task.
pub const DEFAULT_SORT_BUFFER_BYTES: u64 = 64 * 1024 * 1024;
/// Smallest sort buffer accepted: smaller ones would spill every few records.
pub const MIN_SORT_BUFFER_BYTES: u64 = 64 * 1024;
/// Default number of runs merged at once.
pub const DEFAULT_MERGE_FACTOR: u32 = 16;
/// Fewest runs merged at once: merging one run at a time never finishes.
pub const MIN_MERGE_FACTOR: u32 = 2;
/// Default number of reduce tasks per step.
pub const DEFAULT_REDUCERS: u32 = 2;
/// Default share of the map tasks that must have succeeded before the reducers start
/// fetching the map outputs committed so far (slow start; Hadoop's
/// `mapreduce.job.reduce.slowstart.completedmaps`). 1.0 waits for every map task.
pub const DEFAULT_SLOW_START: f64 = 0.05;
/// Most reducers per step.
pub const MAX_REDUCERS: u32 = 10_000;
/// Most steps of one job.
pub const MAX_STEPS: u32 = 64;

/// What every task of a job shares. Serialized in every task payload (see
/// [`crate::payload`]): renaming a field changes the wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobConfig {
    /// [`PAYLOAD_VERSION`].
    pub version: u32,
    /// Name of the [`crate::api::JobDefinition`] to run.
    pub job: String,
    /// Its parameters.
    pub params: JobParams,
    /// Number of steps, in `1..=`[`MAX_STEPS`].
    pub steps: u32,
    /// Number of reduce partitions per step, in `1..=`[`MAX_REDUCERS`].
    pub reducers: u32,
    /// Where the output parts go: a directory every worker can write (a shared path),
    /// or an object prefix (`s3://bucket/prefix`), which needs no shared file system.
    pub output_dir: Location,
    /// Bytes of records a map task buffers before sorting and spilling them (at least
    /// [`MIN_SORT_BUFFER_BYTES`]).
    pub sort_buffer_bytes: u64,
    /// Largest number of spill files or segments merged at once (at least
    /// [`MIN_MERGE_FACTOR`]).
    pub merge_factor: u32,
    /// Codec of the output parts (`part-00000.gz`), `None` for plain text (version 3).
    #[serde(default)]
    pub output_codec: Option<essaim_storage::Codec>,
    /// How workers reach the object store of `s3://` inputs and outputs (credentials
    /// come from their environment, never from here).
    #[serde(default)]
    pub storage: S3Options,
    /// Files the job brings (`--files`): name → SHA-256 in the cluster's artifact
    /// store. Each task that runs the job's code finds them under their names in its
    /// working directory (see [`essaim_worker::job_files`]). Absent from payloads
    /// without files, which therefore read as before.
    #[serde(default, skip_serializing_if = "JobFiles::is_empty")]
    pub files: JobFiles,
    /// Skipping mode ([`crate::skip`]): how many bad input records the job may skip.
    /// Absent from payloads of jobs that skip nothing, which therefore read as before.
    #[serde(default, skip_serializing_if = "SkipConfig::is_off")]
    pub skip: SkipConfig,
}

/// A configuration value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ConfigError {
    /// The option, as a user knows it.
    pub field: &'static str,
    /// Why it is refused.
    pub reason: String,
}

impl JobConfig {
    /// Returns the job's output, reached with its storage options.
    pub fn output(&self) -> OutputDir {
        OutputDir::new(self.output_dir.clone(), self.storage.clone())
    }

    /// Returns the name of the output part of `partition`: `part-00000`, with the
    /// output codec's extension when parts are compressed (`part-00000.gz`).
    pub fn part_name(&self, partition: u32) -> String {
        let extension = self.output_codec.map_or("", |codec| codec.extension());
        format!("{}{extension}", crate::payload::part_file_name(partition))
    }

    /// Returns the configuration if every value is in range, or says which is not.
    pub fn validated(self) -> Result<Self, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    /// Checks that every value is in range; see [`JobConfig::validated`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != PAYLOAD_VERSION {
            return Err(ConfigError {
                field: "payload version",
                reason: format!(
                    "version {}, this build reads version {PAYLOAD_VERSION}",
                    self.version
                ),
            });
        }
        check_steps(self.steps)?;
        check_job_options(self.reducers, self.sort_buffer_bytes, self.merge_factor)?;
        check_job_files(&self.files).map_err(|error| ConfigError {
            field: "files",
            reason: error.to_string(),
        })?;
        self.skip.validate()
    }
}

/// Checks the options a user chooses for every job: reducers, sort buffer, merge factor.
/// The planner calls it before planning (the job's `prepare` needs a valid reducer
/// count), and [`JobConfig::validated`] calls it again on what a worker receives.
pub fn check_job_options(
    reducers: u32,
    sort_buffer_bytes: u64,
    merge_factor: u32,
) -> Result<(), ConfigError> {
    if reducers == 0 || reducers > MAX_REDUCERS {
        return Err(ConfigError {
            field: "reducers",
            reason: format!("{reducers} is not in 1..={MAX_REDUCERS}"),
        });
    }
    if sort_buffer_bytes < MIN_SORT_BUFFER_BYTES {
        return Err(ConfigError {
            field: "sort buffer",
            reason: format!("{sort_buffer_bytes} bytes is below 64 KiB"),
        });
    }
    if merge_factor < MIN_MERGE_FACTOR {
        return Err(ConfigError {
            field: "merge factor",
            reason: format!(
                "{merge_factor}: at least {MIN_MERGE_FACTOR} runs must be merged at once"
            ),
        });
    }
    Ok(())
}

/// Checks the split size a user chooses (a client-side option: workers read splits).
pub fn check_split_bytes(split_bytes: u64) -> Result<(), ConfigError> {
    if split_bytes < MIN_SPLIT_BYTES {
        return Err(ConfigError {
            field: "split size",
            reason: format!("{split_bytes} bytes is below 4 KiB"),
        });
    }
    Ok(())
}

/// Checks the number of steps a job declares.
pub fn check_steps(steps: u32) -> Result<(), ConfigError> {
    if steps == 0 || steps > MAX_STEPS {
        return Err(ConfigError {
            field: "steps",
            reason: format!("the job has {steps} steps; 1 to {MAX_STEPS} are allowed"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Puts one value of a configuration out of range.
    type BreakConfig = fn(&mut JobConfig);

    fn config() -> JobConfig {
        JobConfig {
            version: PAYLOAD_VERSION,
            job: "wordcount".into(),
            params: JobParams::default(),
            steps: 1,
            reducers: DEFAULT_REDUCERS,
            output_dir: Location::Local("/out".into()),
            sort_buffer_bytes: DEFAULT_SORT_BUFFER_BYTES,
            merge_factor: DEFAULT_MERGE_FACTOR,
            output_codec: None,
            storage: S3Options::default(),
            files: JobFiles::new(),
            skip: SkipConfig::default(),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(config().validated(), Ok(config()));
        assert_eq!(check_split_bytes(DEFAULT_SPLIT_BYTES), Ok(()));
    }

    #[test]
    fn every_value_out_of_range_is_refused_by_name() {
        let cases: [(&str, BreakConfig); 9] = [
            ("skip.records.max", |config| {
                config.skip.max_records = u64::MAX
            }),
            ("files", |config| {
                config.files.insert("../x".into(), "0".repeat(64));
            }),
            ("payload version", |config| config.version += 1),
            ("steps", |config| config.steps = 0),
            ("steps", |config| config.steps = MAX_STEPS + 1),
            ("reducers", |config| config.reducers = 0),
            ("reducers", |config| config.reducers = MAX_REDUCERS + 1),
            ("sort buffer", |config| {
                config.sort_buffer_bytes = MIN_SORT_BUFFER_BYTES - 1
            }),
            ("merge factor", |config| config.merge_factor = 1),
        ];
        for (field, break_it) in cases {
            let mut broken = config();
            break_it(&mut broken);
            let error = broken.validated().unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
        let mut smallest = config();
        smallest.sort_buffer_bytes = MIN_SORT_BUFFER_BYTES;
        smallest.merge_factor = MIN_MERGE_FACTOR;
        smallest.reducers = MAX_REDUCERS;
        smallest.steps = MAX_STEPS;
        assert!(smallest.validated().is_ok());
        assert_eq!(
            check_split_bytes(MIN_SPLIT_BYTES - 1).unwrap_err().field,
            "split size"
        );
    }
}
