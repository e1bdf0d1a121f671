//! The contract between the streaming runtime and its connectors (NATS JetStream, the
//! Kafka protocol, files, HTTP ingest).
//!
//! Effectively-once results rest on one property of every source, so it is stated here
//! once: **a partition is an ordered log, and a reader opened after position `p`
//! delivers the messages after `p`, in position order, with no gap.** The runtime
//! keeps the position it has committed (in PostgreSQL, in the same transaction as the
//! results) and reopens readers from there after a crash or a rescale. Redeliveries
//! inside one reader (a message whose acknowledgement timed out) carry a position at or
//! below one already delivered; the runtime skips them.
//!
//! Sinks other than PostgreSQL are written before the PostgreSQL commit that moves the
//! positions, so after a crash they may see a record again: every [`OutMessage`]
//! carries a deterministic `key` (and `revision`) for the destination to deduplicate or
//! compact by (a Kafka key, a `Nats-Msg-Id`, a file name).
//!
//! Connectors implement [`PartitionReader`] and [`MessageWriter`] as plain `async fn`s;
//! the runtime dispatches over an enum of connectors, so the traits need not be
//! object safe.
//!
//! What every connector shares lives here once: the [`backoff`] between retries, the
//! [`breaker`] (a pure circuit breaker and its defaults) and the [`guard`] that puts a
//! breaker around any reader, writer or call.
#![warn(missing_docs)]

pub mod breaker;
pub mod guard;
pub mod secrets;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use guard::{BreakerObserver, Guarded, SharedBreaker};

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

/// A header or flag that ends a partition: the producer (say, `essaim replay`) has
/// published everything it will. The runtime then advances that partition's watermark
/// to the end of time, which fires every window.
pub const END_OF_STREAM_HEADER: &str = "Essaim-End-Of-Stream";

/// One message of a source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMessage {
    /// The partition, `0..partitions`.
    pub partition: u32,
    /// Its position in the partition: strictly increasing, not necessarily dense
    /// (a JetStream stream sequence, a Kafka offset, a byte offset in a file).
    pub position: u64,
    /// The payload: one CSV line, without its line terminator.
    pub payload: Bytes,
    /// True when this message only marks the end of the partition (its payload is
    /// ignored).
    pub end_of_stream: bool,
    /// How many times this message was delivered before (0 the first time), when the
    /// source knows.
    pub redeliveries: u32,
}

/// Why a connector call failed.
#[derive(Debug, thiserror::Error)]
#[error("{connector}: {action}: {message}")]
pub struct ConnectorError {
    /// `nats`, `kafka`, `files`, `http`.
    pub connector: &'static str,
    /// What was being done, e.g. "fetch".
    pub action: &'static str,
    /// What went wrong.
    pub message: String,
    /// True when retrying the same call may succeed (a broker restarting, a timeout);
    /// false for a configuration error.
    pub transient: bool,
    /// Set when a circuit breaker refused the call without trying it: the time until
    /// the breaker lets its next probe through.
    pub retry_in: Option<Duration>,
}

impl ConnectorError {
    /// Returns a transient error.
    pub fn transient(
        connector: &'static str,
        action: &'static str,
        message: impl ToString,
    ) -> Self {
        Self::new(connector, action, message, true)
    }

    /// Returns an error that retrying will not fix.
    pub fn permanent(
        connector: &'static str,
        action: &'static str,
        message: impl ToString,
    ) -> Self {
        Self::new(connector, action, message, false)
    }

    /// Returns the error of a call refused by an open circuit breaker, whose next probe
    /// goes in `retry_in`.
    pub fn breaker_open(connector: &'static str, action: &'static str, retry_in: Duration) -> Self {
        ConnectorError {
            retry_in: Some(retry_in),
            ..Self::transient(
                connector,
                action,
                format!("circuit breaker is open; next probe in {retry_in:?}"),
            )
        }
    }

    fn new(
        connector: &'static str,
        action: &'static str,
        message: impl ToString,
        transient: bool,
    ) -> Self {
        ConnectorError {
            connector,
            action,
            message: message.to_string(),
            transient,
            retry_in: None,
        }
    }
}

/// Reads one partition of a source, in position order.
///
/// A reader is opened by its connector with the position to resume after (`None`:
/// from the beginning of what the source retains).
pub trait PartitionReader: Send {
    /// Returns up to `max` messages, waiting at most `wait` for the first; an empty
    /// vector when none arrived in time. Messages come in position order (see the crate
    /// doc for redeliveries).
    fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<SourceMessage>, ConnectorError>> + Send;

    /// Tells the source that everything up to and including `position` is committed
    /// downstream (acknowledge, commit the consumer offset); the source may then forget
    /// it. Called after the runtime's own commit, so a failure here loses nothing.
    fn commit(&mut self, position: u64) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Messages of the partition not yet committed by this reader's consumer, when the
    /// source knows (the consumer lag).
    fn lag(&mut self) -> impl Future<Output = Result<Option<u64>, ConnectorError>> + Send;
}

/// One result leaving the pipeline for a message sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// A deterministic id of the result (the same after a replay), for deduplication or
    /// compaction downstream.
    pub key: String,
    /// The result's revision: a window emitted again after a late record has a greater
    /// one.
    pub revision: i64,
    /// The partition of the pipeline that produced it (a file sink names files by it).
    pub partition: u32,
    /// The encoded result, one JSON object.
    pub payload: Bytes,
}

/// Writes results to a message system or to files.
pub trait MessageWriter: Send {
    /// Queues messages; may write them at once or buffer up to a bound.
    fn write(
        &mut self,
        messages: &[OutMessage],
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Returns once everything written so far is durable at the destination. The
    /// runtime calls it before committing the source positions that produced those
    /// messages.
    fn flush(&mut self) -> impl Future<Output = Result<(), ConnectorError>> + Send;
}

pub use essaim_core::error_chain::error_chain;

/// Waits `base · 2^retry` (retry 0 is the first), capped at `max`: the retry delay of a
/// transient failure. No jitter: one reader or sink retries against one server. The
/// one backoff of the connectors (the PostgreSQL sink's retries use it too).
pub fn backoff(retry: u32, base: Duration, max: Duration) -> Duration {
    base.saturating_mul(1u32 << retry.min(16)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff(0, base, max), base);
        assert_eq!(backoff(3, base, max), Duration::from_millis(800));
        assert_eq!(backoff(10, base, max), max);
        assert_eq!(backoff(u32::MAX, base, max), max);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(50);
        let delays: Vec<_> = (0..5).map(|retry| backoff(retry, base, max)).collect();
        assert_eq!(
            delays,
            [10, 20, 40, 50, 50].map(Duration::from_millis).to_vec()
        );
    }
}
