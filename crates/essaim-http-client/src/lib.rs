//! The pooled HTTP/1 client one essaim process calls another with: a query root its
//! leaves, a model front its replicas, a cache proxy its nodes, a long-running task the
//! front it registers with. Each of those speaks its own small protocol on top of
//! [`PooledClient::send`]; the connection handling is decided here, once.
//!
//! One client per caller, cloned: its pool keeps connections to every peer open, so a
//! call costs one round trip, not a handshake. `TCP_NODELAY`, because requests and
//! answers are small and Nagle's algorithm would hold the second of two writes for up
//! to a delayed ACK (40 ms on Linux). `https://` peers are verified with the caller's
//! [`ClientTrust`] (its CA file, and its own certificate where the peer requires one);
//! `http://` peers stay plain. Dropping a call's future drops its connection
//! mid-request, which is how a hedge's loser is cancelled at the leaf.
#![warn(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use essaim_tls::{ClientTrust, HttpsConnector};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How many idle connections the pool keeps per peer.
const IDLE_PER_PEER: usize = 64;

/// Why a call got no answer: the peer refused or reset the connection, or did not
/// answer within the client's timeout. An answer with an error status is an answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot reach {url}: {reason}")]
pub struct Unreachable {
    /// The URL called.
    pub url: String,
    /// The transport's words.
    pub reason: String,
}

/// A pooled HTTP/1 client; cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct PooledClient {
    inner: Client<HttpsConnector, Full<Bytes>>,
    timeout: Duration,
    /// Kept to ask a TLS peer why it refused a call that failed without saying.
    trust: ClientTrust,
}

impl PooledClient {
    /// Returns a client whose connections open within `connect_timeout` and whose
    /// calls get their whole answer within `timeout`, verifying `https://` peers with
    /// `trust`.
    pub fn new(trust: &ClientTrust, connect_timeout: Duration, timeout: Duration) -> Self {
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_PEER)
            .build(trust.http_connector(connect_timeout));
        Self {
            inner,
            timeout,
            trust: trust.clone(),
        }
    }

    /// Sends `request` and returns the answer with its whole body.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Bytes>, Unreachable> {
        let uri = request.uri().clone();
        let url = uri.to_string();
        let unreachable = |reason: String| Unreachable {
            url: url.clone(),
            reason,
        };
        let exchange = async {
            let response = match self.inner.request(request).await {
                Ok(response) => response,
                Err(error) => return Err(unreachable(self.failure_words(&uri, &error).await)),
            };
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|error| unreachable(error.to_string()))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(unreachable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// The words of a call that got no answer: what to fix when a TLS peer refused the
    /// handshake (asked of the peer itself when the error does not say, see
    /// [`essaim_tls::explain_failure`]), since no retry changes that; else the
    /// transport's chain of errors.
    async fn failure_words(
        &self,
        uri: &http::Uri,
        error: &hyper_util::client::legacy::Error,
    ) -> String {
        match essaim_tls::explain_failure(&self.trust, uri, error).await {
            Some(failure) => failure.to_string(),
            None => essaim_core::error_chain::error_chain(error),
        }
    }

    /// Sends `method url` with `body` (of `content_type`, if given).
    pub async fn call(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&http::HeaderValue>,
        body: Bytes,
    ) -> Result<http::Response<Bytes>, Unreachable> {
        let mut request = http::Request::builder().method(method).uri(url);
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body)).map_err(|error| Unreachable {
            url: url.to_owned(),
            reason: format!("invalid request: {error}"),
        })?;
        self.send(request).await
    }
}

/// The words of an error answer between essaim processes: the `error` field of the
/// `{"error": "…"}` body they all answer with, else the body as text.
pub fn error_text(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests;
