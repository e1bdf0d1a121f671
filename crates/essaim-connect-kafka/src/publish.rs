//! Publishing lines as a topic (`essaim replay` with a Kafka destination): line `i` to
//! partition `i mod partitions`, so that each partition keeps the file's order, then,
//! when asked, one end-of-stream marker per partition.

use essaim_connect::ConnectorError;
use rskafka::record::Record;

use crate::config::{KafkaConfig, connect};
use crate::produce::PartitionedProducer;
use crate::topic::ensure_topic;
use crate::writer::end_of_stream_record;

/// Lines queued before they are sent and acknowledged.
const MAX_QUEUED_LINES: usize = 2000;

/// What [`publish_lines`] published, every record acknowledged by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Lines published.
    pub lines: u64,
    /// End-of-stream markers published (0, or one per partition).
    pub end_of_stream_markers: u64,
}

/// Ensures `topic` with `partitions` partitions (one replica, see
/// [`ensure_topic`]), publishes line `i` of `lines` to partition `i mod partitions`
/// (value = the line, no key), then, when `end_of_stream`, one record with the
/// [`essaim_connect::END_OF_STREAM_HEADER`] header per partition. Returns once the
/// broker acknowledged everything (`acks = all`).
///
/// A transient error leaves an unknown prefix published: publishing again from the
/// start duplicates lines, which the runtime's readers see as new records.
pub async fn publish_lines<I>(
    config: &KafkaConfig,
    topic: &str,
    partitions: u32,
    lines: I,
    end_of_stream: bool,
) -> Result<Published, ConnectorError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    ensure_topic(config, topic, partitions, 1).await?;
    let client = connect(config).await?;
    let mut producer =
        PartitionedProducer::open_with(&client, config, topic, MAX_QUEUED_LINES).await?;
    let count = producer.partition_count();
    let mut published = Published::default();
    let mut partition = 0u32;
    for line in lines {
        let record = Record {
            key: None,
            value: Some(line.as_ref().to_vec()),
            headers: Default::default(),
            timestamp: crate::produce::now(),
        };
        producer.queue(partition, record);
        published.lines += 1;
        partition = (partition + 1) % count;
        if producer.is_full() {
            producer.send_all().await?;
        }
    }
    if end_of_stream {
        for marked in 0..count {
            producer.queue(marked, end_of_stream_record());
        }
        published.end_of_stream_markers = u64::from(count);
    }
    producer.send_all().await?;
    Ok(published)
}
