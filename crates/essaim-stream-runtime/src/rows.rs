//! Records leaving a pipeline, as rows of a PostgreSQL table or JSON messages.
//!
//! Every result has a deterministic key, the same when a replay produces it again:
//! a window result is keyed by pipeline, record key and window start (its revisions
//! share the key, and the upsert keeps the greatest); any other record by its id.
use essaim_connect_postgres::{Column, ColumnType, ResultRow, SqlValue, result_key};
use essaim_stream::record::{Record, Value};

/// The deterministic key of a result.
pub fn key_of(pipeline: &str, record: &Record) -> String {
    match record.get("window_start") {
        Value::Int(start) => result_key(pipeline, record.key.as_deref().unwrap_or(""), *start),
        _ => format!("{pipeline}\u{1f}{:016x}", record.id.0),
    }
}

/// The revision of a result (0 unless it is a window update).
pub fn revision_of(record: &Record) -> i64 {
    match record.get("revision") {
        Value::Int(revision) => *revision,
        _ => 0,
    }
}

/// The record's fields as a JSON object (with its key and event time).
pub fn to_json(record: &Record) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    if let Some(key) = &record.key {
        object.insert("_key".to_owned(), key.clone().into());
    }
    object.insert("_time".to_owned(), record.time.0.into());
    for (name, value) in &record.fields {
        object.insert(name.clone(), value_json(value));
    }
    serde_json::Value::Object(object)
}

fn value_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(boolean) => (*boolean).into(),
        Value::Int(int) => (*int).into(),
        Value::Float(float) => serde_json::Number::from_f64(*float)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Str(text) => serde_json::Value::String(text.clone()),
    }
}

/// A record that does not fit its table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` is {found}, column is {expected}")]
pub struct RowError {
    /// The field.
    pub field: String,
    /// Its type.
    pub found: &'static str,
    /// The column's.
    pub expected: &'static str,
}

/// Turns a record into a row of a table with `columns` (see
/// [`crate::bindings::SinkBinding::Postgres`]).
pub fn to_row(
    pipeline: &str,
    record: &Record,
    columns: &[Column],
    key_column: Option<&str>,
    default_columns: bool,
) -> Result<ResultRow, RowError> {
    let values = if default_columns {
        vec![
            record.key.clone().map_or(SqlValue::Null, SqlValue::Text),
            SqlValue::BigInt(record.time.0),
            SqlValue::Text(to_json(record).to_string()),
        ]
    } else {
        columns
            .iter()
            .map(|column| {
                if key_column == Some(column.name.as_str()) {
                    return Ok(record.key.clone().map_or(SqlValue::Null, SqlValue::Text));
                }
                convert(&column.name, record.get(&column.name), column.column_type)
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(ResultRow {
        key: key_of(pipeline, record),
        revision: revision_of(record),
        values,
    })
}

fn convert(field: &str, value: &Value, column_type: ColumnType) -> Result<SqlValue, RowError> {
    let mismatch = |expected| RowError {
        field: field.to_owned(),
        found: value.type_name(),
        expected,
    };
    Ok(match (column_type, value) {
        (_, Value::Null) => SqlValue::Null,
        (ColumnType::BigInt, Value::Int(int)) => SqlValue::BigInt(*int),
        (ColumnType::Double, Value::Float(float)) => SqlValue::Double(*float),
        #[allow(clippy::cast_precision_loss)]
        (ColumnType::Double, Value::Int(int)) => SqlValue::Double(*int as f64),
        (ColumnType::Bool, Value::Bool(boolean)) => SqlValue::Bool(*boolean),
        (ColumnType::Text, Value::Str(text)) => SqlValue::Text(text.to_string()),
        (ColumnType::Text, other) => SqlValue::Text(other.to_string()),
        (ColumnType::BigInt, _) => return Err(mismatch("bigint")),
        (ColumnType::Double, _) => return Err(mismatch("double")),
        (ColumnType::Bool, _) => return Err(mismatch("boolean")),
        (ColumnType::Bytes, _) => return Err(mismatch("bytea")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_results_share_a_key_across_revisions() {
        let first = Record::new(1, 0)
            .with_key("CA")
            .with("window_start", 3_600_000)
            .with("revision", 0)
            .with("flights", 3);
        let update = Record::new(1, 0)
            .with_key("CA")
            .with("window_start", 3_600_000)
            .with("revision", 1)
            .with("flights", 4);
        assert_eq!(key_of("p", &first), key_of("p", &update));
        assert_eq!(revision_of(&update), 1);
        let columns = vec![
            Column::new("state", ColumnType::Text),
            Column::new("flights", ColumnType::BigInt),
            Column::new("mean", ColumnType::Double),
        ];
        let row = to_row("p", &update, &columns, Some("state"), false).expect("fits");
        assert_eq!(
            row.values,
            [
                SqlValue::Text("CA".into()),
                SqlValue::BigInt(4),
                SqlValue::Null
            ]
        );
        let wrong = Record::new(2, 0).with("flights", "many");
        assert!(to_row("p", &wrong, &columns, None, false).is_err());
    }
}
