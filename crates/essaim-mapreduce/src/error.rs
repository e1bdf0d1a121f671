//! Why a map, reduce or commit task failed, and what the scheduler should do about it.
//!
//! Every failure ends up as an [`essaim_core::TaskFailure`]; [`TaskError::into_failure`]
//! is the one place that decides which failures are retryable and which blame an
//! upstream task (lost inputs, re-run by the coordinator instead of this task).

use std::path::PathBuf;

use essaim_core::TaskFailure;

use crate::api::JobError;
use crate::format::FormatError;

/// What went wrong in a task of a MapReduce job.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A file operation failed.
    #[error("failed to {action} `{path}`")]
    Io {
        /// What was being done: `read`, `write spill file`, …
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The disk filled up (ENOSPC or a quota); another worker may have room.
    #[error("no space left on the device while writing `{path}`")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An input could not be read, or does not decode.
    #[error(transparent)]
    Storage(#[from] essaim_storage::StorageError),
    /// A spill, a map output or a fetched segment is not valid.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The job's own code (mapper, reducer, combiner) failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// One emitted record is larger than the framework accepts.
    #[error("a record of {bytes} bytes is over the limit of {limit} bytes")]
    RecordTooLarge {
        /// Key plus value.
        bytes: usize,
        /// [`crate::format::MAX_RECORD_BYTES`].
        limit: usize,
    },
    /// One input line is larger than the framework accepts.
    #[error("a line of `{path}` at byte {offset} is longer than {limit} bytes")]
    LineTooLong {
        /// The input file.
        path: PathBuf,
        /// Where the line starts.
        offset: u64,
        /// The limit.
        limit: usize,
    },
    /// The partitioner answered a partition that does not exist.
    #[error("the partitioner returned partition {partition} for {partitions} partitions")]
    BadPartition {
        /// Its answer.
        partition: u32,
        /// The number of partitions.
        partitions: u32,
    },
    /// A combiner emitted keys out of order, which would break the sort.
    #[error("the combiner must emit keys in sorted order (typically the key it is given)")]
    CombinerOutOfOrder,
    /// The task payload cannot be used.
    #[error("invalid task payload: {0}")]
    Payload(String),
    /// Upstream outputs could not be fetched or were corrupt: those upstream tasks must
    /// run again.
    #[error("lost map outputs of upstream tasks {upstreams:?}: {details}")]
    LostInputs {
        /// Task indexes of the upstream tasks, sorted.
        upstreams: Vec<u32>,
        /// What happened to each.
        details: String,
    },
    /// A fetch failed for a reason that re-running the upstream task cannot fix (a
    /// refused token).
    #[error("shuffle failed: {0}")]
    Shuffle(String),
    /// The job's files could not be made available (not stored, corrupt, unreachable).
    #[error(transparent)]
    JobFiles(#[from] essaim_worker::job_files::JobFilesError),
    /// The job's code panicked. Caught only in skipping mode ([`crate::skip`]), where a
    /// panic on a record is a failure to isolate like any other.
    #[error("the job's code panicked: {0}")]
    Panicked(String),
    /// More records fail on their own than the job may skip.
    #[error(
        "{found} records fail on their own, more than {}={max} allows: {records}",
        crate::skip::SKIP_RECORDS_MAX_PARAM
    )]
    SkipBudgetExceeded {
        /// How many: `3`, or `at least 3` when a task stopped looking.
        found: String,
        /// The budget.
        max: u64,
        /// The first of them, `file:line`.
        records: String,
    },
    /// Skipping mode could not pin the task's failure on records it may skip.
    #[error("{reason}")]
    NotIsolated {
        /// What the search found.
        reason: String,
        /// The failure the search started from.
        #[source]
        source: Box<TaskError>,
    },
    /// A file of skipped records in the output does not decode.
    #[error("malformed file of skipped records: {0}")]
    SkippedStore(String),
    /// The attempt was cancelled.
    #[error("the attempt was cancelled")]
    Cancelled,
    /// A blocking task panicked or was lost.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand for results of this crate's data path.
pub type TaskResult<T> = Result<T, TaskError>;

impl TaskError {
    /// Wraps an I/O error on `path`, recognising a full disk.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        let disk_full = matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
        if disk_full {
            Self::DiskFull { path, source }
        } else {
            Self::Io {
                action,
                path,
                source,
            }
        }
    }

    /// Returns false when running the task again cannot help: the job or its input is
    /// wrong, not the machine.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Job(error) => error.retryable,
            Self::Storage(error) => error.is_retryable(),
            Self::JobFiles(error) => error.retryable(),
            Self::NotIsolated { source, .. } => source.is_retryable(),
            Self::SkipBudgetExceeded { .. } | Self::SkippedStore(_) => false,
            Self::Panicked(_) => true,
            Self::RecordTooLarge { .. }
            | Self::LineTooLong { .. }
            | Self::BadPartition { .. }
            | Self::CombinerOutOfOrder
            | Self::Payload(_) => false,
            Self::Io { .. }
            | Self::DiskFull { .. }
            | Self::Format(_)
            | Self::LostInputs { .. }
            | Self::Shuffle(_)
            | Self::Cancelled
            | Self::Internal(_) => true,
        }
    }

    /// Returns true when the failure comes from the job's code running on records (an
    /// error, a panic, an emitted record the framework refuses), not from the machine
    /// or the input's bytes: skipping mode may pin it on records.
    pub fn is_record_failure(&self) -> bool {
        matches!(
            self,
            Self::Job(_)
                | Self::Panicked(_)
                | Self::RecordTooLarge { .. }
                | Self::BadPartition { .. }
        )
    }

    /// Returns the failure reported to the coordinator: the message with its causes,
    /// whether a retry can help, and the lost upstream tasks.
    pub fn into_failure(self) -> TaskFailure {
        let message = essaim_core::error_chain::error_chain(&self);
        let retryable = self.is_retryable();
        let lost_inputs = match self {
            Self::LostInputs { upstreams, .. } => upstreams,
            _ => Vec::new(),
        };
        TaskFailure {
            message,
            exit_code: None,
            stderr_tail: String::new(),
            retryable,
            lost_inputs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_recognised_and_retryable() {
        let error = TaskError::io(
            "write spill file",
            "/scratch/spill-0",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        assert!(matches!(error, TaskError::DiskFull { .. }));
        let failure = error.into_failure();
        assert!(failure.retryable);
        assert!(
            failure.message.contains("no space left"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("/scratch/spill-0"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn lost_inputs_are_reported_and_job_errors_keep_their_retry_flag() {
        let failure = TaskError::LostInputs {
            upstreams: vec![2, 5],
            details: "x".into(),
        }
        .into_failure();
        assert!(failure.retryable);
        assert_eq!(failure.lost_inputs, vec![2, 5]);
        let failure = TaskError::Job(JobError::permanent("bad parameter")).into_failure();
        assert!(!failure.retryable);
        assert_eq!(failure.message, "bad parameter");
    }
}
