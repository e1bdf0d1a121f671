//! The bounded, acknowledged producing that the writer and the replay share.
//!
//! Records wait per partition in memory, at most `max_queued` of them (plus the ones
//! of the call that crossed the bound), and leave in requests of at most
//! [`MAX_REQUEST_BYTES`]. One request per partition is in flight at a time, the
//! partitions in parallel. A request counts only once the broker answered it with
//! `acks = all` (the client always asks for it): then every in-sync replica has the
//! records. A request that fails keeps its records queued, so the next send retries
//! them. A request that timed out on our side may still have been appended by the
//! broker; sending it again can duplicate records, which is why every record of a
//! sink carries a deterministic key (see `essaim_connect`).

use std::collections::VecDeque;
use std::time::Duration;

use essaim_connect::ConnectorError;
use futures_util::future::join_all;
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::Client;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;

use crate::config::{KafkaConfig, within};
use crate::error::from_client;
use crate::topic::{partition_count_of, unknown_topic};

/// The largest produce request sent (Kafka's default limit on a batch is 1 MiB).
pub const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// Per-partition queues of records and the clients that send them.
pub(crate) struct PartitionedProducer {
    topic: String,
    partitions: Vec<PartitionClient>,
    queued: Vec<VecDeque<Record>>,
    queued_count: usize,
    max_queued: usize,
    request_timeout: Duration,
    acknowledged: u64,
}

impl PartitionedProducer {
    /// Connects to the leaders of every partition of `topic`, which must exist.
    pub(crate) async fn open(
        config: &KafkaConfig,
        topic: &str,
        max_queued: usize,
    ) -> Result<Self, ConnectorError> {
        let client = crate::config::connect(config).await?;
        Self::open_with(&client, config, topic, max_queued).await
    }

    pub(crate) async fn open_with(
        client: &Client,
        config: &KafkaConfig,
        topic: &str,
        max_queued: usize,
    ) -> Result<Self, ConnectorError> {
        let count = partition_count_of(client, config, topic)
            .await?
            .ok_or_else(|| unknown_topic("open writer", topic))?;
        let mut partitions = Vec::new();
        for partition in 0..count {
            let index = i32::try_from(partition).unwrap_or(i32::MAX);
            let partition_client = within(
                config.request_timeout,
                "open writer",
                client.partition_client(topic, index, UnknownTopicHandling::Error),
            )
            .await?
            .map_err(|failure| from_client("open writer", failure))?;
            partitions.push(partition_client);
        }
        Ok(PartitionedProducer {
            topic: topic.to_owned(),
            queued: partitions.iter().map(|_| VecDeque::new()).collect(),
            partitions,
            queued_count: 0,
            max_queued: max_queued.max(1),
            request_timeout: config.request_timeout,
            acknowledged: 0,
        })
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The number of partitions of the topic.
    pub(crate) fn partition_count(&self) -> u32 {
        u32::try_from(self.partitions.len()).unwrap_or(u32::MAX)
    }

    /// Records the broker acknowledged so far.
    pub(crate) fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Records queued and not acknowledged yet.
    pub(crate) fn queued(&self) -> usize {
        self.queued_count
    }

    /// True when the queue reached its bound: send before queuing more.
    pub(crate) fn is_full(&self) -> bool {
        self.queued_count >= self.max_queued
    }

    /// Queues `record` for `partition` (`< partition_count()`).
    pub(crate) fn queue(&mut self, partition: u32, record: Record) {
        let index = usize::try_from(partition).unwrap_or(usize::MAX);
        if let Some(queue) = self.queued.get_mut(index) {
            queue.push_back(record);
            self.queued_count += 1;
        }
    }

    /// Sends everything queued and returns once the broker acknowledged all of it, or
    /// with the first error (what was not acknowledged stays queued).
    pub(crate) async fn send_all(&mut self) -> Result<(), ConnectorError> {
        if self.queued_count == 0 {
            return Ok(());
        }
        let timeout = self.request_timeout;
        let sends = self
            .partitions
            .iter()
            .zip(self.queued.iter_mut())
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(client, queue)| send_partition(client, queue, timeout));
        let outcomes = join_all(sends).await;
        let mut first_error = None;
        for (sent, outcome) in outcomes {
            self.acknowledged += sent;
            self.queued_count = self
                .queued_count
                .saturating_sub(usize::try_from(sent).unwrap_or(usize::MAX));
            if let Err(failure) = outcome
                && first_error.is_none()
            {
                first_error = Some(failure);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Sends one partition's queue, request after request; returns how many records the
/// broker acknowledged, and the error that stopped it, if any.
async fn send_partition(
    client: &PartitionClient,
    queue: &mut VecDeque<Record>,
    timeout: Duration,
) -> (u64, Result<(), ConnectorError>) {
    let mut sent = 0u64;
    while !queue.is_empty() {
        let mut bytes = 0usize;
        let mut take = 0usize;
        for record in queue.iter() {
            let size = record.approximate_size() + 64;
            if take > 0 && bytes + size > MAX_REQUEST_BYTES {
                break;
            }
            bytes += size;
            take += 1;
        }
        let batch: Vec<Record> = queue.iter().take(take).cloned().collect();
        let outcome = match within(
            timeout,
            "produce",
            client.produce(batch, Compression::NoCompression),
        )
        .await
        {
            Ok(Ok(_offsets)) => Ok(()),
            Ok(Err(failure)) => Err(from_client("produce", failure)),
            Err(timed_out) => Err(timed_out),
        };
        if let Err(failure) = outcome {
            return (sent, Err(failure));
        }
        queue.drain(..take);
        sent += u64::try_from(take).unwrap_or(u64::MAX);
    }
    (sent, Ok(()))
}

/// The wall clock as a record timestamp (milliseconds; the client's `chrono` has no
/// clock of its own).
pub(crate) fn now() -> DateTime<Utc> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}
