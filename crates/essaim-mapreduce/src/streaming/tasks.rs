//! The mapper and reducer (also combiner) of a streaming step: each owns one
//! [`StreamingProcess`], started lazily so that a mapper knows its input file, and
//! started even for an empty task, since a command may write something at its end
//! (mrjob's `mapper_final`, `reducer_final`) as it does on Hadoop.

use std::ffi::OsString;

use super::Framing;
use super::process::{Launch, StreamingProcess};
use crate::api::{Emit, JobError, Mapper, Record, Reducer, Values};

/// The mapper of a step without mapper command: each line is split into its pair.
pub(super) struct IdentityMapper {
    pub framing: Framing,
}

impl Mapper for IdentityMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        self.framing.emit_line(record.data, out)
    }
}

/// A mapper command: one process per task, started at the first record (whose file it
/// is told in `map_input_file`) or at the end of an empty split.
pub(super) struct StreamingMapper {
    launch: Launch,
    process: Option<StreamingProcess>,
}

impl StreamingMapper {
    pub fn new(launch: Launch) -> Self {
        Self {
            launch,
            process: None,
        }
    }

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
pub(super) struct StreamingReducer {
    launch: Launch,
    process: Option<StreamingProcess>,
}

impl StreamingReducer {
    pub fn new(launch: Launch) -> Self {
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
    use std::path::Path;
    use std::time::Instant;

    use super::*;
    use crate::api::{JobDefinition, JobParams};
    use crate::streaming::{StreamingJob, split_key_value};
    use crate::testing::{CollectEmit, Pair};

    fn params(pairs: &[(&str, &str)]) -> JobParams {
        JobParams::from_pairs(pairs)
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
    fn map_lines(params: &JobParams, lines: &[&[u8]]) -> Result<Vec<Pair>, JobError> {
        let mut mapper = StreamingJob.mapper(params, 0)?;
        let mut out = CollectEmit::default();
        for line in lines {
            mapper.map(&record(line), &mut out)?;
        }
        mapper.finish(&mut out)?;
        Ok(out.pairs)
    }

    fn pair(key: &[u8], value: &[u8]) -> Pair {
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

    /// Feeds `pairs`, sorted by key, to `reducer` one key at a time, as the framework
    /// does, and returns what it emitted.
    fn reduce_all(reducer: &mut dyn Reducer, mut pairs: Vec<Pair>) -> Result<Vec<Pair>, JobError> {
        struct KeyValues<'a>(std::slice::Iter<'a, Pair>);
        impl Values for KeyValues<'_> {
            fn next_value(&mut self) -> Result<Option<&[u8]>, JobError> {
                Ok(self.0.next().map(|(_, value)| value.as_slice()))
            }
        }
        pairs.sort_by(|left, right| left.0.cmp(&right.0));
        let mut out = CollectEmit::default();
        for group in pairs.chunk_by(|left, right| left.0 == right.0) {
            reducer.reduce(&group[0].0, &mut KeyValues(group.iter()), &mut out)?;
        }
        reducer.finish(&mut out)?;
        Ok(out.pairs)
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
        let pairs: Vec<Pair> = big_lines(200_000)
            .iter()
            .map(|line| {
                let (key, value) = split_key_value(line, b'\t');
                pair(key, value)
            })
            .collect();
        let params = params(&[("step.0.reducer", "cat")]);
        let mut reducer = StreamingJob.reducer(&params, 0).unwrap();
        let output = reduce_all(reducer.as_mut(), pairs.clone()).unwrap();
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
        let output = reduce_all(
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
        let output = reduce_all(reducer.as_mut(), pairs).unwrap();
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
        let output = reduce_all(reducer.as_mut(), Vec::new()).unwrap();
        assert_eq!(output, [pair(b"final", b"")]);
    }
}
