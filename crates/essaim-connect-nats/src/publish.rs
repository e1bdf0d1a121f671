//! Publishing with publish acks, many in flight but a bounded number.
//!
//! Waiting for each publish ack before sending the next message costs a round trip
//! (and, with `sync_interval: always`, an fsync) per message. The publisher instead
//! keeps up to `max_in_flight` publishes whose acks have not come, and waits for the
//! oldest when the window is full, so memory stays bounded and a slow server slows the
//! producer down (back-pressure). Because acks are awaited oldest first, the confirmed
//! publishes are always a prefix of the sent ones: after any failure, the caller knows
//! exactly which messages the server has made durable.

use std::collections::VecDeque;

use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;

use crate::NatsError;

/// The largest window: the client's own bound on unconfirmed publishes per context
/// (async-nats refuses a publish beyond it rather than waiting).
pub const MAX_IN_FLIGHT: usize = 5_000;

/// A publish sent, whose publish ack has not been awaited yet.
struct InFlight {
    subject: String,
    ack: PublishAckFuture,
}

/// Publishes messages to JetStream with a bounded window of unconfirmed publishes.
pub struct Publisher {
    context: jetstream::Context,
    max_in_flight: usize,
    in_flight: VecDeque<InFlight>,
    sent: u64,
    confirmed: u64,
    last_sequence: Option<u64>,
}

impl Publisher {
    /// Returns a publisher keeping at most `max_in_flight` unconfirmed publishes
    /// (from 1 to [`MAX_IN_FLIGHT`]).
    pub fn new(context: jetstream::Context, max_in_flight: usize) -> Result<Publisher, NatsError> {
        if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
            return Err(NatsError::InvalidConfig {
                key: "max_in_flight",
                reason: format!("must be from 1 to {MAX_IN_FLIGHT}, not {max_in_flight}"),
            });
        }
        Ok(Publisher {
            context,
            max_in_flight,
            in_flight: VecDeque::with_capacity(max_in_flight),
            sent: 0,
            confirmed: 0,
            last_sequence: None,
        })
    }

    /// Sends `payload` to `subject`, first waiting for the oldest publish ack if the
    /// window is full. The message is durable only once [`Publisher::confirmed`] counts
    /// it.
    pub async fn publish(&mut self, subject: &str, payload: Bytes) -> Result<(), NatsError> {
        self.send(subject, None, payload).await
    }

    /// Like [`Publisher::publish`], with headers (say, an end-of-stream marker).
    pub async fn publish_with_headers(
        &mut self,
        subject: &str,
        headers: async_nats::HeaderMap,
        payload: Bytes,
    ) -> Result<(), NatsError> {
        self.send(subject, Some(headers), payload).await
    }

    async fn send(
        &mut self,
        subject: &str,
        headers: Option<async_nats::HeaderMap>,
        payload: Bytes,
    ) -> Result<(), NatsError> {
        if self.in_flight.len() >= self.max_in_flight {
            self.confirm_oldest().await?;
        }
        let sent = match headers {
            Some(headers) => {
                self.context
                    .publish_with_headers(subject.to_owned(), headers, payload)
                    .await
            }
            None => self.context.publish(subject.to_owned(), payload).await,
        };
        let ack = sent.map_err(|source| NatsError::Publish {
            subject: subject.to_owned(),
            source: source.into(),
        })?;
        self.in_flight.push_back(InFlight {
            subject: subject.to_owned(),
            ack,
        });
        self.sent += 1;
        Ok(())
    }

    /// Waits for every outstanding publish ack. Returns the number of confirmed
    /// publishes.
    pub async fn flush(&mut self) -> Result<u64, NatsError> {
        while !self.in_flight.is_empty() {
            self.confirm_oldest().await?;
        }
        Ok(self.confirmed)
    }

    /// Returns how many publishes were sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Returns how many publishes the server acknowledged: always the first ones sent.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Returns the stream sequence number of the last confirmed publish.
    pub fn last_sequence(&self) -> Option<u64> {
        self.last_sequence
    }

    async fn confirm_oldest(&mut self) -> Result<(), NatsError> {
        let Some(oldest) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let ack = oldest.ack.await.map_err(|source| NatsError::Publish {
            subject: oldest.subject,
            source: source.into(),
        })?;
        self.confirmed += 1;
        self.last_sequence = Some(ack.sequence);
        Ok(())
    }
}
