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
//! | `cwd` | the worker's | working directory of every command |
//! | `separator` | TAB | the byte between key and value: one ASCII character, or `\t` |
//! | `sort_values` | `false` | sort the lines of a key by value too (mrjob's `SORT_VALUES`) |
//!
//! The identity mapper passes each input line on (split into key and value); the
//! identity reducer passes each pair on. A step needs at least one command.
//!
//! With `sort_values`, the whole line is the sort key and only the part before the
//! separator chooses the partition, as mrjob does on Hadoop with
//! `KeyFieldBasedPartitioner` and two key fields: each reducer sees all lines of a key,
//! sorted by key and then value.
//!
//! The job's output lines are `key<TAB>value` (`key` alone when the value is empty),
//! Hadoop's text output, whatever the separator; under `sort_values` they are the last
//! reducer's lines as it wrote them.
//!
//! A multi-step job's step `s` > 0 reads what step `s - 1` reduced, as `key<TAB>value`
//! lines (Hadoop's text output read back as text input).
//!
//! [`mrjob_streaming_params`] builds these parameters from an mrjob script.

mod mrjob;
mod process;

use std::ffi::OsString;
use std::path::PathBuf;

pub use self::mrjob::{MrjobError, mrjob_streaming_params};
use self::process::{Launch, Role, StreamingProcess};
use crate::api::{
    Emit, HashPartitioner, JobDefinition, JobError, JobParams, Mapper, Partitioner, Record,
    Reducer, Values,
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

    fn steps(&self, params: &JobParams) -> usize {
        // Invalid parameters are refused by `validate` before anything asks this.
        StreamingConfig::from_params(params).map_or(1, |config| config.steps.len())
    }

    fn mapper(&self, params: &JobParams, step: usize) -> Result<Box<dyn Mapper>, JobError> {
        let config = StreamingConfig::from_params(params)?;
        let framing = config.framing;
        Ok(match config.command(step, |commands| &commands.mapper)? {
            None => Box::new(IdentityMapper { framing }),
            Some(command) => Box::new(StreamingMapper {
                launch: config.launch(command, Role::Mapper),
                process: None,
            }),
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

/// The commands of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StepCommands {
    mapper: Option<String>,
    combiner: Option<String>,
    reducer: Option<String>,
}

/// The parameters of a streaming job, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamingConfig {
    steps: Vec<StepCommands>,
    framing: Framing,
    cwd: Option<PathBuf>,
}

impl StreamingConfig {
    fn from_params(params: &JobParams) -> Result<Self, JobError> {
        let step_count: usize = params.parse_or("steps", 1)?;
        if step_count == 0 {
            return Err(JobError::permanent("parameter `steps` must be at least 1"));
        }
        let mut steps = vec![StepCommands::default(); step_count];
        for (name, value) in &params.0 {
            let Some(rest) = name.strip_prefix("step.") else {
                continue;
            };
            // A misspelt name would silently run an identity step instead: refuse it.
            let unknown = || JobError::permanent(format!("unknown parameter `{name}`"));
            let (index, part) = rest.split_once('.').ok_or_else(unknown)?;
            let index: usize = index.parse().map_err(|_| unknown())?;
            let Some(commands) = steps.get_mut(index) else {
                return Err(JobError::permanent(format!(
                    "parameter `{name}` names step {index}, but the job has {step_count} steps"
                )));
            };
            let slot = match part {
                "mapper" => &mut commands.mapper,
                "combiner" => &mut commands.combiner,
                "reducer" => &mut commands.reducer,
                _ => return Err(unknown()),
            };
            if value.trim().is_empty() {
                return Err(JobError::permanent(format!(
                    "parameter `{name}` is an empty command"
                )));
            }
            *slot = Some(value.clone());
        }
        for (index, commands) in steps.iter().enumerate() {
            if *commands == StepCommands::default() {
                return Err(JobError::permanent(format!(
                    "step {index} has no command: set `step.{index}.mapper` or \
                     `step.{index}.reducer`"
                )));
            }
        }
        Ok(Self {
            steps,
            framing: Framing {
                separator: parse_separator(params.get("separator"))?,
                whole_line_key: params.parse_or("sort_values", false)?,
            },
            cwd: params.get("cwd").map(PathBuf::from),
        })
    }

    /// Returns one command of a step, refusing a step the job does not have.
    fn command(
        &self,
        step: usize,
        which: impl Fn(&StepCommands) -> &Option<String>,
    ) -> Result<Option<&str>, JobError> {
        let commands = self.steps.get(step).ok_or_else(|| {
            JobError::permanent(format!(
                "the job has {} steps, not {}",
                self.steps.len(),
                step + 1
            ))
        })?;
        Ok(which(commands).as_deref())
    }

    fn launch(&self, command: &str, role: Role) -> Launch {
        Launch {
            command: command.to_string(),
            role,
            cwd: self.cwd.clone(),
            framing: self.framing,
        }
    }
}

fn parse_separator(text: Option<&str>) -> Result<u8, JobError> {
    match text {
        None | Some("\\t") => Ok(b'\t'),
        Some(text) if text.len() == 1 && text.is_ascii() && text != "\n" => Ok(text.as_bytes()[0]),
        Some(text) => Err(JobError::permanent(format!(
            "parameter `separator` = `{text}`: must be one ASCII character other than newline, \
             or `\\t`"
        ))),
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

/// The mapper of a step without mapper command: each line is split into its pair.
struct IdentityMapper {
    framing: Framing,
}

impl Mapper for IdentityMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        self.framing.emit_line(record.data, out)
    }
}

/// The reducer of a step without reducer command: every pair passes through.
struct IdentityReducer;

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

/// A mapper command: one process per task, started at the first record (whose file it
/// is told in `map_input_file`) or at the end of an empty split.
struct StreamingMapper {
    launch: Launch,
    process: Option<StreamingProcess>,
}

impl StreamingMapper {
    fn start(&mut self, record: Option<&Record<'_>>) -> Result<&mut StreamingProcess, JobError> {
        if self.process.is_none() {
            // What Hadoop Streaming tells a mapper about its split (dots become
            // underscores in environment names); mrjob's `jobconf_from_env` reads them.
            let mut env: Vec<(&str, OsString)> = Vec::new();
            if let Some(record) = record {
                let path = OsString::from(record.path);
                let start = OsString::from(record.split_start.to_string());
                env.extend([
                    ("map_input_file", path.clone()),
                    ("mapreduce_map_input_file", path),
                    ("map_input_start", start.clone()),
                    ("mapreduce_map_input_start", start),
                ]);
            }
            self.process = Some(StreamingProcess::spawn(self.launch.clone(), &env)?);
        }
        Ok(self.process.as_mut().expect("started above"))
    }
}

impl Mapper for StreamingMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        self.start(Some(record))?.write_line(&[record.data], out)
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        self.start(None)?.finish(out)
    }
}

/// A reducer or combiner command: one process per instance, which sees every pair as
/// a `key<SEP>value` line (`key` alone when the value is empty), keys in order.
struct StreamingReducer {
    launch: Launch,
    process: Option<StreamingProcess>,
}

impl StreamingReducer {
    fn new(launch: Launch) -> Self {
        Self {
            launch,
            process: None,
        }
    }

    fn start(&mut self) -> Result<&mut StreamingProcess, JobError> {
        if self.process.is_none() {
            self.process = Some(StreamingProcess::spawn(self.launch.clone(), &[])?);
        }
        Ok(self.process.as_mut().expect("started above"))
    }
}

impl Reducer for StreamingReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let separator = [self.launch.framing.separator];
        let process = self.start()?;
        while let Some(value) = values.next_value()? {
            if value.is_empty() {
                process.write_line(&[key], out)?;
            } else {
                process.write_line(&[key, &separator, value], out)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        // Started even without keys: a reducer may emit from its own end (mrjob's
        // `reducer_final`), as on Hadoop.
        self.start()?.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::num::NonZeroUsize;
    use std::path::Path;
    use std::time::Instant;

    use super::*;
    use crate::testing::{CollectEmit, InMemoryOptions, run_in_memory_with};

    fn params(pairs: &[(&str, &str)]) -> JobParams {
        let mut params = JobParams::default();
        for (name, value) in pairs {
            params.set(*name, *value);
        }
        params
    }

    fn record<'a>(data: &'a [u8]) -> Record<'a> {
        Record {
            path: Path::new("/data/input.txt"),
            offset: 0,
            line_in_split: 1,
            split_start: 0,
            data,
        }
    }

    /// Runs one map task of step 0 over `lines`, collecting what it emits.
    fn map_lines(params: &JobParams, lines: &[&[u8]]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, JobError> {
        let mut mapper = StreamingJob.mapper(params, 0)?;
        let mut out = CollectEmit::default();
        for line in lines {
            mapper.map(&record(line), &mut out)?;
        }
        mapper.finish(&mut out)?;
        Ok(out.pairs)
    }

    fn pair(key: &[u8], value: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (key.to_vec(), value.to_vec())
    }

    /// Counts and fingerprints what is emitted, so that many megabytes can flow
    /// without being kept.
    #[derive(Default)]
    struct Fingerprint {
        lines: u64,
        bytes: u64,
        hash: u64,
        last_line: Vec<u8>,
        in_order: bool,
    }

    impl Fingerprint {
        fn add_line(&mut self, line: &[u8]) {
            if self.lines == 0 {
                self.in_order = true;
            }
            self.in_order &= self.last_line.as_slice() <= line;
            self.last_line.clear();
            self.last_line.extend_from_slice(line);
            self.lines += 1;
            self.bytes += line.len() as u64 + 1;
            // Order-sensitive: FNV over the lines and their terminators.
            for byte in line.iter().chain(b"\n") {
                self.hash = (self.hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }

    impl Emit for Fingerprint {
        fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError> {
            let mut line = key.to_vec();
            if !value.is_empty() {
                line.push(b'\t');
                line.extend_from_slice(value);
            }
            self.add_line(&line);
            Ok(())
        }
    }

    /// `count` distinct lines of about 100 bytes, `word<TAB>payload`.
    fn big_lines(count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|index| format!("w{:07}\t{}", (index * 7919) % count, "x".repeat(90)).into_bytes())
            .collect()
    }

    fn map_fingerprint(command: &str, lines: &[Vec<u8>]) -> Result<Fingerprint, JobError> {
        let params = params(&[("step.0.mapper", command)]);
        let mut mapper = StreamingJob.mapper(&params, 0)?;
        let mut out = Fingerprint::default();
        for line in lines {
            mapper.map(&record(line), &mut out)?;
        }
        mapper.finish(&mut out)?;
        Ok(out)
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
    fn a_mapper_that_writes_far_more_than_it_reads_does_not_deadlock() {
        let lines = big_lines(20_000);
        let started = Instant::now();
        // 2 MB in, 50 MB out.
        let out = map_fingerprint("awk '{ for (i = 0; i < 25; i++) print $0 }'", &lines).unwrap();
        assert_eq!(out.lines, 25 * 20_000);
        assert_eq!(
            out.bytes,
            25 * lines.iter().map(|line| line.len() as u64 + 1).sum::<u64>()
        );
        eprintln!("amplification: {:?}", started.elapsed());
    }

    #[test]
    fn cat_returns_many_megabytes_unchanged_and_in_order() {
        let lines = big_lines(200_000);
        let mut expected = Fingerprint::default();
        for line in &lines {
            expected.add_line(line);
        }
        let out = map_fingerprint("cat", &lines).unwrap();
        assert_eq!(
            (out.lines, out.bytes, out.hash),
            (expected.lines, expected.bytes, expected.hash)
        );
    }

    #[test]
    fn a_mapper_that_reads_everything_before_writing_does_not_deadlock() {
        let lines = big_lines(200_000);
        // 20 MB through `sort`, which writes nothing before its input ends.
        let out = map_fingerprint("LC_ALL=C sort", &lines).unwrap();
        assert_eq!(out.lines, 200_000);
        assert!(out.in_order);
    }

    #[test]
    fn a_reducer_streams_many_megabytes_both_ways() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = big_lines(200_000)
            .iter()
            .map(|line| {
                let (key, value) = split_key_value(line, b'\t');
                pair(key, value)
            })
            .collect();
        let params = params(&[("step.0.reducer", "cat")]);
        let mut reducer = StreamingJob.reducer(&params, 0).unwrap();
        let output = crate::testing::reduce_pairs(reducer.as_mut(), pairs.clone()).unwrap();
        let mut sorted = pairs;
        sorted.sort();
        assert_eq!(output, sorted);
    }

    #[test]
    fn a_failing_command_fails_the_task_with_its_exit_status_and_stderr_tail() {
        let command =
            "cat >/dev/null; yes noise | head -c 20000 >&2; echo 'the real reason' >&2; exit 3";
        let params = params(&[("step.0.mapper", command)]);
        let error = map_lines(&params, &[b"a", b"b"]).unwrap_err();
        assert!(error.retryable);
        assert!(
            error.message.contains("exit status: 3"),
            "{}",
            error.message
        );
        assert!(
            error.message.ends_with("the real reason"),
            "{}",
            error.message
        );
        assert!(error.message.len() < 5000, "only the tail is kept");
    }

    #[test]
    fn a_missing_executable_is_a_clear_error() {
        let params = params(&[("step.0.mapper", "essaim-no-such-program --mapper")]);
        let error = map_lines(&params, &[b"a"]).unwrap_err();
        assert!(
            error.message.contains("command not found"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("essaim-no-such-program"),
            "{}",
            error.message
        );
    }

    #[test]
    fn lines_without_separator_are_keys_with_empty_values() {
        let params = params(&[("step.0.mapper", "cat")]);
        let pairs = map_lines(&params, &[b"no tab here", b"k\tv\tw", b"\tempty key", b""]).unwrap();
        assert_eq!(
            pairs,
            [
                pair(b"no tab here", b""),
                pair(b"k", b"v\tw"),
                pair(b"", b"empty key"),
                pair(b"", b""),
            ]
        );
        // The reducer is given `key` alone for an empty value.
        let params = super::tests::params(&[("step.0.reducer", "cat")]);
        let mut reducer = StreamingJob.reducer(&params, 0).unwrap();
        let output = crate::testing::reduce_pairs(
            reducer.as_mut(),
            vec![pair(b"k", b""), pair(b"k", b"v"), pair(b"j", b"x\ty")],
        )
        .unwrap();
        assert_eq!(
            output,
            [pair(b"j", b"x\ty"), pair(b"k", b""), pair(b"k", b"v")]
        );
    }

    #[test]
    fn invalid_utf8_and_carriage_returns_pass_through_unchanged() {
        let params = params(&[("step.0.mapper", "cat")]);
        let line: &[u8] = b"\xff\xfe key\x80\t\xc3value\r";
        let pairs = map_lines(&params, &[line]).unwrap();
        assert_eq!(pairs, [pair(b"\xff\xfe key\x80", b"\xc3value\r")]);
    }

    #[test]
    fn a_custom_separator_splits_keys_and_joins_reducer_input() {
        let job_params = params(&[
            ("step.0.mapper", "cat"),
            ("step.0.reducer", "cat"),
            ("separator", ","),
        ]);
        let pairs = map_lines(&job_params, &[b"a,1,2", b"b\t3"]).unwrap();
        assert_eq!(pairs, [pair(b"a", b"1,2"), pair(b"b\t3", b"")]);
        let mut reducer = StreamingJob.reducer(&job_params, 0).unwrap();
        let output = crate::testing::reduce_pairs(reducer.as_mut(), pairs).unwrap();
        assert_eq!(output, [pair(b"a", b"1,2"), pair(b"b\t3", b"")]);
    }

    #[test]
    fn a_mapper_that_stops_reading_and_exits_zero_succeeds() {
        let lines = big_lines(100_000);
        let out = map_fingerprint("head -n 3", &lines).unwrap();
        assert_eq!(out.lines, 3);
        let error = map_fingerprint("head -n 3; exit 4", &lines).err().unwrap();
        assert!(
            error.message.contains("exit status: 4"),
            "{}",
            error.message
        );
    }

    #[test]
    fn the_mapper_is_told_its_input_file() {
        let params = params(&[(
            "step.0.mapper",
            r#"cat >/dev/null; echo "$map_input_file|$mapreduce_map_input_file|$mapreduce_task_ismap""#,
        )]);
        let pairs = map_lines(&params, &[b"x"]).unwrap();
        assert_eq!(pairs, [pair(b"/data/input.txt|/data/input.txt|true", b"")]);
    }

    #[test]
    fn an_empty_task_still_runs_its_command() {
        let params = params(&[
            ("step.0.mapper", "echo final"),
            ("step.0.reducer", "echo final"),
        ]);
        assert_eq!(map_lines(&params, &[]).unwrap(), [pair(b"final", b"")]);
        let mut reducer = StreamingJob.reducer(&params, 0).unwrap();
        let output = crate::testing::reduce_pairs(reducer.as_mut(), Vec::new()).unwrap();
        assert_eq!(output, [pair(b"final", b"")]);
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

    #[test]
    fn invalid_parameters_are_permanent_errors_naming_the_key() {
        let invalid: [&[(&str, &str)]; 7] = [
            &[],
            &[("steps", "0"), ("step.0.mapper", "cat")],
            &[("steps", "2"), ("step.0.mapper", "cat")],
            &[("step.0.mapper", "cat"), ("step.0.mappr", "cat")],
            &[("step.0.mapper", "cat"), ("step.1.reducer", "cat")],
            &[("step.0.mapper", "  ")],
            &[("step.0.mapper", "cat"), ("separator", "ab")],
        ];
        for case in invalid {
            let error = StreamingJob.validate(&params(case)).unwrap_err();
            assert!(!error.retryable, "{case:?}");
            eprintln!("{case:?}: {}", error.message);
        }
        let misspelt = StreamingJob
            .validate(&params(&[
                ("step.0.mapper", "cat"),
                ("step.0.mappr", "cat"),
            ]))
            .unwrap_err();
        assert!(misspelt.message.contains("step.0.mappr"));
        let valid = params(&[
            ("steps", "2"),
            ("step.0.mapper", "cat"),
            ("step.1.reducer", "sort"),
        ]);
        StreamingJob.validate(&valid).unwrap();
        assert_eq!(StreamingJob.steps(&valid), 2);
    }
}
