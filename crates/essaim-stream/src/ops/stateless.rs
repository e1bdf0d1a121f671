//! Stateless operators: pure functions of one record.
//!
//! They keep nothing between records, so the runtime may run any number of copies of
//! them, restart them anywhere and replay their input without a checkpoint. Each maps
//! an input record to zero or more `(port, record)` outputs; an expression that fails on
//! a record sends that record to the `error` port with the reason in
//! [`ERROR_FIELD`](super::ERROR_FIELD).

use std::collections::BTreeMap;

use crate::expr::Expr;
use crate::hash::derive_id;
use crate::ops::{Emitted, Port, with_error};
use crate::record::{Record, RecordId, Value};

/// Keeps the records whose predicate is exactly `true`.
///
/// Ports: `out`, `error`.
#[derive(Debug, Clone)]
pub struct Filter {
    predicate: Expr,
}

impl Filter {
    /// The error port.
    pub const ERROR: Port = Port(1);

    /// Returns a filter.
    pub fn new(predicate: Expr) -> Filter {
        Filter { predicate }
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        vec!["out".into(), "error".into()]
    }

    /// Processes one record.
    pub fn on_record(&self, record: Record, out: &mut Vec<Emitted>) {
        match self.predicate.test(&record) {
            Ok(true) => out.push(Emitted::out(record)),
            Ok(false) => {}
            Err(error) => out.push(Emitted {
                port: Self::ERROR,
                record: with_error(record, error),
            }),
        }
    }
}

/// How a map changes a record's fields and key.
#[derive(Debug, Clone, Default)]
pub struct MapConfig {
    /// Fields to set, each to an expression evaluated on the *input* record (so the
    /// order of assignments never matters).
    pub set: BTreeMap<String, Expr>,
    /// Fields to rename, old name → new name, applied after `set`.
    pub rename: BTreeMap<String, String>,
    /// Fields to remove, applied last.
    pub drop: Vec<String>,
    /// A new key, evaluated on the input record (null clears the key).
    pub key: Option<Expr>,
}

/// Sets, renames and drops fields, and may set the key.
///
/// Ports: `out`, `error`.
#[derive(Debug, Clone)]
pub struct Map {
    config: MapConfig,
}

impl Map {
    /// The error port.
    pub const ERROR: Port = Port(1);

    /// Returns a map.
    pub fn new(config: MapConfig) -> Map {
        Map { config }
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        vec!["out".into(), "error".into()]
    }

    /// Processes one record.
    pub fn on_record(&self, record: Record, out: &mut Vec<Emitted>) {
        match self.apply(&record) {
            Ok(mapped) => out.push(Emitted::out(mapped)),
            Err(error) => out.push(Emitted {
                port: Self::ERROR,
                record: with_error(record, error),
            }),
        }
    }

    fn apply(&self, input: &Record) -> Result<Record, crate::expr::EvalError> {
        let mut output = input.clone();
        for (name, expr) in &self.config.set {
            output.fields.insert(name.clone(), expr.eval(input)?);
        }
        if let Some(key) = &self.config.key {
            output.key = match key.eval(input)? {
                Value::Null => None,
                value => Some(value.to_key_string()),
            };
        }
        for (old_name, new_name) in &self.config.rename {
            if let Some(value) = output.fields.remove(old_name) {
                output.fields.insert(new_name.clone(), value);
            }
        }
        for name in &self.config.drop {
            output.fields.remove(name);
        }
        Ok(output)
    }
}

/// Splits a string field on a separator into one record per piece.
///
/// Each piece's record is the input with the field replaced by the piece, and a new id
/// derived from the input's id and the piece's index (so a replayed input gives the same
/// ids, and a downstream merger can de-duplicate them). A null field is the empty list:
/// no output. Ports: `out`, `error`.
#[derive(Debug, Clone)]
pub struct FlatMap {
    field: String,
    separator: String,
}

impl FlatMap {
    /// The error port.
    pub const ERROR: Port = Port(1);

    /// Returns a flat-map of `field` on `separator` (not empty: validation refuses it).
    pub fn new(field: String, separator: String) -> FlatMap {
        FlatMap { field, separator }
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        vec!["out".into(), "error".into()]
    }

    /// Processes one record.
    pub fn on_record(&self, record: Record, out: &mut Vec<Emitted>) {
        let text = match record.get(&self.field) {
            Value::Null => return,
            Value::Str(text) => text.clone(),
            other => {
                let error = format!(
                    "flat_map field `{}` is {}, not a string",
                    self.field,
                    other.type_name()
                );
                out.push(Emitted {
                    port: Self::ERROR,
                    record: with_error(record, error),
                });
                return;
            }
        };
        for (index, piece) in text.split(self.separator.as_str()).enumerate() {
            let mut piece_record = record.clone();
            piece_record.id = RecordId(derive_id(record.id.0, b"flat_map", index as u64));
            piece_record
                .fields
                .insert(self.field.clone(), Value::Str(piece.to_owned()));
            out.push(Emitted::out(piece_record));
        }
    }
}

/// Sends a copy of every record to each of its outputs (seed 000's *copier*: two
/// treatments of the same data side by side).
///
/// Ports: one per output, in the order given.
#[derive(Debug, Clone)]
pub struct Copier {
    outputs: usize,
}

impl Copier {
    /// Returns a copier with `outputs` ports.
    pub fn new(outputs: usize) -> Copier {
        Copier { outputs }
    }

    /// Processes one record.
    pub fn on_record(&self, record: Record, out: &mut Vec<Emitted>) {
        for port in 1..self.outputs {
            out.push(Emitted {
                port: Port(port),
                record: record.clone(),
            });
        }
        if self.outputs > 0 {
            out.push(Emitted::out(record));
        }
    }
}

/// Routes each record to the first branch whose predicate is `true`, else to the
/// default branch (seed 000's *splitter*: `if condition(data) then this queue else that
/// one`).
///
/// Ports: the branches in order, then the default branch, then `error`.
#[derive(Debug, Clone)]
pub struct Splitter {
    predicates: Vec<Expr>,
}

impl Splitter {
    /// Returns a splitter with one predicate per branch.
    pub fn new(predicates: Vec<Expr>) -> Splitter {
        Splitter { predicates }
    }

    /// Returns the default branch's port.
    pub fn default_port(&self) -> Port {
        Port(self.predicates.len())
    }

    /// Returns the error port.
    pub fn error_port(&self) -> Port {
        Port(self.predicates.len() + 1)
    }

    /// Processes one record.
    pub fn on_record(&self, record: Record, out: &mut Vec<Emitted>) {
        for (index, predicate) in self.predicates.iter().enumerate() {
            match predicate.test(&record) {
                Ok(true) => {
                    return out.push(Emitted {
                        port: Port(index),
                        record,
                    });
                }
                Ok(false) => {}
                Err(error) => {
                    let record = with_error(record, error);
                    return out.push(Emitted {
                        port: self.error_port(),
                        record,
                    });
                }
            }
        }
        out.push(Emitted {
            port: self.default_port(),
            record,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(source: &str) -> Expr {
        Expr::parse(source).unwrap()
    }

    fn run(process: impl Fn(Record, &mut Vec<Emitted>), record: Record) -> Vec<Emitted> {
        let mut out = Vec::new();
        process(record, &mut out);
        out
    }

    #[test]
    fn filter_keeps_true_drops_false_and_null_and_routes_errors() {
        let filter = Filter::new(expr("delay > 10"));
        let on = |record| run(|record, out| filter.on_record(record, out), record);
        assert_eq!(on(Record::new(1, 0).with("delay", 11)).len(), 1);
        assert!(on(Record::new(2, 0).with("delay", 3)).is_empty());
        assert!(on(Record::new(3, 0)).is_empty());
        let errors = on(Record::new(4, 0).with("delay", "x"));
        assert_eq!(errors[0].port, Filter::ERROR);
        assert!(matches!(
            errors[0].record.get(crate::ops::ERROR_FIELD),
            Value::Str(_)
        ));
    }

    #[test]
    fn map_sets_from_the_input_then_renames_then_drops() {
        let config = MapConfig {
            set: [
                ("a".to_owned(), expr("b + 1")),
                ("b".to_owned(), expr("a * 10")),
            ]
            .into(),
            rename: [("a".to_owned(), "renamed".to_owned())].into(),
            drop: vec!["c".to_owned()],
            key: Some(expr("'k' + c")),
        };
        let map = Map::new(config);
        let out = run(
            |record, out| map.on_record(record, out),
            Record::new(1, 0).with("a", 1).with("b", 2).with("c", "x"),
        );
        let record = &out[0].record;
        assert_eq!(record.get("renamed"), &Value::Int(3));
        assert_eq!(record.get("b"), &Value::Int(10));
        assert_eq!(record.get("a"), &Value::Null);
        assert_eq!(record.get("c"), &Value::Null);
        assert_eq!(record.key.as_deref(), Some("kx"));
    }

    #[test]
    fn flat_map_gives_one_record_per_piece_with_stable_ids() {
        let flat_map = FlatMap::new("tags".into(), ";".into());
        let input = Record::new(9, 5).with("tags", "a;b;c").with("other", 1);
        let first = run(|record, out| flat_map.on_record(record, out), input.clone());
        let again = run(|record, out| flat_map.on_record(record, out), input);
        assert_eq!(first, again);
        let pieces: Vec<&Value> = first
            .iter()
            .map(|emitted| emitted.record.get("tags"))
            .collect();
        assert_eq!(
            pieces,
            vec![&Value::from("a"), &Value::from("b"), &Value::from("c")]
        );
        let ids: std::collections::BTreeSet<RecordId> =
            first.iter().map(|emitted| emitted.record.id).collect();
        assert_eq!(ids.len(), 3);
        assert!(
            run(
                |record, out| flat_map.on_record(record, out),
                Record::new(1, 0)
            )
            .is_empty()
        );
        let error = run(
            |record, out| flat_map.on_record(record, out),
            Record::new(1, 0).with("tags", 3),
        );
        assert_eq!(error[0].port, FlatMap::ERROR);
    }

    #[test]
    fn copier_sends_the_same_record_to_every_output() {
        let copier = Copier::new(3);
        let out = run(
            |record, out| copier.on_record(record, out),
            Record::new(1, 0).with("a", 1),
        );
        let ports: Vec<Port> = out.iter().map(|emitted| emitted.port).collect();
        assert_eq!(ports, vec![Port(1), Port(2), Port(0)]);
        assert!(out.iter().all(|emitted| emitted.record == out[0].record));
    }

    #[test]
    fn splitter_takes_the_first_matching_branch_else_the_default() {
        let splitter = Splitter::new(vec![expr("delay > 60"), expr("delay > 15")]);
        let port_of = |delay: Value| {
            run(
                |record, out| splitter.on_record(record, out),
                Record::new(1, 0).with("delay", delay),
            )[0]
            .port
        };
        assert_eq!(port_of(Value::Int(90)), Port(0));
        assert_eq!(port_of(Value::Int(30)), Port(1));
        assert_eq!(port_of(Value::Int(0)), splitter.default_port());
        assert_eq!(port_of(Value::Null), splitter.default_port());
        assert_eq!(port_of(Value::from("x")), splitter.error_port());
    }
}
