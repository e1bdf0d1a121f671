//! Where the broker is and how long to wait for it; the one place that builds a client.
//!
//! The client retries broken connections and leader changes by itself, forever by
//! default. Here its retries are bounded by [`KafkaConfig::request_timeout`], and every
//! call is also wrapped in a timer, so that a broker that is down or hung surfaces as a
//! transient [`ConnectorError`] that the runtime retries with its own backoff, instead
//! of a call that never returns.

use std::future::Future;
use std::time::Duration;

use essaim_connect::ConnectorError;
use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder};

use crate::error::{self, from_client};

/// How to reach the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers, comma-separated (`127.0.0.1:9092`).
    pub bootstrap: String,
    /// The longest one call may take (connecting, metadata, a produce until all
    /// replicas acknowledged, a fetch beyond its own wait), the client's internal
    /// retries included. Past it the call fails with a transient error.
    pub request_timeout: Duration,
    /// The client id the broker logs.
    pub client_id: String,
}

impl KafkaConfig {
    /// The broker(s) at `bootstrap`, with a 10 s request timeout.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            request_timeout: Duration::from_secs(10),
            client_id: "essaim".to_owned(),
        }
    }

    /// The same with another request timeout.
    pub fn with_request_timeout(self, request_timeout: Duration) -> Self {
        KafkaConfig {
            request_timeout,
            ..self
        }
    }

    /// The bootstrap addresses, checked: a malformed one is a permanent error.
    pub(crate) fn brokers(&self) -> Result<Vec<String>, ConnectorError> {
        let brokers: Vec<String> = self
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|broker| !broker.is_empty())
            .map(str::to_owned)
            .collect();
        if brokers.is_empty() {
            return Err(error::permanent("connect", "no bootstrap address given"));
        }
        for broker in &brokers {
            let port = broker.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(port)) if port > 0) {
                return Err(error::permanent(
                    "connect",
                    format!("bootstrap address `{broker}` is not host:port"),
                ));
            }
        }
        Ok(brokers)
    }
}

/// Connects to the cluster and reads its metadata once.
pub(crate) async fn connect(config: &KafkaConfig) -> Result<Client, ConnectorError> {
    let brokers = config.brokers()?;
    let backoff = BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(config.request_timeout),
    };
    let builder = ClientBuilder::new(brokers)
        .client_id(config.client_id.as_str())
        .backoff_config(backoff);
    within(config.request_timeout, "connect", builder.build())
        .await?
        .map_err(|failure| from_client("connect", failure))
}

/// Runs `call`, failing with a transient error when it takes longer than `limit` (the
/// client's own deadline covers its retries, not a request the broker never answers).
pub(crate) async fn within<T>(
    limit: Duration,
    action: &'static str,
    call: impl Future<Output = T>,
) -> Result<T, ConnectorError> {
    // A margin over the client's own deadline, so that its error (which says more) wins.
    let margin = Duration::from_secs(1);
    tokio::time::timeout(limit.saturating_add(margin), call)
        .await
        .map_err(|_| {
            error::transient(
                action,
                format!("no answer from the broker within {:?}", limit + margin),
            )
        })
}

/// A duration in whole milliseconds for the protocol's `i32` fields, saturated.
pub(crate) fn millis_i32(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_addresses_are_checked() {
        let brokers = KafkaConfig::new(" 127.0.0.1:9092, other:19092 ")
            .brokers()
            .expect("two addresses");
        assert_eq!(brokers, ["127.0.0.1:9092", "other:19092"]);
        for bad in ["", "localhost", "localhost:port", "127.0.0.1:0", ","] {
            let error = KafkaConfig::new(bad).brokers().expect_err(bad);
            assert!(!error.transient, "{bad}: {error}");
        }
    }

    #[test]
    fn millis_saturate() {
        assert_eq!(millis_i32(Duration::from_millis(1500)), 1500);
        assert_eq!(millis_i32(Duration::MAX), i32::MAX);
    }
}
