//! A binary with a MapReduce job of its own, written in Rust against essaim's job API.
//!
//! `bigrams` counts pairs of consecutive words on each line. Build this binary, and it is
//! the whole essaim command line with one more job: run it on an embedded local cluster,
//!
//! ```text
//! cargo run --release -p essaim-example-custom-job -- run bigrams --input text/ --output out/
//! ```
//!
//! or start it as the workers of a real cluster (`bigrams worker --coordinator …`) and
//! submit with `bigrams submit bigrams …`. Every worker must run a binary that knows the
//! job: the coordinator only carries its name and parameters.

use std::collections::HashMap;
use std::sync::Arc;

use essaim::mapreduce::api::{
    Emit, JobDefinition, JobError, JobParams, Mapper, Record, Reducer, Values,
};

/// Counts `first second` word pairs; `min_count` (default 1) drops rare pairs.
pub struct Bigrams;

impl JobDefinition for Bigrams {
    fn name(&self) -> &str {
        "bigrams"
    }

    fn description(&self) -> &str {
        "counts pairs of consecutive words on each line (min_count=N drops rare pairs)"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        params.parse_or("min_count", 1u64).map(|_| ())
    }

    fn mapper(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(BigramMapper::default()))
    }

    fn combiner(
        &self,
        _params: &JobParams,
        _step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        Ok(Some(Box::new(SumReducer { min_count: 1 })))
    }

    fn reducer(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(SumReducer {
            min_count: params.parse_or("min_count", 1u64)?,
        }))
    }
}

/// Counts a split's pairs in memory (bounded), then emits them: in-mapper combining.
#[derive(Default)]
struct BigramMapper {
    counts: HashMap<Vec<u8>, u64>,
}

/// Pairs held before the mapper flushes them, so memory stays bounded.
const MAX_PAIRS_IN_MEMORY: usize = 100_000;

impl Mapper for BigramMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let mut words = record
            .data
            .split(|byte| byte.is_ascii_whitespace())
            .filter(|word| !word.is_empty());
        let Some(mut previous) = words.next() else {
            return Ok(());
        };
        for word in words {
            let mut pair = Vec::with_capacity(previous.len() + word.len() + 1);
            pair.extend_from_slice(previous);
            pair.push(b' ');
            pair.extend_from_slice(word);
            *self.counts.entry(pair).or_default() += 1;
            previous = word;
        }
        if self.counts.len() > MAX_PAIRS_IN_MEMORY {
            self.finish(out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        for (pair, count) in self.counts.drain() {
            out.emit(&pair, count.to_string().as_bytes())?;
        }
        Ok(())
    }
}

/// Sums decimal counts; keeps sums of at least `min_count`.
struct SumReducer {
    min_count: u64,
}

impl Reducer for SumReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let mut sum = 0u64;
        while let Some(value) = values.next_value()? {
            let text = std::str::from_utf8(value)
                .map_err(|_| JobError::permanent("a count is not UTF-8"))?;
            let count: u64 = text
                .parse()
                .map_err(|_| JobError::permanent(format!("`{text}` is not a count")))?;
            sum = sum.saturating_add(count);
        }
        if sum >= self.min_count {
            out.emit(key, sum.to_string().as_bytes())?;
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    essaim::main_with_jobs(vec![Arc::new(Bigrams)])
}
