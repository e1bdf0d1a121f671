//! The shuffle between the two stages: a JetStream stream per pipeline whose subject
//! `essaim.shuffle.<pipeline>.<partition>` is partition `partition` of the shuffle.
//!
//! A first-stage unit may publish the same records twice: after a crash it resumes
//! from its last committed position and replays what it had published but not
//! committed. Its processing is deterministic, so the replay publishes the same
//! records in the same order. Each record is numbered by the upstream unit, the
//! position of the source message that produced it and its rank among that message's
//! records for this partition; a second-stage unit remembers, per upstream, the last
//! number it took (in its checkpoint) and skips anything at or below it. That makes
//! the shuffle exactly-once without a deduplication window.
//!
//! Skipping at or below the last number is right only if what an upstream got stored
//! in a partition is always a *prefix* of what it sent there. JetStream keeps that only
//! for one message in flight at a time: with two in flight on one subject, the first
//! may be lost with a leader that fails while the second, sent after it, is stored by
//! the next one; on replay the second stage would then skip the lost records for good.
//! So a unit publishes one message per partition at a time ([`publish_rounds`]):
//! partitions in parallel, a partition's next message only after its previous one's
//! ack.
//!
//! Watermarks travel in the same partition, after the records they cover, so a
//! second-stage unit's event time is the minimum of its upstreams' (Flink's rule), and
//! a slow or restarting upstream holds windows open instead of making records late.
use std::collections::BTreeMap;

use crate::stored_format::{SHUFFLE_BATCH, StoredFormatError};
use essaim_stream::record::Record;
use serde::{Deserialize, Serialize};

/// One message of the shuffle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShuffleMessage {
    /// A record for the partition.
    Record {
        /// The first-stage unit (source partition) that produced it.
        upstream: u32,
        /// `(source position, rank)`: increasing per upstream and partition.
        number: (u64, u32),
        /// The sharder it left.
        sharder: String,
        /// The record.
        record: Record,
    },
    /// The upstream's event time: it will send nothing older (up to lateness).
    Watermark {
        /// The first-stage unit.
        upstream: u32,
        /// Its watermark, ms.
        watermark: i64,
    },
    /// The upstream's input has ended.
    End {
        /// The first-stage unit.
        upstream: u32,
    },
}

/// The stream holding a pipeline's shuffle.
pub fn stream_name(pipeline: &str) -> String {
    format!("ESSAIM_SHUFFLE_{pipeline}")
}

/// The subject of one partition of a pipeline's shuffle.
pub fn subject(pipeline: &str, partition: u32) -> String {
    format!("essaim.shuffle.{pipeline}.{partition}")
}

/// Every subject of a pipeline's shuffle.
pub fn subjects(pipeline: &str) -> String {
    format!("essaim.shuffle.{pipeline}.*")
}

/// Most shuffle messages in one JetStream message: well under its 1 MiB limit for
/// records of a few hundred bytes.
pub const MAX_MESSAGES_PER_BATCH: usize = 1000;

/// A turn's shuffle messages cut into JetStream messages of at most
/// [`MAX_MESSAGES_PER_BATCH`], in publish rounds: round `k` holds the `k`-th of every
/// partition, so that no partition ever has two messages in flight (see the module
/// doc); a round is published, then its acks awaited, before the next.
pub fn publish_rounds(
    shuffle: &BTreeMap<u32, Vec<ShuffleMessage>>,
) -> Vec<Vec<(u32, &[ShuffleMessage])>> {
    let mut rounds: Vec<Vec<(u32, &[ShuffleMessage])>> = Vec::new();
    for (partition, messages) in shuffle {
        for (round, chunk) in messages.chunks(MAX_MESSAGES_PER_BATCH).enumerate() {
            if rounds.len() <= round {
                rounds.push(Vec::new());
            }
            rounds[round].push((*partition, chunk));
        }
    }
    rounds
}

/// Encodes a batch of messages for one partition, in order, as one JetStream message
/// (behind the [`SHUFFLE_BATCH`] header).
pub fn encode(messages: &[ShuffleMessage]) -> Result<Vec<u8>, StoredFormatError> {
    SHUFFLE_BATCH.encode(messages)
}

/// Decodes a batch, with or without its header (see [`crate::stored_format`]).
pub fn decode(bytes: &[u8]) -> Result<Vec<ShuffleMessage>, StoredFormatError> {
    SHUFFLE_BATCH.decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let message = ShuffleMessage::Record {
            upstream: 3,
            number: (42, 1),
            sharder: "by_state".to_owned(),
            record: Record::new(7, 1_000).with("delay", 12).with("state", "CA"),
        };
        let batch = vec![
            message,
            ShuffleMessage::Watermark {
                upstream: 3,
                watermark: 9,
            },
        ];
        let bytes = encode(&batch).expect("encodes");
        assert_eq!(decode(&bytes).expect("decodes"), batch);
        assert!(decode(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn a_partition_never_has_two_messages_in_one_round_and_order_is_kept() {
        let watermark = |upstream| ShuffleMessage::Watermark {
            upstream,
            watermark: 0,
        };
        let shuffle = BTreeMap::from([
            (0, (0..2_500).map(watermark).collect::<Vec<_>>()),
            (1, vec![watermark(7)]),
            (2, Vec::new()),
        ]);
        let rounds = publish_rounds(&shuffle);
        assert_eq!(rounds.len(), 3);
        for round in &rounds {
            let mut partitions: Vec<u32> = round.iter().map(|(partition, _)| *partition).collect();
            partitions.dedup();
            assert_eq!(partitions.len(), round.len(), "one message per partition");
        }
        let sent_to_0: Vec<ShuffleMessage> = rounds
            .iter()
            .flatten()
            .filter(|(partition, _)| *partition == 0)
            .flat_map(|(_, chunk)| chunk.iter().cloned())
            .collect();
        assert_eq!(sent_to_0, shuffle[&0], "a partition's messages, in order");
        assert_eq!(rounds[0].len(), 2, "partition 2 has nothing to send");
    }

    #[test]
    fn a_batch_written_before_the_header_still_decodes() {
        let batch = vec![ShuffleMessage::End { upstream: 2 }];
        let headerless = postcard::to_stdvec(&batch).expect("encodes");
        assert_eq!(decode(&headerless).expect("decodes"), batch);
        let with_header = encode(&batch).expect("encodes");
        assert_eq!(&with_header[..4], b"ESSH");
    }
}
