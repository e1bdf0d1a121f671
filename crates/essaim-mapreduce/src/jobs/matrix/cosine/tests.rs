use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use super::*;
use crate::testing::{InMemoryOptions, run_in_memory, run_in_memory_with};

/// Parameters as `(name, value)` pairs.
type Params<'a> = &'a [(&'a str, &'a str)];

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// Parameters naming `DIR/matrix` and `DIR/vector`, with `extra`.
fn params(dir: &Path, extra: &[(&str, &str)]) -> JobParams {
    let mut params = JobParams::from_pairs(extra);
    params.set(MATRIX_PARAM, dir.join("matrix").display().to_string());
    params.set(VECTOR_PARAM, dir.join("vector").display().to_string());
    params
}

/// Runs the job and returns its output as `row → cosine`.
fn cosines(
    dir: &Path,
    inputs: &[PathBuf],
    extra: &[(&str, &str)],
    reducers: u32,
    lines_per_split: Option<usize>,
) -> Result<BTreeMap<u64, f64>, JobError> {
    let options = InMemoryOptions {
        combine: true,
        lines_per_split: lines_per_split.and_then(NonZeroUsize::new),
    };
    let output = run_in_memory_with(&Cosine, &params(dir, extra), inputs, reducers, &options)?;
    let mut parsed = BTreeMap::new();
    for line in output {
        let line = String::from_utf8(line).unwrap();
        let (row, value) = line.split_once('\t').unwrap();
        let previous = parsed.insert(row.parse().unwrap(), value.parse().unwrap());
        assert!(previous.is_none(), "row {row} written twice");
    }
    Ok(parsed)
}

/// The course's exercise: a 4×4 matrix and V = [4, 3, 2, 1], at most two coordinates
/// of V per file (per server, in the exercise).
fn exercise_inputs(dir: &Path) -> Vec<PathBuf> {
    vec![
        write(
            dir,
            "matrix/0",
            "0 0 1\n0 1 2\n0 2 3\n0 3 4\n1 0 7\n1 1 6\n",
        ),
        write(
            dir,
            "matrix/1",
            "1 2 5\n1 3 4\n2 0 6\n2 1 7\n2 2 8\n2 3 9\n",
        ),
        write(dir, "matrix/2", "3 0 3\n3 1 3\n3 2 3\n3 3 3\n"),
        write(dir, "vector/0", "# j v\n0 4\n1 3\n"),
        write(dir, "vector/1", "2 2\n3 1\n"),
    ]
}

#[test]
fn the_exercise_cosines_match_a_direct_computation() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = exercise_inputs(dir.path());
    let vector_norm = 30f64.sqrt();
    let expected = [
        20.0 / (30f64.sqrt() * vector_norm),
        60.0 / (126f64.sqrt() * vector_norm),
        70.0 / (230f64.sqrt() * vector_norm),
        30.0 / (6.0 * vector_norm),
    ];
    for reducers in 1..=4 {
        for columns in [None, Some("4")] {
            let extra: Vec<(&str, &str)> = columns.map(|n| ("columns", n)).into_iter().collect();
            let output = cosines(dir.path(), &inputs, &extra, reducers, Some(2)).unwrap();
            assert_eq!(output.len(), 4);
            for (row, cosine) in &output {
                let expected = expected[*row as usize];
                assert!(
                    (cosine - expected).abs() <= 1e-15,
                    "row {row}: {cosine} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn cosines_match_dense_rows_and_do_not_depend_on_splits_or_reducers() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = essaim_core::rng::SeededRng::new(29);
    let (rows, columns) = (50u64, 30u64);
    let mut vector = vec![0.0; columns as usize];
    let mut vector_text = String::new();
    for (index, value) in vector.iter_mut().enumerate() {
        if rng.chance(1, 4) {
            continue; // a sparse vector: the entry is 0
        }
        *value = rng.unit() * 2.0 - 1.0;
        vector_text.push_str(&format!("{index} {value:?}\n"));
    }
    let mut dense = vec![vec![0.0; columns as usize]; rows as usize];
    let mut matrix_files = [String::new(), String::new()];
    for row in 0..rows {
        for column in 0..columns {
            if rng.chance(2, 3) {
                continue;
            }
            let value = (rng.unit() - 0.5) * 10f64.powi(rng.below(5) as i32 - 2);
            dense[row as usize][column as usize] = value;
            let file = rng.below(2) as usize;
            matrix_files[file].push_str(&format!("{row}\t{column}\t{value:?}\n"));
        }
    }
    let inputs = vec![
        write(dir.path(), "matrix/a", &matrix_files[0]),
        write(dir.path(), "matrix/b", &matrix_files[1]),
        write(dir.path(), "vector/all", &vector_text),
    ];
    // The oracle: dense rows, naive sums, one division by the product of the norms.
    let vector_norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut first: Option<BTreeMap<u64, f64>> = None;
    for (reducers, lines_per_split) in [(1, None), (3, Some(7)), (4, Some(1))] {
        let output = cosines(dir.path(), &inputs, &[], reducers, lines_per_split).unwrap();
        for (row, cosine) in &output {
            let values = &dense[*row as usize];
            let dot: f64 = values.iter().zip(&vector).map(|(a, v)| a * v).sum();
            let norm = values.iter().map(|a| a * a).sum::<f64>().sqrt();
            let expected = dot / (norm * vector_norm);
            assert!(
                (cosine - expected).abs() <= 1e-13,
                "row {row}: {cosine} vs {expected}"
            );
        }
        let listed = dense
            .iter()
            .filter(|row| row.iter().any(|a| *a != 0.0))
            .count();
        assert_eq!(output.len(), listed);
        match &first {
            None => first = Some(output),
            Some(first) => assert_eq!(&output, first, "{reducers} reducers: other bits"),
        }
    }
}

#[test]
fn a_zero_row_is_nan_parallel_rows_are_one_and_duplicates_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        // Row 0 is 3·v, row 1 is -v/2 (its first entry listed as two halves), row 2 is
        // all zeros, row 3 is orthogonal to v.
        write(
            dir.path(),
            "matrix/m",
            "0 0 3\n0 1 6\n1 0 -0.25\n1 0 -0.25\n1 1 -1\n",
        ),
        write(dir.path(), "matrix/n", "2 0 0\n2 5 -0.0\n3 0 2\n3 1 -1\n"),
        write(dir.path(), "vector/v", "0 1\n1 2\n"),
    ];
    let output = cosines(dir.path(), &inputs, &[], 2, None).unwrap();
    let close_to = |value: f64, expected: f64| (value - expected).abs() <= 2.0 * f64::EPSILON;
    assert!(
        output[&0] <= 1.0 && close_to(output[&0], 1.0),
        "{}",
        output[&0]
    );
    assert!(
        output[&1] >= -1.0 && close_to(output[&1], -1.0),
        "{}",
        output[&1]
    );
    assert!(output[&2].is_nan());
    assert_eq!(output[&3], 0.0);
}

#[test]
fn the_cosine_is_clamped_and_undefined_for_a_zero_row() {
    assert!(cosine(0.0, 0.0, 1.0).is_nan());
    assert_eq!(cosine(1.0 + 1e-15, 1.0, 1.0), 1.0);
    assert_eq!(cosine(-2.0, 4.0, 1.0), -1.0);
    assert_eq!(cosine(1.0, 4.0, 1.0), 0.5);
    // ‖row‖ ‖v‖ = 2^510 · 2^520 would overflow; the cosine does not.
    let power = |exponent: i32| 2f64.powi(exponent);
    assert_eq!(cosine(power(1023), power(1020), power(520)), power(-7));
}

#[test]
fn vector_reports_reach_their_partition_and_rows_hash_by_index() {
    let mut key = vec![VECTOR_REPORT_MARK];
    push_padded_index(&mut key, 3);
    assert_eq!(RowPartitioner.partition(&key, 5), 3);
    let mut row = Vec::new();
    push_padded_index(&mut row, 12345);
    assert_eq!(
        RowPartitioner.partition(&row, 7),
        LeadingIndexPartitioner.partition(&row, 7)
    );
}

#[test]
fn bad_vectors_and_entries_fail_the_job_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = |matrix: &str, vector: &str, extra: &[(&str, &str)]| {
        let inputs = [
            write(dir.path(), "matrix/m", matrix),
            write(dir.path(), "vector/v", vector),
        ];
        let error = cosines(dir.path(), &inputs, extra, 2, None).unwrap_err();
        assert!(!error.retryable, "{error}");
        error.message
    };
    let four = [("columns", "4")];
    // (matrix, vector, parameters, what the error says)
    let cases: [(&str, &str, Params, &str); 9] = [
        ("0 0 1\n", "0 0\n1 0.0\n", &[], "the vector is zero"),
        ("0 0 1\n", "", &[], "the vector is zero"),
        ("0 0 1\n", "0 1\n0 2\n", &[], "two entries for index 0"),
        (
            "0 0 1\n",
            "0 1 2\n",
            &[],
            "vector/v` at byte 0 is not `j v_j`",
        ),
        (
            "0 0 1\n0 1 1,5\n",
            "0 1\n",
            &[],
            "matrix/m` at byte 6 is not `i j a_ij`",
        ),
        (
            "0 0 inf\n",
            "0 1\n",
            &[],
            "`inf`: norms and cosines need finite values",
        ),
        ("0 4 1\n", "0 1\n", &four, "column 4, outside `columns` = 4"),
        (
            "0 0 1\n",
            "0 1\n1 1\n2 1\n3 1\n4 1\n",
            &four,
            "column 4, outside",
        ),
        (
            "0 0 1\n",
            "0 1\n1 1\n2 1\n",
            &four,
            "the vector has 3 entries but `columns` = 4",
        ),
    ];
    for (matrix, vector, extra, expected) in cases {
        let message = run(matrix, vector, extra);
        assert!(
            message.contains(expected),
            "{matrix:?} {vector:?}: {message}"
        );
    }
}

#[test]
fn parameters_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Cosine.validate(&params(dir.path(), &[])).is_ok());
    let mut missing = params(dir.path(), &[]);
    missing.0.remove(VECTOR_PARAM);
    assert!(
        Cosine
            .validate(&missing)
            .unwrap_err()
            .message
            .contains(VECTOR_PARAM)
    );
    for (name, value) in [
        ("columns", "0"),
        (REDUCERS_PARAM, "0"),
        (REDUCERS_PARAM, "x"),
    ] {
        let error = Cosine
            .validate(&params(dir.path(), &[(name, value)]))
            .unwrap_err();
        assert!(error.message.contains(name), "{error}");
    }
    // Planning replaces any given number of reducers with the real one.
    let mut planned = params(dir.path(), &[(REDUCERS_PARAM, "9")]);
    Cosine
        .prepare(&mut planned, &[], &Default::default(), 3)
        .unwrap();
    assert_eq!(planned.get(REDUCERS_PARAM), Some("3"));
    let inputs = exercise_inputs(dir.path());
    let output = run_in_memory(
        &Cosine,
        &params(dir.path(), &[(REDUCERS_PARAM, "9")]),
        &inputs,
        2,
    );
    assert_eq!(output.unwrap().len(), 4);
}
