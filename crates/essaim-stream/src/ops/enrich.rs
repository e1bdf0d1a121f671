//! Enrichment: joins each record with a row of a dimension table (airport → state).
//!
//! A dimension table is small, static reference data loaded once from CSV bytes (the
//! runtime reads the file; parsing is here, with the same dialect and errors as
//! sources). The enrich operator evaluates a key expression on each record, looks the
//! key up and copies the chosen columns of the row into the record. A record whose key is
//! null or absent from the table goes to the `miss` port unchanged: it is counted and
//! may be routed, never dropped silently.
//!
//! The table is shared read-only (`Arc`) between operators and is not checkpointed: it is
//! configuration, reloaded with the pipeline.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use crate::expr::Expr;
use crate::ops::{Emitted, Port, with_error};
use crate::record::{Record, Value};
use crate::schema::{Column, RecordError, parse_row};

/// A dimension table that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The key column is not one of the columns.
    #[error("key column `{0}` is not a column of the table")]
    UnknownKey(String),
    /// A row does not parse.
    #[error("bad row in dimension table")]
    BadRow(#[source] RecordError),
    /// A row has a null key.
    #[error("line {line}: the key column is empty")]
    NullKey {
        /// The 0-based line number in the file.
        line: u64,
    },
}

/// Static rows looked up by the string form of one key column.
#[derive(Debug, Clone)]
pub struct DimensionTable {
    columns: Vec<Column>,
    rows: HashMap<String, Vec<Value>>,
    duplicate_keys: u64,
}

impl DimensionTable {
    /// Parses a table from CSV bytes (lines separated by `\n`, an optional header line
    /// skipped). When a key appears twice the first row wins and the repeat is counted
    /// ([`duplicate_keys`](Self::duplicate_keys)). Empty lines are skipped.
    pub fn from_csv(
        columns: Vec<Column>,
        key: &str,
        header: bool,
        bytes: &[u8],
    ) -> Result<DimensionTable, TableError> {
        let key_index = columns
            .iter()
            .position(|column| column.name == key)
            .ok_or_else(|| TableError::UnknownKey(key.to_owned()))?;
        let mut rows = HashMap::new();
        let mut duplicate_keys = 0;
        for (line, bytes) in bytes.split(|&byte| byte == b'\n').enumerate() {
            let is_header = header && line == 0;
            let is_blank = bytes.iter().all(|byte| byte.is_ascii_whitespace());
            if is_header || is_blank {
                continue;
            }
            let line = line as u64;
            let values = parse_row(&columns, bytes, line).map_err(TableError::BadRow)?;
            let key = match &values[key_index] {
                Value::Null => return Err(TableError::NullKey { line }),
                value => value.to_key_string(),
            };
            match rows.entry(key) {
                Entry::Occupied(_) => duplicate_keys += 1,
                Entry::Vacant(slot) => {
                    slot.insert(values);
                }
            }
        }
        Ok(DimensionTable {
            columns,
            rows,
            duplicate_keys,
        })
    }

    /// Returns the columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Returns how many rows the table holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Returns whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Returns how many rows repeated an earlier key (and were ignored).
    pub fn duplicate_keys(&self) -> u64 {
        self.duplicate_keys
    }

    /// Returns the value of `column` (an index into [`columns`](Self::columns)) in the
    /// row of `key`.
    pub fn lookup(&self, key: &str, column: usize) -> Option<&Value> {
        self.rows.get(key)?.get(column)
    }

    /// Returns the index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column.name == name)
    }
}

/// Copies columns of the matching table row into each record.
///
/// Ports: `out`, `miss`, `error`.
#[derive(Debug, Clone)]
pub struct Enrich {
    table: Arc<DimensionTable>,
    key: Expr,
    /// `(field to set, column index)`, validated against the table.
    fields: Vec<(String, usize)>,
}

impl Enrich {
    /// The port of records whose key is not in the table.
    pub const MISS: Port = Port(1);
    /// The port of records whose key expression failed.
    pub const ERROR: Port = Port(2);

    /// Returns an enrich operator; `fields` maps each field to set to a column name.
    /// Fails with the first column the table does not have.
    pub fn new(
        table: Arc<DimensionTable>,
        key: Expr,
        fields: &[(String, String)],
    ) -> Result<Enrich, String> {
        let mut resolved = Vec::with_capacity(fields.len());
        for (field, column) in fields {
            let index = table.column_index(column).ok_or_else(|| column.clone())?;
            resolved.push((field.clone(), index));
        }
        Ok(Enrich {
            table,
            key,
            fields: resolved,
        })
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        ["out", "miss", "error"].map(String::from).to_vec()
    }

    /// Processes one record.
    pub fn on_record(&self, mut record: Record, out: &mut Vec<Emitted>) {
        let key = match self.key.eval(&record) {
            Ok(Value::Null) => {
                return out.push(Emitted {
                    port: Self::MISS,
                    record,
                });
            }
            Ok(value) => value.to_key_string(),
            Err(error) => {
                return out.push(Emitted {
                    port: Self::ERROR,
                    record: with_error(record, error),
                });
            }
        };
        let Some(row) = self.table.rows.get(&key) else {
            return out.push(Emitted {
                port: Self::MISS,
                record,
            });
        };
        for (field, column) in &self.fields {
            record.fields.insert(field.clone(), row[*column].clone());
        }
        out.push(Emitted::out(record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnType;

    fn airports() -> DimensionTable {
        let columns = vec![
            Column::new("iata", ColumnType::String),
            Column::new("name", ColumnType::String),
            Column::new("state", ColumnType::String),
        ];
        let csv =
            b"iata,name,state\nATL,\"Hartsfield, Atlanta\",GA\nORD,O'Hare,IL\n\nATL,again,XX\n";
        DimensionTable::from_csv(columns, "iata", true, csv).unwrap()
    }

    #[test]
    fn tables_load_with_quoting_and_keep_the_first_row_of_a_key() {
        let table = airports();
        assert_eq!(table.len(), 2);
        assert_eq!(table.duplicate_keys(), 1);
        assert_eq!(
            table.lookup("ATL", 1),
            Some(&Value::from("Hartsfield, Atlanta"))
        );
        assert_eq!(table.lookup("ATL", 2), Some(&Value::from("GA")));
    }

    #[test]
    fn bad_tables_are_refused_with_the_line() {
        let columns = vec![
            Column::new("iata", ColumnType::String),
            Column::new("n", ColumnType::Int),
        ];
        let error =
            DimensionTable::from_csv(columns.clone(), "iata", false, b"A,1\nB,x\n").unwrap_err();
        assert!(matches!(
            error,
            TableError::BadRow(RecordError::WrongType { line: 1, .. })
        ));
        let error = DimensionTable::from_csv(columns.clone(), "nope", false, b"").unwrap_err();
        assert_eq!(error, TableError::UnknownKey("nope".into()));
        let error = DimensionTable::from_csv(columns, "iata", false, b",1\n").unwrap_err();
        assert_eq!(error, TableError::NullKey { line: 0 });
    }

    #[test]
    fn enrich_copies_columns_and_routes_misses() {
        let fields = [("origin_state".to_owned(), "state".to_owned())];
        let enrich = Enrich::new(
            Arc::new(airports()),
            Expr::parse("origin").unwrap(),
            &fields,
        )
        .unwrap();
        let mut out = Vec::new();
        enrich.on_record(Record::new(1, 0).with("origin", "ORD"), &mut out);
        enrich.on_record(Record::new(2, 0).with("origin", "XYZ"), &mut out);
        enrich.on_record(Record::new(3, 0), &mut out);
        enrich.on_record(Record::new(4, 0).with("origin", 5).with("o", "x"), &mut out);
        assert_eq!(out[0].record.get("origin_state"), &Value::from("IL"));
        let ports: Vec<Port> = out.iter().map(|emitted| emitted.port).collect();
        assert_eq!(
            ports,
            vec![Port::OUT, Enrich::MISS, Enrich::MISS, Enrich::MISS]
        );
        let unknown = [("x".to_owned(), "elevation".to_owned())];
        assert_eq!(
            Enrich::new(
                Arc::new(airports()),
                Expr::parse("origin").unwrap(),
                &unknown
            )
            .unwrap_err(),
            "elevation"
        );
    }
}
