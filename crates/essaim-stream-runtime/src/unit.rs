//! One unit of a stream task: a partition of the sources or of the shuffle, its
//! operators and its commit loop.
//!
//! Each turn of the loop reads a batch, runs it through the operators, publishes what
//! goes downstream (shuffle, message sinks) and waits for the broker's acks, then
//! commits in **one PostgreSQL transaction** the result rows, the positions read and
//! the unit's checkpoint (operator state and shuffle cursors), and only then
//! acknowledges the batch to the source. A crash anywhere in the turn leaves
//! PostgreSQL at the previous turn; the unit restarts from there (state restored,
//! readers reopened after the committed positions) and, being deterministic, redoes
//! the same work: rows are upserted by key and revision, shuffle records are
//! deduplicated by number (see [`crate::shuffle`]). The loop is sequential and the
//! source's unacknowledged window is bounded, so a slow sink slows the reads
//! (back-pressure) instead of filling memory.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use essaim_connect::{ConnectorError, MessageWriter, OutMessage, PartitionReader, SourceMessage};
use essaim_connect_files::{DirectoryConfig, DirectoryReader, RollingConfig, RollingFileWriter};
use essaim_connect_kafka::{
    KafkaConfig, KafkaPartitionReader, KafkaWriter, ReaderOptions, WriterOptions,
};
use essaim_connect_nats::broker::{StreamSpec, ensure_stream};
use essaim_connect_nats::partition::{NatsPartitionReader, PartitionSpec, now_ms};
use essaim_connect_nats::publish::Publisher;
use essaim_connect_postgres::{
    DeadLetter, PgSink, ResultRow, ResultTable, SinkBatch, SinkConfig, SourcePosition,
};
use essaim_stream::ops::enrich::DimensionTable;
use essaim_stream::pipeline::{Pipeline, PipelineState, Role, SinkRecord};
use essaim_stream::record::EventTime;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bindings::{SinkBinding, SourceBinding, result_columns};
use crate::metrics::UnitMetrics;
use crate::rows;
use crate::shuffle::{self, ShuffleMessage};
use crate::task::{PlannedPipeline, Stage, StreamTaskSpec};
use essaim_connect::error_chain;

/// The name positions of the shuffle are recorded under.
const SHUFFLE_SOURCE: &str = "_shuffle";
/// Most publishes awaiting their ack at once.
const MAX_PUBLISH_IN_FLIGHT: usize = 4096;

/// Why a unit stopped.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// Retrying may help (a broker or database down).
    #[error("{0}")]
    Transient(String),
    /// It will not (a bad spec, a missing stream).
    #[error("{0}")]
    Permanent(String),
}

impl From<essaim_connect::ConnectorError> for UnitError {
    fn from(error: essaim_connect::ConnectorError) -> Self {
        if error.transient {
            UnitError::Transient(error.to_string())
        } else {
            UnitError::Permanent(error.to_string())
        }
    }
}

impl From<essaim_connect_postgres::PgSinkError> for UnitError {
    fn from(error: essaim_connect_postgres::PgSinkError) -> Self {
        if error.is_transient() {
            UnitError::Transient(error_chain(&error))
        } else {
            UnitError::Permanent(error_chain(&error))
        }
    }
}

impl From<essaim_connect_nats::NatsError> for UnitError {
    fn from(error: essaim_connect_nats::NatsError) -> Self {
        if error.is_retryable() {
            UnitError::Transient(error_chain(&error))
        } else {
            UnitError::Permanent(error_chain(&error))
        }
    }
}

/// What a unit keeps in PostgreSQL besides positions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UnitCheckpoint {
    /// The operators' state.
    pipeline: Option<PipelineState>,
    /// Second stage: per upstream unit, where it is.
    upstreams: BTreeMap<u32, UpstreamCursor>,
    /// First stage: the sources whose partition has ended.
    ended_sources: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct UpstreamCursor {
    /// The number of the last record taken.
    last: Option<(u64, u32)>,
    /// Its watermark.
    watermark: Option<i64>,
    ended: bool,
}

/// Shared by the units of a task.
pub struct UnitContext {
    /// The task.
    pub task: Arc<StreamTaskSpec>,
    /// The checked pipeline.
    pub planned: Arc<PlannedPipeline>,
    /// The loaded dimension tables.
    pub tables: Arc<BTreeMap<String, Arc<DimensionTable>>>,
    /// JetStream, when the pipeline uses it.
    pub nats: Option<jetstream::Context>,
    /// Metrics of the task's units.
    pub metrics: Arc<UnitMetrics>,
    /// The attempt running the unit: its consumers are named after it, so that another
    /// owner of the unit (a task being replaced) never shares them.
    pub attempt_id: u64,
}

/// A PostgreSQL sink of the unit's stage.
struct TableSink {
    index: usize,
    columns: Vec<essaim_connect_postgres::Column>,
    key_column: Option<String>,
    default_columns: bool,
}

/// How the records of one sink leave.
enum SinkRoute {
    Table(TableSink),
    Subject(String),
    Writer(usize),
    Discard,
}

/// A partition reader of any connector.
enum AnyReader {
    Nats(Box<NatsPartitionReader>),
    Kafka(Box<KafkaPartitionReader>),
    Files(DirectoryReader),
}

impl AnyReader {
    async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<SourceMessage>, ConnectorError> {
        match self {
            AnyReader::Nats(reader) => reader.fetch(max, wait).await,
            AnyReader::Kafka(reader) => reader.fetch(max, wait).await,
            AnyReader::Files(reader) => reader.fetch(max, wait).await,
        }
    }

    async fn commit(&mut self, position: u64) -> Result<(), ConnectorError> {
        match self {
            AnyReader::Nats(reader) => reader.commit(position).await,
            AnyReader::Kafka(reader) => reader.commit(position).await,
            AnyReader::Files(reader) => reader.commit(position).await,
        }
    }

    async fn lag(&mut self) -> Result<Option<u64>, ConnectorError> {
        match self {
            AnyReader::Nats(reader) => reader.lag().await,
            AnyReader::Kafka(reader) => reader.lag().await,
            AnyReader::Files(reader) => reader.lag().await,
        }
    }

    /// Broker publish times of the last fetch, when the connector knows them.
    fn published_ms(&self) -> &[Option<i64>] {
        match self {
            AnyReader::Nats(reader) => reader.published_ms(),
            AnyReader::Kafka(_) | AnyReader::Files(_) => &[],
        }
    }
}

/// A message sink of any connector other than NATS (which shares the publisher).
enum AnyWriter {
    Kafka(KafkaWriter),
    Files(RollingFileWriter),
}

impl AnyWriter {
    async fn write(&mut self, messages: &[OutMessage]) -> Result<(), ConnectorError> {
        match self {
            AnyWriter::Kafka(writer) => writer.write(messages).await,
            AnyWriter::Files(writer) => writer.write(messages).await,
        }
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        match self {
            AnyWriter::Kafka(writer) => writer.flush().await,
            AnyWriter::Files(writer) => writer.flush().await,
        }
    }
}

struct Reader {
    source: String,
    partition: u32,
    inner: AnyReader,
    /// The last position read in this turn.
    last: Option<u64>,
}

/// Runs one unit until it is cancelled or, with `exit_at_end`, until its input ended
/// and everything is committed. Transient failures restart the unit from its last
/// commit after a backoff; permanent ones end it.
pub async fn run(
    context: Arc<UnitContext>,
    unit: u32,
    cancel: CancellationToken,
) -> Result<(), UnitError> {
    let mut retry = 0u32;
    loop {
        match run_once(&context, unit, &cancel).await {
            Ok(()) => return Ok(()),
            Err(UnitError::Transient(message)) => {
                if cancel.is_cancelled() {
                    return Ok(());
                }
                let delay = essaim_connect::backoff(
                    retry,
                    Duration::from_millis(200),
                    Duration::from_secs(5),
                );
                retry = retry.saturating_add(1);
                context.metrics.restarts.inc();
                tracing::warn!(unit, %message, ?delay, "stream unit restarts from its last commit");
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}

async fn run_once(
    context: &UnitContext,
    unit: u32,
    cancel: &CancellationToken,
) -> Result<(), UnitError> {
    let task = &context.task;
    let planned = &context.planned;
    let stage = task.stage;
    let has_shuffle = planned.stages.has_shuffle();
    let stage_sinks = match stage {
        Stage::Source => &planned.stages.sinks_before,
        Stage::Shuffled => &planned.stages.sinks_after,
    };
    // Tables and routes of this stage's sinks.
    let mut tables = Vec::new();
    let mut routes: BTreeMap<String, SinkRoute> = BTreeMap::new();
    let mut writers: Vec<AnyWriter> = Vec::new();
    for sink in stage_sinks {
        let route = match planned.bindings.sink(sink) {
            Some(SinkBinding::Postgres {
                table,
                columns,
                key_column,
            }) => {
                let typed = result_columns(columns.as_ref()).map_err(UnitError::Permanent)?;
                let result_table = ResultTable::new(table, typed.clone())
                    .map_err(|error| UnitError::Permanent(error_chain(&error)))?;
                tables.push(result_table);
                SinkRoute::Table(TableSink {
                    index: tables.len() - 1,
                    columns: typed,
                    key_column: key_column.clone(),
                    default_columns: columns.is_none(),
                })
            }
            Some(SinkBinding::Nats { subject }) => SinkRoute::Subject(subject.clone()),
            Some(SinkBinding::Kafka { topic }) => {
                let config = kafka_config(task)?;
                writers.push(AnyWriter::Kafka(
                    KafkaWriter::open(&config, topic, WriterOptions::default()).await?,
                ));
                SinkRoute::Writer(writers.len() - 1)
            }
            Some(SinkBinding::Files { dir }) => {
                let dir = resolve(task, dir);
                writers.push(AnyWriter::Files(
                    RollingFileWriter::open(RollingConfig::new(dir)).await?,
                ));
                SinkRoute::Writer(writers.len() - 1)
            }
            Some(SinkBinding::Discard) | None => SinkRoute::Discard,
        };
        routes.insert(sink.clone(), route);
    }
    let postgres_url = task
        .endpoints
        .postgres_url
        .clone()
        .ok_or_else(|| UnitError::Permanent("no PostgreSQL URL".to_owned()))?;
    let mut config = SinkConfig::new(
        postgres_url,
        format!("{}/{}/{unit}", task.pipeline, stage.as_str()),
    );
    config.max_batch_rows = usize::MAX;
    let (mut sink, resume) = PgSink::open_tables(config, tables).await?;
    let mut checkpoint: UnitCheckpoint = match &resume.checkpoint {
        Some(bytes) => postcard::from_bytes(bytes).map_err(|error| {
            UnitError::Permanent(format!("unit {unit}: unreadable checkpoint: {error}"))
        })?,
        None => UnitCheckpoint::default(),
    };
    let role = match (stage, has_shuffle) {
        (Stage::Source, false) => Role::Whole,
        (Stage::Source, true) => Role::BeforeShuffle,
        (Stage::Shuffled, _) => Role::AfterShuffle,
    };
    let mut pipeline = match checkpoint.pipeline.take() {
        Some(state) => Pipeline::restore(planned.spec.clone(), &context.tables, state),
        None => Pipeline::new(planned.spec.clone(), &context.tables),
    }
    .map_err(|error| UnitError::Permanent(error_chain(&error)))?
    .with_role(role);

    // The shuffle stream exists before either stage reads or writes it.
    let nats = || {
        context
            .nats
            .as_ref()
            .ok_or_else(|| UnitError::Permanent("no NATS URL".to_owned()))
    };
    if has_shuffle {
        let name = shuffle::stream_name(&task.pipeline);
        let subjects = shuffle::subjects(&task.pipeline);
        ensure_stream(nats()?, &StreamSpec::new(&name, &[subjects.as_str()])).await?;
    }
    let mut readers = Vec::new();
    match stage {
        Stage::Source => {
            for (source, binding) in &planned.bindings.sources {
                let committed = resume
                    .positions
                    .get(&(source.clone(), unit_i32(unit)))
                    .map(|position| u64::try_from(*position).unwrap_or(0));
                let inner = match binding {
                    SourceBinding::Nats {
                        stream, subject, ..
                    } => {
                        let spec = PartitionSpec::new(
                            stream,
                            &format!("{subject}.{unit}"),
                            &durable_name(&task.pipeline, source, unit, context.attempt_id),
                            unit,
                        );
                        AnyReader::Nats(Box::new(
                            NatsPartitionReader::open(nats()?, spec, committed).await?,
                        ))
                    }
                    SourceBinding::Kafka { topic, .. } => AnyReader::Kafka(Box::new(
                        KafkaPartitionReader::open(
                            &kafka_config(task)?,
                            topic,
                            unit,
                            committed,
                            ReaderOptions::default(),
                        )
                        .await?,
                    )),
                    SourceBinding::Files { dir, partitions } => AnyReader::Files(
                        DirectoryReader::open(
                            &DirectoryConfig::new(resolve(task, dir), *partitions),
                            unit,
                            committed,
                        )
                        .await?,
                    ),
                };
                readers.push(Reader {
                    source: source.clone(),
                    partition: unit,
                    inner,
                    last: None,
                });
            }
        }
        Stage::Shuffled => {
            let spec = PartitionSpec::new(
                &shuffle::stream_name(&task.pipeline),
                &shuffle::subject(&task.pipeline, unit),
                &durable_name(&task.pipeline, SHUFFLE_SOURCE, unit, context.attempt_id),
                unit,
            );
            let committed = resume
                .positions
                .get(&(SHUFFLE_SOURCE.to_owned(), unit_i32(unit)));
            let inner = AnyReader::Nats(Box::new(
                NatsPartitionReader::open(
                    nats()?,
                    spec,
                    committed.map(|position| u64::try_from(*position).unwrap_or(0)),
                )
                .await?,
            ));
            readers.push(Reader {
                source: SHUFFLE_SOURCE.to_owned(),
                partition: unit,
                inner,
                last: None,
            });
        }
    }
    let mut publisher = match &context.nats {
        Some(nats) => Some(Publisher::new(nats.clone(), MAX_PUBLISH_IN_FLIGHT)?),
        None => None,
    };
    let metrics = &context.metrics;
    let wait = Duration::from_millis(task.batch_wait_ms.max(1));
    let mut published_watermark: Option<i64> = None;
    let mut end_published = false;
    let mut out: Vec<SinkRecord> = Vec::new();
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let ended = match stage {
            Stage::Source => readers
                .iter()
                .all(|reader| checkpoint.ended_sources.contains(&reader.source)),
            Stage::Shuffled => (0..task.source_partitions).all(|upstream| {
                checkpoint
                    .upstreams
                    .get(&upstream)
                    .is_some_and(|cursor| cursor.ended)
            }),
        };
        if ended && task.exit_at_end && (end_published || stage == Stage::Shuffled || !has_shuffle)
        {
            return Ok(());
        }
        // Read a batch.
        let mut batch: Vec<(usize, SourceMessage, Option<i64>)> = Vec::new();
        let per_reader = (task.batch_max / readers.len().max(1)).max(1);
        for (index, reader) in readers.iter_mut().enumerate() {
            let messages = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                fetched = reader.inner.fetch(per_reader, wait) => fetched?,
            };
            let published = reader.inner.published_ms().to_vec();
            for (message, published) in messages
                .into_iter()
                .zip(published.into_iter().chain(std::iter::repeat(None)))
            {
                reader.last = Some(message.position);
                batch.push((index, message, published));
            }
        }
        let turn_started = Instant::now();
        let mut dead_letters = Vec::new();
        let mut shuffle_out: Vec<(u32, ShuffleMessage)> = Vec::new();
        out.clear();
        for (index, message, _) in &batch {
            let reader = &readers[*index];
            match stage {
                Stage::Source => {
                    if message.end_of_stream {
                        if checkpoint.ended_sources.insert(reader.source.clone()) {
                            pipeline
                                .end_source(&reader.source, &mut out)
                                .map_err(|error| UnitError::Permanent(error_chain(&error)))?;
                        }
                    } else {
                        metrics.records_in.inc();
                        // Record ids must be unique across partitions, whose positions
                        // (Kafka offsets, byte offsets) are not; never 0, which a
                        // source with a header would skip.
                        let line = essaim_stream::hash::derive_id(
                            u64::from(reader.partition),
                            reader.source.as_bytes(),
                            message.position,
                        )
                        .max(1);
                        let pushed =
                            pipeline.push_line(&reader.source, &message.payload, line, &mut out);
                        if let Err(error) = pushed {
                            metrics.dead_letters.inc();
                            dead_letters.push(refused(reader, message, error_chain(&error)));
                        }
                    }
                    if has_shuffle {
                        let mut ranks: BTreeMap<u32, u32> = BTreeMap::new();
                        for shuffled in pipeline.drain_shuffled() {
                            let rank = ranks.entry(shuffled.partition).or_insert(0);
                            shuffle_out.push((
                                shuffled.partition,
                                ShuffleMessage::Record {
                                    upstream: unit,
                                    number: (message.position, *rank),
                                    sharder: shuffled.sharder,
                                    record: shuffled.record,
                                },
                            ));
                            *rank += 1;
                        }
                    }
                }
                Stage::Shuffled => {
                    let decoded = match shuffle::decode(&message.payload) {
                        Ok(decoded) => decoded,
                        Err(error) => {
                            metrics.dead_letters.inc();
                            dead_letters.push(refused(
                                reader,
                                message,
                                format!("undecodable shuffle message: {error}"),
                            ));
                            continue;
                        }
                    };
                    for decoded in decoded {
                        match decoded {
                            ShuffleMessage::Record {
                                upstream,
                                number,
                                sharder,
                                record,
                            } => {
                                let cursor = checkpoint.upstreams.entry(upstream).or_default();
                                if cursor.last.is_some_and(|last| number <= last) {
                                    metrics.duplicates_skipped.inc();
                                    continue;
                                }
                                cursor.last = Some(number);
                                metrics.records_in.inc();
                                pipeline
                                    .push_shuffled(&sharder, record, &mut out)
                                    .map_err(|error| UnitError::Permanent(error_chain(&error)))?;
                            }
                            ShuffleMessage::Watermark {
                                upstream,
                                watermark,
                            } => {
                                let cursor = checkpoint.upstreams.entry(upstream).or_default();
                                cursor.watermark = Some(
                                    cursor.watermark.map_or(watermark, |old| old.max(watermark)),
                                );
                                advance(
                                    &mut pipeline,
                                    &checkpoint,
                                    task.source_partitions,
                                    &mut out,
                                );
                            }
                            ShuffleMessage::End { upstream } => {
                                let cursor = checkpoint.upstreams.entry(upstream).or_default();
                                cursor.ended = true;
                                cursor.watermark = Some(i64::MAX);
                                advance(
                                    &mut pipeline,
                                    &checkpoint,
                                    task.source_partitions,
                                    &mut out,
                                );
                            }
                        }
                    }
                }
            }
        }
        // The first stage tells every shuffle partition how far its event time is.
        if stage == Stage::Source && has_shuffle {
            let all_ended = readers
                .iter()
                .all(|reader| checkpoint.ended_sources.contains(&reader.source));
            if all_ended && !end_published {
                for partition in 0..planned.stages.shuffle_partitions {
                    shuffle_out.push((partition, ShuffleMessage::End { upstream: unit }));
                }
            } else if !all_ended {
                let watermark = planned
                    .stages
                    .sharders
                    .iter()
                    .filter_map(|sharder| pipeline.operator_watermark(sharder))
                    .min()
                    .unwrap_or(EventTime::MIN)
                    .0;
                if watermark > EventTime::MIN.0
                    && published_watermark.is_none_or(|old| watermark > old)
                {
                    for partition in 0..planned.stages.shuffle_partitions {
                        shuffle_out.push((
                            partition,
                            ShuffleMessage::Watermark {
                                upstream: unit,
                                watermark,
                            },
                        ));
                    }
                    published_watermark = Some(watermark);
                }
            }
            if all_ended {
                end_published = true;
            }
        }
        if batch.is_empty() && shuffle_out.is_empty() && out.is_empty() {
            if let Some(reader) = readers.first_mut()
                && let Ok(Some(lag)) = reader.inner.lag().await
            {
                metrics.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
            continue;
        }
        // One JetStream message per shuffle partition and chunk, not per record: a
        // durable broker syncs every message to disk.
        let mut per_partition: BTreeMap<u32, Vec<ShuffleMessage>> = BTreeMap::new();
        for (partition, message) in shuffle_out {
            per_partition.entry(partition).or_default().push(message);
        }
        for (partition, messages) in &per_partition {
            for chunk in messages.chunks(shuffle::MAX_MESSAGES_PER_BATCH) {
                let bytes = shuffle::encode(chunk)
                    .map_err(|error| UnitError::Permanent(format!("shuffle encoding: {error}")))?;
                publisher
                    .as_mut()
                    .ok_or_else(|| UnitError::Permanent("no NATS URL".to_owned()))?
                    .publish(
                        &shuffle::subject(&task.pipeline, *partition),
                        Bytes::from(bytes),
                    )
                    .await?;
            }
        }
        // Results: rows per table, messages per subject.
        let mut table_rows: Vec<Vec<ResultRow>> = vec![Vec::new(); sink.tables().len()];
        let mut writer_messages: Vec<Vec<OutMessage>> = vec![Vec::new(); writers.len()];
        for result in &out {
            metrics.records_out.inc();
            match routes.get(&result.sink) {
                Some(SinkRoute::Table(table)) => {
                    match rows::to_row(
                        &task.pipeline,
                        &result.record,
                        &table.columns,
                        table.key_column.as_deref(),
                        table.default_columns,
                    ) {
                        Ok(row) => table_rows[table.index].push(row),
                        Err(error) => {
                            metrics.dead_letters.inc();
                            dead_letters.push(DeadLetter {
                                source: format!("sink:{}", result.sink),
                                partition: unit_i32(unit),
                                position: i64::try_from(result.record.id.0 & (i64::MAX as u64))
                                    .unwrap_or(0),
                                error: error.to_string(),
                                raw: rows::to_json(&result.record).to_string().into_bytes(),
                            });
                        }
                    }
                }
                Some(SinkRoute::Subject(subject)) => {
                    let message = serde_json::json!({
                        "key": rows::key_of(&task.pipeline, &result.record),
                        "revision": rows::revision_of(&result.record),
                        "value": rows::to_json(&result.record),
                    });
                    publisher
                        .as_mut()
                        .ok_or_else(|| UnitError::Permanent("no NATS URL".to_owned()))?
                        .publish(subject, Bytes::from(message.to_string()))
                        .await?;
                }
                Some(SinkRoute::Writer(index)) => {
                    writer_messages[*index].push(OutMessage {
                        key: rows::key_of(&task.pipeline, &result.record),
                        revision: rows::revision_of(&result.record),
                        partition: unit,
                        payload: Bytes::from(rows::to_json(&result.record).to_string()),
                    });
                }
                Some(SinkRoute::Discard) | None => {}
            }
        }
        if let Some(publisher) = publisher.as_mut() {
            publisher.flush().await?;
        }
        for (writer, messages) in writers.iter_mut().zip(&writer_messages) {
            if !messages.is_empty() {
                writer.write(messages).await?;
                writer.flush().await?;
            }
        }
        for letter in &dead_letters {
            sink.dead_letter(letter).await?;
        }
        let positions = readers
            .iter()
            .filter_map(|reader| {
                reader.last.map(|last| SourcePosition {
                    source: reader.source.clone(),
                    partition: unit_i32(reader.partition),
                    position: i64::try_from(last).unwrap_or(i64::MAX),
                })
            })
            .collect();
        checkpoint.pipeline = Some(pipeline.snapshot());
        let encoded = postcard::to_stdvec(&checkpoint)
            .map_err(|error| UnitError::Permanent(format!("checkpoint encoding: {error}")))?;
        checkpoint.pipeline = None;
        metrics
            .checkpoint_bytes
            .set(i64::try_from(encoded.len()).unwrap_or(i64::MAX));
        let mut rows_iter = table_rows.into_iter();
        let first = rows_iter.next().unwrap_or_default();
        let commit_started = Instant::now();
        sink.write_batch(&SinkBatch {
            rows: first,
            positions,
            checkpoint: Some(encoded),
            other_tables: rows_iter.collect(),
        })
        .await?;
        metrics
            .commit_seconds
            .observe(commit_started.elapsed().as_secs_f64());
        let committed_at = now_ms();
        for (_, _, published) in &batch {
            if let Some(published) = published {
                #[allow(clippy::cast_precision_loss)]
                metrics
                    .latency_seconds
                    .observe((committed_at - published).max(0) as f64 / 1000.0);
            }
        }
        for reader in &mut readers {
            if let Some(last) = reader.last.take() {
                // The commit is durable: a lost ack only causes a skipped redelivery.
                let _ = reader.inner.commit(last).await;
            }
        }
        metrics.batches.inc();
        metrics.set_operator_counts(pipeline.stats());
        metrics
            .turn_seconds
            .observe(turn_started.elapsed().as_secs_f64());
        let watermark = match stage {
            Stage::Source => pipeline
                .spec()
                .sources
                .iter()
                .map(|source| pipeline.source_watermark(&source.name).0)
                .min(),
            Stage::Shuffled => Some(pipeline.shuffle_watermark().0),
        };
        if let Some(watermark) = watermark.filter(|w| *w > i64::MIN && *w < i64::MAX) {
            metrics
                .watermark_delay_seconds
                .set((now_ms() - watermark) / 1000);
        }
    }
}

/// A message of `reader` that cannot be processed, as a dead letter.
fn refused(reader: &Reader, message: &SourceMessage, error: String) -> DeadLetter {
    DeadLetter {
        source: reader.source.clone(),
        partition: unit_i32(reader.partition),
        position: i64::try_from(message.position).unwrap_or(i64::MAX),
        error,
        raw: message.payload.to_vec(),
    }
}

/// Moves the second stage's event time to the minimum of its upstreams'.
fn advance(
    pipeline: &mut Pipeline,
    checkpoint: &UnitCheckpoint,
    upstreams: u32,
    out: &mut Vec<SinkRecord>,
) {
    let watermark = (0..upstreams)
        .map(|upstream| {
            checkpoint
                .upstreams
                .get(&upstream)
                .and_then(|cursor| cursor.watermark)
                .unwrap_or(i64::MIN)
        })
        .min()
        .unwrap_or(i64::MIN);
    pipeline.advance_shuffle_watermark(EventTime(watermark), out);
}

/// A durable consumer's name: letters, digits, `_` and `-` only.
fn durable_name(pipeline: &str, source: &str, unit: u32, attempt_id: u64) -> String {
    let clean = |text: &str| {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!(
        "essaim_{}_{}_{unit}_{attempt_id:x}",
        clean(pipeline),
        clean(source)
    )
}

fn kafka_config(task: &StreamTaskSpec) -> Result<KafkaConfig, UnitError> {
    task.endpoints
        .kafka_bootstrap
        .as_ref()
        .map(KafkaConfig::new)
        .ok_or_else(|| UnitError::Permanent("no Kafka bootstrap address".to_owned()))
}

/// A connector path, relative to the spec's directory unless absolute.
fn resolve(task: &StreamTaskSpec, path: &str) -> std::path::PathBuf {
    match &task.base_dir {
        Some(base) => base.join(path),
        None => std::path::PathBuf::from(path),
    }
}

fn unit_i32(unit: u32) -> i32 {
    i32::try_from(unit).unwrap_or(i32::MAX)
}
