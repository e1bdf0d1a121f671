//! Skipping mode: a job finishes without the few input records (or, in a reduce task,
//! key groups) its code fails on, as Hadoop's skipping mode lets it, instead of failing
//! every attempt of their task.
//!
//! It is off unless a job gives a budget (`-D skip.records.max=5`, [`SkipConfig`]).
//! Then a map task whose code fails on its records (an error, a panic, a streaming
//! command that exits non-zero) fails as usual [`SkipConfig::start_attempts`] times
//! (2 by default: a record that fails twice fails every time), and the next attempt
//! isolates the records by bisection, skips them and finishes with every other record
//! (see [`map`]). A reduce task of the job's last step does the same over its key
//! groups (see [`reduce`]): a group its reducer fails on is skipped whole, and counts
//! as one record of the budget. A failure the job calls permanent is isolated at once.
//!
//! The records skipped are written with the job's output (see [`store`]), each with
//! its file, offset, line and error, and counted (`map.skipped.records`). The budget
//! is the job's: a task stops looking once it has found one record more than it, and
//! the commit task refuses the job when its tasks skipped more in all, naming the first
//! records, so that a job over budget fails as it would have without skipping.
//!
//! | module | concept |
//! |---|---|
//! | [`config`] | the settings, their defaults and limits |
//! | [`bisect`] | the search, pure: which records of a range fail |
//! | [`map`] | the map task in skipping mode: probes, the last run, the culprits described |
//! | [`reduce`] | the reduce task in skipping mode, over key groups |
//! | [`record`] | a skipped record as stored |
//! | [`store`] | where skipped records live, reading them back, the job's budget |
//! | `describe` | the culprits' bytes, file, offset and line in the file, read once more |

pub mod bisect;
pub mod config;
mod describe;
pub mod map;
pub mod record;
pub mod reduce;
pub mod store;

pub use config::{SKIP_RECORDS_MAX_PARAM, SKIP_START_ATTEMPTS_PARAM, SkipConfig};
pub use record::{SKIPPED_DIR, SkippedRecord};

use std::panic::AssertUnwindSafe;

use crate::error::{TaskError, TaskResult};
use bisect::{Culprit, IsolationError};

/// Runs `work`, turning a panic of the job's code into [`TaskError::Panicked`].
pub(crate) fn catch_panics<T>(work: impl FnOnce() -> TaskResult<T>) -> TaskResult<T> {
    // The mapper that panicked is dropped with the closure, never used again.
    match std::panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            Err(TaskError::Panicked(message))
        }
    }
}

/// How a task names what it isolates, in the error of a search that did not.
pub(crate) struct IsolationTerms {
    /// The job's budget.
    pub max_records: u64,
    /// What the search isolates (`records`, `key groups`).
    pub what: &'static str,
    /// What each probe runs (`the mapper`, `the reducer`).
    pub runs_of: &'static str,
}

/// Turns a search that did not isolate `failure` (the task's) into the task's error;
/// `name` names the culprits found, for an error over budget.
pub(crate) fn not_isolated(
    error: IsolationError<String, TaskError>,
    failure: TaskError,
    terms: IsolationTerms,
    name: impl Fn(&[Culprit<String>]) -> String,
) -> TaskError {
    let IsolationTerms {
        max_records,
        what,
        runs_of,
    } = terms;
    let not_isolated = |reason: String| TaskError::NotIsolated {
        reason,
        source: Box::new(failure),
    };
    match error {
        IsolationError::OverBudget { culprits, .. } => TaskError::SkipBudgetExceeded {
            found: format!("at least {}", culprits.len()),
            max: max_records,
            records: name(&culprits),
        },
        IsolationError::OutOfProbes { culprits, probes } => not_isolated(format!(
            "gave up isolating the failing {what} after {probes} runs of {runs_of} ({} found)",
            culprits.len()
        )),
        IsolationError::NotSeparable { range, .. } => not_isolated(format!(
            "{what} {}..{} of the task fail together but none fails alone: \
             none can be skipped",
            range.start, range.end
        )),
        IsolationError::Aborted(error) => error,
    }
}
