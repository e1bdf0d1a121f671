//! The data path of MapReduce batch jobs.
//!
//! A MapReduce job is two stages of one essaim job (see `essaim-core`): map tasks, one
//! per input split, then reduce tasks, one per partition, which start once every map
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

pub mod api;
mod cancel;
pub mod commit;
pub mod counters;
pub mod error;
pub mod executor;
pub mod format;
pub mod jobs;
pub mod map_task;
mod merge;
pub mod payload;
pub mod plan;
pub mod reduce_task;
pub mod registry;
pub mod shuffle;
pub mod sort;
pub mod split;
pub mod streaming;
pub mod testing;

#[cfg(test)]
mod test_support;
