//! The join job on the in-memory runner: quoting, separators, malformed rows.

use std::num::NonZeroUsize;

use super::*;
use crate::testing::lines_as_text as text;
use crate::testing::{InMemoryOptions, run_in_memory, run_in_memory_counted, run_in_memory_with};

struct Fixture {
    _dir: tempfile::TempDir,
    params: JobParams,
    inputs: Vec<PathBuf>,
}

/// Customers (left, two files) and orders (right, one file, CRLF).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("orders")).unwrap();
    let inputs = vec![
        dir.path().join("customers-1.csv"),
        dir.path().join("customers-2.csv"),
        dir.path().join("orders/o.csv"),
    ];
    std::fs::write(&inputs[0], "id,name\n1,ada\n2,bob\n").unwrap();
    std::fs::write(&inputs[1], "name,id\ncy,3\nada2,1\n\n").unwrap();
    std::fs::write(
        &inputs[2],
        "order,customer,total\r\no1,1,10\r\no2,3,5\r\no3,1,7\r\no4,9,1\r\n",
    )
    .unwrap();
    let mut params = JobParams::default();
    params.set(
        LEFT_PARAM,
        dir.path().join("customers").display().to_string(),
    );
    params.set(RIGHT_PARAM, dir.path().join("orders").display().to_string());
    params.set(LEFT_KEY_PARAM, "id");
    params.set(RIGHT_KEY_PARAM, "customer");
    Fixture {
        _dir: dir,
        params,
        inputs,
    }
}

#[test]
fn inner_join_pairs_rows_by_key_in_deterministic_order() {
    let fixture = fixture();
    let expected = vec![
        "1,ada,o1,10",
        "1,ada,o3,7",
        "ada2,1,o1,10",
        "ada2,1,o3,7",
        "cy,3,o2,5",
    ];
    for lines_per_split in [None, NonZeroUsize::new(1), NonZeroUsize::new(2)] {
        let options = InMemoryOptions {
            combine: true,
            lines_per_split,
        };
        let output =
            run_in_memory_with(&Join, &fixture.params, &fixture.inputs, 1, &options).unwrap();
        assert_eq!(text(&output), expected, "{lines_per_split:?}");
    }
}

#[test]
fn left_join_keeps_unmatched_left_rows_with_empty_right_fields() {
    let mut fixture = fixture();
    fixture.params.set(KIND_PARAM, "left");
    let mut output = text(&run_in_memory(&Join, &fixture.params, &fixture.inputs, 2).unwrap());
    output.sort();
    assert_eq!(
        output,
        vec![
            "1,ada,o1,10",
            "1,ada,o3,7",
            "2,bob,,",
            "ada2,1,o1,10",
            "ada2,1,o3,7",
            "cy,3,o2,5"
        ]
    );
}

#[test]
fn a_missing_key_column_or_a_malformed_header_is_a_permanent_error() {
    let mut fixture = fixture();
    fixture.params.set(RIGHT_KEY_PARAM, "client");
    let error = run_in_memory(&Join, &fixture.params, &fixture.inputs, 1).unwrap_err();
    assert!(
        error.message.contains(RIGHT_KEY_PARAM) && !error.retryable,
        "{error}"
    );

    let fixture = fixture_with(&[], "\"name,id\nada,1\n", "cid,amount\n1,10\n");
    let error = run_in_memory(&Join, &fixture.params, &fixture.inputs, 1).unwrap_err();
    assert!(
        error.message.contains("header") && !error.retryable,
        "{error}"
    );
}

/// One left file `left.csv` and one right file `right/r.csv`, keyed on `id` and
/// `cid`, with extra parameters.
fn fixture_with(extra: &[(&str, &str)], left: &str, right: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("right")).unwrap();
    let inputs = vec![dir.path().join("left.csv"), dir.path().join("right/r.csv")];
    std::fs::write(&inputs[0], left).unwrap();
    std::fs::write(&inputs[1], right).unwrap();
    let mut params = JobParams::default();
    params.set(LEFT_PARAM, inputs[0].display().to_string());
    params.set(RIGHT_PARAM, dir.path().join("right").display().to_string());
    params.set(LEFT_KEY_PARAM, "id");
    params.set(RIGHT_KEY_PARAM, "cid");
    for (name, value) in extra {
        params.set(*name, *value);
    }
    Fixture {
        _dir: dir,
        params,
        inputs,
    }
}

/// The example: a quoted comma must not shift the key column.
#[test]
fn a_quoted_separator_keeps_its_row_and_the_row_stays_valid_csv() {
    let fixture = fixture_with(
        &[],
        "name,id\n\"Smith, John\",1\nAlice,2\n",
        "cid,amount\n1,10\n2,20\n",
    );
    for kind in ["inner", "left"] {
        let mut params = fixture.params.clone();
        params.set(KIND_PARAM, kind);
        for lines_per_split in [None, NonZeroUsize::new(1)] {
            let options = InMemoryOptions {
                combine: true,
                lines_per_split,
            };
            let output = run_in_memory_with(&Join, &params, &fixture.inputs, 1, &options).unwrap();
            assert_eq!(
                text(&output),
                vec!["\"Smith, John\",1,10", "Alice,2,20"],
                "{kind} {lines_per_split:?}"
            );
        }
    }
    let (_, counters) = run_in_memory_counted(&Join, &fixture.params, &fixture.inputs, 1).unwrap();
    assert_eq!(counters.get(MALFORMED_ROWS_COUNTER), 0);
}

#[test]
fn doubled_quotes_are_read_unquoted_and_written_back_quoted() {
    let fixture = fixture_with(
        &[],
        "name,id\n\"O\"\"Brien\",\"1\"\n",
        "cid,note,amount\n1,\"say \"\"hi\"\", twice\",10\n",
    );
    let output = run_in_memory(&Join, &fixture.params, &fixture.inputs, 1).unwrap();
    // The left row as it was; the right note quoted again, its quotes doubled.
    assert_eq!(
        text(&output),
        vec!["\"O\"\"Brien\",\"1\",\"say \"\"hi\"\", twice\",10"]
    );
}

#[test]
fn malformed_rows_are_counted_and_skipped_not_mis_keyed() {
    // An open quote (a line break inside quotes ends the line there too, and the
    // next line has a stray quote), and a row too short to have the key column.
    let fixture = fixture_with(
        &[(KIND_PARAM, "left")],
        "name,id\n\"Smith, John,1\nshort\nAlice,2\n\"Multi\nline\",1\n",
        "cid,amount\n1,10\n2,20\n\"2,30\n",
    );
    let (output, counters) =
        run_in_memory_counted(&Join, &fixture.params, &fixture.inputs, 1).unwrap();
    assert_eq!(text(&output), vec!["Alice,2,20"]);
    // Left: the open quote, `short`, `"Multi` and `line",1`; right: `"2,30`.
    assert_eq!(counters.get(MALFORMED_ROWS_COUNTER), 5);
}

#[test]
fn another_separator_cuts_fields_and_quotes_them_on_output() {
    let fixture = fixture_with(
        &[(SEPARATOR_PARAM, ";")],
        "name;id\n\"Smith; John\";1\nAlice;2\n",
        "cid;city\n1;\"Nantes; FR\"\n2;Lyon,FR\n",
    );
    let output = run_in_memory(&Join, &fixture.params, &fixture.inputs, 1).unwrap();
    assert_eq!(
        text(&output),
        vec!["\"Smith; John\";1;\"Nantes; FR\"", "Alice;2;Lyon,FR"]
    );
    let mut params = fixture.params.clone();
    params.set(SEPARATOR_PARAM, "\"");
    assert!(Join.validate(&params).is_err());
}

#[test]
fn inputs_outside_both_sides_and_bad_parameters_are_refused() {
    let fixture = fixture();
    let stray = fixture.inputs[0].with_file_name("stray.csv");
    std::fs::write(&stray, "id\n1\n").unwrap();
    let error = run_in_memory(&Join, &fixture.params, &[stray], 1).unwrap_err();
    assert!(!error.retryable);

    for (name, value) in [
        (KIND_PARAM, "outer"),
        (SEPARATOR_PARAM, "::"),
        (LEFT_KEY_PARAM, ""),
    ] {
        let mut params = fixture.params.clone();
        params.set(name, value);
        let error = Join.validate(&params).unwrap_err();
        assert!(error.message.contains(name) && !error.retryable, "{error}");
    }
    let mut params = fixture.params.clone();
    params.0.remove(RIGHT_PARAM);
    assert!(
        Join.validate(&params)
            .unwrap_err()
            .message
            .contains(RIGHT_PARAM)
    );
}

#[test]
fn the_longer_prefix_decides_the_side() {
    let mut params = JobParams::default();
    for (name, value) in [
        (LEFT_PARAM, "data/a"),
        (RIGHT_PARAM, "data/a/b"),
        (LEFT_KEY_PARAM, "k"),
        (RIGHT_KEY_PARAM, "k"),
    ] {
        params.set(name, value);
    }
    let settings = Settings::parse(&params).unwrap();
    assert_eq!(
        settings.side_of(Path::new("data/a/b/1.csv")),
        Some(TAG_RIGHT)
    );
    assert_eq!(settings.side_of(Path::new("data/a/c.csv")), Some(TAG_LEFT));
    assert_eq!(settings.side_of(Path::new("data/x.csv")), None);
}
