//! The sink: results as keyed records, spread over the partitions by a hash of the key.
//!
//! The record key is the result's deterministic key, so a compacted topic keeps the
//! last revision of each result and a consumer can drop duplicates; the revision rides
//! in the [`REVISION_HEADER`] header. The partition is Kafka's own default choice for a
//! keyed record (murmur2 of the key, positive, modulo the partition count), so a Java or
//! librdkafka producer with the default partitioner puts the same key in the same
//! partition, and every revision of a result lands in one partition, in order.

use essaim_connect::{ConnectorError, MessageWriter, OutMessage};
use rskafka::record::Record;

use crate::config::KafkaConfig;
use crate::produce::PartitionedProducer;

/// The header that carries an [`OutMessage::revision`], in decimal.
pub const REVISION_HEADER: &str = "Essaim-Revision";

/// Bounds of a [`KafkaWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Messages queued before a write sends them (and waits for their
    /// acknowledgement): the memory bound of the writer.
    pub max_queued_messages: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_queued_messages: 1000,
        }
    }
}

/// Writes [`OutMessage`]s to one topic. [`MessageWriter::flush`] returns once every
/// in-sync replica acknowledged everything written (`acks = all`).
///
/// [`OutMessage::partition`] (the pipeline's partition) is not the topic's partition:
/// the key decides that, see [`partition_for_key`].
///
/// After an error, what was not acknowledged stays queued and the next `flush` sends
/// it again. A failed `write` may have queued its messages; writing them again then
/// sends them twice, which their keys make harmless.
pub struct KafkaWriter {
    producer: PartitionedProducer,
}

impl KafkaWriter {
    /// Opens a writer for `topic`, which must exist (see [`crate::ensure_topic`]); an
    /// unknown topic is a permanent error.
    pub async fn open(
        config: &KafkaConfig,
        topic: &str,
        options: WriterOptions,
    ) -> Result<Self, ConnectorError> {
        let producer =
            PartitionedProducer::open(config, topic, options.max_queued_messages).await?;
        Ok(KafkaWriter { producer })
    }

    /// The topic written.
    pub fn topic(&self) -> &str {
        self.producer.topic()
    }

    /// Its number of partitions (read when the writer opened).
    pub fn partition_count(&self) -> u32 {
        self.producer.partition_count()
    }

    /// Messages the broker acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.producer.acknowledged()
    }

    /// Messages written and not acknowledged yet.
    pub fn queued(&self) -> usize {
        self.producer.queued()
    }
}

impl MessageWriter for KafkaWriter {
    async fn write(&mut self, messages: &[OutMessage]) -> Result<(), ConnectorError> {
        // Full from an earlier failure: send that first, and queue nothing new if it
        // fails again.
        if self.producer.is_full() {
            self.producer.send_all().await?;
        }
        let partitions = self.producer.partition_count();
        for message in messages {
            let partition = partition_for_key(message.key.as_bytes(), partitions);
            self.producer.queue(partition, record_of(message));
        }
        if self.producer.is_full() {
            self.producer.send_all().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        self.producer.send_all().await
    }
}

fn record_of(message: &OutMessage) -> Record {
    Record {
        key: Some(message.key.as_bytes().to_vec()),
        value: Some(message.payload.to_vec()),
        headers: [(
            REVISION_HEADER.to_owned(),
            message.revision.to_string().into_bytes(),
        )]
        .into(),
        timestamp: crate::produce::now(),
    }
}

/// Reads the [`REVISION_HEADER`] of a record's headers, when present and a number.
pub fn revision_of(headers: &std::collections::BTreeMap<String, Vec<u8>>) -> Option<i64> {
    let value = headers.get(REVISION_HEADER)?;
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The partition of a keyed record among `partitions` (at least 1): Kafka's default
/// partitioner, `(murmur2(key) & 0x7fffffff) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// MurmurHash2 (32 bits, seed `0x9747b28c`) exactly as Kafka's `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes the length as a Java int: keys over 2 GiB do not exist here.
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut hash = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M);
        hash ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash
}

/// The payload of an end-of-stream marker: empty, the header says it all.
pub(crate) fn end_of_stream_record() -> Record {
    Record {
        key: None,
        value: Some(Vec::new()),
        headers: [(
            essaim_connect::END_OF_STREAM_HEADER.to_owned(),
            b"true".to_vec(),
        )]
        .into(),
        timestamp: crate::produce::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn murmur2_matches_kafka() {
        // The cases of Kafka's UtilsTest.testMurmur2 (Java ints).
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, java) in cases {
            assert_eq!(
                murmur2(key),
                java.cast_unsigned(),
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn a_key_always_lands_in_the_same_partition_and_keys_spread() {
        let mut seen = [0u32; 4];
        for index in 0..400 {
            let key = format!("window-{index}");
            let partition = partition_for_key(key.as_bytes(), 4);
            assert_eq!(partition, partition_for_key(key.as_bytes(), 4));
            seen[usize::try_from(partition).expect("small")] += 1;
        }
        assert!(seen.iter().all(|count| *count > 50), "{seen:?}");
        assert_eq!(partition_for_key(b"anything", 1), 0);
        assert_eq!(partition_for_key(b"anything", 0), 0);
    }

    #[test]
    fn records_carry_key_revision_and_payload() {
        let message = OutMessage {
            key: "w/2024-01-01T00:00/eu".to_owned(),
            revision: 3,
            partition: 1,
            payload: Bytes::from_static(b"{\"sum\":4}"),
        };
        let record = record_of(&message);
        assert_eq!(record.key.as_deref(), Some(message.key.as_bytes()));
        assert_eq!(record.value.as_deref(), Some(&b"{\"sum\":4}"[..]));
        assert_eq!(revision_of(&record.headers), Some(3));
        assert!(
            end_of_stream_record()
                .headers
                .contains_key(essaim_connect::END_OF_STREAM_HEADER)
        );
    }
}
