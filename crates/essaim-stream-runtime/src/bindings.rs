//! Where a pipeline's sources and sinks are: the `connector` tables of a spec, checked.
//!
//! The pure spec keeps a connector as an opaque TOML table so that `essaim-stream`
//! knows no broker; this module gives each one its typed form and refuses unknown
//! kinds and keys with the source or sink named. Addresses of servers are not in the
//! spec (the same spec runs against a test broker and a production one): they come
//! from [`Endpoints`].
use std::collections::BTreeMap;

use essaim_connect_postgres::{Column, ColumnType};
use essaim_stream::spec::PipelineSpec;
use serde::{Deserialize, Serialize};

/// The servers a pipeline talks to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// NATS server URL, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: Option<String>,
    /// PostgreSQL URL, e.g. `postgres://essaim@127.0.0.1:5432/essaim`: required, since
    /// positions and checkpoints live there.
    pub postgres_url: Option<String>,
    /// Kafka bootstrap address, e.g. `127.0.0.1:9092`, for `kafka` connectors.
    #[serde(default)]
    pub kafka_bootstrap: Option<String>,
    /// The model registry's URL (a coordinator's, e.g. `http://127.0.0.1:8080`), for
    /// `predict` operators.
    #[serde(default)]
    pub registry_url: Option<String>,
}

impl Endpoints {
    /// Returns the endpoints with the secrets they name (`${env:NAME}`,
    /// `${file:PATH}`) read from this machine: called by the worker that connects, so
    /// that passwords need not travel in payloads (see [`essaim_connect::secrets`]).
    pub fn resolve_secrets(&self) -> Result<Self, essaim_connect::secrets::SecretError> {
        use essaim_connect::secrets::resolve_secrets;
        let resolve = |value: &Option<String>| value.as_deref().map(resolve_secrets).transpose();
        Ok(Self {
            nats_url: resolve(&self.nats_url)?,
            postgres_url: resolve(&self.postgres_url)?,
            kafka_bootstrap: resolve(&self.kafka_bootstrap)?,
            registry_url: resolve(&self.registry_url)?,
        })
    }
}

/// A source's connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceBinding {
    /// A JetStream stream whose partition `p` is subject `<subject>.<p>`.
    Nats {
        /// The stream.
        stream: String,
        /// The subject prefix.
        subject: String,
        /// The number of partitions (default 1).
        #[serde(default = "one")]
        partitions: u32,
    },
    /// A Kafka topic; partition `p` of the source is partition `p` of the topic.
    Kafka {
        /// The topic.
        topic: String,
        /// The number of partitions (default 1).
        #[serde(default = "one")]
        partitions: u32,
    },
    /// A directory of rolling files, tailed (partition `p` is `<dir>/<p>/` when there
    /// are several); relative to the spec's directory.
    Files {
        /// The directory.
        dir: String,
        /// The number of partitions (default 1).
        #[serde(default = "one")]
        partitions: u32,
    },
}

impl SourceBinding {
    /// `nats`, `kafka` or `files`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceBinding::Nats { .. } => "nats",
            SourceBinding::Kafka { .. } => "kafka",
            SourceBinding::Files { .. } => "files",
        }
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        match self {
            SourceBinding::Nats { partitions, .. }
            | SourceBinding::Kafka { partitions, .. }
            | SourceBinding::Files { partitions, .. } => *partitions,
        }
    }
}

/// A sink's connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkBinding {
    /// A PostgreSQL table, upserted by a deterministic key.
    Postgres {
        /// The table.
        table: String,
        /// Typed columns, each filled from the record field of the same name (or from
        /// the record's key for `key_column`); when absent the table has
        /// `record_key text, event_time bigint, fields text` (the fields as JSON).
        #[serde(default)]
        columns: Option<BTreeMap<String, String>>,
        /// The column that receives the record's key.
        #[serde(default)]
        key_column: Option<String>,
    },
    /// JSON messages on a NATS subject (at-least-once; deduplicate by `key`).
    Nats {
        /// The subject.
        subject: String,
    },
    /// JSON messages on a Kafka topic, keyed (a compacted topic keeps the last
    /// revision).
    Kafka {
        /// The topic (it must exist).
        topic: String,
    },
    /// JSON lines in rolling files under `<dir>/<unit>/` (relative to the spec's
    /// directory), at-least-once with keys.
    Files {
        /// The directory.
        dir: String,
    },
    /// Counted, then dropped: for streams that are only watched through metrics.
    Discard,
}

impl SinkBinding {
    /// `postgres`, `nats`, `kafka`, `files` or `discard`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkBinding::Postgres { .. } => "postgres",
            SinkBinding::Nats { .. } => "nats",
            SinkBinding::Kafka { .. } => "kafka",
            SinkBinding::Files { .. } => "files",
            SinkBinding::Discard => "discard",
        }
    }
}

fn one() -> u32 {
    1
}

/// A binding that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {message}")]
pub struct BindingError {
    /// Which source or sink.
    pub what: String,
    /// What is wrong.
    pub message: String,
}

/// The typed bindings of a whole spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bindings {
    /// Per source, in spec order.
    pub sources: Vec<(String, SourceBinding)>,
    /// Per sink, in spec order.
    pub sinks: Vec<(String, SinkBinding)>,
}

impl Bindings {
    /// Reads and checks every connector of `spec`.
    pub fn of(spec: &PipelineSpec) -> Result<Bindings, BindingError> {
        let mut sources = Vec::new();
        for source in &spec.sources {
            let what = format!("source `{}`", source.name);
            let Some(table) = &source.connector else {
                return Err(BindingError {
                    what,
                    message: "has no `connector` (e.g. `{ kind = \"nats\", stream = \"S\", \
                              subject = \"s\", partitions = 4 }`)"
                        .to_owned(),
                });
            };
            let binding: SourceBinding =
                table.clone().try_into().map_err(|error| BindingError {
                    what: what.clone(),
                    message: format!("bad connector: {error}"),
                })?;
            if binding.partitions() == 0 || binding.partitions() > 4096 {
                return Err(BindingError {
                    what,
                    message: "`partitions` must be between 1 and 4096".to_owned(),
                });
            }
            sources.push((source.name.clone(), binding));
        }
        if let Some(((first, binding), rest)) = sources.split_first() {
            for (name, other) in rest {
                if other.partitions() != binding.partitions() {
                    return Err(BindingError {
                        what: format!("source `{name}`"),
                        message: format!(
                            "has {} partitions and `{first}` {}: the sources of a pipeline \
                             are read partition by partition together, so they must agree",
                            other.partitions(),
                            binding.partitions()
                        ),
                    });
                }
            }
        }
        let mut sinks = Vec::new();
        for sink in &spec.sinks {
            let what = format!("sink `{}`", sink.name);
            let binding = match &sink.connector {
                None => SinkBinding::Discard,
                Some(table) => table.clone().try_into().map_err(|error| BindingError {
                    what: what.clone(),
                    message: format!("bad connector: {error}"),
                })?,
            };
            if let SinkBinding::Postgres { columns, .. } = &binding {
                result_columns(columns.as_ref()).map_err(|error| BindingError {
                    what: what.clone(),
                    message: error.to_string(),
                })?;
            }
            sinks.push((sink.name.clone(), binding));
        }
        Ok(Bindings { sources, sinks })
    }

    /// The partitions of the sources (1 when there is none).
    pub fn source_partitions(&self) -> u32 {
        self.sources
            .first()
            .map_or(1, |(_, binding)| binding.partitions())
    }

    /// The binding of a sink.
    pub fn sink(&self, name: &str) -> Option<&SinkBinding> {
        self.sinks
            .iter()
            .find(|(sink, _)| sink == name)
            .map(|(_, binding)| binding)
    }
}

/// A PostgreSQL sink's column of a type the sink cannot write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}`: unknown type `{sql_type}` (bigint, double, text, boolean)")]
pub struct UnknownColumnType {
    /// The column.
    pub column: String,
    /// Its type as written (lowercased).
    pub sql_type: String,
}

/// The typed columns of a PostgreSQL sink.
pub fn result_columns(
    columns: Option<&BTreeMap<String, String>>,
) -> Result<Vec<Column>, UnknownColumnType> {
    let Some(columns) = columns else {
        return Ok(vec![
            Column::new("record_key", ColumnType::Text),
            Column::new("event_time", ColumnType::BigInt),
            Column::new("fields", ColumnType::Text),
        ]);
    };
    columns
        .iter()
        .map(|(name, sql_type)| {
            let column_type = match sql_type.to_ascii_lowercase().as_str() {
                "bigint" | "int" | "integer" => ColumnType::BigInt,
                "double" | "float" | "double precision" => ColumnType::Double,
                "text" | "string" => ColumnType::Text,
                "boolean" | "bool" => ColumnType::Bool,
                other => {
                    return Err(UnknownColumnType {
                        column: name.clone(),
                        sql_type: other.to_owned(),
                    });
                }
            };
            Ok(Column::new(name, column_type))
        })
        .collect()
}
