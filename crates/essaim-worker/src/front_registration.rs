//! How a long-running task that serves (a query leaf, a model replica) stays known to
//! the process in front of it (the query root, the model front).
//!
//! The task registers its address at once and then every `every`, and the front drops
//! a registration that stops coming: registering again is the liveness signal, so the
//! front needs no connection to the coordinator to learn that a worker died. The loop
//! ends in one of three ways, and each is a decision made here for every such task:
//! - cancelled (the coordinator stopped the attempt): `Ok`;
//! - the front answers 409 Conflict (another attempt now holds this place): a
//!   **retryable** failure, so the coordinator places the task again if it still wants
//!   it;
//! - the front has not accepted a registration for `lost_after` (gone, or failing): a
//!   **permanent** failure, since a task nobody can reach serves no one; the job that
//!   owns the front decides what happens next.
use std::time::{Duration, Instant};

use bytes::Bytes;
use essaim_core::TaskFailure;
use essaim_http_client::{PooledClient, error_text};
use essaim_tls::ClientTrust;
use tokio_util::sync::CancellationToken;

/// A registration and where it goes.
#[derive(Debug, Clone)]
pub struct FrontRegistration {
    /// Who is registered with, for messages: "the query root", "the front".
    pub front: &'static str,
    /// What the task is to it, for messages: "leaf", "replica".
    pub role: &'static str,
    /// The URL registrations are POSTed to.
    pub endpoint: String,
    /// The registration, as JSON.
    pub body: Bytes,
    /// How often to register.
    pub every: Duration,
    /// How long the front may go without accepting one before the task ends.
    pub lost_after: Duration,
    /// The roots an `https://` front is verified with, and the certificate presented
    /// to a front requiring one: the worker's ([`crate::AttemptContext::tls`]).
    pub trust: ClientTrust,
}

/// Longest one registration may take, connection included; a slower one counts as not
/// accepted (the front may be overloaded, not gone: the loop goes on until `lost_after`).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Registers every [`FrontRegistration::every`] until `cancel` (see the module doc for
/// how it ends).
pub async fn register_until_cancelled(
    registration: &FrontRegistration,
    cancel: &CancellationToken,
) -> Result<(), TaskFailure> {
    let client = PooledClient::new(&registration.trust, CALL_TIMEOUT, CALL_TIMEOUT);
    let json = http::HeaderValue::from_static("application/json");
    let mut last_accepted = Instant::now();
    let mut ticker = tokio::time::interval(registration.every);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        let sent = client
            .call(
                http::Method::POST,
                &registration.endpoint,
                Some(&json),
                registration.body.clone(),
            )
            .await;
        let failed = match sent {
            Ok(answer) if answer.status().is_success() => {
                last_accepted = Instant::now();
                continue;
            }
            Ok(answer) if answer.status() == http::StatusCode::CONFLICT => {
                let (front, role) = (registration.front, registration.role);
                let why = error_text(answer.body());
                return Err(TaskFailure::retryable(format!(
                    "{front} refused this {role}: {why}"
                )));
            }
            Ok(answer) => format!(
                "{} answered {}: {}",
                registration.endpoint,
                answer.status(),
                error_text(answer.body())
            ),
            Err(unreachable) => unreachable.to_string(),
        };
        if last_accepted.elapsed() >= registration.lost_after {
            let (front, lost) = (registration.front, registration.lost_after);
            return Err(TaskFailure::permanent(format!(
                "{front} has been unreachable for {lost:?}, stopping: {failed}"
            )));
        }
        tracing::debug!(error = %failed, front = registration.front, "cannot register yet");
    }
}

#[cfg(test)]
#[path = "front_registration_tests.rs"]
mod tests;
