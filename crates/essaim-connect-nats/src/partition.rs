//! One partition of a JetStream source as an ordered, resumable log
//! ([`essaim_connect::PartitionReader`]).
//!
//! The position the runtime committed (in PostgreSQL, with the results) is the truth,
//! not the consumer's acknowledgement state: a durable consumer redelivers out of order
//! after an `ack_wait` expiry, and a task that took a partition over from another must
//! start exactly after the committed position. So opening a reader (re)creates its
//! durable consumer to deliver from `resume_after + 1`, in stream order. Each owner of
//! a partition has a consumer of its own: two readers pulling from one consumer would
//! each get part of the partition, and each would commit positions past records it
//! never saw. A consumer whose owner is gone is deleted by the server after
//! `inactive_threshold`.
//! Deliveries at or below a position already delivered (redeliveries) are dropped
//! here, so the reader must never skip one on the way: a delivery that reached it after
//! one that did not would hide the lost one for good once its position is committed.
//! That happens when the consumer's leader dies: it may have handed a message to a
//! pull whose answer died with it (the pull then just expires), while the new leader
//! holds it as delivered and hands out the next ones. The server numbers every
//! delivery of a consumer (its consumer sequence, redeliveries included), so a jump in
//! that number is a delivery this reader never got: the fetch fails as transient, and
//! the runtime reads again from its last commit through a new consumer. For the same
//! reason a consumer is used only if it is new (it delivered nothing yet).
//! `commit` acknowledges everything up to a position at once (`AckPolicy::All`),
//! so the consumer's pending count is the partition's lag and `max_ack_pending` bounds
//! what is in flight between the broker and the sink (the back-pressure).
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, message::Acker};
use essaim_connect::{ConnectorError, END_OF_STREAM_HEADER, PartitionReader, SourceMessage};
use futures_util::StreamExt;

const CONNECTOR: &str = "nats";
/// Longest a no-wait pull may go unanswered before it counts as lost (it answers at
/// once, with what has arrived, when the consumer's leader is alive).
const NO_WAIT_ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// Where one partition is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// The stream.
    pub stream: String,
    /// The subject of the partition (e.g. `flights.3`).
    pub subject: String,
    /// The durable consumer's name: one per owner of the partition (say, per task
    /// attempt), never shared, since two readers of one consumer would each get part of
    /// the partition.
    pub durable: String,
    /// The partition number reported on messages.
    pub partition: u32,
    /// Most deliveries not yet committed (default 10,000).
    pub max_ack_pending: u32,
    /// Time after which an uncommitted delivery is delivered again (default 60 s).
    pub ack_wait: Duration,
    /// Time after which the server deletes the consumer of an owner that stopped
    /// reading (default 10 min).
    pub inactive_threshold: Duration,
}

impl PartitionSpec {
    /// Returns the defaults for `subject` of `stream`, read by consumer `durable`.
    pub fn new(stream: &str, subject: &str, durable: &str, partition: u32) -> PartitionSpec {
        PartitionSpec {
            stream: stream.to_owned(),
            subject: subject.to_owned(),
            durable: durable.to_owned(),
            partition,
            max_ack_pending: 10_000,
            ack_wait: Duration::from_secs(60),
            inactive_threshold: Duration::from_secs(600),
        }
    }

    /// Returns the spec with room for two unacknowledged batches of `batch_max`
    /// messages: a reader that fetches its next batch while the previous one commits
    /// needs that many. With less, the server holds deliveries back and the fetches after
    /// the first return one message at a time (a batch of 6,000 against the default
    /// 10,000 ran 30 times slower than one of 5,000).
    pub fn allowing_batches_of(mut self, batch_max: usize) -> PartitionSpec {
        let two_batches = u32::try_from(batch_max.saturating_mul(2)).unwrap_or(u32::MAX);
        self.max_ack_pending = self.max_ack_pending.max(two_batches);
        self
    }
}

/// Reads one partition in stream order (see the module doc).
pub struct NatsPartitionReader {
    consumer: consumer::Consumer<consumer::pull::Config>,
    spec: PartitionSpec,
    /// Delivered, not yet acknowledged: position and the handle to ack it by.
    unacked: VecDeque<(u64, Acker)>,
    last_delivered: Option<u64>,
    /// The consumer sequence of the last delivery that reached this reader (0 before
    /// the first): the next one must be at most one more.
    last_delivery: u64,
    /// Broker publish times (ms since the epoch) of the last fetch, in order.
    published_ms: Vec<Option<i64>>,
}

fn transient(action: &'static str, error: impl ToString) -> ConnectorError {
    ConnectorError::transient(CONNECTOR, action, error)
}

impl NatsPartitionReader {
    /// Opens the partition after `resume_after` (from the stream's start when `None`),
    /// replacing the durable consumer of a previous owner.
    pub async fn open(
        context: &jetstream::Context,
        spec: PartitionSpec,
        resume_after: Option<u64>,
    ) -> Result<NatsPartitionReader, ConnectorError> {
        let stream =
            context
                .get_stream(&spec.stream)
                .await
                .map_err(|error| match error.kind() {
                    jetstream::context::GetStreamErrorKind::JetStream(inner)
                        if inner.code() == 404 =>
                    {
                        ConnectorError::permanent(
                            CONNECTOR,
                            "open stream",
                            format!("stream `{}` does not exist", spec.stream),
                        )
                    }
                    _ => transient("open stream", error),
                })?;
        // A consumer's start cannot be changed, so it is replaced; a missing one is fine.
        let _ = stream.delete_consumer(&spec.durable).await;
        let deliver_policy = match resume_after {
            Some(position) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: position.saturating_add(1),
            },
            None => consumer::DeliverPolicy::All,
        };
        let config = consumer::pull::Config {
            durable_name: Some(spec.durable.clone()),
            ack_policy: consumer::AckPolicy::All,
            deliver_policy,
            ack_wait: spec.ack_wait,
            max_ack_pending: i64::from(spec.max_ack_pending.max(1)),
            filter_subject: spec.subject.clone(),
            inactive_threshold: spec.inactive_threshold,
            ..Default::default()
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|error| transient("create consumer", error))?;
        let delivered = consumer.cached_info().delivered.consumer_sequence;
        if delivered != 0 {
            // Not deleted above (say, during a leader election): its deliveries so far
            // never reached this reader.
            return Err(transient(
                "create consumer",
                format!(
                    "consumer `{}` already existed with {delivered} deliveries",
                    spec.durable
                ),
            ));
        }
        Ok(NatsPartitionReader {
            consumer,
            spec,
            unacked: VecDeque::new(),
            last_delivered: resume_after,
            last_delivery: 0,
            published_ms: Vec::new(),
        })
    }

    /// The broker's publish time of each message of the last fetch, in order.
    pub fn published_ms(&self) -> &[Option<i64>] {
        &self.published_ms
    }

    /// Fails if deliveries were made between the last one this reader got and
    /// `delivery` (see the module doc). A number that goes back (a new leader that had
    /// not heard of the last deliveries, and delivers them again) is fine: the
    /// redeliveries are dropped by position.
    fn check_no_delivery_skipped(&mut self, delivery: u64) -> Result<(), ConnectorError> {
        let expected = self.last_delivery + 1;
        if delivery > expected {
            return Err(transient(
                "fetch",
                format!(
                    "deliveries {expected} to {} of consumer `{}` never reached this reader \
                     (its leader changed?)",
                    delivery - 1,
                    self.spec.durable
                ),
            ));
        }
        self.last_delivery = delivery;
        Ok(())
    }

    /// Appends the messages of one pull to `messages`, dropping redeliveries.
    async fn take(
        &mut self,
        mut batch: consumer::pull::Batch,
        messages: &mut Vec<SourceMessage>,
    ) -> Result<(), ConnectorError> {
        while let Some(message) = batch.next().await {
            let message = message.map_err(|error| transient("fetch", error))?;
            let info = message.info().map_err(|error| transient("fetch", error))?;
            let position = info.stream_sequence;
            self.check_no_delivery_skipped(info.consumer_sequence)?;
            let redeliveries = u32::try_from(info.delivered.saturating_sub(1)).unwrap_or(u32::MAX);
            let published = i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).ok();
            let (message, acker) = message.split();
            if self.last_delivered.is_some_and(|last| position <= last) {
                // Already delivered by this reader: acked with the next commit.
                continue;
            }
            self.last_delivered = Some(position);
            self.unacked.push_back((position, acker));
            let end_of_stream = message
                .headers
                .as_ref()
                .is_some_and(|headers| headers.get(END_OF_STREAM_HEADER).is_some());
            self.published_ms.push(published);
            messages.push(SourceMessage {
                partition: self.spec.partition,
                position,
                payload: message.payload,
                end_of_stream,
                redeliveries,
            });
        }
        Ok(())
    }
}

impl PartitionReader for NatsPartitionReader {
    /// What has arrived, up to `max`, without waiting (a no-wait pull); when nothing
    /// has, one waiting pull for the next message, taken alone. So the batch follows
    /// the rate: a backlog is taken `max` at a time, a slow partition is read message
    /// by message as they come, and no batch waits to fill (a full pull with an expiry
    /// returns only when full or expired: its wait was the latency floor).
    async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<SourceMessage>, ConnectorError> {
        self.published_ms.clear();
        let mut messages = Vec::new();
        // A no-wait pull has no expiry, so the client sets no timer of its own: a pull
        // whose answer is lost (the consumer's leader died with it) would wait forever.
        let no_wait = async {
            let arrived = self
                .consumer
                .fetch()
                .max_messages(max.max(1))
                .messages()
                .await
                .map_err(|error| transient("fetch", error))?;
            self.take(arrived, &mut messages).await
        };
        tokio::time::timeout(NO_WAIT_ANSWER_LIMIT, no_wait)
            .await
            .map_err(|_| {
                let limit = NO_WAIT_ANSWER_LIMIT.as_secs();
                transient("fetch", format!("no answer to a pull within {limit} s"))
            })??;
        if messages.is_empty() {
            let next = self
                .consumer
                .batch()
                .max_messages(1)
                .expires(wait.max(Duration::from_millis(10)))
                .messages()
                .await
                .map_err(|error| transient("fetch", error))?;
            self.take(next, &mut messages).await?;
        }
        Ok(messages)
    }

    async fn commit(&mut self, position: u64) -> Result<(), ConnectorError> {
        let mut last = None;
        while self
            .unacked
            .front()
            .is_some_and(|(delivered, _)| *delivered <= position)
        {
            last = self.unacked.pop_front();
        }
        if let Some((_, acker)) = last {
            // AckPolicy::All: one ack covers every earlier delivery.
            acker.ack().await.map_err(|error| transient("ack", error))?;
        }
        Ok(())
    }

    async fn lag(&mut self) -> Result<Option<u64>, ConnectorError> {
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|error| transient("consumer info", error))?;
        Ok(Some(info.num_pending + info.num_ack_pending as u64))
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_allows_two_batches_in_flight() {
        let spec = |batch_max| {
            PartitionSpec::new("S", "s.0", "d", 0)
                .allowing_batches_of(batch_max)
                .max_ack_pending
        };
        assert_eq!(spec(2_000), 10_000, "the default is room enough");
        assert_eq!(spec(6_000), 12_000);
        assert_eq!(spec(usize::MAX), u32::MAX);
    }
}
