//! The rollup job on the in-memory runner: quoting, separators, malformed rows.

use std::path::PathBuf;

use super::*;
use crate::testing::lines_as_text as text;
use crate::testing::{InMemoryOptions, run_in_memory, run_in_memory_counted, run_in_memory_with};

const TAXONOMY: &str = "\
Phones\tElectronics
Laptops\tElectronics
Smartphones\tPhones
Electronics
Apples\tFood
";

fn fixture(level: &str) -> (tempfile::TempDir, JobParams, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let taxonomy = dir.path().join("taxonomy.tsv");
    std::fs::write(&taxonomy, TAXONOMY).unwrap();
    let sales = vec![dir.path().join("s1"), dir.path().join("s2")];
    // 0.1 + 0.2 must be exactly 0.30: no floats.
    std::fs::write(
        &sales[0],
        "Smartphones\t0.1\nLaptops\t1000\nApples\t-0.05\n",
    )
    .unwrap();
    std::fs::write(&sales[1], "Phones\t0.2\r\nMystery\t3.5\nFood\t.07\n\n").unwrap();
    let mut params = JobParams::default();
    params.set(TAXONOMY_PARAM, taxonomy.display().to_string());
    params.set(LEVEL_PARAM, level);
    (dir, params, sales)
}

#[test]
fn sales_roll_up_to_the_chosen_level_in_exact_cents() {
    let (_dir, params, sales) = fixture("0");
    let output = run_in_memory(&Rollup, &params, &sales, 1).unwrap();
    assert_eq!(
        text(&output),
        vec!["(unknown)\t3.50", "Electronics\t1000.30", "Food\t0.02"]
    );

    let (_dir, params, sales) = fixture("1");
    for combine in [true, false] {
        let options = InMemoryOptions {
            combine,
            lines_per_split: None,
        };
        let output = run_in_memory_with(&Rollup, &params, &sales, 1, &options).unwrap();
        assert_eq!(
            text(&output),
            vec![
                "(unknown)\t3.50",
                "Apples\t-0.05",
                "Food\t0.07",
                "Laptops\t1000.00",
                "Phones\t0.30",
            ]
        );
    }
}

#[test]
fn csv_sales_with_a_header_and_chosen_columns() {
    let (dir, mut params, _) = fixture("0");
    let sales = dir.path().join("sales.csv");
    std::fs::write(&sales, "amount,id,category\n1.25,a,Laptops\n2,b,Apples\n").unwrap();
    for (name, value) in [
        (SEPARATOR_PARAM, ","),
        (CATEGORY_COLUMN_PARAM, "2"),
        (AMOUNT_COLUMN_PARAM, "0"),
        (HEADER_PARAM, "true"),
    ] {
        params.set(name, value);
    }
    let output = run_in_memory(&Rollup, &params, &[sales], 1).unwrap();
    assert_eq!(text(&output), vec!["Electronics\t1.25", "Food\t2.00"]);
}

/// Sales `sales.csv` with `separator` and a taxonomy of categories that hold
/// separators and quotes, at `level`.
fn quoted_fixture(
    separator: &str,
    level: &str,
    sales: &str,
) -> (tempfile::TempDir, JobParams, Vec<PathBuf>) {
    let (dir, mut params, _) = fixture(level);
    let taxonomy = dir.path().join("quoted-taxonomy");
    let entries = "Fruit, fresh\tFood\nFruit; fresh\tFood\nSay \"hi\"\tFood\nFood\n";
    std::fs::write(&taxonomy, entries).unwrap();
    params.set(TAXONOMY_PARAM, taxonomy.display().to_string());
    params.set(SEPARATOR_PARAM, separator);
    let path = dir.path().join("sales.csv");
    std::fs::write(&path, sales).unwrap();
    (dir, params, vec![path])
}

#[test]
fn quoted_fields_keep_their_separators_and_doubled_quotes() {
    let sales = "\"Fruit, fresh\",1.50\n\"Say \"\"hi\"\"\",\"2\"\nFood,1\n";
    let (_dir, params, sales) = quoted_fixture(",", "1", sales);
    let (output, counters) = run_in_memory_counted(&Rollup, &params, &sales, 1).unwrap();
    assert_eq!(
        text(&output),
        vec!["Food\t1.00", "Fruit, fresh\t1.50", "Say \"hi\"\t2.00"]
    );
    assert_eq!(counters.get(MALFORMED_ROWS_COUNTER), 0);
}

#[test]
fn another_separator_only_cuts_outside_quotes() {
    let sales = "\"Fruit; fresh\";1.5\nFood;2\n";
    let (_dir, params, sales) = quoted_fixture(";", "0", sales);
    let output = run_in_memory(&Rollup, &params, &sales, 1).unwrap();
    assert_eq!(text(&output), vec!["Food\t3.50"]);
}

#[test]
fn malformed_lines_are_counted_and_skipped_not_summed_elsewhere() {
    // An open quote, too few fields, a stray quote; then one good sale.
    let sales = "\"Fruit, fresh,1.50\nFood\nFo\"od,3\nFood,2\n";
    let (_dir, params, sales) = quoted_fixture(",", "0", sales);
    let (output, counters) = run_in_memory_counted(&Rollup, &params, &sales, 1).unwrap();
    assert_eq!(text(&output), vec!["Food\t2.00"]);
    assert_eq!(counters.get(MALFORMED_ROWS_COUNTER), 3);
}

#[test]
fn amounts_parse_to_exact_cents_or_are_refused() {
    let cases: [(&[u8], Option<i128>); 12] = [
        (b"12", Some(1200)),
        (b"12.3", Some(1230)),
        (b"12.34", Some(1234)),
        (b"-0.05", Some(-5)),
        (b"+.5", Some(50)),
        (b"7.", Some(700)),
        (b"1.234", None),
        (b"", None),
        (b".", None),
        (b"1e3", None),
        (b"1,5", None),
        (b"--1", None),
    ];
    for (text, cents) in cases {
        assert_eq!(
            parse_cents(text),
            cents,
            "{}",
            String::from_utf8_lossy(text)
        );
    }
    let mut line = Vec::new();
    push_amount(&mut line, -1205);
    push_amount(&mut line, 0);
    push_amount(&mut line, 7);
    assert_eq!(line, b"-12.050.000.07");
}

#[test]
fn malformed_amounts_and_unknown_categories_can_be_errors() {
    let (dir, mut params, _) = fixture("0");
    let sales = dir.path().join("bad");
    std::fs::write(&sales, "Laptops\t1.999\n").unwrap();
    let error = run_in_memory(&Rollup, &params, std::slice::from_ref(&sales), 1).unwrap_err();
    assert!(
        !error.retryable && error.message.contains("byte 0"),
        "{error}"
    );

    std::fs::write(&sales, "Mystery\t1\n").unwrap();
    params.set(UNKNOWN_PARAM, "error");
    let error = run_in_memory(&Rollup, &params, &[sales], 1).unwrap_err();
    assert!(
        !error.retryable && error.message.contains("Mystery"),
        "{error}"
    );
}

#[test]
fn taxonomies_with_cycles_two_parents_or_too_many_entries_are_refused() {
    for (taxonomy, max_entries) in [
        ("a\tb\nb\tc\nc\ta\n", 100),
        ("a\ta\n", 100),
        ("a\tb\na\tc\n", 100),
        ("a\tb\nc\td\n", 1),
        ("a\tb\tc\n", 100),
    ] {
        let error = Taxonomy::parse(taxonomy.as_bytes(), max_entries).unwrap_err();
        assert!(
            error.message.contains(TAXONOMY_PARAM) && !error.retryable,
            "{taxonomy:?}"
        );
    }
    let taxonomy = Taxonomy::parse(TAXONOMY.as_bytes(), 100).unwrap();
    assert_eq!(
        taxonomy.ancestor_at(b"Smartphones", 1),
        Some(b"Phones".to_vec())
    );
    assert_eq!(
        taxonomy.ancestor_at(b"Smartphones", 9),
        Some(b"Smartphones".to_vec())
    );
    assert_eq!(
        taxonomy.ancestor_at(b"Electronics", 0),
        Some(b"Electronics".to_vec())
    );
    assert_eq!(taxonomy.ancestor_at(b"Nope", 0), None);
}

#[test]
fn missing_or_malformed_parameters_are_refused_by_name() {
    let (_dir, params, _) = fixture("0");
    for (name, value) in [
        (LEVEL_PARAM, "-1"),
        (UNKNOWN_PARAM, "drop"),
        (HEADER_PARAM, "1"),
    ] {
        let mut params = params.clone();
        params.set(name, value);
        let error = Rollup.validate(&params).unwrap_err();
        assert!(error.message.contains(name) && !error.retryable, "{error}");
    }
    for name in [TAXONOMY_PARAM, LEVEL_PARAM] {
        let mut params = params.clone();
        params.0.remove(name);
        assert!(Rollup.validate(&params).unwrap_err().message.contains(name));
    }
}
