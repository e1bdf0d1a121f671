//! The usage calls of the client: a runner's heartbeat and its withdrawal, and the
//! reads of the governance view (see [`crate::usage`] and [`crate::governance`]).

use super::{CALL_TIMEOUT, ClientError, RegistryClient};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;

impl RegistryClient {
    /// Reports what `runner` serves now (a heartbeat).
    pub async fn report_usage(
        &self,
        runner: &str,
        report: &crate::usage::UsageReport,
    ) -> Result<(), ClientError> {
        let path = format!("/usage/{}", path_segment(runner));
        self.call_without_answer(http::Method::PUT, &path, Some(report))
            .await
    }

    /// Withdraws `runner`'s report (it stops in order).
    pub async fn withdraw_usage(&self, runner: &str) -> Result<(), ClientError> {
        let path = format!("/usage/{}", path_segment(runner));
        self.call_without_answer(http::Method::DELETE, &path, None::<&()>)
            .await
    }

    /// Returns every live runner's last report.
    pub async fn usage(&self) -> Result<Vec<crate::usage::RunnerUsage>, ClientError> {
        self.get("/usage").await
    }

    /// Returns the governance view: every model, its versions, and who uses each.
    pub async fn governance(&self) -> Result<crate::governance::GovernanceView, ClientError> {
        self.get("/governance").await
    }

    /// Sends a JSON request whose answer has no body, within [`CALL_TIMEOUT`].
    async fn call_without_answer(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(), ClientError> {
        let bytes = match body {
            Some(body) => serde_json::to_vec(body).expect("requests always serialise"),
            None => Vec::new(),
        };
        let body = Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed();
        let exchange = async {
            let response = self.send(method, path, body, None).await?;
            // Read to the end, so that the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok(())
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::TimedOut {
                url: self.url().to_string(),
                path: path.to_string(),
            })?
    }
}

/// Returns `text` with every byte outside `[A-Za-z0-9._~-]` percent-encoded, to be one
/// segment of a path.
fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"._~-".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_runner_name_is_one_path_segment() {
        assert_eq!(super::path_segment("host-1:8080"), "host-1%3A8080");
        assert_eq!(super::path_segment("a/b c"), "a%2Fb%20c");
    }
}
