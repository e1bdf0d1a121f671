//! The inputs of an attempt started early (slow start): the coordinator granted it with
//! the upstream outputs committed so far, and it asks for the others with the
//! `WatchInputs` long-poll until they are complete.
//!
//! Executors see an [`InputsWatch`] in their [`crate::AttemptContext`]; behind it, an
//! [`InputsSource`] answers. The worker's source asks the leading coordinator under the
//! current registration; tests plug in their own. A source only asks: retrying a
//! failed question, and deciding when to give up, is the executor's business.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use essaim_core::{AttemptId, UpstreamInputs};
use essaim_proto::{Coordinators, upstream_output_from_wire, v1};
use tokio::sync::watch;

use crate::session::{SessionState, call_status, wait_for_session};

/// Longest the coordinator is asked to hold one question; it caps this with its own
/// long poll.
const WATCH_WAIT: Duration = Duration::from_secs(10);

/// Time allowed beyond [`WATCH_WAIT`] before a question counts as lost.
const WATCH_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// The answer to one question: `None` when the attempt no longer holds its lease (it
/// must stop; its result would be refused).
pub type WatchAnswer = Option<UpstreamInputs>;

/// Why a question got no answer; asking again may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("failed to ask the coordinator for the inputs of attempt {attempt}: {reason}")]
pub struct InputsWatchError {
    /// The attempt.
    pub attempt: AttemptId,
    /// What failed.
    pub reason: String,
}

/// The future of one question.
pub type WatchFuture =
    Pin<Box<dyn Future<Output = Result<WatchAnswer, InputsWatchError>> + Send + 'static>>;

/// Answers the questions of attempts started early.
pub trait InputsSource: Send + Sync + std::fmt::Debug + 'static {
    /// Returns the inputs of `attempt` once the job's inputs version passes
    /// `known_version`, or they are complete, or a while has passed (then as they are).
    fn watch(&self, attempt: AttemptId, known_version: u64) -> WatchFuture;
}

/// What an attempt started early asks with; `None` in the context of an attempt whose
/// inputs were complete at its grant.
#[derive(Clone)]
pub struct InputsWatch {
    source: Arc<dyn InputsSource>,
    attempt: AttemptId,
    /// The inputs version of the grant's inputs.
    pub granted_version: u64,
}

impl std::fmt::Debug for InputsWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputsWatch")
            .field("attempt", &self.attempt)
            .field("granted_version", &self.granted_version)
            .finish_non_exhaustive()
    }
}

impl InputsWatch {
    /// Returns the watch of `attempt`, granted with inputs of `granted_version`.
    pub fn new(source: Arc<dyn InputsSource>, attempt: AttemptId, granted_version: u64) -> Self {
        Self {
            source,
            attempt,
            granted_version,
        }
    }

    /// Asks for the inputs once the job's inputs version passes `known_version` (see
    /// [`InputsSource::watch`]).
    pub async fn next(&self, known_version: u64) -> Result<WatchAnswer, InputsWatchError> {
        self.source.watch(self.attempt, known_version).await
    }
}

/// The worker's source: asks the leading coordinator, under the current registration.
pub(crate) struct CoordinatorInputs {
    pub coordinators: Coordinators,
    pub session_rx: watch::Receiver<SessionState>,
}

impl std::fmt::Debug for CoordinatorInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorInputs").finish_non_exhaustive()
    }
}

impl InputsSource for CoordinatorInputs {
    fn watch(&self, attempt: AttemptId, known_version: u64) -> WatchFuture {
        let coordinators = self.coordinators.clone();
        let mut session_rx = self.session_rx.clone();
        Box::pin(async move {
            let failed = |reason: String| InputsWatchError { attempt, reason };
            // Without a registration the attempt's lease is gone with it.
            let Some(session) = wait_for_session(&mut session_rx).await else {
                return Ok(None);
            };
            let request = v1::WatchInputsRequest {
                worker_id: session.worker_id,
                attempt_id: attempt.0,
                known_version,
                timeout_ms: WATCH_WAIT.as_millis() as u64,
            };
            let response = coordinators
                .try_once(WATCH_WAIT + WATCH_TIMEOUT_MARGIN, |mut client| async move {
                    client.watch_inputs(request).await
                })
                .await
                .map_err(|error| failed(call_status(error).to_string()))?;
            if response.lease_lost {
                return Ok(None);
            }
            Ok(Some(UpstreamInputs {
                version: response.version,
                outputs: response
                    .outputs
                    .into_iter()
                    .map(upstream_output_from_wire)
                    .collect(),
                complete: response.complete,
            }))
        })
    }
}

/// A source for tests that run attempts without a coordinator: every question fails.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct NoCoordinator;

#[cfg(test)]
impl InputsSource for NoCoordinator {
    fn watch(&self, attempt: AttemptId, _known_version: u64) -> WatchFuture {
        Box::pin(async move {
            Err(InputsWatchError {
                attempt,
                reason: "no coordinator in this test".into(),
            })
        })
    }
}
