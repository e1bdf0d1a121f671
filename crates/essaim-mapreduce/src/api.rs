//! The user API of MapReduce jobs: mapper, reducer (also the combiner), partitioner,
//! input format, and the job definition that names them.
//!
//! Keys and values are byte strings. The framework sorts keys by their bytes (`memcmp`
//! order, as Hadoop's `Text` and Hadoop Streaming do), so a job that wants numbers in
//! numeric order encodes them big-endian or zero-padded. Values of one key reach the
//! reducer in a deterministic order: by map task index, then in the order the mapper
//! emitted them (after the combiner, if any). That makes a job's output identical from
//! one run to the next, with or without failures, even for reducers that keep the order
//! of their values.
//!
//! Everything here is synchronous and single-threaded per task: a map or reduce task is
//! CPU work on a blocking thread of the worker, and the framework around it owns all
//! I/O (splits, spills, shuffle, output commit).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use crate::input_access::InputAccess;

/// Why a user function failed. The task attempt fails with this message and is retried
/// elsewhere, unless `retryable` is false (the job itself is wrong: bad parameters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// What went wrong, in words.
    pub message: String,
    /// False when running again cannot help.
    pub retryable: bool,
}

impl JobError {
    /// A failure another attempt may not repeat (I/O, a flaky external program).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (invalid parameters, malformed input the job refuses).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

impl From<std::io::Error> for JobError {
    fn from(error: std::io::Error) -> Self {
        Self::retryable(error.to_string())
    }
}

/// Where emitted pairs go: the map side's sort buffer, the combiner's output, the
/// reducer's output part, or the next step's mapper.
pub trait Emit {
    /// Emits one pair. The bytes are copied; the caller may reuse its buffers.
    fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError>;
}

/// One input record handed to a mapper.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The file the record comes from, as given in the job's inputs.
    pub path: &'a Path,
    /// Byte offset of the record in that file.
    pub offset: u64,
    /// Line number of the record within its split, starting at 1 (not within the file:
    /// a split does not know how many lines precede it).
    pub line_in_split: u64,
    /// Byte offset in the file of the split the record belongs to.
    pub split_start: u64,
    /// The record: one line without its terminator (`\n`, or `\r\n` kept as `\r`) for
    /// [`InputFormat::Lines`]; empty for [`InputFormat::WholeFiles`] (the mapper opens
    /// `path` itself).
    pub data: &'a [u8],
}

/// How input files are cut into records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InputFormat {
    /// Line-aligned splits; one record per line, bytes as they are (no UTF-8 check).
    #[default]
    Lines,
    /// One split and one record per file; the mapper reads the file itself.
    WholeFiles,
}

/// Turns input records into key/value pairs. One instance per map task attempt.
pub trait Mapper: Send {
    /// Called once per record, in file order.
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError>;

    /// Called once after the last record; may emit what the mapper accumulated.
    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        let _ = out;
        Ok(())
    }

    /// Adds the job's own counters (e.g. `join.malformed.rows`) to the task's, once
    /// after [`Mapper::finish`]; the coordinator sums them per job like the framework's.
    /// The default adds none.
    fn counters(&self, counters: &mut crate::counters::Counters) {
        let _ = counters;
    }

    /// Hands the mapper the job's way to its input files, before the first record: a
    /// mapper that opens files itself (a whole file, a header line) opens them with it,
    /// so that objects and compressed files read as the records do. The default
    /// ignores it.
    fn use_input_access(&mut self, access: &InputAccess) {
        let _ = access;
    }
}

/// The values of one key, in the order described in the module doc. A lending iterator:
/// each value borrows from the stream until the next call.
pub trait Values {
    /// Returns the next value of the current key, or `None` after the last.
    fn next_value(&mut self) -> Result<Option<&[u8]>, JobError>;
}

/// Folds the values of each key. One instance per reduce task attempt, or per spill
/// when used as a combiner. A combiner must emit pairs its reducer accepts as values of
/// the same key (typically the same key it was given), may run zero or more times, and
/// must not change the final result.
pub trait Reducer: Send {
    /// Called once per key, keys in sorted order.
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError>;

    /// Called once after the last key.
    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        let _ = out;
        Ok(())
    }
}

/// Emits every pair as it came: the reducer of a job that only sorts or partitions (the
/// sort job, a streaming step without reducer command).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityReducer;

impl Reducer for IdentityReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        while let Some(value) = values.next_value()? {
            out.emit(key, value)?;
        }
        Ok(())
    }
}

/// Chooses the reduce partition of a key.
pub trait Partitioner: Send + Sync {
    /// Returns a partition in `0..partitions` (`partitions` ≥ 1). Must depend only on
    /// the key and the job's parameters: every map task must agree.
    fn partition(&self, key: &[u8], partitions: u32) -> u32;
}

/// The job's parameters: string options given at submission (`--param name=value` on
/// the command line, or set by the job's own options), the same for every task.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobParams(pub BTreeMap<String, String>);

impl JobParams {
    /// Returns a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Returns a parameter that must be present.
    pub fn require(&self, name: &str) -> Result<&str, JobError> {
        self.get(name)
            .ok_or_else(|| JobError::permanent(format!("the job needs the parameter `{name}`")))
    }

    /// Returns a parameter parsed as `T`, or `default` when absent.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, JobError>
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|error| {
                JobError::permanent(format!("parameter `{name}` = `{text}`: {error}"))
            }),
        }
    }

    /// Sets a parameter.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// Returns the parameters `(name, value)`; a later pair replaces an earlier one.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut params = Self::default();
        for (name, value) in pairs {
            params.set(*name, *value);
        }
        params
    }
}

/// A MapReduce job: names its mapper, reducer and options. Registered once per worker
/// binary under [`JobDefinition::name`]; the coordinator only carries the name and the
/// parameters, so every worker must know the job.
///
/// A job has one or more steps (a chain, as in mrjob); each step is a map, an optional
/// combine and a reduce. Step `s` > 0 maps what step `s - 1` reduced.
pub trait JobDefinition: Send + Sync + 'static {
    /// The name used on the command line and in task payloads, e.g. `wordcount`.
    fn name(&self) -> &str;

    /// One line for `essaim run --help` and listings.
    fn description(&self) -> &str;

    /// Checks the parameters before anything runs; the default accepts anything.
    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        let _ = params;
        Ok(())
    }

    /// The parameters that name a file or a path prefix (a join's sides, a taxonomy
    /// file). The planner makes them absolute like the input paths, against the
    /// client's working directory, so `-D left=left.csv` means the file the user sees
    /// and compares equal to the inputs' absolute paths. None by default.
    fn path_params(&self) -> &[&str] {
        &[]
    }

    /// Whether the job has a use for files shipped with it ([`crate::config::JobConfig::files`]):
    /// only a job that runs programs does. The planner refuses files for a job that says
    /// no, rather than upload what nothing would read. False by default.
    fn uses_job_files(&self, params: &JobParams) -> bool {
        let _ = params;
        false
    }

    /// Whether a map task's output is a function of its splits' bytes and paths, the
    /// job's configuration and the binary alone, so that a worker's task cache may hand
    /// a stored output to a later run with the same ones ([`crate::task_cache`]). False
    /// by default: a job whose mapper reads a side file named by a parameter, runs a
    /// program, or draws random numbers must not say yes.
    fn map_outputs_reusable(&self, params: &JobParams) -> bool {
        let _ = params;
        false
    }

    /// Whether the job runs programs of the submitter's choosing (shell commands), which
    /// the coordinator allows only to a principal with the `commands` role. False by
    /// default.
    fn runs_commands(&self) -> bool {
        false
    }

    /// Tells a task's parameters where the job's files appear under their names, on
    /// the worker, before its mapper, combiner or reducer is built: a job that runs
    /// programs runs them there. Called only when the job ships files. The default
    /// does nothing.
    fn use_job_files_dir(&self, params: &mut JobParams, dir: &std::path::Path) {
        let _ = (params, dir);
    }

    /// Runs once on the client before the job is submitted, with the expanded input
    /// files, the way to read them (`access`: local or objects, decoded) and the number
    /// of reducers; may add parameters (a sort samples its input here to choose the cut
    /// points of its range partitioner). The default does nothing.
    fn prepare(
        &self,
        params: &mut JobParams,
        inputs: &[std::path::PathBuf],
        access: &InputAccess,
        reducers: u32,
    ) -> Result<(), JobError> {
        let _ = (params, inputs, access, reducers);
        Ok(())
    }

    /// How the job's input files are cut into records.
    fn input_format(&self, params: &JobParams) -> InputFormat {
        let _ = params;
        InputFormat::Lines
    }

    /// Whether files smaller than the split size may be packed several to a map task
    /// ([`crate::packing`]); true by default. A mapper sees each record's own file in
    /// [`Record::path`] either way; a job whose mapper takes its file from the first
    /// record only (a streaming command, told its file once in its environment) says
    /// no.
    fn packs_small_files(&self, params: &JobParams) -> bool {
        let _ = params;
        true
    }

    /// Number of map/reduce steps; 1 by default.
    fn steps(&self, params: &JobParams) -> usize {
        let _ = params;
        1
    }

    /// A fresh mapper for one task of step `step`.
    fn mapper(&self, params: &JobParams, step: usize) -> Result<Box<dyn Mapper>, JobError>;

    /// A fresh combiner for step `step`, if the job has one.
    fn combiner(
        &self,
        params: &JobParams,
        step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        let _ = (params, step);
        Ok(None)
    }

    /// A fresh reducer for one task of step `step`.
    fn reducer(&self, params: &JobParams, step: usize) -> Result<Box<dyn Reducer>, JobError>;

    /// The partitioner of step `step`; [`HashPartitioner`] by default.
    fn partitioner(
        &self,
        params: &JobParams,
        step: usize,
    ) -> Result<Box<dyn Partitioner>, JobError> {
        let _ = (params, step);
        Ok(Box::new(HashPartitioner))
    }

    /// Formats one output pair of the last step as a line (without its `\n`); the
    /// default is Hadoop's text output: `key<TAB>value`, or `key` alone when the value
    /// is empty.
    fn format_output(&self, key: &[u8], value: &[u8], line: &mut Vec<u8>) {
        line.extend_from_slice(key);
        if !value.is_empty() {
            line.push(b'\t');
            line.extend_from_slice(value);
        }
    }
}

/// The default partitioner: a stable 64-bit hash of the key's bytes (FNV-1a), the same
/// on every machine, architecture and release, modulo the number of partitions.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashPartitioner;

impl HashPartitioner {
    /// FNV-1a, 64 bits. Pinned by test vectors: changing it would send the keys of one
    /// job to different reducers on workers of different versions.
    pub fn hash(key: &[u8]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }
}

impl Partitioner for HashPartitioner {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        (Self::hash(key) % u64::from(partitions.max(1))) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_hash_is_pinned() {
        // FNV-1a reference vectors.
        assert_eq!(HashPartitioner::hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(HashPartitioner::hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(HashPartitioner::hash(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(
            HashPartitioner.partition(b"foobar", 7),
            (0x8594_4171_f739_67e8u64 % 7) as u32
        );
    }

    #[test]
    fn missing_and_malformed_parameters_are_permanent_errors() {
        let mut params = JobParams::default();
        params.set("n", "x");
        assert!(!params.require("absent").unwrap_err().retryable);
        assert!(!params.parse_or("n", 3u32).unwrap_err().retryable);
        assert_eq!(params.parse_or("absent", 3u32).unwrap(), 3);
    }
}
