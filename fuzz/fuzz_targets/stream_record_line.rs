//! One line of a stream source, CSV or JSON, becomes a record or an error naming the
//! line, never a panic; a record carries one field per column.
#![no_main]
use essaim_stream::schema::{Column, ColumnType, RecordFormat, Schema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, line)) = data.split_first() else { return };
    let columns = vec![
        Column::new("t", ColumnType::Timestamp),
        Column::new("n", ColumnType::Int),
        Column::new("x", ColumnType::Float),
        Column::new("s", ColumnType::String),
        Column::new("b", ColumnType::Bool),
    ];
    let format = if selector & 1 == 0 { RecordFormat::Csv } else { RecordFormat::Jsonl };
    let Ok(schema) = Schema::new(columns, Some("s"), "t", Some("n")) else { return };
    let schema = schema.with_format(format);
    match schema.parse_line(line, 7) {
        Ok(record) => assert_eq!(record.fields.len(), 5),
        Err(error) => assert!(error.to_string().starts_with("line 7")),
    }
});
