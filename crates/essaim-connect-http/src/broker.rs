//! Publishing one request's records to JetStream and learning what was stored.
//!
//! A request is answered 200 only after every one of its publish acks came back, and
//! acks are awaited oldest first ([`Publisher`]), so a failure part-way leaves a known
//! prefix stored and the request is answered 503: nothing is claimed accepted that the
//! broker did not store. (The prefix that was stored stays stored; a client retrying
//! after a 503 may therefore store some lines twice: ingest is at-least-once.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use bytes::Bytes;
use essaim_connect_nats::NatsError;
use essaim_connect_nats::broker::{self, StreamSpec};
use essaim_connect_nats::publish::Publisher;

use crate::config::IngestSource;

/// What the broker stored of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    /// Records stored (all of the request's).
    pub accepted: usize,
    /// The stream sequence of the first.
    pub first_sequence: u64,
    /// The stream sequence of the last.
    pub last_sequence: u64,
}

/// Why a request's records were not all stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishFailure {
    /// The client is not connected to the server (it reconnects on its own).
    #[error("the NATS server is unreachable")]
    Disconnected,
    /// A publish or its ack failed or timed out.
    #[error("{source}")]
    Nats {
        /// The client's error.
        #[from]
        source: NatsError,
    },
    /// Sending a publish did not finish in time.
    #[error("publishing did not finish within {0:?}")]
    Timeout(Duration),
}

/// One source's destination and its round-robin cursor.
pub(crate) struct Route {
    pub(crate) source: IngestSource,
    /// The round-robin counter: a request of `n` lines takes `n` consecutive values.
    next_line: AtomicU64,
    /// The stream must be ensured again before the next publish (after a failure: the
    /// server may have come back with an empty store).
    stale: AtomicBool,
}

impl Route {
    pub(crate) fn new(source: IngestSource) -> Route {
        Route {
            source,
            next_line: AtomicU64::new(0),
            stale: AtomicBool::new(false),
        }
    }

    fn spec(&self) -> StreamSpec {
        StreamSpec::new(
            &self.source.stream,
            &[&format!("{}.*", self.source.subject_prefix)],
        )
    }
}

/// The JetStream side of the endpoint.
pub(crate) struct Broker {
    context: jetstream::Context,
    window: usize,
    timeout: Duration,
}

impl Broker {
    pub(crate) fn new(context: jetstream::Context, window: usize, timeout: Duration) -> Broker {
        Broker {
            context,
            window,
            timeout,
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.context.client().connection_state() == State::Connected
    }

    /// Creates or updates the stream of `route`.
    pub(crate) async fn ensure(&self, route: &Route) -> Result<(), NatsError> {
        broker::ensure_stream(&self.context, &route.spec()).await?;
        route.stale.store(false, Ordering::Release);
        Ok(())
    }

    /// Publishes `records` (slices of `body`) in order, each to the partition chosen
    /// by `key` (all to one) or round-robin, and waits until every one is stored.
    pub(crate) async fn publish(
        &self,
        route: &Arc<Route>,
        body: &Bytes,
        records: &[&[u8]],
        key: Option<&str>,
    ) -> Result<Receipt, PublishFailure> {
        if !self.connected() {
            return Err(PublishFailure::Disconnected);
        }
        if route.stale.load(Ordering::Acquire) {
            self.ensure(route).await?;
        }
        let result = self.publish_all(route, body, records, key).await;
        if result.is_err() {
            route.stale.store(true, Ordering::Release);
        }
        result
    }

    async fn publish_all(
        &self,
        route: &Route,
        body: &Bytes,
        records: &[&[u8]],
        key: Option<&str>,
    ) -> Result<Receipt, PublishFailure> {
        let partitions = route.source.partitions.max(1);
        let keyed = key.map(|key| essaim_stream::hash::partition_of(key, partitions));
        let first_line = route
            .next_line
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let mut publisher = Publisher::new(self.context.clone(), self.window)?;
        let mut first_sequence = None;
        for (index, record) in records.iter().enumerate() {
            let partition = keyed.unwrap_or_else(|| {
                // The remainder is below `partitions`, a u32.
                ((first_line + index as u64) % u64::from(partitions)) as u32
            });
            let subject = route.source.subject(partition);
            let payload = body.slice_ref(record);
            tokio::time::timeout(self.timeout, publisher.publish(&subject, payload))
                .await
                .map_err(|_| PublishFailure::Timeout(self.timeout))??;
            if index == 0 {
                // The first ack gives the first sequence (later lines of other requests
                // may interleave, so it cannot be computed from the last).
                publisher.flush().await?;
                first_sequence = publisher.last_sequence();
            }
        }
        publisher.flush().await?;
        match (first_sequence, publisher.last_sequence()) {
            (Some(first_sequence), Some(last_sequence)) => Ok(Receipt {
                accepted: records.len(),
                first_sequence,
                last_sequence,
            }),
            _ => Err(PublishFailure::Timeout(self.timeout)),
        }
    }
}
