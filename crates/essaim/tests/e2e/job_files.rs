//! Jobs that bring their code: a streaming job whose mapper and reducer are Python
//! scripts passed with `--files`, from a directory deleted as soon as the job is
//! submitted, runs on workers that never had them. The mapper reads a shipped lookup
//! table and imports a shipped module; the output equals an oracle computed here.
//! A missing file is refused before anything runs, with exit code 2.
//!
//! A task farm brings its code the same way: `essaim submit --files … -- sh score.sh {}`
//! runs a shipped shell script that reads a shipped, renamed table, on workers that
//! never had either; each task's output equals an oracle computed here.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::harness::{Cluster, EVENTUALLY, assert_refused};
use crate::mapreduce::read_word_counts;

/// Counts the words of each category of `lookup.csv` (`other` for the rest); the
/// words are normalised by the shipped `helper.py`, which it imports.
const MAPPER: &str = r#"import sys
from helper import normalise

categories = {}
with open("lookup.csv") as table:
    for row in table:
        word, category = row.rstrip("\n").split(",")
        categories[word] = category
for line in sys.stdin:
    for word in line.split():
        word = normalise(word)
        if word:
            print(f"{categories.get(word, 'other')}\t1")
"#;

const HELPER: &str = r#"def normalise(word):
    return "".join(c for c in word.lower() if c.isalpha())
"#;

/// Sums the counts of each key (keys arrive grouped).
const REDUCER: &str = r#"import sys

current, total = None, 0
for line in sys.stdin:
    key, value = line.rstrip("\n").split("\t")
    if key != current:
        if current is not None:
            print(f"{current}\t{total}")
        current, total = key, 0
    total += int(value)
if current is not None:
    print(f"{current}\t{total}")
"#;

const LOOKUP: [(&str, &str); 6] = [
    ("apple", "fruit"),
    ("banana", "fruit"),
    ("cherry", "fruit"),
    ("dog", "animal"),
    ("cat", "animal"),
    ("elephant", "animal"),
];

/// Writes `files` files of `lines` lines of words drawn from a small vocabulary with
/// case and punctuation; returns them.
fn write_corpus(dir: &Path, files: usize, lines: usize) -> Vec<PathBuf> {
    const VOCABULARY: [&str; 9] = [
        "Apple", "banana,", "CHERRY!", "dog", "cat.", "Elephant", "x", "42", "don't",
    ];
    std::fs::create_dir_all(dir).unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut paths = Vec::new();
    for file in 0..files {
        let mut text = String::new();
        for _ in 0..lines {
            for _ in 0..(state % 7) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                text.push_str(VOCABULARY[(state >> 33) as usize % VOCABULARY.len()]);
                text.push(' ');
            }
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            text.push('\n');
        }
        let path = dir.join(format!("part-{file}.txt"));
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    paths
}

/// What the shipped scripts compute, computed here.
fn oracle(files: &[PathBuf]) -> BTreeMap<Vec<u8>, u64> {
    let lookup: BTreeMap<&str, &str> = LOOKUP.into_iter().collect();
    let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for file in files {
        for word in std::fs::read_to_string(file).unwrap().split_whitespace() {
            let normalised: String = word
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphabetic())
                .collect();
            if normalised.is_empty() {
                continue;
            }
            let category = lookup.get(normalised.as_str()).copied().unwrap_or("other");
            *counts.entry(category.as_bytes().to_vec()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_python_mapper_runs_on_workers_that_never_had_it() {
    let cluster = Cluster::start(2, 1).await;
    let corpus = write_corpus(&cluster.path("corpus"), 4, 400);
    let expected = oracle(&corpus);
    assert_eq!(expected.len(), 3, "fruit, animal and other all occur");

    let ship = cluster.path("ship");
    std::fs::create_dir_all(&ship).unwrap();
    let table: String = LOOKUP
        .iter()
        .map(|(word, category)| format!("{word},{category}\n"))
        .collect();
    for (name, text) in [
        ("map.py", MAPPER),
        ("helper.py", HELPER),
        ("sum.py", REDUCER),
        ("lookup.csv", table.as_str()),
    ] {
        std::fs::write(ship.join(name), text).unwrap();
    }
    let path = |name: &str| ship.join(name).display().to_string();
    let files = format!(
        "{},{},{}",
        path("map.py"),
        path("helper.py"),
        path("lookup.csv")
    );
    let output = cluster.path("out");
    let submitted = cluster
        .cli(&[
            "submit",
            "streaming",
            "--input",
            cluster.path("corpus").to_str().unwrap(),
            "--output-dir",
            output.to_str().unwrap(),
            "--reducers",
            "2",
            "--mapper",
            "python3 map.py",
            "--reducer",
            "python3 reduce.py",
            "--files",
            &files,
            // Repeated, and renamed on the way.
            "--files",
            &format!("{}#reduce.py", path("sum.py")),
            "--detach",
        ])
        .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let job_id: u64 = submitted.stdout.trim().parse().unwrap();
    // The workers can only have the files from the cluster now.
    std::fs::remove_dir_all(&ship).unwrap();

    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(read_word_counts(&output, 2), expected);
    // Each worker that ran a task cached the mapper by its hash.
    let mapper_hash = sha256_hex(MAPPER.as_bytes());
    let cached: Vec<String> = cluster
        .worker_names()
        .into_iter()
        .filter(|name| {
            cluster
                .path(&format!("{name}-scratch"))
                .join("job-files/sha256")
                .join(&mapper_hash)
                .is_file()
        })
        .collect();
    assert!(!cached.is_empty(), "no worker cached map.py");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_refused_before_anything_runs() {
    let cluster = Cluster::start(1, 1).await;
    let input = cluster.path("in.txt");
    std::fs::write(&input, "a b\n").unwrap();
    let output = cluster.path("out");
    let (input_arg, output_arg) = (input.to_str().unwrap(), output.to_str().unwrap());
    let missing = cluster.path("nowhere/map.py").display().to_string();
    let run = cluster
        .cli(&[
            "submit",
            "streaming",
            "--input",
            input_arg,
            "--output-dir",
            output_arg,
            "--mapper",
            "python3 map.py",
            "--files",
            &missing,
        ])
        .await;
    assert_refused(&run, 2, "nowhere/map.py");
    // A job that runs no program of its own has no use for files.
    let present = cluster.path("map.py");
    std::fs::write(&present, "print('x')\n").unwrap();
    let present = present.display().to_string();
    let run = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--input",
            input_arg,
            "--output-dir",
            output_arg,
            "--files",
            &present,
        ])
        .await;
    assert_refused(&run, 2, "no use for --files");
    assert!(
        !output.exists(),
        "a refused job created its output directory"
    );
}

/// Prints the score of the word given as `$1`, from the shipped table `scores`
/// (`word score` lines), or `none`.
const SCORE_SCRIPT: &str = r#"#!/bin/sh
score=$(awk -v word="$1" '$1 == word { print $2 }' scores)
echo "$1=${score:-none} in $(basename "$PWD")"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_script_runs_as_commands_on_workers_that_never_had_it() {
    let cluster = Cluster::start(2, 1).await;
    let ship = cluster.path("ship-commands");
    std::fs::create_dir_all(&ship).unwrap();
    let table = [("apple", 3), ("pear", 7), ("plum", 11)];
    let table_text: String = table
        .iter()
        .map(|(word, score)| format!("{word} {score}\n"))
        .collect();
    std::fs::write(ship.join("score.sh"), SCORE_SCRIPT).unwrap();
    std::fs::write(ship.join("table-v2.txt"), &table_text).unwrap();
    let words = ["apple", "plum", "kiwi", "pear", "apple", "fig"];
    let inputs = cluster.path("words.txt");
    std::fs::write(&inputs, words.join("\n")).unwrap();

    let files = format!(
        "{},{}#scores",
        ship.join("score.sh").display(),
        ship.join("table-v2.txt").display()
    );
    let submitted = cluster
        .cli(&[
            "submit",
            "--inputs",
            inputs.to_str().unwrap(),
            "--files",
            &files,
            "--",
            "sh",
            "score.sh",
            "{}",
        ])
        .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let job_id: u64 = submitted.stdout.trim().parse().unwrap();
    // The workers can only have the files from the cluster now.
    std::fs::remove_dir_all(&ship).unwrap();

    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let mut outputs: Vec<(u32, String)> = cluster
        .results(job_id)
        .await
        .iter()
        .map(|result| (result.task_index, crate::harness::output_text(result)))
        .collect();
    outputs.sort();
    let scores: BTreeMap<&str, i32> = table.into_iter().collect();
    let expected: Vec<(u32, String)> = words
        .iter()
        .enumerate()
        .map(|(index, word)| {
            let score = scores
                .get(word)
                .map_or("none".to_string(), |s| s.to_string());
            // The command runs in the attempt's own `work` directory.
            (index as u32, format!("{word}={score} in work\n"))
        })
        .collect();
    assert_eq!(outputs, expected);
    let script_hash = sha256_hex(SCORE_SCRIPT.as_bytes());
    let cached = cluster.worker_names().into_iter().any(|name| {
        cluster
            .path(&format!("{name}-scratch"))
            .join("job-files/sha256")
            .join(&script_hash)
            .is_file()
    });
    assert!(cached, "no worker cached score.sh by its hash");

    // A missing file is refused before anything is submitted; files need a command.
    let missing = cluster.path("nowhere/score.sh").display().to_string();
    let run = cluster
        .cli(&["submit", "--files", &missing, "--", "sh", "score.sh"])
        .await;
    assert_refused(&run, 2, "nowhere/score.sh");
    let run = cluster
        .cli(&["submit", "--kind", "noop", "--files", &missing])
        .await;
    assert_eq!(run.code, Some(2), "{run:?}");
}

/// Returns the lowercase hex SHA-256 of `bytes`, with the system's `sha256sum`: an
/// oracle outside the code under test.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap()[..64].to_string()
}
