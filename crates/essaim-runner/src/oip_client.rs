//! A client of the Open Inference Protocol for text classifiers: what a pipeline's
//! `predict` operator with `runner = URL` calls. Any server that takes one BYTES input
//! and answers `label` and `scores` as [`crate::oip`] describes fits: an `essaim serve`
//! runner, or the front of runners placed on the cluster.
//!
//! Texts go in requests of at most [`MAX_ROWS`] rows; each row's answer carries the
//! version that gave it (a runner with an A/B split answers a request from one arm, a
//! later request maybe from the other). Whether an error is worth retrying is decided
//! here ([`InferClientError::is_retryable`]): a runner that is down, full (429) or not
//! ready yet (503) is; a refusal of the request itself is not.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::oip::{INPUT_NAME, InferResponse, LABEL_OUTPUT, MAX_ROWS, SCORES_OUTPUT};

/// Longest wait for a connection to a runner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one request's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One row's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePrediction {
    /// The predicted label.
    pub label: String,
    /// Its probability: the highest of the row's scores.
    pub score: f64,
    /// The version that answered, when the runner names one as a number.
    pub version: Option<u64>,
}

/// Why a runner gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferClientError {
    /// The URL is not an `http://` or `https://` URL with a host.
    #[error("`{0}` is not an http:// or https:// URL of a runner")]
    InvalidUrl(String),
    /// The runner could not be reached, or did not answer in time.
    #[error("runner {url} is unreachable: {reason}")]
    Unreachable {
        /// The runner.
        url: String,
        /// Why.
        reason: String,
    },
    /// The runner answered with an error status.
    #[error("runner {url} answered {status}: {message}")]
    Refused {
        /// The runner.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The runner's message.
        message: String,
    },
    /// The answer is not what a text classifier answers.
    #[error("runner {url} sent an answer that is not a text classification: {reason}")]
    Malformed {
        /// The runner.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl InferClientError {
    /// Tells whether the same request may succeed later: the runner was unreachable,
    /// full (429), not ready (503) or failing (5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Refused { status, .. } => *status == 429 || *status >= 500,
            Self::InvalidUrl(_) | Self::Malformed { .. } => false,
        }
    }
}

/// A connection to one runner.
#[derive(Clone, Debug)]
pub struct InferClient {
    base_url: String,
    client: Client<essaim_tls::HttpsConnector, Full<Bytes>>,
}

impl InferClient {
    /// Prepares calls to the runner at `url`, verifying an `https://` runner's
    /// certificate with `trust`.
    pub fn new(url: &str, trust: &essaim_tls::ClientTrust) -> Result<Self, InferClientError> {
        let base_url = url.trim_end_matches('/').to_string();
        let uri: http::Uri = base_url
            .parse()
            .map_err(|_| InferClientError::InvalidUrl(url.into()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(InferClientError::InvalidUrl(url.into()));
        }
        let connector = trust.http_connector(CONNECT_TIMEOUT);
        Ok(InferClient {
            base_url,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Returns the runner's URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Tells whether the runner serves `model` with a version loaded.
    pub async fn ready(&self, model: &str) -> Result<(), InferClientError> {
        let path = format!("/v2/models/{model}/ready");
        self.exchange(http::Method::GET, &path, Bytes::new())
            .await
            .map(drop)
    }

    /// Predicts `texts` with `model`, in requests of at most [`MAX_ROWS`] rows; returns
    /// one answer per text, in order.
    pub async fn infer(
        &self,
        model: &str,
        texts: &[String],
    ) -> Result<Vec<RemotePrediction>, InferClientError> {
        let path = format!("/v2/models/{model}/infer");
        let mut answers = Vec::with_capacity(texts.len());
        for rows in texts.chunks(MAX_ROWS) {
            let body = json!({
                "inputs": [{
                    "name": INPUT_NAME,
                    "shape": [rows.len()],
                    "datatype": "BYTES",
                    "data": rows,
                }]
            });
            let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            let answer = self.exchange(http::Method::POST, &path, body).await?;
            let response: InferResponse =
                serde_json::from_slice(&answer).map_err(|error| self.malformed(error))?;
            answers.extend(predictions(&response, rows.len()).map_err(|r| self.malformed(r))?);
        }
        Ok(answers)
    }

    /// Sends one request and returns the body of a 2xx answer, within [`CALL_TIMEOUT`].
    async fn exchange(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> Result<Bytes, InferClientError> {
        let unreachable = |reason: String| InferClientError::Unreachable {
            url: self.base_url.clone(),
            reason,
        };
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|_| InferClientError::InvalidUrl(self.base_url.clone()))?;
        let exchange =
            async {
                let response =
                    self.client.request(request).await.map_err(|error| {
                        unreachable(essaim_core::error_chain::error_chain(&error))
                    })?;
                let status = response.status().as_u16();
                let body =
                    response.into_body().collect().await.map_err(|error| {
                        unreachable(essaim_core::error_chain::error_chain(&error))
                    })?;
                Ok((status, body.to_bytes()))
            };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {CALL_TIMEOUT:?}")))??;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(InferClientError::Refused {
            url: self.base_url.clone(),
            status,
            message: error_message(&body),
        })
    }

    fn malformed(&self, reason: impl std::fmt::Display) -> InferClientError {
        InferClientError::Malformed {
            url: self.base_url.clone(),
            reason: reason.to_string(),
        }
    }
}

/// The `error` field of an OIP error body, or the body itself, shortened.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = match parsed.as_ref().and_then(|value| value.get("error")) {
        Some(Value::String(message)) => message.clone(),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    message.chars().take(300).collect()
}

/// Reads `rows` answers out of a response: each row's label, its highest score, and
/// the response's version.
fn predictions(response: &InferResponse, rows: usize) -> Result<Vec<RemotePrediction>, String> {
    let output = |name: &str| {
        response
            .outputs
            .iter()
            .find(|output| output.name == name)
            .ok_or_else(|| format!("no `{name}` output"))
    };
    let labels = output(LABEL_OUTPUT)?
        .data
        .as_array()
        .cloned()
        .unwrap_or_default();
    let scores = output(SCORES_OUTPUT)?
        .data
        .as_array()
        .cloned()
        .unwrap_or_default();
    if labels.len() != rows || rows == 0 || !scores.len().is_multiple_of(rows) {
        return Err(format!(
            "{} labels and {} scores for {rows} rows",
            labels.len(),
            scores.len()
        ));
    }
    let classes = scores.len() / rows;
    let version = response.model_version.parse::<u64>().ok();
    labels
        .iter()
        .zip(scores.chunks(classes.max(1)))
        .map(|(label, row)| {
            let label = label.as_str().ok_or("a label that is not a string")?;
            let score = row
                .iter()
                .filter_map(Value::as_f64)
                .fold(f64::NEG_INFINITY, f64::max);
            Ok(RemotePrediction {
                label: label.to_owned(),
                score: if score.is_finite() { score } else { 0.0 },
                version,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_row_by_row_with_the_highest_score_and_the_version() {
        let classes = vec!["ham".to_string(), "spam".to_string()];
        let response = crate::oip::response(
            "spam-filter",
            4,
            None,
            &classes,
            &[(1, vec![0.25, 0.75]), (0, vec![0.9, 0.1])],
        );
        let read = predictions(&response, 2).unwrap();
        assert_eq!(read[0].label, "spam");
        assert_eq!(read[0].score, 0.75);
        assert_eq!(read[1].label, "ham");
        assert_eq!(read[1].score, 0.9);
        assert!(read.iter().all(|row| row.version == Some(4)));
        assert!(predictions(&response, 3).is_err());
    }

    #[test]
    fn only_what_may_pass_later_is_retryable_and_bad_urls_are_refused() {
        let refused = |status| InferClientError::Refused {
            url: "http://r".into(),
            status,
            message: String::new(),
        };
        assert!(refused(429).is_retryable());
        assert!(refused(503).is_retryable());
        assert!(!refused(400).is_retryable());
        assert!(!refused(404).is_retryable());
        let trust = essaim_tls::ClientTrust::system();
        assert!(InferClient::new("ftp://r", &trust).is_err());
        assert!(InferClient::new("http://", &trust).is_err());
        assert_eq!(
            InferClient::new("http://r:1/", &trust).unwrap().url(),
            "http://r:1"
        );
    }
}
