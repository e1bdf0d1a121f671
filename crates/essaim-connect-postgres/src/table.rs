//! Result tables: their description, the rows that go in them, and the SQL made from
//! both.
//!
//! Every identifier is checked and quoted here, and every value is bound as a
//! parameter, so no name or value given by a pipeline can change the meaning of a
//! statement. A result table has two fixed columns, `key` (the deterministic id of a
//! result, e.g. pipeline + record key + window start) and `revision`, then the typed
//! columns of its description. The upsert keeps a stored row unless the incoming
//! revision is strictly newer, so a redelivered or older revision never overwrites a
//! newer one.
use tokio_postgres::types::ToSql;

use crate::error::PgSinkError;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1` bytes); longer names are
/// silently truncated by the server, so they are refused here instead.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Returns `name` quoted as a PostgreSQL identifier, after checking it.
///
/// Quoting keeps the name's case and makes reserved words and punctuation harmless; an
/// embedded `"` is doubled, as the SQL standard says.
pub fn quote_identifier(name: &str) -> Result<String, PgSinkError> {
    let invalid = |reason| PgSinkError::InvalidIdentifier {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(invalid("longer than 63 bytes"));
    }
    if name.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// The type of a result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `boolean`.
    Bool,
    /// `bigint` (64-bit integers, millisecond timestamps, counts).
    BigInt,
    /// `double precision`.
    Double,
    /// `text`.
    Text,
    /// `bytea`.
    Bytes,
}

impl ColumnType {
    fn sql(self) -> &'static str {
        match self {
            Self::Bool => "boolean",
            Self::BigInt => "bigint",
            Self::Double => "double precision",
            Self::Text => "text",
            Self::Bytes => "bytea",
        }
    }
}

/// A typed column of a result table; every column is nullable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The column's type.
    pub column_type: ColumnType,
}

impl Column {
    /// Returns a column named `name` of type `column_type`.
    pub fn new(name: impl Into<String>, column_type: ColumnType) -> Column {
        Column {
            name: name.into(),
            column_type,
        }
    }
}

/// A value of a result row, bound as a statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL` (of the column's type).
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    BigInt(i64),
    /// A float.
    Double(f64),
    /// A string.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl SqlValue {
    fn fits(&self, column_type: ColumnType) -> bool {
        matches!(
            (self, column_type),
            (Self::Null, _)
                | (Self::Bool(_), ColumnType::Bool)
                | (Self::BigInt(_), ColumnType::BigInt)
                | (Self::Double(_), ColumnType::Double)
                | (Self::Text(_), ColumnType::Text)
                | (Self::Bytes(_), ColumnType::Bytes)
        )
    }

    /// Returns the value as a parameter of a column of `column_type` (a `NULL` must be
    /// typed, or the client refuses to bind it).
    fn as_param(&self, column_type: ColumnType) -> &(dyn ToSql + Sync) {
        const NULL_BOOL: Option<bool> = None;
        const NULL_BIGINT: Option<i64> = None;
        const NULL_DOUBLE: Option<f64> = None;
        const NULL_TEXT: Option<&str> = None;
        const NULL_BYTES: Option<&[u8]> = None;
        match (self, column_type) {
            (Self::Bool(value), _) => value,
            (Self::BigInt(value), _) => value,
            (Self::Double(value), _) => value,
            (Self::Text(value), _) => value,
            (Self::Bytes(value), _) => value,
            (Self::Null, ColumnType::Bool) => &NULL_BOOL,
            (Self::Null, ColumnType::BigInt) => &NULL_BIGINT,
            (Self::Null, ColumnType::Double) => &NULL_DOUBLE,
            (Self::Null, ColumnType::Text) => &NULL_TEXT,
            (Self::Null, ColumnType::Bytes) => &NULL_BYTES,
        }
    }
}

/// One result to upsert: its key, its revision and one value per column, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// The result's deterministic id (see [`result_key`]).
    pub key: String,
    /// The revision; a stored row is replaced only by a strictly greater one.
    pub revision: i64,
    /// One value per column of the table, in the table's order.
    pub values: Vec<SqlValue>,
}

/// Returns the key of a window result: pipeline, record key and window start, joined by
/// the ASCII unit separator (which neither pipeline names nor keys contain in practice;
/// the key is an id, not a parsed value).
pub fn result_key(pipeline: &str, record_key: &str, window_start_ms: i64) -> String {
    format!(
        "{}{record_key}\u{1f}{window_start_ms}",
        result_key_prefix(pipeline)
    )
}

/// Returns what every result key of `pipeline` starts with: its name and the unit
/// separator.
pub fn result_key_prefix(pipeline: &str) -> String {
    format!("{pipeline}\u{1f}")
}

/// A result table: its name and typed columns, checked and with its SQL ready.
#[derive(Debug, Clone)]
pub struct ResultTable {
    name: String,
    columns: Vec<Column>,
    create_sql: String,
    upsert_sql: String,
    demote_sql: String,
}

impl ResultTable {
    /// Checks a table description and prepares its statements.
    pub fn new(name: &str, columns: Vec<Column>) -> Result<ResultTable, PgSinkError> {
        let quoted_table = quote_identifier(name)?;
        let mut seen = std::collections::BTreeSet::from(["key", "revision"]);
        let mut column_sql = Vec::with_capacity(columns.len());
        let mut quoted_columns = Vec::with_capacity(columns.len());
        for column in &columns {
            if !seen.insert(column.name.as_str()) {
                return Err(PgSinkError::InvalidTable {
                    table: name.to_owned(),
                    reason: format!("column `{}` appears twice or is reserved", column.name),
                });
            }
            let quoted = quote_identifier(&column.name)?;
            column_sql.push(format!("{quoted} {}", column.column_type.sql()));
            quoted_columns.push(quoted);
        }
        let create_sql = format!(
            "CREATE TABLE IF NOT EXISTS {quoted_table} (\
             \"key\" text PRIMARY KEY, \"revision\" bigint NOT NULL{}{})",
            if column_sql.is_empty() { "" } else { ", " },
            column_sql.join(", ")
        );
        let insert_columns: Vec<&str> = ["\"key\"", "\"revision\""]
            .into_iter()
            .chain(quoted_columns.iter().map(String::as_str))
            .collect();
        let placeholders: Vec<String> = (1..=insert_columns.len())
            .map(|index| format!("${index}"))
            .collect();
        let updates: Vec<String> = insert_columns[1..]
            .iter()
            .map(|column| format!("{column} = EXCLUDED.{column}"))
            .collect();
        // The WHERE makes the upsert idempotent and monotonic: a redelivered revision
        // (equal) or an older one (smaller) leaves the stored row as it is.
        let upsert_sql = format!(
            "INSERT INTO {quoted_table} ({}) VALUES ({}) ON CONFLICT (\"key\") DO UPDATE SET {} \
             WHERE {quoted_table}.\"revision\" < EXCLUDED.\"revision\"",
            insert_columns.join(", "),
            placeholders.join(", "),
            updates.join(", ")
        );
        let demote_sql = format!(
            "UPDATE {quoted_table} SET \"revision\" = -1 \
             WHERE \"revision\" >= 0 AND left(\"key\", length($1)) = $1"
        );
        Ok(ResultTable {
            name: name.to_owned(),
            columns,
            create_sql,
            upsert_sql,
            demote_sql,
        })
    }

    /// Returns the table's name, unquoted.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the typed columns after `key` and `revision`.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Returns the statement that demotes a pipeline's rows to revision -1, so that any
    /// revision replaces them (parameter: the pipeline's result key prefix).
    pub(crate) fn demote_sql(&self) -> &str {
        &self.demote_sql
    }

    /// Returns the `CREATE TABLE IF NOT EXISTS` statement.
    pub fn create_sql(&self) -> &str {
        &self.create_sql
    }

    /// Returns the upsert statement (parameters: key, revision, then the columns).
    pub fn upsert_sql(&self) -> &str {
        &self.upsert_sql
    }

    /// Checks that `row` fits the table: one value per column, of the column's type.
    pub fn check_row(&self, row: &ResultRow) -> Result<(), PgSinkError> {
        let mismatch = |reason: String| PgSinkError::RowMismatch {
            table: self.name.clone(),
            key: row.key.clone(),
            reason,
        };
        if row.values.len() != self.columns.len() {
            return Err(mismatch(format!(
                "{} values for {} columns",
                row.values.len(),
                self.columns.len()
            )));
        }
        for (value, column) in row.values.iter().zip(&self.columns) {
            if !value.fits(column.column_type) {
                return Err(mismatch(format!(
                    "column `{}` is {:?}, value is {value:?}",
                    column.name, column.column_type
                )));
            }
        }
        Ok(())
    }

    /// Returns the parameters of the upsert of `row`, which [`Self::check_row`] accepted.
    pub(crate) fn upsert_params<'row>(
        &self,
        row: &'row ResultRow,
    ) -> Vec<&'row (dyn ToSql + Sync)> {
        debug_assert!(
            self.check_row(row).is_ok(),
            "rows are checked before binding"
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(row.values.len() + 2);
        params.push(&row.key);
        params.push(&row.revision);
        for (value, column) in row.values.iter().zip(&self.columns) {
            params.push(value.as_param(column.column_type));
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_embedded_quotes_doubled() {
        assert_eq!(quote_identifier("Counts").unwrap(), "\"Counts\"");
        assert_eq!(
            quote_identifier("x\"; DROP TABLE t; --").unwrap(),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert!(quote_identifier("").is_err());
        assert!(quote_identifier(&"a".repeat(64)).is_err());
        assert!(quote_identifier("a\0b").is_err());
    }

    #[test]
    fn upsert_only_replaces_older_revisions() {
        let table = ResultTable::new(
            "counts",
            vec![
                Column::new("count", ColumnType::BigInt),
                Column::new("mean", ColumnType::Double),
            ],
        )
        .unwrap();
        assert_eq!(
            table.upsert_sql(),
            "INSERT INTO \"counts\" (\"key\", \"revision\", \"count\", \"mean\") VALUES ($1, $2, $3, $4) \
             ON CONFLICT (\"key\") DO UPDATE SET \"revision\" = EXCLUDED.\"revision\", \
             \"count\" = EXCLUDED.\"count\", \"mean\" = EXCLUDED.\"mean\" \
             WHERE \"counts\".\"revision\" < EXCLUDED.\"revision\""
        );
        assert!(
            table
                .create_sql()
                .starts_with("CREATE TABLE IF NOT EXISTS \"counts\"")
        );
    }

    #[test]
    fn duplicate_or_reserved_columns_are_refused() {
        let duplicate = vec![
            Column::new("a", ColumnType::Text),
            Column::new("a", ColumnType::Text),
        ];
        assert!(ResultTable::new("t", duplicate).is_err());
        assert!(ResultTable::new("t", vec![Column::new("revision", ColumnType::Text)]).is_err());
    }

    #[test]
    fn rows_must_match_the_columns() {
        let table = ResultTable::new("t", vec![Column::new("n", ColumnType::BigInt)]).unwrap();
        let row = |values| ResultRow {
            key: "k".into(),
            revision: 0,
            values,
        };
        assert!(table.check_row(&row(vec![SqlValue::BigInt(1)])).is_ok());
        assert!(table.check_row(&row(vec![SqlValue::Null])).is_ok());
        assert!(
            table
                .check_row(&row(vec![SqlValue::Text("1".into())]))
                .is_err()
        );
        assert!(table.check_row(&row(vec![])).is_err());
    }
}
