//! `essaim train naive-bayes` on a real cluster: the training and evaluation jobs run
//! as MapReduce jobs on two workers, and the registered version's metrics equal a
//! naive Bayes computed directly in this test from the generated rows (its own
//! tokeniser, counts and arithmetic; only the seeded split is shared, as its
//! definition). Its lineage names the jobs and the input's SHA-256 as `sha256sum`
//! computes it; bad input is refused with exit code 2.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{Cluster, assert_refused};
use essaim_models::rows::Split;
use essaim_testkit::SeededRng;
use std::collections::{BTreeMap, HashMap};

/// Labelled messages: each class draws most words from its own list, some from the
/// other's and from a shared one, so the classifier is good but not perfect.
fn corpus(rows: usize) -> Vec<(String, String)> {
    let spam = ["win", "money", "free", "offer", "click", "prize", "cash"];
    let ham = [
        "meeting", "report", "lunch", "project", "thanks", "draft", "notes",
    ];
    let shared = ["the", "today", "please", "team", "you", "new"];
    let mut rng = SeededRng::new(2024);
    let mut pick = |words: &[&'static str]| words[(rng.next_u64() % words.len() as u64) as usize];
    let mut draws = SeededRng::new(7);
    (0..rows)
        .map(|_| {
            let is_spam = draws.next_u64().is_multiple_of(3);
            let (label, own, other) = if is_spam {
                ("spam", &spam, &ham)
            } else {
                ("ham", &ham, &spam)
            };
            let length = 3 + draws.next_u64() % 6;
            let words: Vec<String> = (0..length)
                .map(|_| match draws.next_u64() % 10 {
                    0..=4 => pick(own).to_uppercase(),
                    5..=6 => pick(other).to_string(),
                    _ => pick(&shared).to_string(),
                })
                .collect();
            (label.to_string(), words.join(", "))
        })
        .collect()
}

/// The line of a row as written in the CSV file.
fn line(index: usize, label: &str, body: &str) -> String {
    format!("{index},{label},\"{body}\"")
}

/// Terms the way the test sees them: runs of ASCII letters, lower-cased.
fn terms(body: &str) -> Vec<String> {
    body.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| word.len() >= 2)
        .map(str::to_lowercase)
        .collect()
}

/// Accuracy, precision, recall and F1 of "spam" for multinomial naive Bayes with
/// Laplace smoothing, trained on `train` and scored on `test`.
fn oracle(train: &[(String, String)], test: &[(String, String)]) -> BTreeMap<&'static str, f64> {
    let mut documents: BTreeMap<&str, f64> = BTreeMap::new();
    let mut counts: HashMap<(String, String), f64> = HashMap::new();
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    let mut vocabulary = std::collections::HashSet::new();
    for (label, body) in train {
        *documents.entry(label).or_default() += 1.0;
        for term in terms(body) {
            *counts.entry((label.clone(), term.clone())).or_default() += 1.0;
            *totals.entry(label).or_default() += 1.0;
            vocabulary.insert(term);
        }
    }
    let all: f64 = documents.values().sum();
    let size = vocabulary.len() as f64;
    let predict = |body: &str| -> String {
        let mut best: Option<(f64, &str)> = None;
        for (class, docs) in &documents {
            let mut score = (docs / all).ln();
            for term in terms(body).into_iter().filter(|t| vocabulary.contains(t)) {
                let count = counts
                    .get(&(class.to_string(), term))
                    .copied()
                    .unwrap_or(0.0);
                score += ((count + 1.0) / (totals[class] + size)).ln();
            }
            if best.is_none_or(|(top, _)| score > top) {
                best = Some((score, class));
            }
        }
        best.unwrap().1.to_string()
    };
    let (mut right, mut true_spam, mut said_spam, mut is_spam) = (0.0, 0.0, 0.0, 0.0);
    for (label, body) in test {
        let predicted = predict(body);
        right += f64::from(u8::from(predicted == *label));
        true_spam += f64::from(u8::from(predicted == "spam" && label == "spam"));
        said_spam += f64::from(u8::from(predicted == "spam"));
        is_spam += f64::from(u8::from(label == "spam"));
    }
    let (precision, recall) = (true_spam / said_spam, true_spam / is_spam);
    BTreeMap::from([
        ("accuracy", right / test.len() as f64),
        ("precision", precision),
        ("recall", recall),
        ("f1", 2.0 * precision * recall / (precision + recall)),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_trained_on_the_cluster_matches_a_direct_computation() {
    let cluster = Cluster::start(2, 1).await;
    let rows = corpus(1500);
    let mut text = String::from("id,label,body\n");
    for (index, (label, body)) in rows.iter().enumerate() {
        text.push_str(&line(index, label, body));
        text.push('\n');
    }
    let data = cluster.path("mail.csv");
    std::fs::write(&data, &text).unwrap();
    let work = cluster.path("work");
    let train = |seed: &'static str| {
        [
            "train",
            "naive-bayes",
            "--input",
            data.to_str().unwrap(),
            "--label-column",
            "label",
            "--text-column",
            "body",
            "--model",
            "spam-filter",
            "--seed",
            seed,
            "--holdout",
            "0.25",
            "--positive-class",
            "spam",
            "--split-size",
            "16KiB",
            "--work-dir",
            work.to_str().unwrap(),
            "--output",
            "json",
        ]
        .map(String::from)
    };
    let words = train("9");
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    let run = cluster.cli(&args).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let result: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(result["model"], "spam-filter");
    assert_eq!(result["version"], 1);

    let split = Split {
        seed: 9,
        holdout: 0.25,
    };
    let (test, train_rows): (Vec<_>, Vec<_>) =
        rows.iter().enumerate().partition(|(index, (label, body))| {
            split.is_held_out(line(*index, label, body).as_bytes())
        });
    let strip = |side: Vec<(usize, &(String, String))>| -> Vec<(String, String)> {
        side.into_iter().map(|(_, row)| row.clone()).collect()
    };
    let (test, train_rows) = (strip(test), strip(train_rows));
    let expected = oracle(&train_rows, &test);
    let metrics = &result["metrics"];
    for (name, value) in &expected {
        let got = metrics[*name].as_f64().unwrap();
        assert!(
            (got - value).abs() < 1e-9,
            "{name}: {got} vs {value}\n{result:#}"
        );
    }
    assert!(
        expected["accuracy"] > 0.8 && expected["accuracy"] < 1.0,
        "{expected:?}"
    );
    assert_eq!(metrics["eval_rows"].as_f64().unwrap(), test.len() as f64);
    assert_eq!(
        metrics["train_rows"].as_f64().unwrap(),
        train_rows.len() as f64
    );

    // Lineage: the jobs ran on this cluster, the input is the file `sha256sum` reads.
    let lineage = &result["lineage"];
    for job in ["training_job", "evaluation_job"] {
        let id = lineage[job].as_u64().unwrap();
        assert_eq!(cluster.job(id).await.state, "succeeded", "{job}");
    }
    let sha256sum = std::process::Command::new("sha256sum")
        .arg(&data)
        .output()
        .unwrap();
    let digest = String::from_utf8(sha256sum.stdout).unwrap();
    assert_eq!(
        lineage["input"]["sha256"],
        digest.split_whitespace().next().unwrap()
    );
    assert_eq!(lineage["input"]["bytes"], text.len());
    assert_eq!(lineage["job_definition"], "naive-bayes-train/1");
    assert_eq!(lineage["parameters"]["seed"], "9");
    let shown = cluster
        .cli(&["models", "show", "spam-filter@latest", "--output", "json"])
        .await;
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["lineage"], *lineage);
    assert_eq!(shown["artifact"]["sha256"], result["sha256"]);

    // Another seed, another split: a second version, with its own metrics.
    let words = train("10");
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    let again = cluster.cli(&args).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["version"], 2);

    // Bad input: an unknown column, a missing file, a bad model name.
    let mut words = train("9");
    words[7] = "subject".into();
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    assert_refused(&cluster.cli(&args).await, 2, "no column `subject`");
    let mut words = train("9");
    words[3] = cluster.path("missing.csv").display().to_string();
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    assert_eq!(cluster.cli(&args).await.code, Some(2));
    let mut words = train("9");
    words[9] = "spam filter".into();
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    assert_refused(&cluster.cli(&args).await, 2, "invalid model name");
}
