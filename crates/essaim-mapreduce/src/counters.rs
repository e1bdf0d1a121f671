//! The names of the counters a MapReduce task reports, and the small accumulator the
//! data path fills on its hot loops (plain integers, folded into the report once).
//!
//! Names follow Hadoop's spirit (`map.input.records`, `reduce.input.groups`) so that a
//! person who knows Hadoop's job counters can read them; the coordinator sums them per
//! job. A job adds its own through [`crate::api::Mapper::counters`], named after the job
//! (`join.malformed.rows`), as a Hadoop job increments its own counter group.

use std::collections::BTreeMap;

/// Lines (or whole files) a map task read.
pub const MAP_INPUT_RECORDS: &str = "map.input.records";
/// Bytes of input a map task read, line terminators included.
pub const MAP_INPUT_BYTES: &str = "map.input.bytes";
/// Pairs the mapper emitted.
pub const MAP_OUTPUT_RECORDS: &str = "map.output.records";
/// Key and value bytes the mapper emitted.
pub const MAP_OUTPUT_BYTES: &str = "map.output.bytes";
/// Bytes of the map output file (compressed, with headers and footer).
pub const MAP_OUTPUT_MATERIALIZED_BYTES: &str = "map.output.materialized.bytes";
/// Input records a map task skipped because the job's code fails on them (skipping
/// mode, [`crate::skip`]); Hadoop's `MAP_SKIPPED_RECORDS`.
pub const MAP_SKIPPED_RECORDS: &str = "map.skipped.records";
/// Map tasks whose output was taken from the worker's task cache instead of computed
/// ([`crate::task_cache`]): the other counters of such a task are the stored ones.
pub const MAP_REUSED_TASKS: &str = "map.reused.tasks";
/// Runs of the mapper over ranges of records made to find the records to skip.
pub const MAP_ISOLATION_PROBES: &str = "map.isolation.probes";
/// Key groups a reduce task skipped because the job's reducer fails on them (skipping
/// mode); Hadoop's `REDUCE_SKIPPED_GROUPS`.
pub const REDUCE_SKIPPED_GROUPS: &str = "reduce.skipped.groups";
/// Runs of the reducer over ranges of key groups made to find the groups to skip.
pub const REDUCE_ISOLATION_PROBES: &str = "reduce.isolation.probes";
/// Spill files written (a map task whose output fits its sort buffer spills once).
pub const MAP_SPILLS: &str = "map.spills";
/// Merge passes over spills or fetched segments, the final merge included.
pub const MERGE_PASSES: &str = "merge.passes";
/// Pairs given to the combiner.
pub const COMBINE_INPUT_RECORDS: &str = "combine.input.records";
/// Pairs the combiner emitted.
pub const COMBINE_OUTPUT_RECORDS: &str = "combine.output.records";
/// Distinct keys given to the reducer.
pub const REDUCE_INPUT_GROUPS: &str = "reduce.input.groups";
/// Values given to the reducer.
pub const REDUCE_INPUT_RECORDS: &str = "reduce.input.records";
/// Pairs the reducer emitted.
pub const REDUCE_OUTPUT_RECORDS: &str = "reduce.output.records";
/// Bytes of output lines written by the last step's reducer (newlines included), or
/// key and value bytes handed to the next step's mapper.
pub const REDUCE_OUTPUT_BYTES: &str = "reduce.output.bytes";
/// Bytes fetched from upstream outputs.
pub const SHUFFLE_BYTES: &str = "shuffle.bytes";
/// Segments fetched (non-empty partitions of upstream outputs).
pub const SHUFFLE_SEGMENTS: &str = "shuffle.segments";
/// HTTP requests the shuffle made (a batch of many upstreams' footers or segments
/// from one worker is one).
pub const SHUFFLE_REQUESTS: &str = "shuffle.requests";
/// Fetch attempts that failed and were tried again.
pub const SHUFFLE_FETCH_RETRIES: &str = "shuffle.fetch_retries";
/// Rounds of fetches of a reducer started early (slow start), each fetching the map
/// outputs committed since the one before.
pub const SHUFFLE_ROUNDS: &str = "shuffle.rounds";

/// Counters of one task, by name. Missing names read as zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    /// Adds `amount` to `name`.
    pub fn add(&mut self, name: &str, amount: u64) {
        if let Some(value) = self.0.get_mut(name) {
            *value += amount;
        } else {
            self.0.insert(name.to_string(), amount);
        }
    }

    /// Returns the value of `name`.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Counters) {
        for (name, value) in &other.0 {
            self.add(name, *value);
        }
    }

    /// Returns the map reported to the coordinator.
    pub fn into_map(self) -> BTreeMap<String, u64> {
        self.0
    }
}
