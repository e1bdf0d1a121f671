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
use tokio::net::TcpStream;

use crate::config::KafkaConfig;
use crate::error::{self, protocol_is_transient};

const FIND_COORDINATOR: i16 = 10;
const OFFSET_COMMIT: i16 = 8;
const OFFSET_FETCH: i16 = 9;
/// The largest response accepted (these are a few dozen bytes).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The committed offsets of one consumer group, through its coordinator.
pub struct GroupOffsets {
    config: KafkaConfig,
    group: String,
    coordinator: Option<TcpStream>,
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
        let mut decoder = Decoder::new(&response);
        let code = single_partition(&mut decoder, "group commit", |decoder| decoder.i16())?;
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
        let mut decoder = Decoder::new(&response);
        let (offset, code) = single_partition(&mut decoder, "group fetch", |decoder| {
            let offset = decoder.i64()?;
            decoder.nullable_string()?; // metadata
            Ok((offset, decoder.i16()?))
        })?;
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
            let request = frame(api_key, version, self.correlation_id, &self.config, &body);
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
    async fn find_coordinator(&self, action: &'static str) -> Result<TcpStream, ConnectorError> {
        let mut last_error = None;
        for broker in self.config.brokers()? {
            let mut body = Encoder::default();
            body.string(&self.group);
            body.i8(0); // key type: a group
            let request = frame(FIND_COORDINATOR, 1, 0, &self.config, &body);
            let answer = async {
                let mut stream = connect_to(&broker, action).await?;
                let response = exchange(&mut stream, &request, 0, action).await?;
                let mut decoder = Decoder::new(&response);
                decoder.i32()?; // throttle time
                let code = decoder.i16()?;
                let message = decoder.nullable_string()?;
                decoder.i32()?; // node id
                let host = decoder.string()?;
                let port = decoder.i32()?;
                if let Some(failure) = ProtocolError::new(code) {
                    let text = format!("{failure}: {}", message.unwrap_or_default());
                    return Err(if protocol_is_transient(&failure) {
                        error::transient(action, text)
                    } else {
                        error::permanent(action, text)
                    });
                }
                let coordinator = format!("{host}:{port}");
                if coordinator == broker {
                    Ok(stream)
                } else {
                    connect_to(&coordinator, action).await
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

async fn connect_to(address: &str, action: &'static str) -> Result<TcpStream, ConnectorError> {
    TcpStream::connect(address)
        .await
        .map_err(|failure| error::transient(action, format!("connecting to {address}: {failure}")))
}

/// A request: size, header v1 (api key, version, correlation id, client id), body.
fn frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    config: &KafkaConfig,
    body: &Encoder,
) -> Vec<u8> {
    let mut header = Encoder::default();
    header.i16(api_key);
    header.i16(version);
    header.i32(correlation_id);
    header.nullable_string(Some(&config.client_id));
    let size = header.bytes.len() + body.bytes.len();
    let mut request = Vec::with_capacity(4 + size);
    request.extend_from_slice(&i32::try_from(size).unwrap_or(i32::MAX).to_be_bytes());
    request.extend_from_slice(&header.bytes);
    request.extend_from_slice(&body.bytes);
    request
}

/// Writes `request` and reads one response, checking its correlation id.
async fn exchange(
    stream: &mut TcpStream,
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
    let mut decoder = Decoder::new(&response);
    if decoder.i32()? != correlation_id {
        return Err(error::permanent(action, "a response to another request"));
    }
    Ok(decoder.rest().to_vec())
}

/// Reads `[topic [partition, ...fields]]` with one topic of one partition.
fn single_partition<T>(
    decoder: &mut Decoder<'_>,
    action: &'static str,
    fields: impl FnOnce(&mut Decoder<'_>) -> Result<T, ConnectorError>,
) -> Result<T, ConnectorError> {
    if decoder.i32()? != 1 {
        return Err(error::permanent(
            action,
            "expected one topic in the response",
        ));
    }
    decoder.string()?;
    if decoder.i32()? != 1 {
        return Err(error::permanent(
            action,
            "expected one partition in the response",
        ));
    }
    decoder.i32()?; // partition index
    fields(decoder)
}

/// The big-endian, length-prefixed encoding of Kafka's non-flexible requests.
#[derive(Default)]
struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    fn i8(&mut self, value: i8) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    fn i16(&mut self, value: i16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    fn string(&mut self, value: &str) {
        self.i16(i16::try_from(value.len()).unwrap_or(i16::MAX));
        self.bytes.extend_from_slice(value.as_bytes());
    }
    fn nullable_string(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.string(value),
            None => self.i16(-1),
        }
    }
}

/// Reads a response without ever panicking: short input is a permanent error.
struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ConnectorError> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or_else(|| error::permanent("decode", "a truncated response"))?;
        self.bytes = rest;
        Ok(*head)
    }

    fn i16(&mut self) -> Result<i16, ConnectorError> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, ConnectorError> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, ConnectorError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    fn nullable_string(&mut self) -> Result<Option<String>, ConnectorError> {
        let length = self.i16()?;
        let Ok(length) = usize::try_from(length) else {
            return Ok(None);
        };
        if self.bytes.len() < length {
            return Err(error::permanent("decode", "a truncated string"));
        }
        let (text, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(Some(String::from_utf8_lossy(text).into_owned()))
    }

    fn string(&mut self) -> Result<String, ConnectorError> {
        self.nullable_string()?
            .ok_or_else(|| error::permanent("decode", "a null string"))
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_framed_with_a_v1_header() {
        let mut body = Encoder::default();
        body.string("g");
        let request = frame(OFFSET_FETCH, 1, 7, &KafkaConfig::new("h:1"), &body);
        // size, api key 9, version 1, correlation 7, client id "essaim", body "g"
        let mut expected = vec![0, 0, 0, 19, 0, 9, 0, 1, 0, 0, 0, 7, 0, 6];
        expected.extend_from_slice(b"essaim");
        expected.extend_from_slice(&[0, 1, b'g']);
        assert_eq!(request, expected);
    }

    #[test]
    fn a_truncated_response_is_an_error_not_a_panic() {
        let mut decoder = Decoder::new(&[0, 5, b'a']);
        let error = decoder.string().expect_err("5 bytes announced, 1 present");
        assert!(!error.transient);
        let mut decoder = Decoder::new(&[0, 0]);
        assert!(decoder.i32().is_err());
        let mut decoder = Decoder::new(&[0xff, 0xff]);
        assert_eq!(decoder.nullable_string().expect("null"), None);
    }
}
