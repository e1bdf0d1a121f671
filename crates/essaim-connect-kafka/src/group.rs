//! Consumer-group offsets, spoken directly in the Kafka protocol.
//!
//! The client (rskafka) has no consumer-group API, and a reader that the runtime
//! assigned to one partition needs only two requests of it: OffsetCommit (v2) to store
//! the group's next offset for the partition, and OffsetFetch (v1) to read it back.
//! Both go to the group's coordinator, found with FindCoordinator (v1). They are
//! "simple" commits (generation -1, no member id), as Kafka's own consumers make for
//! manually assigned partitions, so the group needs no join or heartbeat; they make the
//! reader's progress visible to Kafka's tools (`kafka-consumer-groups --describe`).
//!
//! The runtime never resumes from these offsets: it resumes after the positions it
//! committed with its results. So a failed group commit loses nothing and is only
//! reported (as a transient error when retrying can help).

use essaim_connect::ConnectorError;
use rskafka::client::error::ProtocolError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::KafkaConfig;
use crate::error::{self, protocol_is_transient};
use crate::tls::{self, Bootstrap, BrokerIo};

pub mod wire;
use wire::Encoder;

const FIND_COORDINATOR: i16 = 10;
const OFFSET_COMMIT: i16 = 8;
const OFFSET_FETCH: i16 = 9;
/// The largest response accepted (these are a few dozen bytes).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The committed offsets of one consumer group, through its coordinator.
pub struct GroupOffsets {
    config: KafkaConfig,
    group: String,
    coordinator: Option<Box<dyn BrokerIo>>,
    correlation_id: i32,
}

impl GroupOffsets {
    /// The offsets of `group` (nothing is sent before the first call).
    pub fn new(config: &KafkaConfig, group: &str) -> Self {
        GroupOffsets {
            config: config.clone(),
            group: group.to_owned(),
            coordinator: None,
            correlation_id: 0,
        }
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Stores `next_offset` (Kafka's convention: the offset of the next record to
    /// consume, the last committed position plus one) for `topic`/`partition`.
    pub async fn commit(
        &mut self,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), ConnectorError> {
        let mut body = Encoder::default();
        body.string(&self.group);
        body.i32(-1); // generation: a simple commit, outside any group membership
        body.string(""); // member id
        body.i64(-1); // retention: the broker's default
        body.i32(1);
        body.string(topic);
        body.i32(1);
        body.i32(index(partition));
        body.i64(i64::try_from(next_offset).unwrap_or(i64::MAX));
        body.nullable_string(None);
        let response = self.call("group commit", OFFSET_COMMIT, 2, body).await?;
        let code = wire::commit_response(&response)?;
        self.check("group commit", code)
    }

    /// The group's next offset for `topic`/`partition`, `None` when it has none.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, ConnectorError> {
        let mut body = Encoder::default();
        body.string(&self.group);
        body.i32(1);
        body.string(topic);
        body.i32(1);
        body.i32(index(partition));
        let response = self.call("group fetch", OFFSET_FETCH, 1, body).await?;
        let (offset, code) = wire::fetch_response(&response)?;
        self.check("group fetch", code)?;
        Ok(u64::try_from(offset).ok())
    }

    /// Sends one request to the coordinator and returns the response body, after its
    /// correlation id. Any failure drops the connection: the next call reconnects.
    async fn call(
        &mut self,
        action: &'static str,
        api_key: i16,
        version: i16,
        body: Encoder,
    ) -> Result<Vec<u8>, ConnectorError> {
        let timeout = self.config.request_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            if self.coordinator.is_none() {
                self.coordinator = Some(self.find_coordinator(action).await?);
            }
            self.correlation_id = self.correlation_id.wrapping_add(1);
            let request = wire::frame(
                api_key,
                version,
                self.correlation_id,
                &self.config.client_id,
                &body,
            );
            let stream = self
                .coordinator
                .as_mut()
                .ok_or_else(|| error::transient(action, "no coordinator connection"))?;
            exchange(stream, &request, self.correlation_id, action).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(error::transient(
                action,
                format!("no answer from the group coordinator within {timeout:?}"),
            ))
        });
        if outcome.is_err() {
            self.coordinator = None;
        }
        outcome
    }

    /// Asks a bootstrap broker which broker coordinates the group, and connects to it.
    async fn find_coordinator(
        &self,
        action: &'static str,
    ) -> Result<Box<dyn BrokerIo>, ConnectorError> {
        let bootstrap = Bootstrap::parse(&self.config.bootstrap)?;
        let trust = bootstrap.trust()?;
        let mut last_error = None;
        for broker in bootstrap.brokers {
            let mut body = Encoder::default();
            body.string(&self.group);
            body.i8(0); // key type: a group
            let request = wire::frame(FIND_COORDINATOR, 1, 0, &self.config.client_id, &body);
            let answer = async {
                let mut stream = connect_to(&broker, trust.as_ref(), action).await?;
                let response = exchange(&mut stream, &request, 0, action).await?;
                let found = wire::find_coordinator_response(&response)?;
                if let Some(failure) = ProtocolError::new(found.code) {
                    let text = format!("{failure}: {}", found.message.unwrap_or_default());
                    return Err(if protocol_is_transient(&failure) {
                        error::transient(action, text)
                    } else {
                        error::permanent(action, text)
                    });
                }
                let coordinator = format!("{}:{}", found.host, found.port);
                if coordinator == broker {
                    Ok(stream)
                } else {
                    connect_to(&coordinator, trust.as_ref(), action).await
                }
            }
            .await;
            match answer {
                Ok(stream) => return Ok(stream),
                Err(failure) => last_error = Some(failure),
            }
        }
        Err(last_error.unwrap_or_else(|| error::permanent(action, "no bootstrap address")))
    }

    fn check(&mut self, action: &'static str, code: i16) -> Result<(), ConnectorError> {
        match ProtocolError::new(code) {
            None => Ok(()),
            Some(failure) => {
                // The coordinator moved or is loading: find it again next time.
                self.coordinator = None;
                let text = format!("group `{}`: {failure}", self.group);
                Err(if protocol_is_transient(&failure) {
                    error::transient(action, text)
                } else {
                    error::permanent(action, text)
                })
            }
        }
    }
}

impl std::fmt::Debug for GroupOffsets {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GroupOffsets")
            .field("group", &self.group)
            .field("connected", &self.coordinator.is_some())
            .finish()
    }
}

fn index(partition: u32) -> i32 {
    i32::try_from(partition).unwrap_or(i32::MAX)
}

async fn connect_to(
    address: &str,
    trust: Option<&essaim_tls::ClientTrust>,
    action: &'static str,
) -> Result<Box<dyn BrokerIo>, ConnectorError> {
    tls::open(address, trust).await.map_err(|failure| {
        let message = format!("connecting to {address}: {failure}");
        match essaim_tls::handshake_failure(&failure) {
            Some(_) => error::permanent(action, error::tls_refused(&message)),
            None => error::transient(action, message),
        }
    })
}

/// Writes `request` and reads one response, checking its correlation id.
async fn exchange(
    stream: &mut Box<dyn BrokerIo>,
    request: &[u8],
    correlation_id: i32,
    action: &'static str,
) -> Result<Vec<u8>, ConnectorError> {
    let broken =
        |failure: std::io::Error| error::transient(action, format!("connection: {failure}"));
    stream.write_all(request).await.map_err(broken)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.map_err(broken)?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|size| (4..=MAX_RESPONSE_BYTES).contains(size))
        .ok_or_else(|| error::permanent(action, "a response of an impossible size"))?;
    let mut response = vec![0u8; size];
    stream.read_exact(&mut response).await.map_err(broken)?;
    wire::response_body(&response, correlation_id, action).map(<[u8]>::to_vec)
}
