//! Skipping mode: a streaming word count whose mapper, a shell script, crashes on
//! three poison lines in two files. With `-D skip.records.max=5` the job succeeds, its
//! output equals an oracle computed here over the input without the poison lines, and
//! `essaim skipped` lists the three lines with their files and line numbers (one of
//! them in a split that does not start its file) and exports them. With the default
//! budget (0) the job fails as it always did; with a budget of 2 it fails naming the
//! records; a budget that is not a number is refused before anything runs. In a bucket
//! (s3s-fs, `scripts/s3.sh`), the skipped records are published by the commit with the
//! parts, and read back from there. A streaming reducer that crashes on one key has
//! that key's group skipped beside the mapper's lines, within the same budget.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{CliOutput, Cluster, assert_refused};
use crate::mapreduce::read_word_counts;

/// The marker of a poison line.
const POISON: &str = "POISON";

/// A word-count mapper that crashes, with a word on standard error, on a poison line.
const MAPPER_SCRIPT: &str = r#"#!/bin/sh
exec awk '
/POISON/ { print "cannot map line " NR ": " $0 > "/dev/stderr"; exit 3 }
{ for (i = 1; i <= NF; i++) print $i "\t1" }
'
"#;

/// Sums the counts of each word (lines arrive grouped by word).
const REDUCER: &str = r#"awk -F '\t' '$1 != k { if (NR > 1) print k "\t" n; k = $1; n = 0 } { n += $2 } END { if (NR > 0) print k "\t" n }'"#;

/// The same sum, crashing on the key `plum` (exit status 4).
const CRASHING_REDUCER: &str = r#"awk -F '\t' '$1 == "plum" { print "cannot reduce " $1 > "/dev/stderr"; exit 4 } $1 != k { if (NR > 1) print k "\t" n; k = $1; n = 0 } { n += $2 } END { if (NR > 0) print k "\t" n }'"#;

/// Where the poison lines are: (file, line number from 1).
const POISON_AT: [(&str, usize); 3] = [("a.txt", 57), ("c.txt", 12), ("c.txt", 380)];

/// Writes four files of words, `c.txt` large enough to be cut into several splits of
/// 4 KiB, with the poison lines of [`POISON_AT`]; returns them.
fn write_corpus(dir: &Path) -> Vec<PathBuf> {
    const WORDS: [&str; 7] = ["apple", "pear", "fig", "plum", "kiwi", "lime", "date"];
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut files = Vec::new();
    for (name, lines) in [("a.txt", 120), ("b.txt", 90), ("c.txt", 400), ("d.txt", 60)] {
        let mut text = String::new();
        for line in 1..=lines {
            if POISON_AT.contains(&(name, line)) {
                text.push_str(&format!("pear {POISON} fig\n"));
                continue;
            }
            for _ in 0..1 + state % 5 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
                text.push(' ');
            }
            text.push('\n');
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    files
}

/// Word counts of the files without their poison lines, computed here.
fn oracle(files: &[PathBuf]) -> BTreeMap<Vec<u8>, u64> {
    let mut counts = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().filter(|line| !line.contains(POISON)) {
            for word in line.split_whitespace() {
                *counts.entry(word.as_bytes().to_vec()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// `essaim submit streaming` of the word count over `corpus` into `output`, followed
/// to its end, with `extra` arguments; the summary is JSON.
async fn word_count(
    cluster: &Cluster,
    corpus: &Path,
    output: &Path,
    mapper: &Path,
    extra: &[&str],
) -> CliOutput {
    let mapper_command = format!("sh {}", mapper.display());
    let mut args = vec![
        "submit",
        "streaming",
        "--input",
        corpus.to_str().unwrap(),
        "--output-dir",
        output.to_str().unwrap(),
        "--reducers",
        "2",
        "--split-size",
        "4KiB",
        "--mapper",
        &mapper_command,
        "--reducer",
        REDUCER,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    cluster.cli(&args).await
}

fn json(what: &str, output: &CliOutput) -> Value {
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|error| panic!("{what}: not one JSON document ({error}): {output:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_job_skips_the_lines_its_mapper_crashes_on_within_its_budget() {
    let cluster = Cluster::start(2, 2).await;
    let corpus = cluster.path("corpus");
    let files = write_corpus(&corpus);
    let mapper = cluster.path("map.sh");
    std::fs::write(&mapper, MAPPER_SCRIPT).unwrap();

    // Within budget: the job succeeds without the poison lines.
    let output = cluster.path("out");
    let run = word_count(
        &cluster,
        &corpus,
        &output,
        &mapper,
        &["-D", "skip.records.max=5"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let summary = json("run within budget", &run);
    assert_eq!(summary["skipped_records"], 3, "{summary:#}");
    assert_eq!(summary["counters"]["map.skipped.records"], 3, "{summary:#}");
    assert_eq!(read_word_counts(&output, 2), oracle(&files));

    // The three lines, listed from the output, and from the job's id.
    let listed = cluster
        .cli(&["skipped", output.to_str().unwrap(), "--output", "json"])
        .await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let listed = json("skipped", &listed);
    let found: Vec<(String, u64)> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            let file = record["file"].as_str().unwrap();
            let name = Path::new(file).file_name().unwrap().to_str().unwrap();
            assert!(
                record["text"].as_str().unwrap().contains(POISON),
                "{record:#}"
            );
            let error = record["error"].as_str().unwrap();
            assert!(
                error.contains("exit status: 3") && error.contains("cannot map line"),
                "{record:#}"
            );
            (name.to_string(), record["line"].as_u64().unwrap())
        })
        .collect();
    let expected: Vec<(String, u64)> = POISON_AT
        .iter()
        .map(|(name, line)| (name.to_string(), *line as u64))
        .collect();
    assert_eq!(found, expected);
    let job_id = summary["job_id"].as_u64().unwrap().to_string();
    let by_job = cluster.cli(&["skipped", &job_id, "--output", "json"]).await;
    assert_eq!(json("skipped JOB", &by_job)["records"], listed["records"]);
    let text = cluster.cli(&["skipped", output.to_str().unwrap()]).await;
    let c_txt = corpus.join("c.txt");
    assert!(
        text.stdout.contains(&format!("{}:380", c_txt.display())),
        "{text:?}"
    );

    // Exported, the records are the poison lines as they were, to run again.
    let exported = cluster.path("poison.txt");
    let export = cluster
        .cli(&[
            "skipped",
            output.to_str().unwrap(),
            "--export",
            exported.to_str().unwrap(),
        ])
        .await;
    assert_eq!(export.code, Some(0), "{export:?}");
    let lines = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(lines, format!("pear {POISON} fig\n").repeat(3));

    // The default budget is 0: the job fails as it always did.
    let output = cluster.path("out-default");
    let run = word_count(&cluster, &corpus, &output, &mapper, &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let summary = json("run without budget", &run);
    assert_eq!(summary["state"], "failed", "{summary:#}");
    assert_eq!(summary["skipped_records"], 0, "{summary:#}");
    let failed = summary["failed_tasks"].to_string();
    assert!(failed.contains("exit status: 3"), "{summary:#}");
    assert!(!output.join("_SUCCESS").exists());

    // A budget of 2 for 3 records: the job fails naming them.
    let output = cluster.path("out-two");
    let run = word_count(
        &cluster,
        &corpus,
        &output,
        &mapper,
        &["-D", "skip.records.max=2"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let summary = json("run over budget", &run);
    let failed = summary["failed_tasks"].to_string();
    assert!(failed.contains("skip.records.max=2"), "{summary:#}");
    for (name, line) in POISON_AT {
        let location = format!("{}:{line}", corpus.join(name).display());
        assert!(
            failed.contains(&location),
            "{location} not named: {summary:#}"
        );
    }
    assert!(!output.join("_SUCCESS").exists());

    // A budget that is not a number is refused before anything runs.
    let output = cluster.path("out-bad");
    let run = word_count(
        &cluster,
        &corpus,
        &output,
        &mapper,
        &["-D", "skip.records.max=many"],
    )
    .await;
    assert_refused(&run, 2, "skip.records.max");
    assert!(
        !output.exists(),
        "a refused job created its output directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_records_in_a_bucket_are_published_with_the_parts() {
    use essaim_testkit::server::{S3_ACCESS_KEY, S3_SECRET_KEY};
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let store = server.dir().join("store");
    let credentials = [
        ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
    ];
    let cluster = Cluster::start_with_env(2, 2, &credentials).await;
    let files = write_corpus(&store.join("data").join("corpus"));
    std::fs::create_dir_all(store.join("results")).unwrap();
    let mapper = cluster.path("map.sh");
    std::fs::write(&mapper, MAPPER_SCRIPT).unwrap();
    let endpoint = server.url().to_string();
    let s3 = ["--s3-endpoint", endpoint.as_str(), "--s3-allow-http"];
    let mapper_command = format!("sh {}", mapper.display());
    let word_count = |output: &'static str, budget: &'static str| {
        let mut args = vec![
            "submit".to_string(),
            "streaming".into(),
            "--input".into(),
            "s3://data/corpus".into(),
            "--output-dir".into(),
            output.into(),
            "--reducers".into(),
            "2".into(),
            "--split-size".into(),
            "4KiB".into(),
            "--mapper".into(),
            mapper_command.clone(),
            "--reducer".into(),
            REDUCER.into(),
            "-D".into(),
            format!("skip.records.max={budget}"),
        ];
        args.extend(s3.iter().map(|arg| arg.to_string()));
        args
    };
    // Over budget: the commit counts the records still staged, and publishes nothing.
    let args = word_count("s3://results/over", "2");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = cluster.cli(&args).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("skip.records.max=2"), "{run:?}");
    let over = store.join("results").join("over");
    assert!(!over.join("_SUCCESS").exists() && !over.join("part-00000").exists());
    assert!(
        !over.join("_skipped").exists(),
        "published before the commit"
    );

    let args = word_count("s3://results/out", "3");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = cluster.cli(&args).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let out = store.join("results").join("out");
    // The commit published one file of records per task that skipped, and no staged
    // copy is left.
    let skipped_dir = out.join("_skipped");
    let mut published: Vec<String> = std::fs::read_dir(&skipped_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    published.sort();
    assert_eq!(published.len(), 3, "{published:?}");
    assert!(out.join("_SUCCESS").is_file());
    // The server leaves a prefix's directory behind when its last object is deleted:
    // only files are objects.
    let staging = out.join("_temporary");
    assert_eq!(files_under(&staging), 0, "staged copies left behind");
    let _ = std::fs::remove_dir_all(&staging);
    assert_eq!(read_word_counts(&out, 2), oracle(&files));

    let mut args = vec!["skipped", "s3://results/out", "--output", "json"];
    args.extend_from_slice(&s3);
    let listed = cluster.cli(&args).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let listed = json("skipped in a bucket", &listed);
    let found: Vec<(String, u64)> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            let file = record["file"].as_str().unwrap();
            let name = file.rsplit('/').next().unwrap().to_string();
            assert!(file.starts_with("s3://data/corpus/"), "{record:#}");
            (name, record["line"].as_u64().unwrap())
        })
        .collect();
    let expected: Vec<(String, u64)> = POISON_AT
        .iter()
        .map(|(name, line)| (name.to_string(), *line as u64))
        .collect();
    assert_eq!(found, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_reducer_that_crashes_on_a_key_has_its_group_skipped() {
    let cluster = Cluster::start(2, 2).await;
    let corpus = cluster.path("corpus");
    let files = write_corpus(&corpus);
    let mapper = cluster.path("map.sh");
    std::fs::write(&mapper, MAPPER_SCRIPT).unwrap();
    let output = cluster.path("out");
    let mapper_command = format!("sh {}", mapper.display());
    let run = cluster
        .cli(&[
            "submit",
            "streaming",
            "--input",
            corpus.to_str().unwrap(),
            "--output-dir",
            output.to_str().unwrap(),
            "--reducers",
            "2",
            "--split-size",
            "4KiB",
            "--mapper",
            &mapper_command,
            "--reducer",
            CRASHING_REDUCER,
            "-D",
            "skip.records.max=5",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let summary = json("run with a crashing reducer", &run);
    // Three poison lines and one key group.
    assert_eq!(summary["skipped_records"], 4, "{summary:#}");
    assert_eq!(
        summary["counters"]["reduce.skipped.groups"], 1,
        "{summary:#}"
    );
    let mut expected = oracle(&files);
    assert!(expected.remove(b"plum".as_slice()).is_some());
    assert_eq!(read_word_counts(&output, 2), expected);

    let listed = cluster
        .cli(&["skipped", output.to_str().unwrap(), "--output", "json"])
        .await;
    let listed = json("skipped", &listed);
    let groups: Vec<&Value> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| {
            record["file"]
                .as_str()
                .unwrap()
                .starts_with("reduce partition")
        })
        .collect();
    assert_eq!(groups.len(), 1, "{listed:#}");
    assert_eq!(groups[0]["text"], "plum", "{listed:#}");
    let error = groups[0]["error"].as_str().unwrap();
    assert!(
        error.contains("exit status: 4") && error.contains("cannot reduce plum"),
        "{error}"
    );
}

/// Returns the number of files under `dir` (0 when it does not exist).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() { files_under(&path) } else { 1 }
        })
        .sum()
}
