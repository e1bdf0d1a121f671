//! The source: one partition of a topic, read from a given offset, in offset order.
//!
//! Positions are Kafka offsets. They increase strictly within a partition and never
//! change; in a compacted topic they may skip (a compacted record is gone), which the
//! contract allows. A reader asks the broker for at most `max_fetch_bytes` at a time and
//! holds at most one such answer in memory.
//!
//! **Transactions** are not this reader's business: essaim's producers are not
//! transactional. The client skips control batches (transaction markers) and does not
//! filter records of aborted transactions, so a topic written by a transactional
//! producer that aborts would deliver the aborted records too.
//!
//! **Commits.** The runtime keeps the committed positions itself (in PostgreSQL, with
//! the results) and reopens readers after them: that is the only resume point it
//! trusts. [`PartitionReader::commit`] records the position in the reader (for
//! [`PartitionReader::lag`]) and, when [`ReaderOptions::group`] names a consumer group,
//! also stores it as that group's offset at the broker (position + 1, Kafka's
//! convention; see [`crate::group`]), so that Kafka's tools show essaim's progress.
//! The client (rskafka) has no group API, so those two requests are spoken directly.
//! Without a group, commits stay in the reader.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use essaim_connect::{ConnectorError, END_OF_STREAM_HEADER, PartitionReader, SourceMessage};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;

use crate::config::{KafkaConfig, connect, millis_i32, within};
use crate::error::{self, from_client};
use crate::group::GroupOffsets;
use crate::topic::{partition_count_of, unknown_topic};

/// Bounds and commit target of a [`KafkaPartitionReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderOptions {
    /// The most bytes one fetch asks the broker for (the broker still returns a single
    /// record batch larger than that, so that a large record cannot block the reader).
    pub max_fetch_bytes: usize,
    /// The consumer group whose offset [`PartitionReader::commit`] stores at the
    /// broker; `None`: commits stay in the reader.
    pub group: Option<String>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            max_fetch_bytes: 1024 * 1024,
            group: None,
        }
    }
}

/// One record as read, with what [`SourceMessage`] leaves out (key and headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: u64,
    /// The record key, if any.
    pub key: Option<Bytes>,
    /// The value (empty when null).
    pub payload: Bytes,
    /// The record headers.
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl KafkaRecord {
    /// True when the record carries the [`END_OF_STREAM_HEADER`] header.
    pub fn is_end_of_stream(&self) -> bool {
        self.headers.contains_key(END_OF_STREAM_HEADER)
    }

    fn into_source_message(self) -> SourceMessage {
        SourceMessage {
            partition: self.partition,
            position: self.offset,
            end_of_stream: self.is_end_of_stream(),
            payload: self.payload,
            // Kafka keeps no delivery count, and this reader never goes back.
            redeliveries: 0,
        }
    }
}

/// Reads one partition of a topic, after a resume position.
pub struct KafkaPartitionReader {
    client: PartitionClient,
    topic: String,
    partition: u32,
    /// The offset the next fetch asks for.
    fetch_offset: i64,
    /// Where this reader started: the first offset it may deliver.
    start_offset: u64,
    /// Fetched and not yet delivered, in offset order (one fetch's worth at most).
    buffered: VecDeque<KafkaRecord>,
    committed: Option<u64>,
    group: Option<GroupOffsets>,
    max_fetch_bytes: i32,
    request_timeout: Duration,
}

impl KafkaPartitionReader {
    /// Opens `partition` of `topic` to deliver the records after `resume_after`
    /// (`None`: from the earliest offset the broker still retains).
    ///
    /// Permanent errors: the topic or partition does not exist; the offset after
    /// `resume_after` is no longer retained (delivering from a later one would leave a
    /// gap); `resume_after` is beyond the end of the partition (the topic was recreated,
    /// or the broker lost acknowledged records).
    pub async fn open(
        config: &KafkaConfig,
        topic: &str,
        partition: u32,
        resume_after: Option<u64>,
        options: ReaderOptions,
    ) -> Result<Self, ConnectorError> {
        let client = connect(config).await?;
        let count = partition_count_of(&client, config, topic)
            .await?
            .ok_or_else(|| unknown_topic("open reader", topic))?;
        if partition >= count {
            return Err(error::permanent(
                "open reader",
                format!("topic `{topic}` has {count} partitions, no partition {partition}"),
            ));
        }
        let index = i32::try_from(partition).unwrap_or(i32::MAX);
        let client = within(
            config.request_timeout,
            "open reader",
            client.partition_client(topic, index, UnknownTopicHandling::Error),
        )
        .await?
        .map_err(|failure| from_client("open reader", failure))?;
        let earliest = offset_at(&client, OffsetAt::Earliest, config.request_timeout).await?;
        let start_offset = match resume_after {
            None => earliest,
            Some(position) => {
                let start = position.saturating_add(1);
                if start < earliest {
                    return Err(error::permanent(
                        "open reader",
                        format!(
                            "`{topic}`/{partition}: offsets {start}..{earliest} are no longer \
                             retained; resuming after {position} would skip them"
                        ),
                    ));
                }
                let end = offset_at(&client, OffsetAt::Latest, config.request_timeout).await?;
                if start > end {
                    return Err(error::permanent(
                        "open reader",
                        format!(
                            "`{topic}`/{partition} ends at offset {end}, before the resume \
                             position {position}: the topic was recreated or lost records"
                        ),
                    ));
                }
                start
            }
        };
        Ok(KafkaPartitionReader {
            client,
            topic: topic.to_owned(),
            partition,
            fetch_offset: i64::try_from(start_offset).unwrap_or(i64::MAX),
            start_offset,
            buffered: VecDeque::new(),
            committed: None,
            group: options
                .group
                .as_deref()
                .map(|group| GroupOffsets::new(config, group)),
            max_fetch_bytes: i32::try_from(options.max_fetch_bytes.max(1)).unwrap_or(i32::MAX),
            request_timeout: config.request_timeout,
        })
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition read.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The offset of the next record this reader will deliver (or wait for).
    pub fn next_offset(&self) -> u64 {
        self.buffered.front().map_or_else(
            || u64::try_from(self.fetch_offset).unwrap_or(0),
            |record| record.offset,
        )
    }

    /// The last position committed through this reader.
    pub fn committed(&self) -> Option<u64> {
        self.committed
    }

    /// The offset the consumer group of [`ReaderOptions::group`] has stored at the broker
    /// for this partition (the next offset to consume); `None` without a group or
    /// before its first commit.
    pub async fn group_offset(&mut self) -> Result<Option<u64>, ConnectorError> {
        match &mut self.group {
            Some(group) => group.fetch(&self.topic, self.partition).await,
            None => Ok(None),
        }
    }

    /// Like [`PartitionReader::fetch`], with each record's key and headers.
    pub async fn fetch_records(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<KafkaRecord>, ConnectorError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if self.buffered.is_empty() {
            self.fill(wait).await?;
        }
        let take = max.min(self.buffered.len());
        Ok(self.buffered.drain(..take).collect())
    }

    /// Fetches until something arrives or `wait` is over. The broker holds a fetch up to
    /// its `max_wait`, but one that answers early and empty is asked again after a pause.
    async fn fill(&mut self, wait: Duration) -> Result<(), ConnectorError> {
        let deadline = Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let fetch = self.client.fetch_records(
                self.fetch_offset,
                1..self.max_fetch_bytes,
                millis_i32(remaining),
            );
            let (records, _high_watermark) = within(
                self.request_timeout.saturating_add(remaining),
                "fetch",
                fetch,
            )
            .await?
            .map_err(|failure| from_client("fetch", failure))?;
            for record in records {
                if record.offset >= self.fetch_offset {
                    self.fetch_offset = record.offset.saturating_add(1);
                    let record = self.convert(record)?;
                    self.buffered.push_back(record);
                }
            }
            if !self.buffered.is_empty() || Instant::now() >= deadline {
                return Ok(());
            }
            let pause =
                Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }

    fn convert(&self, record: RecordAndOffset) -> Result<KafkaRecord, ConnectorError> {
        let offset = u64::try_from(record.offset).map_err(|_| {
            error::permanent(
                "fetch",
                format!("the broker sent a negative offset {}", record.offset),
            )
        })?;
        Ok(KafkaRecord {
            partition: self.partition,
            offset,
            key: record.record.key.map(Bytes::from),
            payload: record.record.value.map(Bytes::from).unwrap_or_default(),
            headers: record.record.headers,
        })
    }
}

impl PartitionReader for KafkaPartitionReader {
    async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<SourceMessage>, ConnectorError> {
        let records = self.fetch_records(max, wait).await?;
        Ok(records
            .into_iter()
            .map(KafkaRecord::into_source_message)
            .collect())
    }

    /// Records `position` as committed, and stores `position + 1` as the consumer
    /// group's offset when the reader has a group (see the module doc). A position this
    /// reader has not delivered yet is refused; an older one than the last commit is
    /// ignored (commits never go back). A failed group commit is retried by the next
    /// commit, which carries a position at least as recent.
    async fn commit(&mut self, position: u64) -> Result<(), ConnectorError> {
        if position >= self.next_offset() {
            return Err(error::permanent(
                "commit",
                format!(
                    "`{}`/{}: position {position} was not delivered (next is {})",
                    self.topic,
                    self.partition,
                    self.next_offset()
                ),
            ));
        }
        let committed = self.committed.map_or(position, |last| last.max(position));
        self.committed = Some(committed);
        if let Some(group) = &mut self.group {
            group
                .commit(&self.topic, self.partition, committed.saturating_add(1))
                .await?;
        }
        Ok(())
    }

    /// The high watermark minus the next offset to commit (the committed position plus
    /// one, in Kafka's convention; the start offset before any commit, or when the
    /// committed position is older than it).
    async fn lag(&mut self) -> Result<Option<u64>, ConnectorError> {
        let end = offset_at(&self.client, OffsetAt::Latest, self.request_timeout).await?;
        // Everything before the start offset was committed before this reader opened.
        let next = self.committed.map_or(self.start_offset, |position| {
            position.saturating_add(1).max(self.start_offset)
        });
        Ok(Some(end.saturating_sub(next)))
    }
}

/// The earliest retained offset, or the high watermark (the offset the next record
/// will get).
async fn offset_at(
    client: &PartitionClient,
    at: OffsetAt,
    timeout: Duration,
) -> Result<u64, ConnectorError> {
    let offset = within(timeout, "list offsets", client.get_offset(at))
        .await?
        .map_err(|failure| from_client("list offsets", failure))?;
    u64::try_from(offset).map_err(|_| {
        error::permanent(
            "list offsets",
            format!("the broker answered offset {offset}"),
        )
    })
}
