//! The durable pull consumer: how a streaming task reads a subject.
//!
//! A pull consumer suits essaim's workers-pull design: a task asks for as many messages
//! as it has room for. The consumer is durable (named), so its progress lives on the
//! server: a task that restarts with the same durable name resumes after the last
//! acknowledged message, and anything delivered but not acknowledged comes back.
//!
//! ```text
//!  published ──fetch──▶ delivered ──ack──────────────▶ done
//!                          │  ▲
//!                          │  └── ack_wait expired, or nak ── delivered again
//!                          └── rejected ── copied to the dead-letter subject, then acked
//! ```
//!
//! Acks are explicit and only happen when the caller says so: the runtime acks a
//! delivery after its sink committed the results. The server hands out at most
//! `max_ack_pending` unacknowledged deliveries, so a sink that falls behind stops the
//! flow instead of filling memory.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, message::Acker};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::NatsError;

/// Header of a dead letter: why the message was rejected.
pub const HEADER_ERROR: &str = "Essaim-Error";
/// Header of a dead letter: the subject the message was read from.
pub const HEADER_SOURCE_SUBJECT: &str = "Essaim-Source-Subject";
/// Header of a dead letter: the message's stream sequence number in its source stream.
pub const HEADER_SOURCE_SEQUENCE: &str = "Essaim-Source-Sequence";
/// Header of a dead letter: how many times the message had been delivered.
pub const HEADER_DELIVERY_COUNT: &str = "Essaim-Delivery-Count";

/// Header values are one line; longer error texts are cut to this many bytes.
const MAX_ERROR_HEADER_BYTES: usize = 1024;

/// A durable pull consumer to ensure on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The durable name: the same name resumes the same progress.
    pub durable: String,
    /// Only subjects matching this are delivered (all of the stream's when `None`).
    pub filter_subject: Option<String>,
    /// How long a delivery may stay unacknowledged before it is delivered again.
    /// Default 30 s.
    pub ack_wait: Duration,
    /// How many deliveries may be unacknowledged at once (the back-pressure bound).
    /// Default 1,000.
    pub max_ack_pending: u32,
    /// Where rejected messages go; a stream must capture this subject.
    pub dead_letter_subject: String,
}

impl ConsumerSpec {
    /// Returns a spec with the default `ack_wait` and `max_ack_pending`.
    pub fn new(durable: &str, dead_letter_subject: &str) -> ConsumerSpec {
        ConsumerSpec {
            durable: durable.to_owned(),
            filter_subject: None,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1_000,
            dead_letter_subject: dead_letter_subject.to_owned(),
        }
    }
}

/// One message delivered by the consumer, to be acked (or rejected) by the caller.
pub struct Delivery {
    /// The message's stream sequence number: its position, the same on every
    /// redelivery.
    pub position: u64,
    /// How many times the message has been delivered, this time included (1 the first
    /// time).
    pub delivery_count: u64,
    /// The subject it was published to.
    pub subject: String,
    /// The message's bytes.
    pub payload: Bytes,
    /// The message's headers (a dead letter's error is in [`HEADER_ERROR`]).
    pub headers: Option<HeaderMap>,
    acker: Acker,
}

impl Delivery {
    /// Tells whether the message had been delivered before (and not acknowledged).
    pub fn is_redelivery(&self) -> bool {
        self.delivery_count > 1
    }

    /// Acknowledges the delivery: the server will not deliver it again. Call it only
    /// once what the message produced is committed. The ack is not confirmed by the
    /// server; one that is lost only causes a redelivery.
    pub async fn ack(self) -> Result<(), NatsError> {
        let sequence = self.position;
        self.acker
            .ack()
            .await
            .map_err(|source| NatsError::Ack { sequence, source })
    }

    /// Asks for the message to be delivered again after `delay` (at once when `None`),
    /// without waiting for `ack_wait`.
    pub async fn nak(self, delay: Option<Duration>) -> Result<(), NatsError> {
        let sequence = self.position;
        self.acker
            .ack_with(AckKind::Nak(delay))
            .await
            .map_err(|source| NatsError::Ack { sequence, source })
    }
}

/// Consumer lag, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerLag {
    /// Messages in the stream not delivered yet.
    pub pending: u64,
    /// Deliveries waiting for an ack.
    pub ack_pending: u64,
    /// Deliveries waiting for an ack that are redeliveries.
    pub redelivered: u64,
}

/// A durable pull consumer on one stream, with its dead-letter subject.
pub struct PullSource {
    context: jetstream::Context,
    consumer: consumer::Consumer<consumer::pull::Config>,
    spec: ConsumerSpec,
}

impl PullSource {
    /// Creates the durable consumer on `stream`, or updates it to `spec` if it exists
    /// (its progress is kept), delivering every message from the stream's start that
    /// it has not acknowledged.
    pub async fn ensure(
        context: jetstream::Context,
        stream: &jetstream::stream::Stream,
        spec: ConsumerSpec,
    ) -> Result<PullSource, NatsError> {
        if spec.max_ack_pending == 0 {
            return Err(NatsError::InvalidConfig {
                key: "max_ack_pending",
                reason: "must be at least 1".to_owned(),
            });
        }
        let stream_name = stream.cached_info().config.name.clone();
        let config = consumer::pull::Config {
            durable_name: Some(spec.durable.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait: spec.ack_wait,
            max_ack_pending: i64::from(spec.max_ack_pending),
            filter_subject: spec.filter_subject.clone().unwrap_or_default(),
            ..Default::default()
        };
        let consumer =
            stream
                .create_consumer(config)
                .await
                .map_err(|source| NatsError::Consumer {
                    stream: stream_name,
                    durable: spec.durable.clone(),
                    source: source.into(),
                })?;
        Ok(PullSource {
            context,
            consumer,
            spec,
        })
    }

    /// Returns up to `max` deliveries, waiting at most `wait` for them to arrive (an
    /// empty batch means nothing came in time). Fewer than `max` arrive when
    /// `max_ack_pending` deliveries are unacknowledged.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, NatsError> {
        let fetch_error = |source: async_nats::Error| NatsError::Fetch {
            durable: self.spec.durable.clone(),
            source,
        };
        let mut batch = self
            .consumer
            .batch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(|error| fetch_error(error.into()))?;
        let mut deliveries = Vec::with_capacity(max);
        while let Some(message) = batch.next().await {
            let message = message.map_err(fetch_error)?;
            let info = message.info().map_err(fetch_error)?;
            let position = info.stream_sequence;
            let delivery_count = u64::try_from(info.delivered).unwrap_or(1);
            let (message, acker) = message.split();
            deliveries.push(Delivery {
                position,
                delivery_count,
                subject: message.subject.to_string(),
                payload: message.payload,
                headers: message.headers,
                acker,
            });
        }
        Ok(deliveries)
    }

    /// Sends every ack and nak written so far to the server.
    pub async fn flush(&self) -> Result<(), NatsError> {
        self.context
            .client()
            .flush()
            .await
            .map_err(|source| NatsError::Fetch {
                durable: self.spec.durable.clone(),
                source: source.into(),
            })
    }

    /// Rejects a poison message: copies it to the dead-letter subject with `error` (and
    /// where it came from) in its headers, waits until the server has stored the copy,
    /// then acks the original. Returns the copy's sequence number in the dead-letter
    /// stream. If the copy fails, the original is not acked and will come back.
    pub async fn dead_letter(&self, delivery: Delivery, error: &str) -> Result<u64, NatsError> {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ERROR, one_line(error).as_str());
        headers.insert(HEADER_SOURCE_SUBJECT, delivery.subject.as_str());
        headers.insert(
            HEADER_SOURCE_SEQUENCE,
            delivery.position.to_string().as_str(),
        );
        headers.insert(
            HEADER_DELIVERY_COUNT,
            delivery.delivery_count.to_string().as_str(),
        );
        let publish_error = |source: async_nats::Error| NatsError::Publish {
            subject: self.spec.dead_letter_subject.clone(),
            source,
        };
        let stored = self
            .context
            .publish_with_headers(
                self.spec.dead_letter_subject.clone(),
                headers,
                delivery.payload.clone(),
            )
            .await
            .map_err(|error| publish_error(error.into()))?
            .await
            .map_err(|error| publish_error(error.into()))?;
        delivery.ack().await?;
        Ok(stored.sequence)
    }

    /// Returns the consumer's lag, read from the server.
    pub async fn lag(&self) -> Result<ConsumerLag, NatsError> {
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|source| NatsError::ConsumerInfo {
                durable: self.spec.durable.clone(),
                source: source.into(),
            })?;
        Ok(ConsumerLag {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
        })
    }

    /// Returns the spec the consumer was ensured with.
    pub fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }
}

/// Returns `text` as one header line: line breaks become spaces (a header value cannot
/// hold them) and it is cut, at a character boundary, to [`MAX_ERROR_HEADER_BYTES`].
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|character| {
            if character.is_control() {
                ' '
            } else {
                character
            }
        })
        .collect();
    if line.len() > MAX_ERROR_HEADER_BYTES {
        let mut cut = MAX_ERROR_HEADER_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_header_is_one_bounded_line() {
        assert_eq!(one_line("bad\r\nline\tx"), "bad  line x");
        let long = "é".repeat(MAX_ERROR_HEADER_BYTES);
        let cut = one_line(&long);
        assert!(cut.len() <= MAX_ERROR_HEADER_BYTES);
        assert!(cut.chars().all(|character| character == 'é'));
    }
}
