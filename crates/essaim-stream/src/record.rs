//! Records: the unit that flows through a pipeline.
//!
//! A record carries what every operator may need and nothing more: an id (the merger
//! de-duplicates by it and sinks upsert by it), an event time (windows, joins and
//! watermarks reason only about it, never about the clock), an optional key (set by the
//! source schema, a map or a sharder; keyed state is partitioned by it), and a small map
//! of typed fields. Fields live in a `BTreeMap` so that iteration, serialization and
//! therefore checkpoints and outputs are the same on every run.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies a record for de-duplication and idempotent sinks.
///
/// Sources take it from an integer id column, hash a string id column with FNV-1a
/// (64 bits: with a de-duplication window of a million ids the chance of one collision is
/// about 3·10⁻⁸), or use the record's position in its source when there is no id column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordId(pub u64);

/// A point in event time: milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventTime(pub i64);

impl EventTime {
    /// The earliest event time; the watermark before any record has been seen.
    pub const MIN: EventTime = EventTime(i64::MIN);
    /// The latest event time; the watermark at the end of a bounded input.
    pub const MAX: EventTime = EventTime(i64::MAX);

    /// Returns this time plus `millis`, saturating at the ends of the range.
    pub fn saturating_add(self, millis: i64) -> EventTime {
        EventTime(self.0.saturating_add(millis))
    }

    /// Returns this time minus `millis`, saturating at the ends of the range.
    pub fn saturating_sub(self, millis: i64) -> EventTime {
        EventTime(self.0.saturating_sub(millis))
    }
}

/// A field value. Integers and floats are distinct so that ids, counts and timestamps
/// stay exact.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum Value {
    /// Absent or empty.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer (timestamps are stored as integer milliseconds).
    Int(i64),
    /// A finite 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
}

impl Value {
    /// Returns the name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
        }
    }

    /// Returns true for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Returns the value as a float when it is numeric (integers are widened).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(int) => Some(*int as f64),
            Value::Float(float) => Some(*float),
            _ => None,
        }
    }

    /// Returns the string a key made of this value has: strings as they are, other
    /// values in their display form, null as the empty string.
    pub fn to_key_string(&self) -> String {
        match self {
            Value::Str(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => formatter.write_str("null"),
            Value::Bool(boolean) => write!(formatter, "{boolean}"),
            Value::Int(int) => write!(formatter, "{int}"),
            Value::Float(float) => write!(formatter, "{float}"),
            Value::Str(text) => formatter.write_str(text),
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Str(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Str(text)
    }
}

impl From<i64> for Value {
    fn from(int: i64) -> Self {
        Value::Int(int)
    }
}

impl From<f64> for Value {
    fn from(float: f64) -> Self {
        Value::Float(float)
    }
}

impl From<bool> for Value {
    fn from(boolean: bool) -> Self {
        Value::Bool(boolean)
    }
}

/// The fields of a record, in name order.
pub type Fields = BTreeMap<String, Value>;

/// One record of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The id used for de-duplication and idempotent writes.
    pub id: RecordId,
    /// When the event happened.
    pub time: EventTime,
    /// The key keyed operators group by, when one has been set.
    pub key: Option<String>,
    /// The typed fields.
    pub fields: Fields,
}

/// The value every absent field reads as.
static NULL: Value = Value::Null;

impl Record {
    /// Returns a record with no key and no fields.
    pub fn new(id: u64, time: i64) -> Record {
        Record {
            id: RecordId(id),
            time: EventTime(time),
            key: None,
            fields: Fields::new(),
        }
    }

    /// Returns the record with `name` set to `value` (a builder for tests and sources).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Record {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// Returns the record with its key set.
    pub fn with_key(mut self, key: &str) -> Record {
        self.key = Some(key.to_owned());
        self
    }

    /// Returns the value of a field; an absent field reads as null.
    pub fn get(&self, name: &str) -> &Value {
        self.fields.get(name).unwrap_or(&NULL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_read_as_null() {
        let record = Record::new(1, 0).with("a", 3);
        assert_eq!(record.get("a"), &Value::Int(3));
        assert_eq!(record.get("b"), &Value::Null);
    }

    #[test]
    fn key_strings_are_plain() {
        assert_eq!(Value::from("ATL").to_key_string(), "ATL");
        assert_eq!(Value::Int(-4).to_key_string(), "-4");
        assert_eq!(Value::Null.to_key_string(), "");
    }

    #[test]
    fn records_round_trip_through_serde_keeping_int_and_float_apart() {
        let record = Record::new(7, 1_000)
            .with_key("k")
            .with("int", 2)
            .with("float", 2.0)
            .with("text", "x")
            .with("flag", true)
            .with("none", Value::Null);
        let json = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.get("int"), &Value::Int(2));
        assert_eq!(back.get("float"), &Value::Float(2.0));
    }

    #[test]
    fn event_time_saturates() {
        assert_eq!(EventTime::MAX.saturating_add(5), EventTime::MAX);
        assert_eq!(EventTime::MIN.saturating_sub(5), EventTime::MIN);
    }
}
