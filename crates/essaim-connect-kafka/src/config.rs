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
use crate::tls::Bootstrap;

/// How to reach the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers, comma-separated (`127.0.0.1:9092`), with
    /// TLS asked for as [`crate::tls`] says (`ssl://host:9093?tls_ca=FILE`).
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
}

/// Connects to the cluster and reads its metadata once.
pub(crate) async fn connect(config: &KafkaConfig) -> Result<Client, ConnectorError> {
    let bootstrap = Bootstrap::parse(&config.bootstrap)?;
    let backoff = BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(config.request_timeout),
    };
    let mut builder = ClientBuilder::new(bootstrap.brokers.clone())
        .client_id(config.client_id.as_str())
        .backoff_config(backoff);
    if let Some(trust) = bootstrap.trust()? {
        builder = builder.tls_config(trust.rustls_config());
    }
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
    fn millis_saturate() {
        assert_eq!(millis_i32(Duration::from_millis(1500)), 1500);
        assert_eq!(millis_i32(Duration::MAX), i32::MAX);
    }
}
