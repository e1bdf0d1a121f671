//! Streaming jobs: any executable as mapper, combiner or reducer, under the Hadoop
//! Streaming contract, so that programs written for Hadoop (mrjob jobs, awk one-liners,
//! scripts in any language) run on essaim unmodified.
//!
//! The contract, as Hadoop Streaming defines it:
//! - a mapper reads input records on its standard input, one per line, and writes
//!   `key<TAB>value` lines on its standard output;
//! - a reducer (or combiner) reads `key<TAB>value` lines sorted by key (all lines of one
//!   key together, keys in byte order) and writes `key<TAB>value` lines; it groups the
//!   lines by key itself;
//! - an output line is split at its first separator (TAB by default): the key is what
//!   comes before, the value what comes after; a line without separator is a key with
//!   an empty value. Lines end at `\n`; every other byte, `\r` and invalid UTF-8
//!   included, passes through unchanged;
//! - one process per task, whose failure (non-zero exit, signal) fails the task.
//!
//! Command lines run with `/bin/sh -c`, so quoting, pipes, redirections and variables
//! work as in a shell. Hadoop splits a command on spaces; such a command line (without
//! quotes) means the same here.
//!
//! Parameters (`--param name=value`):
//!
//! | parameter | default | meaning |
//! |---|---|---|
//! | `steps` | `1` | number of steps |
//! | `step.<s>.mapper` | identity | mapper of step `s` (0-based) |
//! | `step.<s>.combiner` | none | combiner of step `s` |
//! | `step.<s>.reducer` | identity | reducer of step `s` |
//! | `cwd` | the job files' directory, else the worker's | working directory of every command |
//! | `separator` | TAB | the byte between key and value: one ASCII character, or `\t` |
//! | `sort_values` | `false` | sort the lines of a key by value too (mrjob's `SORT_VALUES`) |
//!
//! The identity mapper passes each input line on (split into key and value); the
//! identity reducer passes each pair on. A step needs at least one command.
//!
//! With `sort_values`, the whole line is the sort key and only the part before the
//! separator chooses the partition, as mrjob does on Hadoop with
//! `KeyFieldBasedPartitioner` and two key fields: each reducer sees all lines of a key,
//! sorted by key and then value. (Lines compare as bytes, so a key that is a prefix of
//! another sorts first, as in key order, unless the longer key continues with a byte
//! below TAB; the lines of one key always stay together.)
//!
//! The job's output lines are `key<TAB>value` (`key` alone when the value is empty),
//! Hadoop's text output, whatever the separator; under `sort_values` they are the last
//! reducer's lines as it wrote them.
//!
//! A multi-step job's step `s` > 0 reads what step `s - 1` reduced, as `key<TAB>value`
//! lines (Hadoop's text output read back as text input).
//!
//! A job that ships files (`--files`, [`crate::config::JobConfig::files`]) finds them
//! under their names in its commands' working directory: each task stages them in a
//! directory of its own and, unless `cwd` is set, runs its commands there. A mapper
//! `python3 map.py` then needs nothing installed on the worker but Python.
//!
//! [`mrjob_streaming_params`] builds these parameters from an mrjob script.

mod config;
mod mrjob;
mod process;
mod tasks;

use self::config::StreamingConfig;
pub use self::mrjob::{MrjobError, mrjob_shipped_streaming_params, mrjob_streaming_params};
use self::process::Role;
use self::tasks::{IdentityMapper, StreamingMapper, StreamingReducer};
use crate::api::{
    Emit, HashPartitioner, IdentityReducer, JobDefinition, JobError, JobParams, Mapper,
    Partitioner, Reducer,
};

/// Name of the streaming job, as given to `essaim run`.
pub const STREAMING_JOB_NAME: &str = "streaming";

/// The job that runs external commands as mapper, combiner and reducer; parameters in
/// the module doc.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamingJob;

impl JobDefinition for StreamingJob {
    fn name(&self) -> &str {
        STREAMING_JOB_NAME
    }

    fn description(&self) -> &str {
        "any executables as mapper, combiner and reducer (Hadoop Streaming, mrjob)"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        StreamingConfig::from_params(params).map(|_| ())
    }

    fn runs_commands(&self) -> bool {
        true
    }

    fn uses_job_files(&self, _params: &JobParams) -> bool {
        true
    }

    /// The commands run where the job's files are, unless the job chose a `cwd`.
    fn use_job_files_dir(&self, params: &mut JobParams, dir: &std::path::Path) {
        if params.get(config::CWD_PARAM).is_none() {
            params.set(config::CWD_PARAM, dir.to_string_lossy());
        }
    }

    /// A mapper command is one process per task, told its input file once in its
    /// environment (`map_input_file`, as on Hadoop): it must see one file per task.
    fn packs_small_files(&self, _params: &JobParams) -> bool {
        false
    }

    fn steps(&self, params: &JobParams) -> usize {
        // Invalid parameters are refused by `validate` before anything asks this.
        StreamingConfig::from_params(params).map_or(1, |config| config.steps.len())
    }

    fn mapper(&self, params: &JobParams, step: usize) -> Result<Box<dyn Mapper>, JobError> {
        let config = StreamingConfig::from_params(params)?;
        let framing = config.framing;
        Ok(match config.command(step, |commands| &commands.mapper)? {
            None => Box::new(IdentityMapper { framing }),
            Some(command) => Box::new(StreamingMapper::new(config.launch(command, Role::Mapper))),
        })
    }

    fn combiner(
        &self,
        params: &JobParams,
        step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        let config = StreamingConfig::from_params(params)?;
        let Some(command) = config.command(step, |commands| &commands.combiner)? else {
            return Ok(None);
        };
        Ok(Some(Box::new(StreamingReducer::new(
            config.launch(command, Role::Combiner),
        ))))
    }

    fn reducer(&self, params: &JobParams, step: usize) -> Result<Box<dyn Reducer>, JobError> {
        let config = StreamingConfig::from_params(params)?;
        Ok(match config.command(step, |commands| &commands.reducer)? {
            None => Box::new(IdentityReducer),
            Some(command) => Box::new(StreamingReducer::new(config.launch(command, Role::Reducer))),
        })
    }

    fn partitioner(
        &self,
        params: &JobParams,
        _step: usize,
    ) -> Result<Box<dyn Partitioner>, JobError> {
        let config = StreamingConfig::from_params(params)?;
        if config.framing.whole_line_key {
            Ok(Box::new(FirstFieldPartitioner {
                separator: config.framing.separator,
            }))
        } else {
            Ok(Box::new(HashPartitioner))
        }
    }
}

/// How a line becomes the pair the framework sorts and partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    /// The byte between key and value.
    pub separator: u8,
    /// `sort_values`: the whole line is the key (the value is empty), so the framework's
    /// sort orders lines by key and then value.
    pub whole_line_key: bool,
}

impl Framing {
    /// Emits one line of a command's output (without its `\n`) as a pair.
    pub fn emit_line(self, line: &[u8], out: &mut dyn Emit) -> Result<(), JobError> {
        if self.whole_line_key {
            return out.emit(line, b"");
        }
        let (key, value) = split_key_value(line, self.separator);
        out.emit(key, value)
    }
}

/// Splits a line at its first `separator`: key before, value after; a line without one
/// is all key.
pub(crate) fn split_key_value(line: &[u8], separator: u8) -> (&[u8], &[u8]) {
    match memchr::memchr(separator, line) {
        Some(at) => (&line[..at], &line[at + 1..]),
        None => (line, b""),
    }
}

/// Partitions by the part of the key before the first separator: under `sort_values`
/// the key is the whole line, and all lines of one key must meet in one reducer.
#[derive(Debug, Clone, Copy)]
struct FirstFieldPartitioner {
    separator: u8,
}

impl Partitioner for FirstFieldPartitioner {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        let (first_field, _) = split_key_value(key, self.separator);
        HashPartitioner.partition(first_field, partitions)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::num::NonZeroUsize;

    use super::*;
    use crate::testing::{InMemoryOptions, run_in_memory_with};

    fn params(pairs: &[(&str, &str)]) -> JobParams {
        JobParams::from_pairs(pairs)
    }

    #[test]
    fn wordcount_with_shell_one_liners_counts_every_word() {
        let directory = tempfile::tempdir().unwrap();
        let inputs = [
            directory.path().join("a.txt"),
            directory.path().join("b.txt"),
        ];
        std::fs::write(&inputs[0], "the cat\nthe dog and the bird\n\nA cat\n").unwrap();
        std::fs::write(&inputs[1], "dog dog\tcat\nthe end").unwrap();
        let mapper = r#"tr -s ' \t' '\n\n' | awk 'NF { print tolower($0) "\t" 1 }'"#;
        // Keys arrive sorted, so the reducer only compares each key with the previous.
        let reducer = r#"awk -F '\t' '$1 != k { if (NR > 1) print k "\t" n; k = $1; n = 0 } { n += $2 } END { if (NR > 0) print k "\t" n }'"#;
        let mut expected: Vec<Vec<u8>> = [
            "a\t1", "and\t1", "bird\t1", "cat\t3", "dog\t3", "end\t1", "the\t4",
        ]
        .iter()
        .map(|line| line.as_bytes().to_vec())
        .collect();
        for combiner in [None, Some(reducer)] {
            let mut job_params = params(&[("step.0.mapper", mapper), ("step.0.reducer", reducer)]);
            if let Some(combiner) = combiner {
                job_params.set("step.0.combiner", combiner);
            }
            let options = InMemoryOptions {
                combine: true,
                lines_per_split: NonZeroUsize::new(2),
            };
            let mut output =
                run_in_memory_with(&StreamingJob, &job_params, &inputs, 3, &options).unwrap();
            output.sort();
            expected.sort();
            assert_eq!(output, expected, "combiner: {combiner:?}");
        }
    }

    #[test]
    fn sort_values_sorts_the_lines_of_a_key_and_keeps_keys_together() {
        let directory = tempfile::tempdir().unwrap();
        let input = directory.path().join("in.txt");
        std::fs::write(&input, "b\t2\na\t9\nb\t1\na\t3\nc\t0\nb\t0\n").unwrap();
        let base = [("step.0.reducer", "cat")];
        let mut job_params = params(&base);
        job_params.set("sort_values", "true");
        let options = InMemoryOptions {
            combine: true,
            lines_per_split: NonZeroUsize::new(1),
        };
        let output = run_in_memory_with(&StreamingJob, &job_params, &[input], 4, &options).unwrap();
        // Per key, in the partition that holds it: values in order.
        let mut values_by_key: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for line in &output {
            let (key, value) = split_key_value(line, b'\t');
            values_by_key
                .entry(key.to_vec())
                .or_default()
                .push(value.to_vec());
        }
        assert_eq!(values_by_key[b"b".as_slice()], [b"0", b"1", b"2"]);
        assert_eq!(values_by_key[b"a".as_slice()], [b"3", b"9"]);
        let partitioner = StreamingJob.partitioner(&job_params, 0).unwrap();
        assert_eq!(
            partitioner.partition(b"key\tvalue 1", 16),
            partitioner.partition(b"key\tvalue 2", 16)
        );
    }
}
