//! The map task in skipping mode over real files: in-process job code that errs,
//! refuses or panics on chosen records, budgets, later splits, inseparable failures.

use std::collections::BTreeMap;

use super::*;
use crate::api::{JobParams, Mapper, Record, Reducer};
use crate::config::{JobConfig, MIN_SORT_BUFFER_BYTES};
use crate::payload::{InputSplit, PAYLOAD_VERSION};
use crate::skip::SkipConfig;
use crate::test_support::{ToyWordCount, read_map_output};

/// Word count whose mapper fails on words of its own: `BAD` (an error another
/// attempt might not repeat), `REFUSED` (an error the job calls permanent) and
/// `PANIC` (a panic).
struct Fussy;

struct FussyMapper;

impl Mapper for FussyMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let line = String::from_utf8_lossy(record.data);
        if line.contains("PANIC") {
            panic!("cannot stand {line}");
        }
        if line.contains("REFUSED") {
            return Err(JobError::permanent(format!("refused: {line}")));
        }
        if line.contains("BAD") {
            return Err(JobError::retryable(format!("bad: {line}")));
        }
        for word in line.split_whitespace() {
            out.emit(word.as_bytes(), b"1")?;
        }
        Ok(())
    }
}

impl JobDefinition for Fussy {
    fn name(&self) -> &str {
        "fussy"
    }

    fn description(&self) -> &str {
        "word count that fails on some words (test job)"
    }

    fn mapper(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(FussyMapper))
    }

    fn reducer(&self, params: &JobParams, step: usize) -> Result<Box<dyn Reducer>, JobError> {
        ToyWordCount.reducer(params, step)
    }
}

/// A task over `splits` of a job skipping up to `max_records`.
fn payload(splits: Vec<InputSplit>, max_records: u64) -> MapTaskPayload {
    MapTaskPayload {
        config: JobConfig {
            version: PAYLOAD_VERSION,
            job: "fussy".into(),
            params: JobParams::default(),
            steps: 1,
            reducers: 2,
            output_dir: std::path::PathBuf::from("/unused").into(),
            sort_buffer_bytes: MIN_SORT_BUFFER_BYTES,
            merge_factor: 4,
            output_codec: None,
            storage: Default::default(),
            files: Default::default(),
            skip: SkipConfig {
                max_records,
                start_attempts: 2,
            },
        },
        splits,
    }
}

fn whole(path: &Path) -> InputSplit {
    InputSplit {
        path: path.to_path_buf(),
        start: 0,
        length: std::fs::metadata(path).unwrap().len(),
    }
}

/// Word counts of a map output file.
fn counts(output: &MapOutputFile) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, key, _) in read_map_output(&output.path, 2) {
        *counts.entry(String::from_utf8(key).unwrap()).or_insert(0) += 1;
    }
    counts
}

fn lines(count: usize, bad: &[(usize, &str)]) -> String {
    (1..=count)
        .map(|line| match bad.iter().find(|(at, _)| *at == line) {
            Some((_, word)) => format!("x {word}\n"),
            None => format!("w{} x\n", line % 7),
        })
        .collect()
}

#[test]
fn errors_and_panics_on_records_are_skipped_and_every_other_record_is_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let bad = [(5, "BAD"), (77, "PANIC"), (200, "BAD")];
    std::fs::write(&input, lines(300, &bad)).unwrap();
    let scratch = dir.path().join("attempt");
    std::fs::create_dir(&scratch).unwrap();
    let payload = payload(vec![whole(&input)], 5);
    let cancel = CancellationToken::new();

    // The first two attempts fail as they always did.
    for attempt in [1, 2] {
        let error =
            run_map_skipping(&Fussy, &payload, &scratch, 7, attempt, cancel.clone()).unwrap_err();
        assert!(error.is_record_failure(), "{error}");
    }
    let outcome = run_map_skipping(&Fussy, &payload, &scratch, 7, 3, cancel).unwrap();
    let skipped: Vec<(u64, &str)> = outcome
        .skipped
        .iter()
        .map(|record| (record.line, record.text.as_deref().unwrap()))
        .collect();
    assert_eq!(skipped, [(5, "x BAD"), (77, "x PANIC"), (200, "x BAD")]);
    assert!(
        outcome.skipped[1]
            .error
            .contains("panicked: cannot stand x PANIC")
    );
    assert!(outcome.skipped.iter().all(|record| record.task == 7));
    let expected_x = 300 - bad.len();
    assert_eq!(counts(&outcome.output)["x"], expected_x);
    assert!(!counts(&outcome.output).contains_key("BAD"));
    let counters = &outcome.output.counters;
    assert_eq!(counters.get(counters::MAP_SKIPPED_RECORDS), 3);
    assert_eq!(counters.get(counters::MAP_INPUT_RECORDS), 297);
    let probes = counters.get(counters::MAP_ISOLATION_PROBES);
    assert!(probes > 0 && probes <= 2 * 3 * 9, "{probes} probes");
}

#[test]
fn a_refused_record_is_isolated_at_the_first_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, lines(40, &[(13, "REFUSED")])).unwrap();
    let payload = payload(vec![whole(&input)], 1);
    let outcome =
        run_map_skipping(&Fussy, &payload, dir.path(), 0, 1, CancellationToken::new()).unwrap();
    assert_eq!(outcome.skipped.len(), 1);
    assert_eq!(outcome.skipped[0].line, 13);
    assert!(outcome.skipped[0].error.contains("refused: x REFUSED"));
}

#[test]
fn records_over_the_budget_fail_the_task_for_good_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let bad = [(3, "BAD"), (9, "BAD"), (27, "BAD"), (81, "BAD")];
    std::fs::write(&input, lines(100, &bad)).unwrap();
    let payload = payload(vec![whole(&input)], 2);
    let error =
        run_map_skipping(&Fussy, &payload, dir.path(), 0, 3, CancellationToken::new()).unwrap_err();
    assert!(!error.is_retryable());
    let message = error.to_string();
    let name = input.display();
    assert!(
        message.starts_with("at least 3 records fail on their own")
            && message.contains(&format!("{name}:3, {name}:9, {name}:27"))
            && !message.contains(":81"),
        "{message}"
    );
}

#[test]
fn a_record_of_a_later_split_is_named_by_its_line_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let text = lines(500, &[(420, "BAD")]);
    std::fs::write(&input, &text).unwrap();
    // The task holds the second half of the file: its lines are counted from there.
    let start = text.len() as u64 / 2;
    let split = InputSplit {
        path: input.clone(),
        start,
        length: text.len() as u64 - start,
    };
    let payload = payload(vec![split], 3);
    let outcome =
        run_map_skipping(&Fussy, &payload, dir.path(), 1, 3, CancellationToken::new()).unwrap();
    assert_eq!(outcome.skipped.len(), 1);
    let record = &outcome.skipped[0];
    assert_eq!(record.line, 420);
    let offset = record.offset as usize;
    assert_eq!(&text[offset..offset + 5], "x BAD");
}

#[test]
fn a_failure_no_single_record_causes_is_not_skipped() {
    /// Fails at its end when it saw both `A` and `B`.
    struct Pair {
        seen: (bool, bool),
    }
    impl Mapper for Pair {
        fn map(&mut self, record: &Record<'_>, _out: &mut dyn Emit) -> Result<(), JobError> {
            self.seen.0 |= record.data == b"A";
            self.seen.1 |= record.data == b"B";
            Ok(())
        }
        fn finish(&mut self, _out: &mut dyn Emit) -> Result<(), JobError> {
            match self.seen {
                (true, true) => Err(JobError::retryable("A and B together")),
                _ => Ok(()),
            }
        }
    }
    struct PairJob;
    impl JobDefinition for PairJob {
        fn name(&self) -> &str {
            "pair"
        }
        fn description(&self) -> &str {
            "fails on two records together (test job)"
        }
        fn mapper(&self, _: &JobParams, _: usize) -> Result<Box<dyn Mapper>, JobError> {
            Ok(Box::new(Pair {
                seen: (false, false),
            }))
        }
        fn reducer(&self, params: &JobParams, step: usize) -> Result<Box<dyn Reducer>, JobError> {
            ToyWordCount.reducer(params, step)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "A\nx\ny\nz\nB\n").unwrap();
    let payload = payload(vec![whole(&input)], 5);
    let error = run_map_skipping(
        &PairJob,
        &payload,
        dir.path(),
        0,
        3,
        CancellationToken::new(),
    )
    .unwrap_err();
    assert!(error.is_retryable(), "the original failure's verdict");
    let message = essaim_core::error_chain::error_chain(&error);
    assert!(
        message.contains("fail together but none fails alone")
            && message.contains("A and B together"),
        "{message}"
    );
}
