//! The I/O of a unit, opened once per run: its readers, the JetStream publisher, its
//! message writers and its PostgreSQL sink. It decides nothing: it fetches batches for
//! [`super::state::UnitState`] and carries out the [`Turn`]s it returns.
//!
//! Every call to a server or a directory, opening included, goes through the circuit
//! breaker of its connector and endpoint kind ([`crate::breakers`]): readers and
//! writers are [`Guarded`], a turn's publishing is one call to the breakers of the
//! shuffle and of the subjects, and the PostgreSQL sink is given its breaker.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use essaim_connect::{
    ConnectorError, Guarded, MessageWriter, OutMessage, PartitionReader, SharedBreaker,
    SourceMessage,
};
use essaim_connect_files::{DirectoryConfig, DirectoryReader, RollingConfig, RollingFileWriter};
use essaim_connect_kafka::{
    KafkaConfig, KafkaPartitionReader, KafkaWriter, ReaderOptions, WriterOptions,
};
use essaim_connect_nats::NatsError;
use essaim_connect_nats::broker::{StreamSpec, ensure_stream};
use essaim_connect_nats::partition::{NatsPartitionReader, PartitionSpec};
use essaim_connect_nats::publish::Publisher;
use essaim_connect_postgres::{PgSink, ResumePoint, SinkConfig, SpecIdentity};
use tokio_util::sync::CancellationToken;

use super::UnitContext;
use super::routes::{Routes, WriterTarget, resolve};
use super::state::{Fetched, Input, SHUFFLE_SOURCE, Turn, unit_i32};
use crate::bindings::SourceBinding;
use crate::breakers::{EndpointKind, PipelineBreakers};
use crate::error::UnitError;
use crate::shuffle;
use crate::task::{Stage, StreamTaskSpec};

/// Most publishes awaiting their ack at once.
const MAX_PUBLISH_IN_FLIGHT: usize = 4096;

/// A partition reader of any connector.
enum AnyReader {
    Nats(Box<NatsPartitionReader>),
    Kafka(Box<KafkaPartitionReader>),
    Files(DirectoryReader),
}

impl PartitionReader for AnyReader {
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
}

impl AnyReader {
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

impl MessageWriter for AnyWriter {
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

/// The connections of one run of a unit.
pub struct UnitIo {
    pipeline: String,
    /// One per [`Input`], in the same order.
    readers: Vec<Guarded<AnyReader>>,
    publisher: Option<GuardedPublisher>,
    writers: Vec<Guarded<AnyWriter>>,
    sink: PgSink,
    batch_max: usize,
    wait: Duration,
}

impl UnitIo {
    /// Opens the writers and the sink of `routes`, then the readers of `inputs` after
    /// the positions committed in PostgreSQL, which it returns with the checkpoint.
    pub async fn open(
        context: &UnitContext,
        unit: u32,
        routes: &Routes,
        inputs: &[Input],
    ) -> Result<(UnitIo, ResumePoint), UnitError> {
        let task = &context.task;
        let breakers = &context.breakers;
        let mut writers = Vec::new();
        for target in routes.writers() {
            writers.push(match target {
                WriterTarget::Kafka { topic } => {
                    let breaker = breakers.get("kafka", EndpointKind::Sink);
                    let config = kafka_config(task)?;
                    let open = KafkaWriter::open(&config, topic, WriterOptions::default());
                    let writer = breaker.call("open", open).await?;
                    Guarded::new(AnyWriter::Kafka(writer), breaker)
                }
                WriterTarget::Files { dir } => {
                    let breaker = breakers.get("files", EndpointKind::Sink);
                    let open = RollingFileWriter::open(RollingConfig::new(dir.clone()));
                    let writer = breaker.call("open", open).await?;
                    Guarded::new(AnyWriter::Files(writer), breaker)
                }
            });
        }
        let postgres_url = task
            .endpoints
            .postgres_url
            .clone()
            .ok_or(UnitError::MissingEndpoint("PostgreSQL URL"))?;
        let mut config = SinkConfig::new(
            postgres_url,
            format!("{}/{}/{unit}", task.pipeline, task.stage.as_str()),
        );
        config.max_batch_rows = usize::MAX;
        // Claimed for this attempt: a previous owner not stopped yet can no longer commit.
        config.owner = Some(context.attempt_id);
        config.connection.breaker = breakers.get(
            essaim_connect_postgres::connection::CONNECTOR,
            EndpointKind::Sink,
        );
        config.spec = Some(SpecIdentity {
            pipeline: task.pipeline.clone(),
            fingerprint: task.spec_fingerprint()?,
            text: task.spec_toml.clone(),
            migration: task.migration,
        });
        let (sink, resume) = PgSink::open_tables(config, routes.tables().to_vec()).await?;
        // The shuffle stream exists before either stage reads or writes it.
        if context.planned.stages.has_shuffle() {
            let name = shuffle::stream_name(&task.pipeline);
            let subjects = shuffle::subjects(&task.pipeline);
            let spec = StreamSpec::new(&name, &[subjects.as_str()]);
            let breaker = breakers.get("nats", EndpointKind::Shuffle);
            through(
                &breaker,
                "ensure stream",
                ensure_stream(nats(context)?, &spec),
            )
            .await?;
        }
        let mut readers = Vec::new();
        for input in inputs {
            let committed = resume
                .positions
                .get(&(input.source.clone(), unit_i32(input.partition)))
                .map(|position| u64::try_from(*position).unwrap_or(0));
            readers.push(open_reader(context, input, committed).await?);
        }
        let publisher = match &context.nats {
            Some(nats) => Some(GuardedPublisher {
                publisher: Publisher::new(nats.clone(), MAX_PUBLISH_IN_FLIGHT)?,
                breakers: Arc::clone(breakers),
            }),
            None => None,
        };
        let io = UnitIo {
            pipeline: task.pipeline.clone(),
            readers,
            publisher,
            writers,
            sink,
            batch_max: task.batch_max,
            wait: Duration::from_millis(task.batch_wait_ms.max(1)),
        };
        Ok((io, resume))
    }

    /// Reads a batch, shared between the readers. `None` when cancelled.
    pub async fn fetch(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<Fetched>>, UnitError> {
        fetch(&mut self.readers, self.batch_max, self.wait, cancel).await
    }

    /// The first reader's lag, when it can tell.
    pub async fn lag(&mut self) -> Option<u64> {
        self.readers.first_mut()?.lag().await.ok().flatten()
    }

    /// Publishes and commits `turn` while the next batch is fetched, so that reading
    /// does not wait for the broker's acks and the database's commit (the next batch is
    /// processed only once this commit is durable, and dropped if it failed). Returns
    /// the commit (its duration and when it ended) and the next batch.
    pub async fn commit_and_fetch(
        &mut self,
        turn: &mut Turn,
        cancel: &CancellationToken,
    ) -> (
        Result<Committed, UnitError>,
        Result<Option<Vec<Fetched>>, UnitError>,
    ) {
        let UnitIo {
            pipeline,
            readers,
            publisher,
            writers,
            sink,
            batch_max,
            wait,
        } = self;
        let outputs = async {
            publish(pipeline, publisher.as_mut(), writers, turn).await?;
            let started = std::time::Instant::now();
            commit(sink, turn).await?;
            Ok(Committed {
                took: started.elapsed(),
                at_ms: essaim_connect_nats::partition::now_ms(),
            })
        };
        tokio::join!(outputs, fetch(readers, *batch_max, *wait, cancel))
    }

    /// Acknowledges what the turn read, once its commit is durable.
    pub async fn acknowledge(&mut self, turn: &Turn) {
        for &(input, last) in &turn.acknowledge {
            // The commit is durable: a lost ack only causes a skipped redelivery.
            let _ = self.readers[input].commit(last).await;
        }
    }
}

/// A durable commit of a turn.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// How long the transaction took.
    pub took: Duration,
    /// When it ended, in milliseconds since the epoch.
    pub at_ms: i64,
}

/// The JetStream publisher with the breakers of what it publishes to: the shuffle and
/// the pipeline's subject sinks (one server, but their failures are told apart). They
/// are taken when first used, so that a pipeline without subject sinks exports no
/// breaker for them.
struct GuardedPublisher {
    publisher: Publisher,
    breakers: Arc<PipelineBreakers>,
}

/// Runs a JetStream call behind `breaker` and records its outcome.
async fn through<T>(
    breaker: &SharedBreaker,
    action: &'static str,
    call: impl Future<Output = Result<T, NatsError>>,
) -> Result<T, UnitError> {
    breaker.allow(action)?;
    let result = call.await;
    breaker.record(&result, NatsError::is_retryable);
    Ok(result?)
}

/// Reads a batch from `readers`, shared between them. `None` when cancelled.
async fn fetch(
    readers: &mut [Guarded<AnyReader>],
    batch_max: usize,
    wait: Duration,
    cancel: &CancellationToken,
) -> Result<Option<Vec<Fetched>>, UnitError> {
    let mut batch = Vec::new();
    let per_reader = (batch_max / readers.len().max(1)).max(1);
    for (input, reader) in readers.iter_mut().enumerate() {
        let messages = tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            fetched = reader.fetch(per_reader, wait) => fetched?,
        };
        let published = reader.inner().published_ms().to_vec();
        for (message, published_ms) in messages
            .into_iter()
            .zip(published.into_iter().chain(std::iter::repeat(None)))
        {
            batch.push(Fetched {
                input,
                message,
                published_ms,
            });
        }
    }
    Ok(Some(batch))
}

/// Sends what leaves by brokers and files: the shuffle, then the subjects (and waits
/// for their acks), then the writers.
async fn publish(
    pipeline: &str,
    publisher: Option<&mut GuardedPublisher>,
    writers: &mut [Guarded<AnyWriter>],
    turn: &Turn,
) -> Result<(), UnitError> {
    let needs_nats = !turn.shuffle.is_empty() || !turn.subject_messages.is_empty();
    if needs_nats && publisher.is_none() {
        return Err(UnitError::MissingEndpoint("NATS URL"));
    }
    if let Some(GuardedPublisher {
        publisher,
        breakers,
    }) = publisher
    {
        // A publish only queues: whether the server is up is known when the acks come
        // at the flush, so a turn's publishing is one call to each breaker it uses.
        let mut used = Vec::new();
        if !turn.shuffle.is_empty() {
            used.push(breakers.get("nats", EndpointKind::Shuffle));
        }
        if !turn.subject_messages.is_empty() {
            used.push(breakers.get("nats", EndpointKind::Sink));
        }
        for breaker in &used {
            breaker.allow("publish")?;
        }
        let published = publish_to_nats(pipeline, publisher, turn).await;
        for breaker in &used {
            breaker.record(&published, |error| match error {
                UnitError::Nats(error) => error.is_retryable(),
                _ => false,
            });
        }
        published?;
    }
    for (writer, messages) in writers.iter_mut().zip(&turn.writer_messages) {
        if !messages.is_empty() {
            writer.deliver(messages).await?;
        }
    }
    Ok(())
}

/// Publishes the turn's shuffle records and subject messages, and waits for their acks.
async fn publish_to_nats(
    pipeline: &str,
    publisher: &mut Publisher,
    turn: &Turn,
) -> Result<(), UnitError> {
    // One JetStream message per shuffle partition and chunk, not per record: a
    // durable broker syncs every message to disk. At most one in flight per partition
    // (see `shuffle::publish_rounds`): usually a single round.
    for round in shuffle::publish_rounds(&turn.shuffle) {
        for (partition, chunk) in round {
            let bytes = shuffle::encode(chunk).map_err(UnitError::ShuffleEncoding)?;
            let subject = shuffle::subject(pipeline, partition);
            publisher.publish(&subject, Bytes::from(bytes)).await?;
        }
        publisher.flush().await?;
    }
    for (subject, message) in &turn.subject_messages {
        publisher.publish(subject, message.clone()).await?;
    }
    publisher.flush().await?;
    Ok(())
}

/// Stores the turn's dead letters, then commits its rows, positions and checkpoint in
/// one transaction.
async fn commit(sink: &mut PgSink, turn: &mut Turn) -> Result<(), UnitError> {
    for letter in &turn.dead_letters {
        sink.dead_letter(letter).await?;
    }
    sink.write_batch(&turn.sink_batch()).await?;
    Ok(())
}

/// The consumer of one NATS partition for `task`'s unit, with room for the two
/// batches a unit may have unacknowledged (it fetches while it commits).
fn partition_spec(
    task: &StreamTaskSpec,
    stream: &str,
    subject: &str,
    durable: &str,
    partition: u32,
) -> PartitionSpec {
    PartitionSpec::new(stream, subject, durable, partition).allowing_batches_of(task.batch_max)
}

/// Opens the reader of one input after its committed position.
async fn open_reader(
    context: &UnitContext,
    input: &Input,
    committed: Option<u64>,
) -> Result<Guarded<AnyReader>, UnitError> {
    let task = &context.task;
    let unit = input.partition;
    if task.stage == Stage::Shuffled {
        let spec = partition_spec(
            task,
            &shuffle::stream_name(&task.pipeline),
            &shuffle::subject(&task.pipeline, unit),
            &durable_name(&task.pipeline, SHUFFLE_SOURCE, unit, context.attempt_id),
            unit,
        );
        let breaker = context.breakers.get("nats", EndpointKind::Shuffle);
        let open = NatsPartitionReader::open(nats(context)?, spec, committed);
        let reader = breaker.call("open", open).await?;
        return Ok(Guarded::new(AnyReader::Nats(Box::new(reader)), breaker));
    }
    let binding = context
        .planned
        .bindings
        .sources
        .iter()
        .find_map(|(source, binding)| (*source == input.source).then_some(binding));
    let Some(binding) = binding else {
        return Err(UnitError::Connector(ConnectorError::permanent(
            "stream",
            "open",
            format!("source `{}` has no connector", input.source),
        )));
    };
    let breakers = &context.breakers;
    Ok(match binding {
        SourceBinding::Nats {
            stream, subject, ..
        } => {
            let spec = partition_spec(
                task,
                stream,
                &format!("{subject}.{unit}"),
                &durable_name(&task.pipeline, &input.source, unit, context.attempt_id),
                unit,
            );
            let breaker = breakers.get("nats", EndpointKind::Source);
            let open = NatsPartitionReader::open(nats(context)?, spec, committed);
            let reader = breaker.call("open", open).await?;
            Guarded::new(AnyReader::Nats(Box::new(reader)), breaker)
        }
        SourceBinding::Kafka { topic, .. } => {
            let breaker = breakers.get("kafka", EndpointKind::Source);
            let config = kafka_config(task)?;
            let options = ReaderOptions::default();
            let open = KafkaPartitionReader::open(&config, topic, unit, committed, options);
            let reader = breaker.call("open", open).await?;
            Guarded::new(AnyReader::Kafka(Box::new(reader)), breaker)
        }
        SourceBinding::Files { dir, partitions } => {
            let breaker = breakers.get("files", EndpointKind::Source);
            let config = DirectoryConfig::new(resolve(task, dir), *partitions);
            let reader = breaker
                .call("open", DirectoryReader::open(&config, unit, committed))
                .await?;
            Guarded::new(AnyReader::Files(reader), breaker)
        }
    })
}

fn nats(context: &UnitContext) -> Result<&async_nats::jetstream::Context, UnitError> {
    context
        .nats
        .as_ref()
        .ok_or(UnitError::MissingEndpoint("NATS URL"))
}

fn kafka_config(task: &StreamTaskSpec) -> Result<KafkaConfig, UnitError> {
    task.endpoints
        .kafka_bootstrap
        .as_ref()
        .map(KafkaConfig::new)
        .ok_or(UnitError::MissingEndpoint("Kafka bootstrap address"))
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
