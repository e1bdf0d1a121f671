use super::*;

fn flights_schema() -> Schema {
    Schema::new(
        vec![
            Column::new("date", ColumnType::Timestamp),
            Column::new("delay", ColumnType::Int),
            Column::new("distance", ColumnType::Int),
            Column::new("origin", ColumnType::String),
            Column::new("destination", ColumnType::String),
        ],
        None,
        "date",
        Some("origin"),
    )
    .unwrap()
}

#[test]
fn a_flights_line_parses_into_a_record() {
    let record = flights_schema()
        .parse_line(b"2001-01-01 00:01:00.000000,33,2176,\"LAS\",\"PHL\"\n", 2)
        .unwrap();
    assert_eq!(record.id, RecordId(2));
    assert_eq!(record.time, EventTime(978_307_260_000));
    assert_eq!(record.key.as_deref(), Some("LAS"));
    assert_eq!(record.get("delay"), &Value::Int(33));
    assert_eq!(record.get("destination"), &Value::from("PHL"));
    assert_eq!(record.get("date"), &Value::Int(978_307_260_000));
}

#[test]
fn timestamps_match_known_epochs() {
    assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
    assert_eq!(
        parse_timestamp("2000-03-01T00:00:00Z"),
        Some(951_868_800_000)
    );
    assert_eq!(parse_timestamp("1969-12-31 23:59:59.5"), Some(-500));
    assert_eq!(
        parse_timestamp("2024-02-29 12:00:00.123456"),
        Some(1_709_208_000_123)
    );
    for bad in [
        "2001-02-29 00:00:00",
        "2001-13-01 00:00:00",
        "2001-01-01 24:00:00",
        "2001-01-01",
        "2001-01-01 00:00:00.",
        "2001-01-01 00:00:00.x",
        "+001-01-01 00:00:00",
        "２001-01-01 00:00:00",
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
}

#[test]
fn quoting_follows_rfc_4180_within_a_line() {
    let cells = split_csv_line(r#"a,"b,c","d""e","",,"#).unwrap();
    assert_eq!(
        cells,
        vec![
            Cell::Bare("a"),
            Cell::Quoted("b,c".into()),
            Cell::Quoted("d\"e".into()),
            Cell::Quoted("".into()),
            Cell::Bare(""),
            Cell::Bare(""),
        ]
    );
    assert_eq!(split_csv_line(r#"a,"b"#), Err(2));
    assert_eq!(split_csv_line(r#""a"b,c"#), Err(1));
}

#[test]
fn empty_fields_are_null_and_quoted_empty_strings_are_not() {
    let schema = Schema::new(
        vec![
            Column::new("t", ColumnType::Int),
            Column::new("a", ColumnType::String),
            Column::new("b", ColumnType::String),
            Column::new("c", ColumnType::Float),
        ],
        None,
        "t",
        None,
    )
    .unwrap();
    let record = schema.parse_line(b"5,,\"\",", 0).unwrap();
    assert_eq!(record.get("a"), &Value::Null);
    assert_eq!(record.get("b"), &Value::from(""));
    assert_eq!(record.get("c"), &Value::Null);
}

#[test]
fn malformed_lines_are_errors_that_name_line_and_column() {
    let schema = flights_schema();
    let cases: Vec<(&[u8], RecordError)> = vec![
        (
            b"\xff,1,2,a,b",
            RecordError::InvalidUtf8 {
                line: 9,
                valid_up_to: 0,
            },
        ),
        (
            b"2001-01-01 00:01:00,1,2,a",
            RecordError::WrongFieldCount {
                line: 9,
                expected: 5,
                found: 4,
            },
        ),
        (
            b"2001-01-01 00:01:00,late,2,a,b",
            RecordError::WrongType {
                line: 9,
                column: "delay".into(),
                expected: ColumnType::Int,
                text: "late".into(),
            },
        ),
        (
            b",1,2,a,b",
            RecordError::MissingRequired {
                line: 9,
                role: "time",
                column: "date".into(),
            },
        ),
        (
            b"2001-01-01 00:01:00,1,2,\"a,b",
            RecordError::BadQuoting { line: 9, field: 4 },
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(schema.parse_line(line, 9), Err(expected));
    }
}

#[test]
fn string_and_integer_id_columns_give_ids() {
    let columns = vec![
        Column::new("id", ColumnType::String),
        Column::new("t", ColumnType::Int),
    ];
    let schema = Schema::new(columns, Some("id"), "t", None).unwrap();
    assert_eq!(
        schema.parse_line(b"abc,1", 0).unwrap().id,
        RecordId(fnv1a_64(b"abc"))
    );
    let columns = vec![
        Column::new("id", ColumnType::Int),
        Column::new("t", ColumnType::Int),
    ];
    let schema = Schema::new(columns, Some("id"), "t", None).unwrap();
    assert_eq!(schema.parse_line(b"42,1", 0).unwrap().id, RecordId(42));
    assert!(matches!(
        schema.parse_line(b",1", 0),
        Err(RecordError::MissingRequired { role: "id", .. })
    ));
}

#[test]
fn invalid_schemas_are_refused() {
    let columns = || {
        vec![
            Column::new("a", ColumnType::String),
            Column::new("t", ColumnType::Int),
        ]
    };
    assert!(matches!(
        Schema::new(columns(), None, "a", None),
        Err(SchemaError::WrongRoleType { role: "time", .. })
    ));
    assert!(matches!(
        Schema::new(columns(), Some("x"), "t", None),
        Err(SchemaError::UnknownColumn { role: "id", .. })
    ));
    let twice = vec![
        Column::new("t", ColumnType::Int),
        Column::new("t", ColumnType::Int),
    ];
    assert!(matches!(
        Schema::new(twice, None, "t", None),
        Err(SchemaError::DuplicateColumn(_))
    ));
}

#[test]
fn random_bytes_never_panic_the_parser() {
    let schema = flights_schema();
    let mut rng = essaim_core::rng::SeededRng::new(7);
    let alphabet = b"0123456789-:. ,\"abc\xff\xc3\r\nT";
    for _ in 0..20_000 {
        let length = rng.below(40) as usize;
        let line: Vec<u8> = (0..length)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let _ = schema.parse_line(&line, 0);
        let _ = std::str::from_utf8(&line).map(parse_timestamp);
    }
}

fn flights_jsonl_schema() -> Schema {
    flights_schema().with_format(RecordFormat::Jsonl)
}

#[test]
fn a_json_line_parses_into_the_same_record_as_its_csv_line() {
    let csv = flights_schema()
        .parse_line(b"2001-01-01 00:01:00.000000,33,2176,\"LAS\",\"PHL\"\n", 2)
        .unwrap();
    let json = flights_jsonl_schema()
        .parse_line(
            br#"{"destination":"PHL","origin":"LAS","delay":33,"distance":"2176","date":"2001-01-01 00:01:00.000000","extra":[1,2]}"#,
            2,
        )
        .unwrap();
    assert_eq!(json, csv);
}

#[test]
fn json_members_missing_or_null_are_null_and_numbers_fill_their_columns() {
    let schema = Schema::new(
        vec![
            Column::new("t", ColumnType::Timestamp),
            Column::new("ratio", ColumnType::Float),
            Column::new("name", ColumnType::String),
            Column::new("ok", ColumnType::Bool),
        ],
        None,
        "t",
        None,
    )
    .unwrap()
    .with_format(RecordFormat::Jsonl);
    let record = schema
        .parse_line(br#"{"t": 1000, "ratio": 2, "name": 7, "ok": null}"#, 0)
        .unwrap();
    assert_eq!(record.time, EventTime(1000));
    assert_eq!(record.get("ratio"), &Value::Float(2.0));
    assert_eq!(record.get("name"), &Value::from("7"));
    assert_eq!(record.get("ok"), &Value::Null);
    let record = schema
        .parse_line(br#"{"t": 5.0e3, "ok": true}"#, 1)
        .unwrap();
    assert_eq!(record.time, EventTime(5000));
    assert_eq!(record.get("ok"), &Value::Bool(true));
    assert_eq!(record.get("name"), &Value::Null);
}

#[test]
fn bad_json_lines_are_errors_naming_the_line() {
    let schema = flights_jsonl_schema();
    let error = |bytes: &[u8]| schema.parse_line(bytes, 9).unwrap_err();
    assert!(matches!(
        error(b"{\"date\":"),
        RecordError::BadJson { line: 9, .. }
    ));
    assert!(
        matches!(error(b"[1,2]"), RecordError::BadJson { line: 9, ref message } if message.contains("array"))
    );
    assert!(matches!(error(b""), RecordError::BadJson { .. }));
    assert!(matches!(
        error(b"{\"date\":\"2001-01-01 00:01:00\",\"delay\":1.5}"),
        RecordError::WrongType { line: 9, ref column, .. } if column == "delay"
    ));
    assert!(matches!(
        error(b"{\"date\":\"2001-01-01 00:01:00\",\"origin\":{\"a\":1}}"),
        RecordError::WrongType { ref column, .. } if column == "origin"
    ));
    assert!(matches!(
        error(b"{\"delay\":1}"),
        RecordError::MissingRequired { role: "time", .. }
    ));
    assert!(matches!(
        error(b"{\"date\":\"\xff\"}"),
        RecordError::InvalidUtf8 { line: 9, .. }
    ));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        error(deep.as_bytes()),
        RecordError::BadJson { .. }
    ));
}
