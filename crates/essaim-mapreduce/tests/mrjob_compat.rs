//! mrjob compatibility: real third-party Hadoop Streaming programs, unmodified, run as
//! essaim streaming jobs, must print what mrjob's own runner prints.
//!
//! The programs are the example jobs shipped inside the `mrjob` package (pinned by
//! `scripts/python-env.sh`, which creates a virtual environment under `target/` on the
//! first run). Each is run twice over the same input files:
//! - by essaim: [`mrjob_streaming_params`] reads the script's steps, and the reference
//!   runner (`run_in_memory_with`: one map task per file, combiners, three reducers)
//!   runs each step through the script's own `--step-num=N --mapper`, `--combiner` and
//!   `--reducer` modes, one process per task, as Hadoop Streaming would;
//! - by mrjob alone: `python job.py -r inline --no-conf inputs…`.
//!
//! The outputs are compared as sorted lists of lines (parts are not ordered the same).
//!
//! Without Python or PyPI, the environment cannot be created and the tests fail, saying
//! why. `ESSAIM_SKIP_PYTHON=1` skips them instead, and says so.

// Helpers outside `#[test]` functions are test code too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use essaim_mapreduce::api::JobParams;
use essaim_mapreduce::streaming::{MrjobError, StreamingJob, mrjob_streaming_params};
use essaim_mapreduce::testing::{InMemoryOptions, run_in_memory, run_in_memory_with};

/// The interpreter with mrjob, and the directory of mrjob's examples.
struct Mrjob {
    python: String,
    examples: PathBuf,
}

/// Returns mrjob, creating its environment once per test process; `None` when the
/// tests are to be skipped.
fn mrjob() -> Option<&'static Mrjob> {
    static MRJOB: OnceLock<Option<Mrjob>> = OnceLock::new();
    MRJOB
        .get_or_init(|| {
            let python = essaim_testkit::python::python_env("mrjob")?;
            let examples = essaim_testkit::python::mrjob_examples(&python);
            Some(Mrjob {
                python: python.display().to_string(),
                examples,
            })
        })
        .as_ref()
}

/// Real text for the jobs: the poems mrjob ships for its text classifier, in three
/// input files, so that there are three map tasks. (Not more: every task starts a
/// Python that imports mrjob, about half a second.)
fn poems(mrjob: &Mrjob, directory: &Path) -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(mrjob.examples.join("docs-to-classify"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    sources.sort();
    assert!(sources.len() >= 3, "mrjob ships its poems");
    let mut inputs = Vec::new();
    for (index, group) in sources.chunks(sources.len().div_ceil(3)).enumerate() {
        let mut text = Vec::new();
        for source in group {
            text.extend(std::fs::read(source).unwrap());
            text.push(b'\n');
        }
        let input = directory.join(format!("poems-{index}.txt"));
        std::fs::write(&input, text).unwrap();
        inputs.push(input);
    }
    inputs
}

/// Runs the example `name` through essaim and through mrjob's inline runner, asserts
/// that the outputs hold the same lines, and returns essaim's (sorted).
fn assert_same_output_as_mrjob(mrjob: &Mrjob, name: &str, inputs: &[PathBuf]) -> Vec<String> {
    let script = mrjob.examples.join(name);
    let started = Instant::now();
    let params = mrjob_streaming_params(&mrjob.python, &script).unwrap();
    let options = InMemoryOptions {
        combine: true,
        lines_per_split: None,
    };
    let ours = run_in_memory_with(&StreamingJob, &params, inputs, 3, &options)
        .unwrap_or_else(|error| panic!("{name} failed as a streaming job: {error}"));
    let ours_took = started.elapsed();

    let started = Instant::now();
    let inline = Command::new(&mrjob.python)
        .arg(&script)
        .args(["-r", "inline", "--no-conf"])
        .args(inputs)
        .output()
        .unwrap();
    assert!(
        inline.status.success(),
        "mrjob's inline runner failed on {name}: {}",
        String::from_utf8_lossy(&inline.stderr)
    );
    eprintln!(
        "{name}: essaim {ours_took:?}, mrjob inline {:?}, {} lines",
        started.elapsed(),
        ours.len()
    );

    let mut ours: Vec<String> = ours
        .into_iter()
        .map(|line| String::from_utf8(line).unwrap())
        .collect();
    ours.sort();
    let theirs = essaim_testkit::oracle::sorted_lines(&inline.stdout);
    assert_same_lines(name, &ours, &theirs);
    ours
}

/// Compares sorted lines, printing the first differences rather than two long lists.
fn assert_same_lines(name: &str, ours: &[String], theirs: &[String]) {
    if ours == theirs {
        return;
    }
    let only_ours: Vec<&String> = ours.iter().filter(|line| !theirs.contains(line)).collect();
    let only_theirs: Vec<&String> = theirs.iter().filter(|line| !ours.contains(line)).collect();
    panic!(
        "{name}: essaim printed {} lines, mrjob {}\nonly essaim's (first 10): {:?}\n\
         only mrjob's (first 10): {:?}",
        ours.len(),
        theirs.len(),
        &only_ours[..only_ours.len().min(10)],
        &only_theirs[..only_theirs.len().min(10)],
    );
}

fn expect_param(params: &JobParams, name: &str, value: &str) {
    assert_eq!(params.get(name), Some(value), "{name} in {params:?}");
}

#[test]
fn word_freq_count_mapper_combiner_reducer_matches_mrjob() {
    let Some(mrjob) = mrjob() else { return };
    let directory = tempfile::tempdir().unwrap();
    let inputs = poems(mrjob, directory.path());

    let script = mrjob.examples.join("mr_word_freq_count.py");
    let params = mrjob_streaming_params(&mrjob.python, &script).unwrap();
    expect_param(&params, "steps", "1");
    for part in ["mapper", "combiner", "reducer"] {
        let command = params.get(&format!("step.0.{part}")).unwrap();
        assert!(
            command.ends_with(&format!("--step-num=0 --{part}")),
            "{command}"
        );
    }

    let lines = assert_same_output_as_mrjob(mrjob, "mr_word_freq_count.py", &inputs);
    assert!(
        lines.len() > 1000,
        "a real vocabulary: {} words",
        lines.len()
    );
}

#[test]
fn most_used_word_two_steps_and_a_support_file_matches_mrjob() {
    let Some(mrjob) = mrjob() else { return };
    let directory = tempfile::tempdir().unwrap();
    let inputs = poems(mrjob, directory.path());

    let script = mrjob.examples.join("mr_most_used_word.py");
    let params = mrjob_streaming_params(&mrjob.python, &script).unwrap();
    expect_param(&params, "steps", "2");
    // Step 1 has only a reducer: Hadoop's identity mapper (`cat`) feeds it.
    assert_eq!(params.get("step.1.mapper"), None);
    assert!(params.get("step.1.reducer").is_some());

    // The mapper reads `stop_words.txt` from its working directory (mrjob's FILES).
    let lines = assert_same_output_as_mrjob(mrjob, "mr_most_used_word.py", &inputs);
    assert_eq!(lines.len(), 1, "one most used word: {lines:?}");
}

#[test]
fn next_word_stats_two_steps_with_sort_values_matches_mrjob() {
    let Some(mrjob) = mrjob() else { return };
    let directory = tempfile::tempdir().unwrap();
    let inputs = poems(mrjob, directory.path());

    let script = mrjob.examples.join("mr_next_word_stats.py");
    let params = mrjob_streaming_params(&mrjob.python, &script).unwrap();
    expect_param(&params, "steps", "2");
    // The step-1 reducer needs each word's total before its pairs: SORT_VALUES.
    expect_param(&params, "sort_values", "true");

    let lines = assert_same_output_as_mrjob(mrjob, "mr_next_word_stats.py", &inputs);
    assert!(lines.len() > 1000, "{} word pairs", lines.len());
}

#[test]
fn count_lines_by_file_sees_its_input_file_in_the_environment() {
    let Some(mrjob) = mrjob() else { return };
    let directory = tempfile::tempdir().unwrap();
    let inputs = poems(mrjob, directory.path());

    // mrjob reads `mapreduce.map.input.file` from `mapreduce_map_input_file`. Its
    // inline runner reports a `file://` URI where Hadoop would, so compare the paths.
    let script = mrjob.examples.join("mr_count_lines_by_file.py");
    let params = mrjob_streaming_params(&mrjob.python, &script).unwrap();
    let options = InMemoryOptions {
        combine: true,
        lines_per_split: None,
    };
    let mut ours: Vec<String> = run_in_memory_with(&StreamingJob, &params, &inputs, 2, &options)
        .unwrap()
        .into_iter()
        .map(|line| String::from_utf8(line).unwrap())
        .collect();
    let mut expected: Vec<String> = inputs
        .iter()
        .map(|input| {
            let lines = std::fs::read_to_string(input).unwrap().lines().count();
            format!("{:?}\t{lines}", input.display().to_string())
        })
        .collect();
    ours.sort();
    expected.sort();
    assert_eq!(ours, expected);
}

#[test]
fn a_failing_mrjob_task_fails_with_its_python_traceback() {
    let Some(mrjob) = mrjob() else { return };
    let directory = tempfile::tempdir().unwrap();
    let inputs = poems(mrjob, directory.path());

    let script = mrjob.examples.join("mr_boom.py");
    let params = mrjob_streaming_params(&mrjob.python, &script).unwrap();
    let error = run_in_memory(&StreamingJob, &params, &inputs, 1).unwrap_err();
    assert!(error.retryable, "another attempt may succeed: {error}");
    assert!(error.message.contains("exit status: 1"), "{error}");
    assert!(error.message.contains("Exception: BOOM"), "{error}");
}

#[test]
fn jobs_with_features_streaming_cannot_honour_are_refused() {
    let Some(mrjob) = mrjob() else { return };
    // Whole files through `mapper_raw`, four steps: refused rather than run wrongly.
    let script = mrjob.examples.join("mr_text_classifier.py");
    let error = mrjob_streaming_params(&mrjob.python, &script).unwrap_err();
    assert!(matches!(error, MrjobError::Unsupported { .. }), "{error}");
    assert!(error.to_string().contains("mapper_raw"), "{error}");

    // A job that needs an argument cannot describe its steps without one.
    let script = mrjob.examples.join("mr_grep.py");
    let error = mrjob_streaming_params(&mrjob.python, &script).unwrap_err();
    assert!(matches!(error, MrjobError::Describe { .. }), "{error}");
    assert!(error.to_string().contains("expression"), "{error}");
}
