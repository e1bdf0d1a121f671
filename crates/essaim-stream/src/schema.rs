//! Schemas: how a line of CSV, or of JSON, becomes a [`Record`].
//!
//! Parsing lives here, apart from any reading, so that a source (a file, a broker
//! subject) only hands over bytes and a position, and so that every way a line can be
//! wrong is an error value naming the line and the column — never a panic. Malformed
//! input is the normal case for a stream of real data: the runtime sends these errors to
//! a dead-letter output and counts them.
//!
//! The CSV dialect is RFC 4180 within one line: fields separated by commas, optionally
//! in double quotes, a doubled quote inside quotes standing for one quote. An empty
//! unquoted field is null; a quoted empty field is the empty string. Timestamps are
//! `YYYY-MM-DD HH:MM:SS[.fraction]` (a `T` may replace the space, a trailing `Z` is
//! accepted), always UTC, as in the flights data set (`2001-01-01 00:01:00.000000`).
//!
//! A source may instead carry JSON lines ([`RecordFormat::Jsonl`]): one object per line,
//! whose members are looked up by column name (see `json.rs`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::hash::fnv1a_64;
use crate::record::{EventTime, Fields, Record, RecordId, Value};

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Kept as text.
    String,
    /// A signed 64-bit integer.
    Int,
    /// A finite float.
    Float,
    /// `true` or `false` (any case).
    Bool,
    /// A UTC timestamp, stored as integer milliseconds since the epoch.
    Timestamp,
}

/// How a source's lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// One CSV row per line, its fields in column order (the default).
    #[default]
    Csv,
    /// One JSON object per line, its members named by the columns; members the schema
    /// does not name are ignored, and a missing member is null.
    Jsonl,
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The field name the column's value is stored under.
    pub name: String,
    /// How the column's text is parsed.
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

impl Column {
    /// Returns a column.
    pub fn new(name: &str, column_type: ColumnType) -> Column {
        Column {
            name: name.to_owned(),
            column_type,
        }
    }
}

/// A validated schema: the columns in order and which of them give the record's id,
/// event time and key. (Not deserializable: only [`Schema::new`] makes one, so its
/// column indices are always in range.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    columns: Vec<Column>,
    id_column: Option<usize>,
    time_column: usize,
    key_column: Option<usize>,
    format: RecordFormat,
}

/// A schema that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Two columns share a name.
    #[error("column `{0}` is declared twice")]
    DuplicateColumn(String),
    /// A role names a column that does not exist.
    #[error("the {role} column `{name}` is not a column of the schema")]
    UnknownColumn {
        /// `id`, `time` or `key`.
        role: &'static str,
        /// The missing name.
        name: String,
    },
    /// The column given a role has a type that cannot play it.
    #[error("the {role} column `{name}` has type {found:?}, expected one of {expected}")]
    WrongRoleType {
        /// `id` or `time`.
        role: &'static str,
        /// The column.
        name: String,
        /// Its declared type.
        found: ColumnType,
        /// What the role accepts.
        expected: &'static str,
    },
}

/// A line that does not fit its schema. `line` is the position the source gave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not UTF-8.
    #[error("line {line}: invalid UTF-8 after byte {valid_up_to}")]
    InvalidUtf8 {
        /// The line's position in its source.
        line: u64,
        /// How many leading bytes were valid.
        valid_up_to: usize,
    },
    /// A quoted field is not closed, or a closing quote is followed by text.
    #[error("line {line}: malformed quoting in field {field}")]
    BadQuoting {
        /// The line's position in its source.
        line: u64,
        /// The 1-based field number.
        field: usize,
    },
    /// Too many or too few fields.
    #[error("line {line}: expected {expected} fields, found {found}")]
    WrongFieldCount {
        /// The line's position in its source.
        line: u64,
        /// The schema's column count.
        expected: usize,
        /// The line's field count.
        found: usize,
    },
    /// A field does not parse as its column's type.
    #[error("line {line}: column `{column}` expects {expected:?}, found `{text}`")]
    WrongType {
        /// The line's position in its source.
        line: u64,
        /// The column name.
        column: String,
        /// The column type.
        expected: ColumnType,
        /// The field text, cut to 64 characters.
        text: String,
    },
    /// A JSON line that is not one well-formed JSON object.
    #[error("line {line}: not a JSON object: {message}")]
    BadJson {
        /// The line's position in its source.
        line: u64,
        /// What the JSON parser said, or which kind of value the line held.
        message: String,
    },
    /// The id or time column is empty.
    #[error("line {line}: the {role} column `{column}` is empty")]
    MissingRequired {
        /// The line's position in its source.
        line: u64,
        /// `id` or `time`.
        role: &'static str,
        /// The column name.
        column: String,
    },
}

impl Schema {
    /// Validates a schema. `id` may be absent (records are then identified by their
    /// position); `time` must name a timestamp or integer (milliseconds) column; `id` an
    /// integer or string column.
    pub fn new(
        columns: Vec<Column>,
        id: Option<&str>,
        time: &str,
        key: Option<&str>,
    ) -> Result<Schema, SchemaError> {
        for (index, column) in columns.iter().enumerate() {
            if columns[..index]
                .iter()
                .any(|earlier| earlier.name == column.name)
            {
                return Err(SchemaError::DuplicateColumn(column.name.clone()));
            }
        }
        let find = |role: &'static str, name: &str| {
            columns
                .iter()
                .position(|column| column.name == name)
                .ok_or_else(|| SchemaError::UnknownColumn {
                    role,
                    name: name.to_owned(),
                })
        };
        let time_column = find("time", time)?;
        let id_column = id.map(|name| find("id", name)).transpose()?;
        let key_column = key.map(|name| find("key", name)).transpose()?;
        let time_type = columns[time_column].column_type;
        if !matches!(time_type, ColumnType::Timestamp | ColumnType::Int) {
            return Err(SchemaError::WrongRoleType {
                role: "time",
                name: time.to_owned(),
                found: time_type,
                expected: "timestamp, int",
            });
        }
        if let Some(index) = id_column {
            let id_type = columns[index].column_type;
            if !matches!(id_type, ColumnType::Int | ColumnType::String) {
                return Err(SchemaError::WrongRoleType {
                    role: "id",
                    name: columns[index].name.clone(),
                    found: id_type,
                    expected: "int, string",
                });
            }
        }
        Ok(Schema {
            columns,
            id_column,
            time_column,
            key_column,
            format: RecordFormat::Csv,
        })
    }

    /// Returns the schema reading lines written in `format`.
    pub fn with_format(mut self, format: RecordFormat) -> Schema {
        self.format = format;
        self
    }

    /// Returns how lines are written.
    pub fn format(&self) -> RecordFormat {
        self.format
    }

    /// Returns the columns in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Parses one line (with or without its line ending) into a record. `line` is the
    /// line's position in its source: it names the line in errors and is the record's
    /// id when the schema has no id column.
    pub fn parse_line(&self, bytes: &[u8], line: u64) -> Result<Record, RecordError> {
        let values = match self.format {
            RecordFormat::Csv => parse_row(&self.columns, bytes, line)?,
            RecordFormat::Jsonl => json::parse_object(&self.columns, bytes, line)?,
        };
        let mut fields = Fields::new();
        let required = |role: &'static str, index: usize| RecordError::MissingRequired {
            line,
            role,
            column: self.columns[index].name.clone(),
        };
        let time = match &values[self.time_column] {
            Value::Int(millis) => EventTime(*millis),
            _ => return Err(required("time", self.time_column)),
        };
        let id = match self.id_column.map(|index| (index, &values[index])) {
            None => RecordId(line),
            // Integer ids keep their bits, so negative ids stay distinct.
            Some((_, Value::Int(int))) => RecordId(u64::from_ne_bytes(int.to_ne_bytes())),
            Some((_, Value::Str(text))) => RecordId(fnv1a_64(text.as_bytes())),
            Some((index, _)) => return Err(required("id", index)),
        };
        let key = self.key_column.map(|index| values[index].to_key_string());
        for (column, value) in self.columns.iter().zip(values) {
            fields.insert(column.name.clone(), value);
        }
        Ok(Record {
            id,
            time,
            key,
            fields,
        })
    }
}

/// Parses one line into one value per column (the part of parsing that dimension tables
/// share with sources).
pub(crate) fn parse_row(
    columns: &[Column],
    bytes: &[u8],
    line: u64,
) -> Result<Vec<Value>, RecordError> {
    let text = std::str::from_utf8(bytes).map_err(|error| RecordError::InvalidUtf8 {
        line,
        valid_up_to: error.valid_up_to(),
    })?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let cells = split_csv_line(text).map_err(|field| RecordError::BadQuoting { line, field })?;
    if cells.len() != columns.len() {
        return Err(RecordError::WrongFieldCount {
            line,
            expected: columns.len(),
            found: cells.len(),
        });
    }
    let mut values = Vec::with_capacity(cells.len());
    for (cell, column) in cells.into_iter().zip(columns) {
        let value =
            parse_cell(&cell, column.column_type).ok_or_else(|| RecordError::WrongType {
                line,
                column: column.name.clone(),
                expected: column.column_type,
                text: cell.text().chars().take(64).collect(),
            })?;
        values.push(value);
    }
    Ok(values)
}

/// One field of a CSV line, before typing.
#[derive(Debug, PartialEq)]
pub(crate) enum Cell<'a> {
    /// Unquoted text (empty means null).
    Bare(&'a str),
    /// Quoted text, unescaped.
    Quoted(Cow<'a, str>),
}

impl Cell<'_> {
    fn text(&self) -> &str {
        match self {
            Cell::Bare(text) => text,
            Cell::Quoted(text) => text,
        }
    }
}

/// Splits a line into cells; on malformed quoting returns the 1-based field number.
fn split_csv_line(line: &str) -> Result<Vec<Cell<'_>>, usize> {
    let mut cells = Vec::new();
    let mut rest = line;
    loop {
        let field_number = cells.len() + 1;
        if let Some(after_quote) = rest.strip_prefix('"') {
            let (cell, remainder) = split_quoted(after_quote).ok_or(field_number)?;
            cells.push(Cell::Quoted(cell));
            match remainder.strip_prefix(',') {
                Some(next) => rest = next,
                None if remainder.is_empty() => return Ok(cells),
                // Text after a closing quote: `"a"b` is not a field.
                None => return Err(field_number),
            }
        } else {
            match rest.split_once(',') {
                Some((cell, next)) => {
                    cells.push(Cell::Bare(cell));
                    rest = next;
                }
                None => {
                    cells.push(Cell::Bare(rest));
                    return Ok(cells);
                }
            }
        }
    }
}

/// Reads a quoted field's content (after its opening quote); returns the unescaped text
/// and what follows the closing quote, or `None` when the quote is never closed.
fn split_quoted(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut unescaped: Option<String> = None;
    let mut start = 0;
    loop {
        let quote = start + text[start..].find('"')?;
        let escaped_quote = text[quote + 1..].starts_with('"');
        if !escaped_quote {
            let cell = match unescaped {
                Some(mut owned) => {
                    owned.push_str(&text[start..quote]);
                    Cow::Owned(owned)
                }
                None => Cow::Borrowed(&text[..quote]),
            };
            return Some((cell, &text[quote + 1..]));
        }
        let owned = unescaped.get_or_insert_with(String::new);
        owned.push_str(&text[start..=quote]);
        start = quote + 2;
    }
}

/// Types one cell; `None` when its text does not parse as `column_type`.
pub(crate) fn parse_cell(cell: &Cell<'_>, column_type: ColumnType) -> Option<Value> {
    let text = match cell {
        Cell::Bare("") => return Some(Value::Null),
        Cell::Quoted(text) if column_type == ColumnType::String => {
            return Some(Value::Str(text.to_string()));
        }
        other => other.text().trim(),
    };
    match column_type {
        ColumnType::String => Some(Value::Str(text.to_owned())),
        ColumnType::Int => text.parse().ok().map(Value::Int),
        ColumnType::Float => text
            .parse::<f64>()
            .ok()
            .filter(|float| float.is_finite())
            .map(Value::Float),
        ColumnType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ColumnType::Timestamp => parse_timestamp(text).map(Value::Int),
    }
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z]` as UTC milliseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let bytes = text.as_bytes();
    if bytes.len() < 19 || !matches!(bytes[10], b' ' | b'T') {
        return None;
    }
    let separators_in_place =
        bytes[4] == b'-' && bytes[7] == b'-' && bytes[13] == b':' && bytes[16] == b':';
    if !separators_in_place {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let millis = match &text[19..] {
        "" => 0,
        fraction => {
            let digits = fraction.strip_prefix('.')?;
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            // Milliseconds are the first three digits; finer digits are truncated.
            let padded = format!("{digits:0<3}");
            padded[..3].parse::<i64>().ok()?
        }
    };
    let date_valid = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
    if !date_valid || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let seconds =
        days * 86_400 + i64::from(hour) * 3_600 + i64::from(minute) * 60 + i64::from(second);
    Some(seconds * 1_000 + millis)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    // Months counted from March, so that February's leap day ends the year.
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

mod json;
#[cfg(test)]
mod tests;
