//! Where the results of a unit's stage go: which sink is a PostgreSQL table, a NATS
//! subject, a message writer (Kafka topic, rolling files) or nowhere, and how a result
//! becomes a row or a message there. Pure: the writers themselves are opened by
//! [`super::io`], in the order of [`Routes::writers`].
use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use essaim_connect::OutMessage;
use essaim_connect_postgres::{Column, DeadLetter, ResultTable};
use essaim_stream::pipeline::SinkRecord;

use super::state::{Turn, unit_i32};
use crate::bindings::{SinkBinding, result_columns};
use crate::error::UnitError;
use crate::rows;
use crate::task::{PlannedPipeline, Stage, StreamTaskSpec};

/// A message writer a stage's sink needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterTarget {
    /// A Kafka topic.
    Kafka {
        /// The topic.
        topic: String,
    },
    /// Rolling files in a directory.
    Files {
        /// The directory, resolved against the spec's.
        dir: PathBuf,
    },
}

/// A PostgreSQL sink of the unit's stage.
#[derive(Debug)]
struct TableSink {
    index: usize,
    columns: Vec<Column>,
    key_column: Option<String>,
    default_columns: bool,
}

/// How the records of one sink leave.
#[derive(Debug)]
enum SinkRoute {
    Table(TableSink),
    Subject(String),
    Writer(usize),
    Discard,
}

/// The sinks of one stage.
#[derive(Debug)]
pub struct Routes {
    routes: BTreeMap<String, SinkRoute>,
    tables: Vec<ResultTable>,
    writers: Vec<WriterTarget>,
}

impl Routes {
    /// The routes of the sinks of `task`'s stage.
    pub fn of(task: &StreamTaskSpec, planned: &PlannedPipeline) -> Result<Routes, UnitError> {
        let stage_sinks = match task.stage {
            Stage::Source => &planned.stages.sinks_before,
            Stage::Shuffled => &planned.stages.sinks_after,
        };
        let mut tables = Vec::new();
        let mut writers = Vec::new();
        let mut routes = BTreeMap::new();
        for sink in stage_sinks {
            let route = match planned.bindings.sink(sink) {
                Some(SinkBinding::Postgres {
                    table,
                    columns,
                    key_column,
                }) => {
                    let typed = result_columns(columns.as_ref()).map_err(|source| {
                        UnitError::SinkColumns {
                            sink: sink.clone(),
                            source,
                        }
                    })?;
                    tables.push(ResultTable::new(table, typed.clone())?);
                    SinkRoute::Table(TableSink {
                        index: tables.len() - 1,
                        columns: typed,
                        key_column: key_column.clone(),
                        default_columns: columns.is_none(),
                    })
                }
                Some(SinkBinding::Nats { subject }) => SinkRoute::Subject(subject.clone()),
                Some(SinkBinding::Kafka { topic }) => {
                    writers.push(WriterTarget::Kafka {
                        topic: topic.clone(),
                    });
                    SinkRoute::Writer(writers.len() - 1)
                }
                Some(SinkBinding::Files { dir }) => {
                    writers.push(WriterTarget::Files {
                        dir: resolve(task, dir),
                    });
                    SinkRoute::Writer(writers.len() - 1)
                }
                Some(SinkBinding::Discard) | None => SinkRoute::Discard,
            };
            routes.insert(sink.clone(), route);
        }
        Ok(Routes {
            routes,
            tables,
            writers,
        })
    }

    /// The result tables, in the order of [`Turn::table_rows`].
    pub fn tables(&self) -> &[ResultTable] {
        &self.tables
    }

    /// The writers to open, in the order of [`Turn::writer_messages`].
    pub fn writers(&self) -> &[WriterTarget] {
        &self.writers
    }

    /// Turns the turn's results into rows, subject messages and writer messages; a
    /// result that does not fit its table becomes a dead letter.
    pub fn route(&self, pipeline: &str, unit: u32, turn: &mut Turn) {
        turn.table_rows = vec![Vec::new(); self.tables.len()];
        turn.writer_messages = vec![Vec::new(); self.writers.len()];
        for result in &turn.results {
            match self.routes.get(&result.sink) {
                Some(SinkRoute::Table(table)) => match rows::to_row(
                    pipeline,
                    &result.record,
                    &table.columns,
                    table.key_column.as_deref(),
                    table.default_columns,
                ) {
                    Ok(row) => turn.table_rows[table.index].push(row),
                    Err(error) => turn
                        .dead_letters
                        .push(misfit(result, unit, error.to_string())),
                },
                Some(SinkRoute::Subject(subject)) => {
                    let message = serde_json::json!({
                        "key": rows::key_of(pipeline, &result.record),
                        "revision": rows::revision_of(&result.record),
                        "value": rows::to_json(&result.record),
                    });
                    turn.subject_messages
                        .push((subject.clone(), Bytes::from(message.to_string())));
                }
                Some(SinkRoute::Writer(index)) => turn.writer_messages[*index].push(OutMessage {
                    key: rows::key_of(pipeline, &result.record),
                    revision: rows::revision_of(&result.record),
                    partition: unit,
                    payload: Bytes::from(rows::to_json(&result.record).to_string()),
                }),
                Some(SinkRoute::Discard) | None => {}
            }
        }
    }
}

/// A result that does not fit its table, as a dead letter.
fn misfit(result: &SinkRecord, unit: u32, error: String) -> DeadLetter {
    DeadLetter {
        source: format!("sink:{}", result.sink),
        partition: unit_i32(unit),
        position: i64::try_from(result.record.id.0 & (i64::MAX as u64)).unwrap_or(0),
        error,
        raw: rows::to_json(&result.record).to_string().into_bytes(),
    }
}

/// A connector path, relative to the spec's directory unless absolute.
pub fn resolve(task: &StreamTaskSpec, path: &str) -> PathBuf {
    match &task.base_dir {
        Some(base) => base.join(path),
        None => PathBuf::from(path),
    }
}
