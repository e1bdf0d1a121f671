//! NATS JetStream I/O for essaim's streaming pipelines: streams, acknowledged
//! publishing, durable pull consumers with dead letters, and the replay of a CSV file
//! as a stream.
//!
//! The pure core (`essaim-stream`) turns lines into records and records into results;
//! this crate moves the bytes between those operators and a JetStream server, and
//! nothing else. It makes no decision about *when* to acknowledge: the runtime acks a
//! delivery only after its sink committed what the delivery produced. That is what
//! makes delivery at-least-once, and idempotent sinks make the results effectively
//! once.
//!
//! | module | concept |
//! |---|---|
//! | [`broker`] | connecting, and ensuring a stream (file storage, one replica) |
//! | [`publish`] | publishing with publish acks: bounded in flight, confirmed in order |
//! | [`source`] | the durable pull consumer: batches, explicit acks, redelivery, dead letters, lag |
//! | [`tls`] | TLS asked for in the server URL (`tls://`, `?tls_ca=FILE`) |
//! | [`replay`] | a CSV file (plain or zstd) published line by line at a speed-up of its event time |
//!
//! # Guarantees, and what they rest on
//!
//! - A publish counts as confirmed only when the server's publish ack arrived, and
//!   confirmations are awaited oldest first, so the confirmed publishes are always a
//!   prefix of the ones sent ([`publish::Publisher::confirmed`]).
//! - A confirmed publish survives a crash of the server only if the server fsyncs
//!   before acknowledging: `scripts/nats.sh` configures `sync_interval: always`. With
//!   JetStream's default (a sync every two minutes) acknowledged messages can be lost
//!   on power loss. The tests kill the server with SIGKILL mid-stream and find every
//!   confirmed publish after the restart on the same store. (A SIGKILL leaves the
//!   operating system's page cache intact, so it proves the server's side of the
//!   promise; the disk's side rests on the fsync that the configuration asks for.)
//! - A delivery that is not acked within the consumer's `ack_wait` is delivered again
//!   (with a higher [`source::Delivery::delivery_count`]); at most `max_ack_pending`
//!   deliveries are unacknowledged at once, which is the back-pressure on a slow sink.
//! - A delivery's position is its stream sequence number, which never changes across
//!   redeliveries, consumers or server restarts.
#![warn(missing_docs)]

pub mod broker;
pub mod partition;
pub mod publish;
pub mod replay;
pub mod source;
pub mod tls;

use std::path::PathBuf;

/// The boxed error type of the client's lower layers.
pub type ClientError = async_nats::Error;

/// A JetStream operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The server could not be reached.
    #[error("failed to connect to the NATS server at `{url}`")]
    Connect {
        /// The URL tried.
        url: String,
        /// The client's reason.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A stream could not be created, updated or looked up.
    #[error("failed to ensure stream `{stream}`")]
    Stream {
        /// The stream's name.
        stream: String,
        /// The client's reason.
        #[source]
        source: ClientError,
    },
    /// A durable consumer could not be created or looked up.
    #[error("failed to ensure consumer `{durable}` on stream `{stream}`")]
    Consumer {
        /// The stream's name.
        stream: String,
        /// The consumer's durable name.
        durable: String,
        /// The client's reason.
        #[source]
        source: ClientError,
    },
    /// A publish was refused, or its publish ack did not come.
    #[error("failed to publish to subject `{subject}`")]
    Publish {
        /// The subject published to.
        subject: String,
        /// The client's reason.
        #[source]
        source: ClientError,
    },
    /// A pull request failed.
    #[error("failed to fetch from consumer `{durable}`")]
    Fetch {
        /// The consumer's durable name.
        durable: String,
        /// The client's reason.
        #[source]
        source: ClientError,
    },
    /// An ack (or nak) could not be sent.
    #[error("failed to acknowledge stream sequence {sequence}")]
    Ack {
        /// The position of the delivery.
        sequence: u64,
        /// The client's reason.
        #[source]
        source: ClientError,
    },
    /// The consumer's state could not be read.
    #[error("failed to read the state of consumer `{durable}`")]
    ConsumerInfo {
        /// The consumer's durable name.
        durable: String,
        /// The client's reason.
        #[source]
        source: ClientError,
    },
    /// The server URL, or the CA file it names, cannot be used.
    #[error("invalid NATS URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL (without its query).
        url: String,
        /// Why.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid `{key}`: {reason}")]
    InvalidConfig {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A file to replay could not be read.
    #[error("failed to read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CSV header does not allow the requested replay.
    #[error("the header of `{path}` does not fit the replay: {reason}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
}

impl NatsError {
    /// Tells whether trying again later can help: broker and network failures can
    /// (the server may come back), configuration and input errors cannot.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Stream { .. }
            | Self::Consumer { .. }
            | Self::Publish { .. }
            | Self::Fetch { .. }
            | Self::Ack { .. }
            | Self::ConsumerInfo { .. } => true,
            Self::InvalidConfig { .. }
            | Self::InvalidUrl { .. }
            | Self::Read { .. }
            | Self::Header { .. } => false,
        }
    }
}
