//! The serving layer's JSON calls (a root to its leaves, tests to a root), on the
//! pooled client every essaim process calls another with (`essaim_http_client`:
//! keep-alive, `TCP_NODELAY`; dropping a call's future drops its connection
//! mid-request, which is how a hedge's loser is cancelled at the leaf).
use std::time::Duration;

use bytes::Bytes;
use essaim_http_client::PooledClient;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Longest a connection to a leaf may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A backstop only: a query's own deadline ends its calls long before.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

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

/// A pooled HTTP/1 client speaking JSON.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: PooledClient,
}

impl HttpClient {
    /// Returns a client verifying `https://` peers with `trust` (and presenting its
    /// certificate to peers requiring one); `http://` peers stay plain.
    pub fn new(trust: &essaim_tls::ClientTrust) -> Self {
        Self {
            inner: PooledClient::new(trust, CONNECT_TIMEOUT, CALL_TIMEOUT),
        }
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
        if url.parse::<http::Uri>().is_err() {
            return Err(CallError::InvalidUrl {
                url: url.to_owned(),
            });
        }
        let json = http::HeaderValue::from_static("application/json");
        let response = self
            .inner
            .call(method, url, Some(&json), body)
            .await
            .map_err(|unreachable| CallError::Unreachable {
                url: unreachable.url,
                reason: unreachable.reason,
            })?;
        let status = response.status();
        let bytes = response.into_body();
        if !status.is_success() {
            let message = essaim_http_client::error_text(&bytes);
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
