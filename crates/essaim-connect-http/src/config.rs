//! What an ingest endpoint listens on, which sources it accepts and where each goes,
//! and its limits; checked once at start so that a request never meets a bad setting.

use std::net::SocketAddr;
use std::time::Duration;

use essaim_connect_nats::publish::MAX_IN_FLIGHT;

use crate::IngestError;

/// The largest body by default: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
/// The longest line by default: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// Requests handled at once by default; more are refused with 429.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;
/// Publishes of one request awaiting their ack at once, by default.
pub const DEFAULT_PUBLISH_WINDOW: usize = 256;

/// How long reading a body may take by default.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A source clients may post to, and where its lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSource {
    /// The name in `POST /ingest/{name}`: letters, digits, `_` and `-`.
    pub name: String,
    /// The JetStream stream that stores it (ensured at start, capturing
    /// `<subject_prefix>.*`).
    pub stream: String,
    /// Line `i` of a request goes to subject `<subject_prefix>.<partition>`.
    pub subject_prefix: String,
    /// The number of partitions, at least 1.
    pub partitions: u32,
}

impl IngestSource {
    /// Returns a source `name` with `partitions` partitions, stored in the stream
    /// `name` under the subjects `name.<partition>`.
    pub fn new(name: &str, partitions: u32) -> IngestSource {
        IngestSource {
            name: name.to_owned(),
            stream: name.to_owned(),
            subject_prefix: name.to_owned(),
            partitions,
        }
    }

    /// The subject of `partition`.
    pub fn subject(&self, partition: u32) -> String {
        format!("{}.{partition}", self.subject_prefix)
    }
}

/// The configuration of an [`crate::IngestServer`].
#[derive(Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// The address to listen on (port 0: any free port, see
    /// [`crate::IngestServer::local_addr`]).
    pub listen: SocketAddr,
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The sources accepted; any other is answered 404.
    pub sources: Vec<IngestSource>,
    /// When set, requests must carry `Authorization: Bearer <token>` (else 401).
    pub bearer_token: Option<String>,
    /// The largest body accepted (else 413).
    pub max_body_bytes: usize,
    /// The longest line accepted (else 413 naming the line).
    pub max_line_bytes: usize,
    /// Requests ingested at once; more are refused with 429 rather than queued.
    pub max_concurrent_requests: usize,
    /// Publishes of one request awaiting their ack at once.
    pub publish_window: usize,
    /// How long reading a body may take (else 408): a client sending slowly must not
    /// hold a slot for ever.
    pub body_timeout: Duration,
    /// How long a JetStream request or publish ack may take before the broker is
    /// deemed unavailable (503).
    pub request_timeout: Duration,
    /// The `Retry-After` of 429 and 503 answers.
    pub retry_after: Duration,
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IngestConfig")
            .field("listen", &self.listen)
            .field("nats_url", &self.nats_url)
            .field("sources", &self.sources)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("publish_window", &self.publish_window)
            .field("body_timeout", &self.body_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl IngestConfig {
    /// Returns the defaults: listening on `listen`, publishing to `nats_url`, for
    /// `sources`, without authentication.
    pub fn new(listen: SocketAddr, nats_url: &str, sources: Vec<IngestSource>) -> IngestConfig {
        IngestConfig {
            listen,
            nats_url: nats_url.to_owned(),
            sources,
            bearer_token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            publish_window: DEFAULT_PUBLISH_WINDOW,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            request_timeout: essaim_connect_nats::broker::DEFAULT_REQUEST_TIMEOUT,
            retry_after: Duration::from_secs(5),
        }
    }

    /// Checks every value, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), IngestError> {
        let invalid =
            |key: &'static str, reason: String| Err(IngestError::InvalidConfig { key, reason });
        if self.sources.is_empty() {
            return invalid("sources", "at least one source is needed".to_owned());
        }
        for (index, source) in self.sources.iter().enumerate() {
            let valid_name = !source.name.is_empty()
                && source
                    .name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
            if !valid_name {
                return invalid(
                    "sources.name",
                    format!("`{}`: letters, digits, `_` and `-` only", source.name),
                );
            }
            if self.sources[..index]
                .iter()
                .any(|other| other.name == source.name)
            {
                return invalid("sources.name", format!("`{}` appears twice", source.name));
            }
            if source.partitions == 0 {
                return invalid(
                    "sources.partitions",
                    format!("`{}`: at least 1", source.name),
                );
            }
            let valid_prefix = !source.subject_prefix.is_empty()
                && source.subject_prefix.split('.').all(|token| {
                    !token.is_empty()
                        && !token.contains(['*', '>'])
                        && !token.contains(char::is_whitespace)
                });
            if !valid_prefix {
                return invalid(
                    "sources.subject_prefix",
                    format!("`{}` is not a literal subject", source.subject_prefix),
                );
            }
        }
        if self.bearer_token.as_deref() == Some("") {
            return invalid(
                "bearer_token",
                "empty; leave it unset to disable authentication".to_owned(),
            );
        }
        if self.max_line_bytes == 0 || self.max_body_bytes == 0 {
            return invalid(
                "max_body_bytes",
                "limits must be at least 1 byte".to_owned(),
            );
        }
        if self.max_concurrent_requests == 0 || self.publish_window == 0 {
            return invalid(
                "max_concurrent_requests",
                "`max_concurrent_requests` and `publish_window` must be at least 1".to_owned(),
            );
        }
        // One client context shares the client's bound on unacknowledged publishes.
        if self
            .max_concurrent_requests
            .saturating_mul(self.publish_window)
            > MAX_IN_FLIGHT
        {
            return invalid(
                "publish_window",
                format!(
                    "max_concurrent_requests × publish_window = {} exceeds the client's {MAX_IN_FLIGHT} \
                     unacknowledged publishes",
                    self.max_concurrent_requests
                        .saturating_mul(self.publish_window)
                ),
            );
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout", "must be positive".to_owned());
        }
        if self.body_timeout.is_zero() {
            return invalid("body_timeout", "must be positive".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> IngestConfig {
        IngestConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "nats://127.0.0.1:4222",
            vec![IngestSource::new("flights", 4)],
        )
    }

    #[test]
    fn defaults_are_valid_and_each_bad_value_is_named() {
        assert!(config().validate().is_ok());
        type Change = Box<dyn Fn(&mut IngestConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("sources", Box::new(|config| config.sources.clear())),
            (
                "sources.name",
                Box::new(|config| config.sources[0].name = "a.b".into()),
            ),
            (
                "sources.name",
                Box::new(|config| config.sources.push(IngestSource::new("flights", 1))),
            ),
            (
                "sources.partitions",
                Box::new(|config| config.sources[0].partitions = 0),
            ),
            (
                "sources.subject_prefix",
                Box::new(|config| config.sources[0].subject_prefix = "a.*".into()),
            ),
            (
                "bearer_token",
                Box::new(|config| config.bearer_token = Some(String::new())),
            ),
            (
                "publish_window",
                Box::new(|config| config.publish_window = 1_000),
            ),
        ];
        for (key, change) in cases {
            let mut config = config();
            change(&mut config);
            match config.validate() {
                Err(IngestError::InvalidConfig { key: named, .. }) => assert_eq!(named, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let config = IngestConfig {
            bearer_token: Some("s3cret".into()),
            ..config()
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
