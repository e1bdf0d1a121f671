//! The small HTTP/1 client of the serving layer: JSON in, JSON out, pooled keep-alive
//! connections with `TCP_NODELAY`.
//!
//! One client per process, cloned: its pool keeps a connection to every leaf open, so a
//! leaf request costs one round trip, not a handshake. `TCP_NODELAY` because requests
//! and answers are small and Nagle's algorithm would hold the second of two writes for
//! up to a delayed ACK (40 ms on Linux). Dropping a call's future drops its connection
//! mid-request, which is how a hedge's loser is cancelled at the leaf.
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The URL does not parse.
    #[error("invalid URL `{url}`")]
    InvalidUrl {
        /// The URL.
        url: String,
    },
    /// Nothing answers, or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport's words.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The body, as text.
        message: String,
    },
    /// The body is not the JSON expected.
    #[error("{url} answered something this essaim does not read: {reason}")]
    Decode {
        /// The URL.
        url: String,
        /// The decoder's words.
        reason: String,
    },
}

/// A pooled HTTP/1 client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// Returns a client with `TCP_NODELAY` and a pool of idle connections per host.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Self { inner }
    }

    /// GETs `url` and decodes its JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, CallError> {
        self.call(http::Method::GET, url, Bytes::new()).await
    }

    /// POSTs `body` as JSON to `url` and decodes the JSON answer.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, CallError> {
        let bytes = serde_json::to_vec(body).expect("wire types always serialize");
        self.call(http::Method::POST, url, Bytes::from(bytes)).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: http::Method,
        url: &str,
        body: Bytes,
    ) -> Result<T, CallError> {
        let request = http::Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|_| CallError::InvalidUrl {
                url: url.to_owned(),
            })?;
        let unreachable = |reason: String| CallError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|error| unreachable(essaim_core::error_chain::error_chain(&error)))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|error| unreachable(error.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = match serde_json::from_slice::<crate::wire::ErrorBody>(&bytes) {
                Ok(body) => body.error,
                Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
            };
            return Err(CallError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|error| CallError::Decode {
            url: url.to_owned(),
            reason: error.to_string(),
        })
    }
}

/// Returns `text` encoded for a query string.
pub fn encode_query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
