//! The front's HTTP/1 client: a request passed on to a replica as bytes, and the
//! answer passed back as bytes, status and content type unchanged.
//!
//! One client per front, cloned: its pool keeps connections to every replica open, so
//! a forwarded request costs one round trip, not a handshake (`TCP_NODELAY`, as the
//! runner's own server sets it). Every failure here is at the connection level
//! (refused, reset, no answer within [`REQUEST_TIMEOUT`]): the front then marks the
//! replica down and retries elsewhere. An answer with an error status is an answer.
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest a replica may take to answer a forwarded request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection to a replica may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request did not get an answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot reach {url}: {reason}")]
pub struct Unreachable {
    /// The URL.
    pub url: String,
    /// The transport's words.
    pub reason: String,
}

/// A replica's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: http::StatusCode,
    /// Its `Content-Type`, if any.
    pub content_type: Option<http::HeaderValue>,
    /// The body.
    pub body: Bytes,
}

/// A pooled HTTP/1 client.
#[derive(Debug, Clone)]
pub struct Forwarder {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    /// Returns a client with `TCP_NODELAY` and a pool of idle connections per replica.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Self { inner }
    }

    /// Sends `method url` with `body` (of `content_type`) and returns the answer.
    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&http::HeaderValue>,
        body: Bytes,
    ) -> Result<Answer, Unreachable> {
        let unreachable = |reason: String| Unreachable {
            url: url.to_owned(),
            reason,
        };
        let mut request = http::Request::builder().method(method).uri(url);
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|error| unreachable(format!("invalid request: {error}")))?;
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|error| unreachable(essaim_core::error_chain::error_chain(&error)))?;
            let status = response.status();
            let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| unreachable(error.to_string()))?
                .to_bytes();
            Ok(Answer {
                status,
                content_type,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                let seconds = REQUEST_TIMEOUT.as_secs();
                Err(unreachable(format!("no answer within {seconds} s")))
            })
    }
}
