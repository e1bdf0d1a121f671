//! JSON lines: one object per line, typed by the same columns as a CSV row.
//!
//! A member is found by its column's name; members the schema does not name are
//! ignored (producers add fields over time), and a missing member or `null` is null,
//! like an empty CSV field. Typing is the CSV path's wherever the member is a string
//! (`"2001-01-01 00:01:00"` for a timestamp, `"42"` for an int, as producers that quote
//! large integers write them), so both formats agree on what a value means; a JSON
//! number fills a float or string column, an int column or a timestamp (milliseconds
//! since the epoch) when it has no fraction (`42`, `42.0` and `4.2e1` alike).

use serde_json::{Map, Value as Json};

use super::{Cell, Column, ColumnType, RecordError, parse_cell};
use crate::record::Value;

/// Parses one line into one value per column.
pub(crate) fn parse_object(
    columns: &[Column],
    bytes: &[u8],
    line: u64,
) -> Result<Vec<Value>, RecordError> {
    let text = std::str::from_utf8(bytes).map_err(|error| RecordError::InvalidUtf8 {
        line,
        valid_up_to: error.valid_up_to(),
    })?;
    let object: Map<String, Json> = match serde_json::from_str(text) {
        Ok(Json::Object(object)) => object,
        Ok(other) => {
            return Err(RecordError::BadJson {
                line,
                message: format!("the line holds a JSON {}", kind(&other)),
            });
        }
        Err(error) => {
            return Err(RecordError::BadJson {
                line,
                message: error.to_string(),
            });
        }
    };
    columns
        .iter()
        .map(|column| {
            let member = object.get(&column.name).unwrap_or(&Json::Null);
            typed(member, column.column_type).ok_or_else(|| RecordError::WrongType {
                line,
                column: column.name.clone(),
                expected: column.column_type,
                text: member.to_string().chars().take(64).collect(),
            })
        })
        .collect()
}

/// Types one member; `None` when it cannot be read as `column_type`.
fn typed(member: &Json, column_type: ColumnType) -> Option<Value> {
    match member {
        Json::Null => Some(Value::Null),
        Json::String(text) => parse_cell(&Cell::Quoted(text.into()), column_type),
        Json::Bool(boolean) => match column_type {
            ColumnType::Bool => Some(Value::Bool(*boolean)),
            ColumnType::String => Some(Value::Str(boolean.to_string())),
            _ => None,
        },
        Json::Number(number) => match column_type {
            ColumnType::Int | ColumnType::Timestamp => number
                .as_i64()
                .or_else(|| integral(number.as_f64()?))
                .map(Value::Int),
            ColumnType::Float => number
                .as_f64()
                .filter(|float| float.is_finite())
                .map(Value::Float),
            ColumnType::String => Some(Value::Str(number.to_string())),
            ColumnType::Bool => None,
        },
        Json::Array(_) | Json::Object(_) => None,
    }
}

/// A float with no fraction within the range of `i64` (`42.0`, `1e3`), as an integer.
fn integral(float: f64) -> Option<i64> {
    const LIMIT: f64 = 9.223_372_036_854_775e18;
    (float.fract() == 0.0 && float.abs() < LIMIT).then_some(float as i64)
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}
