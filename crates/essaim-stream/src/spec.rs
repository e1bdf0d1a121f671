//! Pipeline specs: the TOML file a user writes, and its validated form.
//!
//! Validation happens once, here, and turns the file form ([`RawSpec`], which a Rust
//! caller may also build directly) into the form the operators use ([`PipelineSpec`]):
//! names resolved, expressions parsed, operators in topological order. Every mistake a
//! spec can hold is found before any record flows, and its error names the operator,
//! source or sink and, for a file, the line:
//! - duplicate names, unknown kinds, keys that do not apply to a kind, missing keys;
//! - inputs naming an unknown stream or an output port the operator does not have;
//! - cycles between operators;
//! - expressions that do not parse, or that read a field no input can carry (fields are
//!   tracked from the source schemas through every operator).
//!
//! ```toml
//! version = 1
//!
//! [[source]]
//! name = "flights"
//! header = true
//! time = "date"
//! out_of_orderness_ms = 600000
//! columns = [{ name = "date", type = "timestamp" }, { name = "delay", type = "int" }]
//!
//! [[operator]]
//! name = "valid"
//! kind = "filter"
//! input = "flights"
//! predicate = "not is_null(delay)"
//!
//! [[sink]]
//! name = "out"
//! input = "valid"          # or "operator.port", e.g. "split.delayed", "valid.error"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::expr::Expr;
use crate::ops::enrich::Enrich;
use crate::ops::join::{Join, JoinConfig};
use crate::ops::merger::Merger;
use crate::ops::predict::{Predict, PredictConfig};
use crate::ops::sharder::Sharder;
use crate::ops::stateless::{Filter, FlatMap, Map, MapConfig};
use crate::schema::{Column, RecordFormat, Schema};
use crate::sketch::{DEFAULT_ALPHA, DEFAULT_MAX_BUCKETS};
use crate::window::{AggregateFunction, AggregateSpec, Window, WindowConfig};

/// The only spec format version so far.
pub const SPEC_VERSION: u32 = 1;
/// The version of what the operators compute and keep for a given spec: raised when a
/// change of this crate gives an existing spec other results or another meaning to its
/// checkpointed state, so that a pipeline's state is not resumed under it without a
/// migration (the runtime fingerprints specs with it).
pub const OPERATORS_VERSION: u32 = 1;
/// Default number of ids a merger remembers.
pub const DEFAULT_MERGER_CAPACITY: usize = 100_000;

/// The file form of a pipeline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// Must be [`SPEC_VERSION`].
    pub version: u32,
    /// Where records come from.
    #[serde(default)]
    pub source: Vec<RawSource>,
    /// Dimension tables for `enrich`.
    #[serde(default)]
    pub table: Vec<RawTable>,
    /// The operators, in any order.
    #[serde(default)]
    pub operator: Vec<RawOperator>,
    /// Where results go.
    #[serde(default)]
    pub sink: Vec<RawSink>,
}

/// A source: a name and a schema (CSV or JSON lines).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The stream name operators refer to.
    pub name: Spanned<String>,
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// The event-time column.
    pub time: String,
    /// The id column (default: the line's position).
    pub id: Option<String>,
    /// The key column (default: no key).
    pub key: Option<String>,
    /// Whether the first line is a header to skip (default false; CSV only).
    #[serde(default)]
    pub header: bool,
    /// How lines are written: `csv` (the default) or `jsonl`.
    #[serde(default)]
    pub format: RecordFormat,
    /// How far behind the latest event time a record may still arrive (default 0).
    #[serde(default)]
    pub out_of_orderness_ms: i64,
    /// Where the runtime reads it from (e.g. `{ kind = "nats", subject = "flights",
    /// partitions = 4 }`); opaque here, checked by the runtime.
    pub connector: Option<toml::Table>,
}

/// A dimension table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    /// The name `enrich` operators refer to.
    pub name: Spanned<String>,
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// The lookup column.
    pub key: String,
    /// Whether the first line is a header to skip (default false).
    #[serde(default)]
    pub header: bool,
    /// The CSV file holding it, relative to the spec's directory (the runtime reads
    /// it; a Rust caller may hand the bytes to `Pipeline::load_tables` instead).
    pub path: Option<String>,
}

/// A splitter branch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBranch {
    /// The branch's output port.
    pub name: String,
    /// Its predicate.
    pub when: String,
}

/// A window aggregate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAggregate {
    /// The output field.
    pub name: String,
    /// `count`, `sum`, `min`, `max`, `mean` or `quantile`.
    #[serde(rename = "fn")]
    pub function: String,
    /// The input field (all but `count`).
    pub field: Option<String>,
    /// The quantile, for `quantile`.
    pub q: Option<f64>,
}

/// An operator as written: its kind decides which of the optional keys apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in the table of the crate doc
pub struct RawOperator {
    pub name: Spanned<String>,
    pub kind: String,
    pub input: Option<String>,
    pub inputs: Option<Vec<String>>,
    pub predicate: Option<String>,
    pub set: Option<BTreeMap<String, String>>,
    pub rename: Option<BTreeMap<String, String>>,
    pub drop: Option<Vec<String>>,
    pub key: Option<String>,
    pub field: Option<String>,
    pub separator: Option<String>,
    pub outputs: Option<Vec<String>>,
    pub branches: Option<Vec<RawBranch>>,
    pub default: Option<String>,
    pub partitions: Option<u32>,
    pub capacity: Option<usize>,
    pub block: Option<String>,
    pub part: Option<String>,
    pub parts: Option<u32>,
    pub timeout_ms: Option<i64>,
    pub table: Option<String>,
    pub fields: Option<BTreeMap<String, String>>,
    pub size_ms: Option<i64>,
    pub slide_ms: Option<i64>,
    pub allowed_lateness_ms: Option<i64>,
    pub aggregates: Option<Vec<RawAggregate>>,
    pub sketch_alpha: Option<f64>,
    pub sketch_max_buckets: Option<u32>,
    pub model: Option<String>,
    pub text_fields: Option<Vec<String>>,
    pub label_field: Option<String>,
    pub score_field: Option<String>,
    pub version_field: Option<String>,
    pub runner: Option<String>,
}

impl RawOperator {
    /// Returns an operator with a name, a kind and no other key, for specs built in Rust
    /// (set the keys it needs on the result).
    pub fn new(name: &str, kind: &str) -> RawOperator {
        RawOperator {
            name: Spanned::new(0..0, name.to_owned()),
            kind: kind.to_owned(),
            input: None,
            inputs: None,
            predicate: None,
            set: None,
            rename: None,
            drop: None,
            key: None,
            field: None,
            separator: None,
            outputs: None,
            branches: None,
            default: None,
            partitions: None,
            capacity: None,
            block: None,
            part: None,
            parts: None,
            timeout_ms: None,
            table: None,
            fields: None,
            size_ms: None,
            slide_ms: None,
            allowed_lateness_ms: None,
            aggregates: None,
            sketch_alpha: None,
            sketch_max_buckets: None,
            model: None,
            text_fields: None,
            label_field: None,
            score_field: None,
            version_field: None,
            runner: None,
        }
    }
}

/// A sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// The sink's name.
    pub name: Spanned<String>,
    /// The stream it consumes.
    pub input: String,
    /// Where the runtime writes it (e.g. `{ kind = "postgres", table = "stats" }`);
    /// opaque here, checked by the runtime.
    pub connector: Option<toml::Table>,
}

/// A spec that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The file is not TOML of the expected shape (the message has the line).
    #[error("invalid pipeline spec: {0}")]
    Toml(String),
    /// A part of the spec is wrong.
    #[error("{what}{}: {message}", line.map(|line| format!(" (line {line})")).unwrap_or_default())]
    Invalid {
        /// Which part, e.g. "operator `split`".
        what: String,
        /// Its 1-based line in the file, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Its name.
    pub name: String,
    /// Its schema.
    pub schema: Schema,
    /// Whether the first line is a header.
    pub header: bool,
    /// The bound of its disorder; its watermark is the max event time seen minus this.
    pub out_of_orderness_ms: i64,
    /// The runtime's connector settings, as written.
    pub connector: Option<toml::Table>,
}

/// A validated dimension table.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Its name.
    pub name: String,
    /// Its CSV file, relative to the spec's directory, when the spec names one.
    pub path: Option<String>,
    /// Its columns.
    pub columns: Vec<Column>,
    /// The lookup column.
    pub key: String,
    /// Whether the first line is a header.
    pub header: bool,
}

/// A resolved reference to one output of a source or operator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamRef {
    /// The source or operator.
    pub node: String,
    /// The port index (0 for a source).
    pub port: usize,
}

/// A validated operator.
#[derive(Debug, Clone)]
pub struct OperatorSpec {
    /// Its name.
    pub name: String,
    /// Its line in the file, when known.
    pub line: Option<usize>,
    /// The streams it reads, merged.
    pub inputs: Vec<StreamRef>,
    /// What it does.
    pub kind: OperatorKind,
}

/// What an operator does, with its validated configuration.
#[derive(Debug, Clone)]
pub enum OperatorKind {
    /// Keeps records whose predicate is true.
    Filter(Expr),
    /// Sets, renames, drops fields.
    Map(MapConfig),
    /// Splits a string field into one record per piece.
    FlatMap {
        /// The field.
        field: String,
        /// The separator (not empty).
        separator: String,
    },
    /// Copies each record to every output.
    Copier {
        /// The output names.
        outputs: Vec<String>,
    },
    /// Routes to the first matching branch.
    Splitter {
        /// Branch names and predicates.
        branches: Vec<(String, Expr)>,
        /// The default branch's name.
        default: String,
    },
    /// Keys records and partitions them.
    Sharder {
        /// The key expression.
        key: Expr,
        /// The partition count (≥ 1).
        partitions: u32,
    },
    /// Merges inputs, de-duplicating by id.
    Merger {
        /// How many ids it remembers.
        capacity: usize,
    },
    /// Assembles blocks from parts.
    Join(JoinConfig),
    /// Looks records up in a dimension table.
    Enrich {
        /// The table name.
        table: String,
        /// The lookup key expression.
        key: Expr,
        /// Field to set → table column.
        fields: Vec<(String, String)>,
    },
    /// Windowed reduce.
    Window(WindowConfig),
    /// Adds a model's prediction.
    Predict(PredictConfig),
}

impl OperatorKind {
    /// Returns the names of the operator's output ports, by index.
    pub fn port_names(&self) -> Vec<String> {
        match self {
            OperatorKind::Filter(_) => Filter::port_names(),
            OperatorKind::Map(_) => Map::port_names(),
            OperatorKind::FlatMap { .. } => FlatMap::port_names(),
            OperatorKind::Copier { outputs } => outputs.clone(),
            OperatorKind::Splitter { branches, default } => {
                let mut names: Vec<String> =
                    branches.iter().map(|(name, _)| name.clone()).collect();
                names.push(default.clone());
                names.push("error".into());
                names
            }
            OperatorKind::Sharder { .. } => Sharder::port_names(),
            OperatorKind::Merger { .. } => Merger::port_names(),
            OperatorKind::Join(_) => Join::port_names(),
            OperatorKind::Enrich { .. } => Enrich::port_names(),
            OperatorKind::Window(_) => Window::port_names(),
            OperatorKind::Predict(_) => Predict::port_names(),
        }
    }
}

/// A validated sink.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// Its name.
    pub name: String,
    /// The stream it consumes.
    pub input: StreamRef,
    /// The runtime's connector settings, as written.
    pub connector: Option<toml::Table>,
}

/// A validated pipeline: operators in topological order (every operator after its
/// inputs).
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The sources.
    pub sources: Vec<SourceSpec>,
    /// The dimension tables.
    pub tables: Vec<TableSpec>,
    /// The operators, inputs first.
    pub operators: Vec<OperatorSpec>,
    /// The sinks.
    pub sinks: Vec<SinkSpec>,
}

impl PipelineSpec {
    /// Parses and validates a TOML spec.
    pub fn from_toml(text: &str) -> Result<PipelineSpec, SpecError> {
        let raw: RawSpec =
            toml::from_str(text).map_err(|error| SpecError::Toml(error.to_string()))?;
        validate(raw, Some(text))
    }

    /// Validates a spec built in Rust (errors carry no line).
    pub fn from_raw(raw: RawSpec) -> Result<PipelineSpec, SpecError> {
        validate(raw, None)
    }

    /// Returns the model references of the spec's `predict` operators that load their
    /// model in process (not through a runner), each once.
    pub fn model_references(&self) -> Vec<String> {
        let mut references: Vec<String> = Vec::new();
        for config in self.predict_configs() {
            if config.runner.is_none() && !references.contains(&config.model) {
                references.push(config.model.clone());
            }
        }
        references
    }

    /// Returns the configuration of every `predict` operator that asks a runner, one per
    /// [`PredictConfig::model_key`].
    pub fn runner_models(&self) -> Vec<&PredictConfig> {
        let mut configs: Vec<&PredictConfig> = Vec::new();
        for config in self.predict_configs() {
            let key = config.model_key();
            if config.runner.is_some() && !configs.iter().any(|seen| seen.model_key() == key) {
                configs.push(config);
            }
        }
        configs
    }

    fn predict_configs(&self) -> impl Iterator<Item = &PredictConfig> {
        self.operators
            .iter()
            .filter_map(|operator| match &operator.kind {
                OperatorKind::Predict(config) => Some(config),
                _ => None,
            })
    }

    /// Returns the operator called `name`.
    pub fn operator(&self, name: &str) -> Option<&OperatorSpec> {
        self.operators.iter().find(|operator| operator.name == name)
    }
}

mod canonical;
mod kinds;
mod validate;
pub use canonical::canonical_text;
use validate::validate;

#[cfg(test)]
mod tests;
