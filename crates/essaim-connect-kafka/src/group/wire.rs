//! The bytes of the three group requests and their responses: Kafka's non-flexible
//! encoding (big-endian integers, `i16`-length strings), written out because the client
//! crate has no consumer-group API.
//!
//! The decoders are pure functions of a response's bytes, public so that the fuzz
//! target `kafka_group_response` can feed them anything: a broker's answer is input, and
//! a malformed one must be an error, never a panic or an allocation it announces.
use essaim_connect::ConnectorError;

use crate::error;

/// The answer to FindCoordinator (v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCoordinator {
    /// Kafka's error code (0: none).
    pub code: i16,
    /// The broker's message, if any.
    pub message: Option<String>,
    /// The coordinator's host.
    pub host: String,
    /// Its port.
    pub port: i32,
}

/// Decodes a FindCoordinator (v1) response body.
pub fn find_coordinator_response(body: &[u8]) -> Result<FoundCoordinator, ConnectorError> {
    let mut decoder = Decoder::new(body);
    decoder.i32()?; // throttle time
    let code = decoder.i16()?;
    let message = decoder.nullable_string()?;
    decoder.i32()?; // node id
    let host = decoder.string()?;
    let port = decoder.i32()?;
    Ok(FoundCoordinator {
        code,
        message,
        host,
        port,
    })
}

/// Decodes an OffsetCommit (v2) response body of one partition: its error code.
pub fn commit_response(body: &[u8]) -> Result<i16, ConnectorError> {
    let mut decoder = Decoder::new(body);
    single_partition(&mut decoder, "group commit", |decoder| decoder.i16())
}

/// Decodes an OffsetFetch (v1) response body of one partition: its offset (-1: none)
/// and error code.
pub fn fetch_response(body: &[u8]) -> Result<(i64, i16), ConnectorError> {
    let mut decoder = Decoder::new(body);
    single_partition(&mut decoder, "group fetch", |decoder| {
        let offset = decoder.i64()?;
        decoder.nullable_string()?; // metadata
        Ok((offset, decoder.i16()?))
    })
}

/// Checks a response's correlation id and returns the body after it.
pub fn response_body<'a>(
    response: &'a [u8],
    correlation_id: i32,
    action: &'static str,
) -> Result<&'a [u8], ConnectorError> {
    let mut decoder = Decoder::new(response);
    if decoder.i32()? != correlation_id {
        return Err(error::permanent(action, "a response to another request"));
    }
    Ok(decoder.rest())
}

/// A request: size, header v1 (api key, version, correlation id, client id), body.
pub(crate) fn frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &Encoder,
) -> Vec<u8> {
    let mut header = Encoder::default();
    header.i16(api_key);
    header.i16(version);
    header.i32(correlation_id);
    header.nullable_string(Some(client_id));
    let size = header.bytes.len() + body.bytes.len();
    let mut request = Vec::with_capacity(4 + size);
    request.extend_from_slice(&i32::try_from(size).unwrap_or(i32::MAX).to_be_bytes());
    request.extend_from_slice(&header.bytes);
    request.extend_from_slice(&body.bytes);
    request
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
pub(crate) struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    pub(crate) fn i8(&mut self, value: i8) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn i16(&mut self, value: i16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn string(&mut self, value: &str) {
        self.i16(i16::try_from(value.len()).unwrap_or(i16::MAX));
        self.bytes.extend_from_slice(value.as_bytes());
    }
    pub(crate) fn nullable_string(&mut self, value: Option<&str>) {
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
        let request = frame(9, 1, 7, "essaim", &body);
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

    #[test]
    fn responses_decode_and_every_truncation_is_an_error() {
        let mut fetch = Encoder::default();
        fetch.i32(1);
        fetch.string("events");
        fetch.i32(1);
        fetch.i32(0);
        fetch.i64(42);
        fetch.nullable_string(None);
        fetch.i16(0);
        assert_eq!(fetch_response(&fetch.bytes).expect("decodes"), (42, 0));
        let mut found = Encoder::default();
        found.i32(0);
        found.i16(15);
        found.nullable_string(Some("loading"));
        found.i32(3);
        found.string("broker-3");
        found.i32(9092);
        let decoded = find_coordinator_response(&found.bytes).expect("decodes");
        assert_eq!(
            (decoded.code, decoded.host.as_str(), decoded.port),
            (15, "broker-3", 9092)
        );
        for cut in 0..fetch.bytes.len() {
            assert!(fetch_response(&fetch.bytes[..cut]).is_err(), "cut at {cut}");
        }
        for cut in 0..found.bytes.len() {
            assert!(
                find_coordinator_response(&found.bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut two_topics = Encoder::default();
        two_topics.i32(2);
        assert!(commit_response(&two_topics.bytes).is_err());
    }
}
