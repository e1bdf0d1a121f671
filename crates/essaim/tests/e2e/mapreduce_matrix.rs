//! The matrix jobs on a real cluster. `essaim gen matrix` writes a sparse matrix of
//! 3,000 rows × 200 columns and its vector, each in 4 files; `rownorms` and `cosine`,
//! run with 3 reducers and 64 KiB splits (so about 16 map tasks), give the norms and
//! cosines computed here another way: dense rows and naive sums, within [`TOLERANCE`].
//! The REST planner lists both jobs and plans `cosine` into the same bytes. A zero
//! vector, a vector of the wrong length and a malformed number fail the job with the
//! reason and publish nothing.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::harness::{CliOutput, Cluster, EVENTUALLY};
use essaim_testkit::http;

const ROWS: usize = 3000;
const COLUMNS: usize = 200;
/// Largest difference allowed with the oracle: relative for norms, absolute for
/// cosines (which lie in [-1, 1]). The jobs are within about 1e-15 of the exact values
/// (exact sums, rounded once); the naive sums of the oracle, over rows of about 10
/// entries, within about 1e-14. A wrong or missing entry moves a result by far more.
const TOLERANCE: f64 = 1e-12;

/// The generated matrix as dense rows (rows without an entry are absent) and vector.
struct Dense {
    rows: BTreeMap<u64, Vec<f64>>,
    vector: Vec<f64>,
}

/// Returns the files of `dir`, sorted.
fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Reads what `essaim gen matrix` wrote under `dir`, with a parser of its own.
fn read_generated(dir: &Path) -> Dense {
    let mut dense = Dense {
        rows: BTreeMap::new(),
        vector: vec![f64::NAN; COLUMNS],
    };
    for file in files_of(&dir.join("matrix")) {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let [row, column, value] = fields[..] else {
                panic!("a generated entry has three fields: {line}");
            };
            let row = dense
                .rows
                .entry(row.parse().unwrap())
                .or_insert_with(|| vec![0.0; COLUMNS]);
            row[column.parse::<usize>().unwrap()] += value.parse::<f64>().unwrap();
        }
    }
    for file in files_of(&dir.join("vector")) {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let (index, value) = line.split_once(' ').unwrap();
            dense.vector[index.parse::<usize>().unwrap()] = value.parse().unwrap();
        }
    }
    assert!(
        dense.vector.iter().all(|value| value.is_finite()),
        "the generated vector lists every index"
    );
    assert!(dense.rows.len() > ROWS * 9 / 10, "most rows have an entry");
    dense
}

fn norm(values: &[f64]) -> f64 {
    values.iter().map(|value| value * value).sum::<f64>().sqrt()
}

/// Reads a committed output of `i<TAB>value` lines into `i → value`.
fn read_output(dir: &Path) -> BTreeMap<u64, f64> {
    assert!(
        dir.join("_SUCCESS").exists(),
        "{} is committed",
        dir.display()
    );
    let mut values = BTreeMap::new();
    for file in files_of(dir) {
        if !file
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("part-")
        {
            continue;
        }
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let (row, value) = line.split_once('\t').unwrap();
            let previous = values.insert(row.parse().unwrap(), value.parse().unwrap());
            assert!(previous.is_none(), "row {row} written twice");
        }
    }
    values
}

/// Runs `essaim submit JOB --input INPUT --output-dir OUTPUT --reducers 3
/// --split-size 64KiB ARGS… --format json`.
async fn submit(
    cluster: &Cluster,
    job: &str,
    input: &Path,
    output: &Path,
    args: &[&str],
) -> CliOutput {
    let mut all = vec![
        "submit",
        job,
        "--input",
        input.to_str().unwrap(),
        "--output-dir",
        output.to_str().unwrap(),
        "--reducers",
        "3",
        "--split-size",
        "64KiB",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    cluster.cli(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_norms_and_cosines_on_a_cluster_equal_a_direct_computation() {
    let cluster = Cluster::start(2, 2).await;
    let data = cluster.path("data");
    let generated = cluster
        .cli(&[
            "gen",
            "matrix",
            "--rows",
            &ROWS.to_string(),
            "--columns",
            &COLUMNS.to_string(),
            "--density",
            "0.05",
            "--files",
            "4",
            "--seed",
            "11",
            "--output-dir",
            data.to_str().unwrap(),
        ])
        .await;
    assert_eq!(generated.code, Some(0), "{generated:?}");
    let dense = read_generated(&data);
    let vector_norm = norm(&dense.vector);

    let norms_dir = cluster.path("norms");
    let run = submit(&cluster, "rownorms", &data.join("matrix"), &norms_dir, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        summary["map_tasks"].as_u64().unwrap() >= 8,
        "several map tasks: {summary}"
    );
    let norms = read_output(&norms_dir);
    assert_eq!(
        norms.keys().collect::<Vec<_>>(),
        dense.rows.keys().collect::<Vec<_>>()
    );
    for (row, values) in &dense.rows {
        let expected = norm(values);
        let actual = norms[row];
        assert!(
            (actual - expected).abs() <= TOLERANCE * expected,
            "norm of row {row}: {actual} vs {expected}"
        );
    }

    let matrix_param = format!("matrix={}", data.join("matrix").display());
    let vector_param = format!("vector={}", data.join("vector").display());
    let columns_param = format!("columns={COLUMNS}");
    let cosine_args = [
        "-D",
        &matrix_param,
        "-D",
        &vector_param,
        "-D",
        &columns_param,
    ];
    let cosines_dir = cluster.path("cosines");
    let run = submit(&cluster, "cosine", &data, &cosines_dir, &cosine_args).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let cosines = read_output(&cosines_dir);
    assert_eq!(cosines.len(), dense.rows.len());
    for (row, values) in &dense.rows {
        let dot: f64 = values.iter().zip(&dense.vector).map(|(a, v)| a * v).sum();
        let expected = dot / (norm(values) * vector_norm);
        let actual = cosines[row];
        assert!(
            (actual - expected).abs() <= TOLERANCE,
            "cosine of row {row}: {actual} vs {expected}"
        );
    }

    // The REST planner knows both jobs and plans `cosine` into the same bytes.
    let base = cluster.url();
    let (status, listed) =
        http::request(&base, "GET", "/api/v1/mapreduce-jobs", None, None).expect("GET the jobs");
    assert_eq!(status, 200, "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    for name in ["rownorms", "cosine"] {
        let job = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|job| job["name"] == name);
        assert!(
            job.is_some_and(|job| !job["description"].as_str().unwrap().is_empty()),
            "{name} is listed with a description: {listed}"
        );
    }
    let rest_dir = cluster.path("cosines-rest");
    let request = serde_json::json!({
        "kind": "mapreduce", "job": "cosine", "inputs": [data], "output": rest_dir,
        "reducers": 3, "split_bytes": 65536,
        "params": {
            "matrix": data.join("matrix"), "vector": data.join("vector"),
            "columns": COLUMNS.to_string(),
        },
    });
    let (status, answer) = http::request(
        &base,
        "POST",
        "/api/v1/jobs",
        None,
        Some(&request.to_string()),
    )
    .expect("POST the job");
    assert_eq!(status, 201, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let job = cluster
        .wait_job(answer["job_id"].as_u64().unwrap(), EVENTUALLY)
        .await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    for part in 0..3 {
        let name = format!("part-{part:05}");
        assert_eq!(
            std::fs::read(rest_dir.join(&name)).unwrap(),
            std::fs::read(cosines_dir.join(&name)).unwrap(),
            "{name} differs between the CLI and the REST planner"
        );
    }
}

/// Runs `cosine` on a small matrix and `vector`; expects the job to fail for good with
/// an error containing `expected`, and to publish nothing.
async fn assert_cosine_fails(cluster: &Cluster, name: &str, vector: &str, expected: &str) {
    let dir = cluster.path(name);
    std::fs::create_dir_all(dir.join("matrix")).unwrap();
    std::fs::create_dir_all(dir.join("vector")).unwrap();
    std::fs::write(dir.join("matrix/m"), "0 0 1\n0 1 2\n1 3 -1\n").unwrap();
    std::fs::write(dir.join("vector/v"), vector).unwrap();
    let output = cluster.path(&format!("{name}-out"));
    let matrix_param = format!("matrix={}", dir.join("matrix").display());
    let vector_param = format!("vector={}", dir.join("vector").display());
    let args = ["-D", &matrix_param, "-D", &vector_param, "-D", "columns=4"];
    let run = submit(cluster, "cosine", &dir, &output, &args).await;
    assert_eq!(run.code, Some(1), "{name}: {run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["state"], "failed", "{name}: {summary}");
    assert!(!output.join("_SUCCESS").exists(), "{name}: published");
    let letters = cluster
        .dead_letters(summary["job_id"].as_u64().unwrap())
        .await;
    assert!(!letters.is_empty(), "{name}: no dead letter");
    for letter in &letters {
        // Bad input does not get better: one attempt, then the dead-letter queue.
        assert_eq!(
            letter.errors.len(),
            1,
            "{name}: retried: {:?}",
            letter.errors
        );
        let errors = format!("{:?}", letter.errors);
        assert!(errors.contains(expected), "{name}: {errors}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_vector_a_short_vector_and_a_bad_number_fail_the_cosine_job_with_the_reason() {
    let cluster = Cluster::start(1, 2).await;
    assert_cosine_fails(
        &cluster,
        "zero",
        "0 0\n1 0.0\n2 -0\n3 0e5\n",
        "the vector is zero",
    )
    .await;
    assert_cosine_fails(
        &cluster,
        "short",
        "0 1\n1 2\n2 3\n",
        "the vector has 3 entries but `columns` = 4",
    )
    .await;
    assert_cosine_fails(
        &cluster,
        "malformed",
        "0 1\n1 2\n2 three\n3 4\n",
        "vector/v` at byte 8 is not `j v_j`",
    )
    .await;
}
