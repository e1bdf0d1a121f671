//! Task payloads of MapReduce jobs: what the client puts in each task and the worker
//! reads back. JSON, so that `essaim dlq show` prints something a person can read, and
//! versioned, so that a worker refuses a payload it does not understand instead of
//! misreading it.
//!
//! Layout of a job with `S` steps and `R` reducers (tasks in index order):
//! - stage 0: one [`MAP_KIND`] task per input split (a split may be several small files
//!   packed together, see [`crate::packing`]);
//! - stages 1..=S: `R` [`REDUCE_KIND`] tasks each; the tasks of stage `s` reduce step
//!   `s - 1` (and, when `s < S`, run step `s`'s mapper on what they reduce);
//! - stage S + 1: one [`COMMIT_KIND`] task, which checks every part and writes
//!   `_SUCCESS`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::config::JobConfig;

/// Task kind of map tasks.
pub const MAP_KIND: &str = "mapreduce.map";
/// Task kind of reduce tasks (and chained reduce-then-map tasks of multi-step jobs).
pub const REDUCE_KIND: &str = "mapreduce.reduce";
/// Task kind of the final commit task.
pub const COMMIT_KIND: &str = "mapreduce.commit";
/// Version of the payload encoding; a worker refuses any other. Version 3 added
/// compressed inputs and outputs: a version 2 worker would read a `.gz` input as bytes
/// and write plain parts where the commit expects compressed ones.
pub const PAYLOAD_VERSION: u32 = 3;

/// Returns true for the task kinds of MapReduce jobs, whose payload names their job.
pub fn is_mapreduce_kind(kind: &str) -> bool {
    [MAP_KIND, REDUCE_KIND, COMMIT_KIND].contains(&kind)
}

/// Returns the job named by the payload of a task of kind [`MAP_KIND`],
/// [`REDUCE_KIND`] or [`COMMIT_KIND`] (its `config.job`), without decoding the rest: the
/// coordinator asks it of every task of a submission. `None` for another kind or a
/// payload that is not one of these.
pub fn job_name_of_task(kind: &str, payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct JobOnly {
        job: String,
    }
    #[derive(Deserialize)]
    struct ConfigOnly {
        config: JobOnly,
    }
    if !is_mapreduce_kind(kind) {
        return None;
    }
    let peeked: ConfigOnly = serde_json::from_slice(payload).ok()?;
    Some(peeked.config.job)
}

/// Name of the file of committed output parts: `part-00000`, `part-00001`, …
pub fn part_file_name(partition: u32) -> String {
    format!("part-{partition:05}")
}

pub use essaim_storage::output::{SUCCESS_MARKER, TEMPORARY_DIR};

/// A byte range of one input file, cut at line boundaries by the reader: a split owns
/// every line that starts within `[start, start + length)`, reading past its end to
/// finish its last line and skipping the partial line it starts in (unless
/// `start == 0`), as Hadoop's `LineRecordReader` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSplit {
    /// The file: a local path, or an `s3://bucket/key` URL (read with
    /// [`essaim_storage::Location::from_path`]).
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// Bytes in the range.
    pub length: u64,
}

/// Payload of a [`MAP_KIND`] task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapTaskPayload {
    /// The job.
    pub config: JobConfig,
    /// The pieces to map, in order: one split of one file, or several small files
    /// packed into one task (version 2; version 1 had a single `split`).
    pub splits: Vec<InputSplit>,
}

/// Payload of a [`REDUCE_KIND`] task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReduceTaskPayload {
    /// The job.
    pub config: JobConfig,
    /// The step this task reduces (0-based).
    pub step: u32,
    /// The partition it reduces.
    pub partition: u32,
}

/// Payload of the [`COMMIT_KIND`] task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitTaskPayload {
    /// The job.
    pub config: JobConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_of_a_task_is_read_from_its_payload_alone() {
        let payload =
            br#"{"config": {"version": 3, "job": "streaming", "steps": 1}, "splits": []}"#;
        assert_eq!(
            job_name_of_task(MAP_KIND, payload).as_deref(),
            Some("streaming")
        );
        assert_eq!(
            job_name_of_task(REDUCE_KIND, payload).as_deref(),
            Some("streaming")
        );
        assert_eq!(job_name_of_task("command", payload), None);
        assert_eq!(job_name_of_task(MAP_KIND, b"not json"), None);
    }
}
