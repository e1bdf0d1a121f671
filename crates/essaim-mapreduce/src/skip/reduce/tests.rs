//! The reduce task in skipping mode over real map output files: a reducer that errs or
//! panics on chosen keys, the budget, a chained step.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::api::{JobDefinition, JobParams, Mapper, Record};
use crate::config::{JobConfig, MIN_SORT_BUFFER_BYTES};
use crate::format::{decode_footer, footer_len};
use crate::map_task::run_map;
use crate::payload::{InputSplit, MapTaskPayload, PAYLOAD_VERSION};
use crate::skip::SkipConfig;

/// Word count whose reducer fails on keys of its own: `BAD` (an error), `PANIC` (a
/// panic); `TWIN1` and `TWIN2` fail only together (neither alone).
struct FussyReduce;

struct Words;

impl Mapper for Words {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        for word in String::from_utf8_lossy(record.data).split_whitespace() {
            out.emit(word.as_bytes(), b"1")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct FussySum {
    twins: u32,
}

impl Reducer for FussySum {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        match key {
            b"BAD" => return Err(JobError::retryable("bad key".to_string())),
            b"PANIC" => panic!("cannot stand this key"),
            b"TWIN1" | b"TWIN2" => {
                self.twins += 1;
                if self.twins == 2 {
                    return Err(JobError::retryable("both twins".to_string()));
                }
            }
            _ => {}
        }
        let mut count = 0u64;
        while values.next_value()?.is_some() {
            count += 1;
        }
        out.emit(key, count.to_string().as_bytes())
    }
}

impl JobDefinition for FussyReduce {
    fn name(&self) -> &str {
        "fussy-reduce"
    }

    fn description(&self) -> &str {
        "word count whose reducer fails on some keys (test job)"
    }

    fn mapper(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(Words))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::<FussySum>::default())
    }
}

fn config(output: &Path, steps: u32, max_records: u64) -> JobConfig {
    JobConfig {
        version: PAYLOAD_VERSION,
        job: "fussy-reduce".into(),
        params: JobParams::default(),
        steps,
        reducers: 1,
        output_dir: output.to_path_buf().into(),
        sort_buffer_bytes: MIN_SORT_BUFFER_BYTES,
        merge_factor: 4,
        output_codec: None,
        storage: Default::default(),
        files: Default::default(),
        skip: SkipConfig {
            max_records,
            start_attempts: 2,
        },
    }
}

/// Maps `text` in 3 map tasks (so the reducer merges 3 segments) and returns the
/// fetched segments, as the shuffle would hand them over.
fn segments(dir: &Path, text: &[&str]) -> Vec<FetchedSegment> {
    let mut segments = Vec::new();
    for (index, part) in text.iter().enumerate() {
        let input = dir.join(format!("in-{index}.txt"));
        std::fs::write(&input, part).unwrap();
        let scratch = dir.join(format!("map-{index}"));
        std::fs::create_dir_all(&scratch).unwrap();
        let payload = MapTaskPayload {
            config: config(dir, 1, 0),
            splits: vec![InputSplit {
                path: input.clone(),
                start: 0,
                length: part.len() as u64,
            }],
        };
        let output = run_map(&FussyReduce, &payload, &scratch, CancellationToken::new()).unwrap();
        let bytes = std::fs::read(&output.path).unwrap();
        let footer = bytes.len() - footer_len(1) as usize;
        let entry = decode_footer(&bytes[footer..], 1, bytes.len() as u64, "test").unwrap()[0];
        segments.push(FetchedSegment {
            task_index: index as u32,
            path: output.path,
            offset: entry.offset,
            length: entry.length,
            records: entry.records,
        });
    }
    segments
}

struct Setup {
    dir: tempfile::TempDir,
    segments: Vec<FetchedSegment>,
}

fn setup(text: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let segments = segments(dir.path(), text);
    Setup { dir, segments }
}

fn run(
    setup: &Setup,
    steps: u32,
    max_records: u64,
    attempt_number: u32,
) -> TaskResult<SkippingReduceOutcome> {
    let output = setup.dir.path().join("out");
    std::fs::create_dir_all(&output).unwrap();
    let payload = ReduceTaskPayload {
        config: config(&output, steps, max_records),
        step: 0,
        partition: 0,
    };
    let scratch = setup.dir.path().join(format!("reduce-{attempt_number}"));
    std::fs::create_dir_all(&scratch).unwrap();
    let attempt = ReduceAttempt {
        job: &FussyReduce,
        payload: &payload,
        scratch_dir: &scratch,
        attempt_id: AttemptId(u64::from(attempt_number)),
        attempt_number,
    };
    run_reduce_skipping(&attempt, setup.segments.clone(), CancellationToken::new())
}

fn part(setup: &Setup) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(setup.dir.path().join("out/part-00000")).unwrap();
    text.lines()
        .map(|line| {
            let (key, value) = line.split_once('\t').unwrap();
            (key.to_string(), value.to_string())
        })
        .collect()
}

#[test]
fn groups_the_reducer_fails_on_are_skipped_and_every_other_group_is_reduced() {
    let setup = setup(&["a b BAD c", "a PANIC d BAD", "b c e a"]);
    for attempt in [1, 2] {
        let error = run(&setup, 1, 5, attempt).unwrap_err();
        assert!(error.is_record_failure(), "{error}");
    }
    let outcome = run(&setup, 1, 5, 3).unwrap();
    let keys: Vec<String> = outcome
        .skipped
        .iter()
        .map(|s| s.text.clone().unwrap())
        .collect();
    assert_eq!(keys, ["BAD", "PANIC"]);
    let first = &outcome.skipped[0];
    assert_eq!(first.file, "reduce partition 0");
    assert!(first.error.contains("bad key"), "{}", first.error);
    assert!(
        outcome.skipped[1].error.contains("cannot stand"),
        "{}",
        outcome.skipped[1].error
    );
    let expected: BTreeMap<String, String> =
        [("a", "3"), ("b", "2"), ("c", "2"), ("d", "1"), ("e", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(part(&setup), expected);
    let counters = outcome.outcome.counters.into_map();
    assert_eq!(counters[counters::REDUCE_SKIPPED_GROUPS], 2);
    assert!(counters[counters::REDUCE_ISOLATION_PROBES] > 0);
}

#[test]
fn over_budget_inseparable_and_chained_groups_fail_as_before() {
    let setup = setup(&["a BAD", "PANIC b", "c"]);
    let error = run(&setup, 1, 1, 3).unwrap_err();
    assert!(
        matches!(error, TaskError::SkipBudgetExceeded { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("reduce partition 0:1"),
        "{error}"
    );

    let twins = self::setup(&["TWIN1 a", "TWIN2 b"]);
    let error = run(&twins, 1, 5, 3).unwrap_err();
    assert!(matches!(error, TaskError::NotIsolated { .. }), "{error}");
    assert!(error.to_string().contains("none can be skipped"), "{error}");

    // A chained step's reducer feeds the next mapper: it is not isolated.
    let error = run(&setup, 2, 5, 3).unwrap_err();
    assert!(error.is_record_failure() && !matches!(error, TaskError::NotIsolated { .. }));
}

#[test]
fn a_task_that_does_not_fail_skips_nothing() {
    let setup = setup(&["a b", "b c"]);
    let outcome = run(&setup, 1, 5, 3).unwrap();
    assert!(outcome.skipped.is_empty());
    assert_eq!(part(&setup).len(), 3);
}
