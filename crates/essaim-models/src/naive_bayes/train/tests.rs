//! The training and evaluation jobs on the in-memory runner of the MapReduce crate,
//! against counts and predictions computed directly from the generated rows.

use super::*;
use crate::naive_bayes::evaluate::{NaiveBayesEvaluate, read_confusion};
use essaim_mapreduce::testing::{InMemoryOptions, run_in_memory_with};
use std::num::NonZeroUsize;

/// Rows `(label, text)`: spam leans on some words, ham on others, both share some.
fn corpus(rows: usize) -> Vec<(String, String)> {
    let spam = ["win", "money", "free", "offer", "click"];
    let ham = ["meeting", "report", "lunch", "project", "thanks"];
    let shared = ["the", "today", "please", "team"];
    let mut rng = essaim_core::rng::SeededRng::new(11);
    (0..rows)
        .map(|row| {
            let is_spam = rng.next_u64().is_multiple_of(2);
            let (label, own, other) = if is_spam {
                ("spam", &spam, &ham)
            } else {
                ("ham", &ham, &spam)
            };
            let mut words = vec![format!("row{row}")];
            for _ in 0..8 {
                let draw = rng.next_u64() % 10;
                let word = match draw {
                    0..=5 => own[(rng.next_u64() % 5) as usize],
                    6 => other[(rng.next_u64() % 5) as usize],
                    _ => shared[(rng.next_u64() % 4) as usize],
                };
                words.push(word.to_uppercase());
            }
            (label.to_string(), words.join(", "))
        })
        .collect()
}

fn write_csv(dir: &Path, rows: &[(String, String)]) -> PathBuf {
    let mut text = String::from("id,label,body\n");
    for (index, (label, body)) in rows.iter().enumerate() {
        text.push_str(&format!("{index},{label},\"{body}\"\n"));
    }
    text.push_str("bad,spam,\"unclosed\n");
    let path = dir.join("mail.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn params(extra: &[(&str, &str)]) -> JobParams {
    let mut params = JobParams::from_pairs(&[
        ("label_column", "label"),
        ("text_column", "body"),
        ("seed", "5"),
        ("holdout", "0.3"),
    ]);
    for (name, value) in extra {
        params.set(*name, *value);
    }
    params
}

fn run(job: &dyn JobDefinition, mut params: JobParams, input: &Path, out: &Path) {
    job.validate(&params).unwrap();
    job.prepare(&mut params, &[input.to_path_buf()], &Default::default(), 3)
        .unwrap();
    let options = InMemoryOptions {
        combine: true,
        lines_per_split: NonZeroUsize::new(50),
    };
    let lines = run_in_memory_with(job, &params, &[input.to_path_buf()], 3, &options).unwrap();
    std::fs::create_dir_all(out).unwrap();
    let mut text = lines.join(&b'\n');
    text.push(b'\n');
    std::fs::write(out.join("part-00000"), text).unwrap();
}

#[test]
fn the_model_holds_the_counts_of_the_training_rows_and_evaluates_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let rows = corpus(400);
    let input = write_csv(dir.path(), &rows);
    run(
        &NaiveBayesTrain,
        params(&[]),
        &input,
        &dir.path().join("train"),
    );
    let model = assemble_model(1.0, &dir.path().join("train")).unwrap();

    // The same counts, directly: rows on the training side, words lower-cased.
    let split = Split {
        seed: 5,
        holdout: 0.3,
    };
    let mut documents: BTreeMap<String, u64> = BTreeMap::new();
    let mut money_in_spam = 0;
    let mut held_out = Vec::new();
    for (index, (label, body)) in rows.iter().enumerate() {
        let line = format!("{index},{label},\"{body}\"");
        if split.is_held_out(line.as_bytes()) {
            held_out.push((label.clone(), body.clone()));
            continue;
        }
        *documents.entry(label.clone()).or_default() += 1;
        if label == "spam" {
            money_in_spam += body.split(", ").filter(|word| *word == "MONEY").count() as u64;
        }
    }
    let training_rows: u64 = documents.values().sum();
    assert_eq!(model.classes, ["ham", "spam"]);
    assert_eq!(model.class_documents, [documents["ham"], documents["spam"]]);
    assert_eq!(model.terms["money"][1], money_in_spam);
    // One `rowN` term per training row, plus the 14 words.
    assert_eq!(model.terms.len() as u64, training_rows + 14);
    assert!((80..160).contains(&held_out.len()), "{}", held_out.len());

    let model_path = dir.path().join("model.json");
    std::fs::write(&model_path, model.to_bytes()).unwrap();
    let model_param = model_path.to_string_lossy().into_owned();
    let eval_params = params(&[("model", &model_param)]);
    run(
        &NaiveBayesEvaluate,
        eval_params,
        &input,
        &dir.path().join("eval"),
    );
    let confusion = read_confusion(&dir.path().join("eval")).unwrap();
    let classifier = model.classifier();
    let right = held_out
        .iter()
        .filter(|(label, body)| classifier.predict(body.as_bytes()) == label)
        .count();
    assert_eq!(confusion.total(), held_out.len() as u64);
    let expected = right as f64 / held_out.len() as f64;
    assert!((confusion.accuracy() - expected).abs() < 1e-12);
    assert!(confusion.accuracy() > 0.8, "{confusion:?}");
}

#[test]
fn missing_columns_and_bad_parameters_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_csv(dir.path(), &corpus(3));
    let mut wrong_column = params(&[("text_column", "subject")]);
    let error = NaiveBayesTrain
        .prepare(
            &mut wrong_column,
            std::slice::from_ref(&input),
            &Default::default(),
            1,
        )
        .unwrap_err();
    assert!(error.message.contains("no column `subject`"), "{error}");
    assert!(!error.retryable);
    for (name, value) in [("holdout", "1.5"), ("alpha", "0"), ("format", "xlsx")] {
        let error = NaiveBayesTrain
            .validate(&params(&[(name, value)]))
            .unwrap_err();
        assert!(error.message.contains(name), "{error}");
    }
    let mut no_label = params(&[]);
    no_label.0.remove("label_column");
    assert!(NaiveBayesTrain.validate(&no_label).is_err());
}
