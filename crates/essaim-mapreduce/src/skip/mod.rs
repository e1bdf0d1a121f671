//! Skipping mode: a job finishes without the few input records its code fails on, as
//! Hadoop's skipping mode lets it, instead of failing every attempt of their task.
//!
//! It is off unless a job gives a budget (`-D skip.records.max=5`, [`SkipConfig`]).
//! Then a map task whose code fails on its records (an error, a panic, a streaming
//! command that exits non-zero) fails as usual [`SkipConfig::start_attempts`] times
//! (2 by default: a record that fails twice fails every time), and the next attempt
//! isolates the records by bisection, skips them and finishes with every other record
//! (see [`map`]). A failure the job calls permanent is isolated at once.
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
//! | [`record`] | a skipped record as stored |
//! | [`store`] | where skipped records live, reading them back, the job's budget |
//! | `describe` | the culprits' bytes, file, offset and line in the file, read once more |

pub mod bisect;
pub mod config;
mod describe;
pub mod map;
pub mod record;
pub mod store;

pub use config::{SKIP_RECORDS_MAX_PARAM, SKIP_START_ATTEMPTS_PARAM, SkipConfig};
pub use record::{SKIPPED_DIR, SkippedRecord};
