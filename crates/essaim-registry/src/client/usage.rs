//! The usage calls of the client: a runner's (or a pipeline's) heartbeat and its
//! withdrawal, the loop that sends them, and the reads of the governance view (see
//! [`crate::usage`] and [`crate::governance`]).
//!
//! A report that cannot be sent changes nothing the reporter does: it is logged (once
//! per outage) and sent again at the next beat.

use super::{ClientError, RegistryClient, json_body};
use http_body_util::BodyExt;
use serde::Serialize;
use std::time::Duration;

/// Longest a withdrawal may hold up the reporter's shutdown.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(2);

impl RegistryClient {
    /// Reports `report()` as `reporter`'s usage every `interval` until `shutdown`
    /// completes, then withdraws it.
    pub async fn heartbeat(
        &self,
        reporter: &str,
        interval: Duration,
        report: impl Fn() -> crate::usage::UsageReport,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failing = false;
        loop {
            match self.report_usage(reporter, &report()).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(reporter, "usage reported to the registry again");
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(
                        reporter,
                        error = %essaim_core::error_chain::error_chain(&error),
                        "cannot report usage to the registry; working on, retrying at every beat"
                    );
                }
                Err(_) => {}
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
        let withdrawn = tokio::time::timeout(WITHDRAW_TIMEOUT, self.withdraw_usage(reporter)).await;
        if !matches!(withdrawn, Ok(Ok(()))) {
            tracing::debug!(reporter, "usage not withdrawn; it expires on its own");
        }
    }

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

    /// Sends a JSON request whose answer has no body, within [`super::CALL_TIMEOUT`].
    async fn call_without_answer(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(), ClientError> {
        let exchange = async {
            let response = self.send(method, path, json_body(body), None).await?;
            // Read to the end, so that the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok(())
        };
        self.within_call_timeout(path, exchange).await
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
