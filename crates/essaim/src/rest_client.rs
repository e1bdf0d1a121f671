//! A small client of the coordinator's REST/JSON API (`/api/v1`), for the commands that
//! need what only that API serves: a job's history and queue statistics (`essaim report`).
//!
//! Why not gRPC: the history is built for the dashboard and the report and is served on
//! the REST side only (see the coordinator's `rest` module). Why hyper rather than an
//! HTTP client crate: hyper and hyper-util are already in the build (the shuffle client
//! uses them), and a GET with a bearer token needs nothing more.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Longest one call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a REST call failed; each variant says whose fault it is, for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The URL does not parse or is not `http://`.
    #[error("invalid coordinator URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The token cannot be sent as a header.
    #[error("the cluster token must be printable ASCII")]
    InvalidToken,
    /// Nothing answers, or the connection broke.
    #[error(
        "cannot reach the coordinator at {url}: {reason} (is it running? see `essaim coordinator --help`)"
    )]
    Unreachable {
        /// The coordinator's URL.
        url: String,
        /// The transport's words.
        reason: String,
    },
    /// The coordinator took too long.
    #[error("the coordinator at {url} did not answer {path} within {} s", CALL_TIMEOUT.as_secs())]
    TimedOut {
        /// The coordinator's URL.
        url: String,
        /// The API path.
        path: String,
    },
    /// The token is missing or wrong.
    #[error(
        "the coordinator refused the request: {message} (pass the cluster token with --token or ESSAIM_TOKEN)"
    )]
    Unauthorized {
        /// The coordinator's words.
        message: String,
    },
    /// What was asked for does not exist (an unknown job).
    #[error("{message}")]
    NotFound {
        /// The coordinator's words.
        message: String,
    },
    /// Any other refusal or failure of the coordinator.
    #[error("the coordinator answered {path} with HTTP {status}: {message}")]
    Status {
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The coordinator's words.
        message: String,
    },
    /// The answer is not the JSON this version expects.
    #[error("the coordinator's answer to {path} is not what this essaim expects: {reason}")]
    Decode {
        /// The API path.
        path: String,
        /// The decoder's words.
        reason: String,
    },
}

/// A connection to one coordinator's REST API.
pub struct RestClient {
    base_url: String,
    authorization: Option<String>,
    client: Client<essaim_tls::HttpsConnector, Empty<Bytes>>,
    /// Kept to ask a TLS coordinator why it refused a call that failed without saying.
    trust: essaim_tls::ClientTrust,
}

impl RestClient {
    /// Prepares calls to the coordinator at `url` (nothing is sent yet); an `https://`
    /// coordinator is verified with the system's roots.
    pub fn new(url: &str, token: Option<&str>) -> Result<Self, RestError> {
        Self::new_trusting(url, token, &essaim_tls::ClientTrust::system())
    }

    /// Prepares calls as [`Self::new`] does, verifying an `https://` coordinator's
    /// certificate with `trust`.
    pub fn new_trusting(
        url: &str,
        token: Option<&str>,
        trust: &essaim_tls::ClientTrust,
    ) -> Result<Self, RestError> {
        let base_url = url.trim_end_matches('/').to_string();
        let uri: http::Uri = base_url.parse().map_err(|error| RestError::InvalidUrl {
            url: url.to_string(),
            reason: format!("{error}"),
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(RestError::InvalidUrl {
                url: url.to_string(),
                reason: "expected http://HOST:PORT or https://HOST:PORT".into(),
            });
        }
        let authorization = match token {
            Some(token) if token.bytes().all(|byte| byte.is_ascii_graphic()) => {
                Some(format!("Bearer {token}"))
            }
            Some(_) => return Err(RestError::InvalidToken),
            None => None,
        };
        let connector = trust.http_connector(CONNECT_TIMEOUT);
        Ok(Self {
            base_url,
            authorization,
            client: Client::builder(TokioExecutor::new()).build(connector),
            trust: trust.clone(),
        })
    }

    /// GETs `path` (e.g. `/api/v1/workers`) and decodes its JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RestError> {
        let body = self.get_bytes(path).await?;
        serde_json::from_slice(&body).map_err(|error| RestError::Decode {
            path: path.to_string(),
            reason: error.to_string(),
        })
    }

    /// GETs `path` and returns the body of a 200 answer.
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, RestError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.call(path)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(RestError::TimedOut {
                url: self.base_url.clone(),
                path: path.to_string(),
            }),
        }
    }

    async fn call(&self, path: &str) -> Result<Bytes, RestError> {
        let url = format!("{}{path}", self.base_url);
        let mut request = http::Request::get(&url).header(http::header::ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        // The coordinator's span of this request joins the command's trace.
        if let Some(headers) = request.headers_mut() {
            essaim_telemetry::trace_context::inject_current_into_headers(headers);
        }
        let request = request
            .body(Empty::new())
            .map_err(|error| RestError::InvalidUrl {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        let unreachable = |error: &(dyn std::error::Error + 'static)| RestError::Unreachable {
            url: self.base_url.clone(),
            // A failed handshake says what to fix; the raw chain does not.
            reason: match essaim_tls::handshake_failure(error) {
                Some(failure) => failure.to_string(),
                None => essaim_core::error_chain::error_chain(error),
            },
        };
        let uri = request.uri().clone();
        let response = match self.client.request(request).await {
            Ok(response) => response,
            // A TLS 1.3 coordinator may refuse a missing client certificate after the
            // handshake, in words the error does not carry: ask it.
            Err(error) => {
                let reason = match essaim_tls::explain_failure(&self.trust, &uri, &error).await {
                    Some(failure) => failure.to_string(),
                    None => essaim_core::error_chain::error_chain(&error),
                };
                return Err(RestError::Unreachable {
                    url: self.base_url.clone(),
                    reason,
                });
            }
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| unreachable(&error))?
            .to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let message = error_message(&body);
        Err(match status {
            http::StatusCode::UNAUTHORIZED | http::StatusCode::FORBIDDEN => {
                RestError::Unauthorized { message }
            }
            http::StatusCode::NOT_FOUND => RestError::NotFound { message },
            _ => RestError::Status {
                path: path.to_string(),
                status: status.as_u16(),
                message,
            },
        })
    }
}

/// Returns the `error` of a `{"error": "…"}` answer, else the body as text.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ApiError {
        error: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(answer) => answer.error,
        Err(_) => String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(200)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_tokens_are_checked_before_any_call() {
        assert!(RestClient::new("http://127.0.0.1:7070/", None).is_ok());
        assert!(RestClient::new("https://example.invalid", None).is_ok());
        for bad in ["127.0.0.1:7070", "ftp://example.invalid", "not a url"] {
            assert!(
                matches!(
                    RestClient::new(bad, None),
                    Err(RestError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            RestClient::new("http://127.0.0.1:7070", Some("two words")),
            Err(RestError::InvalidToken)
        ));
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(br#"{"error": "job 9 does not exist"}"#),
            "job 9 does not exist"
        );
        assert_eq!(error_message(b"  plain text \n"), "plain text");
    }
}
