//! The proxy's client of the cache nodes, on the pooled client every essaim process
//! calls another with (`essaim_http_client`: keep-alive, `TCP_NODELAY`), with a
//! timeout on every call.
//!
//! The timeout is what turns a stopped or partitioned node into an error the proxy can
//! fail over from; a refused connection fails at once.
use std::time::Duration;

use bytes::Bytes;
use essaim_http_client::PooledClient;
use http_body_util::Full;

use crate::wire::{
    FILL_BELOW_HEADER, TAG_HEADER, TTL_HEADER, encode_key, format_ttl_ms, parse_ttl_ms,
};

/// Why a call to a node failed (a miss is not a failure).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Nothing answered in time, or the connection broke: the node may be down.
    #[error("node {node} unreachable: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// The transport's words.
        reason: String,
    },
    /// The node refused the request (its answer is passed on to the client).
    #[error("node {node} answered {status}")]
    Refused {
        /// The node.
        node: String,
        /// The status.
        status: u16,
        /// Its body.
        message: String,
    },
}

/// A value read from a node.
#[derive(Debug, Clone)]
pub struct NodeValue {
    /// The bytes.
    pub value: Bytes,
    /// Its tag.
    pub tag: u64,
    /// Milliseconds left to live, if it expires.
    pub ttl_left_ms: Option<u64>,
}

/// A pooled client of the nodes.
#[derive(Debug, Clone)]
pub struct NodeClient {
    inner: PooledClient,
    /// `http` or `https`: the nodes of one proxy all serve TLS or none does.
    scheme: &'static str,
}

impl NodeClient {
    /// Returns a client of plain-HTTP nodes whose calls fail after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            inner: PooledClient::new(&essaim_tls::ClientTrust::system(), timeout, timeout),
            scheme: "http",
        }
    }

    /// Returns a client of nodes serving TLS, verified with `trust` (which presents
    /// its certificate to nodes requiring one), whose calls fail after `timeout`.
    pub fn over_tls(timeout: Duration, trust: &essaim_tls::ClientTrust) -> Self {
        Self {
            inner: PooledClient::new(trust, timeout, timeout),
            scheme: "https",
        }
    }

    async fn call(
        &self,
        node: &str,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Bytes>, NodeError> {
        self.inner
            .send(request)
            .await
            .map_err(|unreachable| NodeError::Unreachable {
                node: node.to_owned(),
                reason: unreachable.reason,
            })
    }

    fn url(&self, node: &str, key: &str) -> String {
        format!("{}://{node}/v1/cache/{}", self.scheme, encode_key(key))
    }

    fn request(method: http::Method, url: &str) -> http::request::Builder {
        http::Request::builder().method(method).uri(url)
    }

    /// Reads `key` from `node`: `None` on a miss.
    pub async fn get(&self, node: &str, key: &str) -> Result<Option<NodeValue>, NodeError> {
        let request = Self::request(http::Method::GET, &self.url(node, key))
            .body(Full::new(Bytes::new()))
            .map_err(|error| invalid(node, error))?;
        let response = self.call(node, request).await?;
        match response.status().as_u16() {
            200 => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                };
                Ok(Some(NodeValue {
                    tag: header(TAG_HEADER)
                        .and_then(|tag| tag.parse().ok())
                        .unwrap_or(0),
                    ttl_left_ms: header(TTL_HEADER).and_then(|ttl| parse_ttl_ms(&ttl)),
                    value: response.into_body(),
                }))
            }
            404 => Ok(None),
            status => Err(refused(node, status, response.body())),
        }
    }

    /// Writes `value` under `key` on `node` with its tag and time to live; with
    /// `fill_below`, only if the node holds no value of `key` tagged that or later.
    pub async fn put(
        &self,
        node: &str,
        key: &str,
        value: Bytes,
        tag: u64,
        ttl_ms: Option<u64>,
        fill_below: Option<u64>,
    ) -> Result<(), NodeError> {
        let mut builder = Self::request(http::Method::PUT, &self.url(node, key))
            .header(TAG_HEADER, tag.to_string());
        if let Some(below) = fill_below {
            builder = builder.header(FILL_BELOW_HEADER, below.to_string());
        }
        if let Some(ttl) = ttl_ms {
            builder = builder.header(TTL_HEADER, format_ttl_ms(ttl));
        }
        let request = builder
            .body(Full::new(value))
            .map_err(|error| invalid(node, error))?;
        let response = self.call(node, request).await?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(refused(node, status, response.body())),
        }
    }

    /// Deletes `key` on `node` (absent is fine).
    pub async fn delete(&self, node: &str, key: &str) -> Result<(), NodeError> {
        let request = Self::request(http::Method::DELETE, &self.url(node, key))
            .body(Full::new(Bytes::new()))
            .map_err(|error| invalid(node, error))?;
        let response = self.call(node, request).await?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            status => Err(refused(node, status, response.body())),
        }
    }

    /// Returns whether `node` answers `/healthz`.
    pub async fn healthy(&self, node: &str) -> bool {
        let Ok(request) = Self::request(
            http::Method::GET,
            &format!("{}://{node}/healthz", self.scheme),
        )
        .body(Full::new(Bytes::new())) else {
            return false;
        };
        self.call(node, request)
            .await
            .is_ok_and(|response| response.status().is_success())
    }
}

fn invalid(node: &str, error: http::Error) -> NodeError {
    NodeError::Unreachable {
        node: node.to_owned(),
        reason: format!("cannot build the request: {error}"),
    }
}

fn refused(node: &str, status: u16, body: &Bytes) -> NodeError {
    NodeError::Refused {
        node: node.to_owned(),
        status,
        message: String::from_utf8_lossy(body).into_owned(),
    }
}
