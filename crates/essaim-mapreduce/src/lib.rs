//! The data path of MapReduce batch jobs.
//!
//! A MapReduce job is two stages of one essaim job (see `essaim-core`): map tasks, one
//! per input split (small files packed several to a split), then reduce tasks, one per partition, which start once every map
//! task has committed and read the map outputs as their inputs. A multi-step job (as in
//! mrjob) chains more stages: the tasks of stage k > 0 reduce step k - 1 and, unless
//! they are the last step, run step k's mapper on what they reduce and partition it
//! again (Hadoop's ChainReducer).
//!
//! This crate owns everything between the input files and the output parts; the
//! coordinator only sees task kinds, payloads, outputs and lost inputs.
//!
//! - [`api`]: what a user implements — [`api::Mapper`], [`api::Reducer`] (also used as
//!   combiner), [`api::Partitioner`], and a [`api::JobDefinition`] naming them.
//!
//! The data path, in the order a record travels it:
//!
//! ```text
//!  split ─▶ mapper ─▶ sort buffer ─▶ spills ─▶ merge ─▶ map.out ══HTTP range══▶ shuffle
//!  (split)  (map_task)  (sort)      (sort)   (merge)   (format)               (shuffle)
//!     ─▶ k-way merge ─▶ reducer ─▶ part-NNNNN, or the next step's mapper ─▶ commit
//!        (merge)       (reduce_task)                                       (commit)
//! ```
//!
//! | module | concept |
//! |---|---|
//! | [`config`] | [`config::JobConfig`]: what every task of a job shares; defaults and limits |
//! | [`packing`] | cutting large files into splits, packing small ones together |
//! | [`input_access`] | a job's own reads of its inputs (a whole file, a header, samples): local or objects, decoded |
//! | [`split`] | line-aligned split reader (Hadoop's `LineRecordReader` rule) |
//! | [`sort`] | the bounded sort buffer and the map output collector (spills, combiner) |
//! | `merge` | k-way and multi-pass merges of sorted runs; grouping values by key |
//! | [`format`](mod@format) | spill and map output files: checksummed LZ4 blocks, segments, footer |
//! | [`map_task`] | the map task |
//! | [`shuffle`] | fetching one partition of every upstream output over HTTP |
//! | [`reduce_task`] | merge, reduce, and the output part's atomic commit |
//! | [`skip`] | skipping mode: the records a task's code fails on isolated by bisection, skipped and stored with the output |
//! | [`commit`] | the job's commit task: every part there (and the skipped records within budget), then `_SUCCESS` |
//! | [`executor`] | [`executor::MapReduceExecutor`], the worker's entry point |
//! | [`registry`] | jobs a worker knows, by name |
//! | [`error`], [`counters`] | task failures (retryable, lost inputs); counter names |

pub mod api;
mod cancel;
pub mod commit;
pub mod config;
pub mod counters;
pub mod error;
pub mod executor;
pub mod format;
pub mod input_access;
pub mod inputs;
pub mod jobs;
pub mod map_task;
mod merge;
pub mod packing;
pub mod payload;
pub mod plan;
pub mod reduce_task;
pub mod registry;
pub mod shuffle;
pub mod skip;
pub mod sort;
pub mod split;
pub mod streaming;
pub mod task_cache;
pub mod testing;

#[cfg(test)]
mod test_support;
