//! Registration: how the worker gets (and gets again) a worker id from the coordinator,
//! and how the loops learn the current one.
//!
//! A *session* is one registration. The coordinator can forget a worker (it restarted
//! without it, or declared it dead after missing heartbeats); the worker then registers
//! again and gets a new id. Each session has a `generation`, counted by the worker from
//! 1, and everything pulled under a session is tagged with its generation: results of an
//! older generation are dropped rather than reported under the new id, because the
//! coordinator fenced those attempts off when it forgot the worker.
//!
//! The runtime owns the only `watch::Sender<SessionState>`; the loops read it:
//!
//! ```text
//!  Registering ──registered──▶ Registered(g) ──coordinator forgot us──▶ Registering
//!       │                           │                                        │
//!       └───────── drain ───────────┴─▶ Closed ◀──────── drain ──────────────┘
//! ```

use std::collections::HashMap;
use std::time::Duration;

use essaim_proto::capability::CapabilityKey;
use essaim_proto::{CallError, Coordinators, v1};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::WorkerError;
use crate::backoff::RetryBackoff;
use crate::file_access::CapabilityKeyCell;

/// How long one RegisterWorker call may take.
const REGISTER_RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval used when the coordinator leaves it out.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest heartbeat interval honoured, so that a misconfigured coordinator cannot make
/// the worker spin.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// Registration retry delays: capped exponential, full jitter.
pub(crate) const REGISTER_BACKOFF_BASE: Duration = Duration::from_millis(200);
pub(crate) const REGISTER_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The timing a coordinator imposes on a worker, with zeros replaced by usable values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimings {
    /// How often to heart-beat.
    pub heartbeat_interval: Duration,
    /// Silence after which the coordinator declares the worker dead.
    pub worker_timeout: Duration,
    /// Longest time the coordinator holds a pull open.
    pub long_poll: Duration,
}

impl SessionTimings {
    fn from_response(response: &v1::RegisterWorkerResponse) -> Self {
        let heartbeat_interval = match response.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT_INTERVAL,
            milliseconds => Duration::from_millis(milliseconds).max(MIN_HEARTBEAT_INTERVAL),
        };
        // Zero would make every heartbeat look late; ten beats is a common default.
        let worker_timeout = match response.worker_timeout_ms {
            0 => heartbeat_interval * 10,
            milliseconds => Duration::from_millis(milliseconds),
        };
        Self {
            heartbeat_interval,
            worker_timeout,
            long_poll: Duration::from_millis(response.long_poll_ms),
        }
    }
}

/// One registration of this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    /// The id the coordinator gave this worker.
    pub worker_id: u64,
    /// Counts registrations of this process, from 1.
    pub generation: u64,
    /// The timing to respect.
    pub timings: SessionTimings,
}

/// Where the worker stands with the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// Not registered yet, or registering again.
    Registering,
    /// Registered; calls carry this session's worker id.
    Registered(Session),
    /// Will not register again (draining, or stopped).
    Closed,
}

/// Waits until the worker is registered and returns the session, or `None` once the
/// state is `Closed` (or the runtime is gone).
pub(crate) async fn wait_for_session(
    session_rx: &mut watch::Receiver<SessionState>,
) -> Option<Session> {
    let state = session_rx
        .wait_for(|state| !matches!(state, SessionState::Registering))
        .await
        .ok()?;
    match *state {
        SessionState::Registered(session) => Some(session),
        SessionState::Registering | SessionState::Closed => None,
    }
}

/// Waits until the session of `generation` is over (the runtime started registering
/// again, or closed). Used after asking for a re-registration, so that a loop does not
/// call again with the id the coordinator just said it does not know.
pub(crate) async fn wait_for_session_end(
    session_rx: &mut watch::Receiver<SessionState>,
    generation: u64,
) {
    let _ended = session_rx
        .wait_for(|state| match state {
            SessionState::Registered(session) => session.generation != generation,
            SessionState::Registering | SessionState::Closed => true,
        })
        .await;
}

/// Connects and registers, as many times as needed, with whichever coordinator of the
/// list leads.
pub(crate) struct Registrar {
    coordinators: Coordinators,
    request: v1::RegisterWorkerRequest,
    backoff: RetryBackoff,
    /// Receives the file capability key of each registration (`file_access.rs`).
    capability_key: CapabilityKeyCell,
}

/// What the worker tells the coordinator when it registers.
pub(crate) struct RegistrationDetails {
    /// Display name.
    pub name: String,
    /// Attempts run at once.
    pub slots: u32,
    /// Kinds the worker runs.
    pub kinds: Vec<String>,
    /// Where the file server listens.
    pub file_server_url: String,
    /// Free-form labels.
    pub labels: HashMap<String, String>,
    /// Local data directories.
    pub data_dirs: Vec<String>,
    /// Kinds whose attempts run until stopped.
    pub long_running_kinds: Vec<String>,
}

impl Registrar {
    /// Returns a registrar that has not connected yet.
    pub(crate) fn new(
        coordinators: Coordinators,
        details: RegistrationDetails,
        capability_key: CapabilityKeyCell,
        seed: u64,
    ) -> Self {
        let request = v1::RegisterWorkerRequest {
            name: details.name,
            slots: details.slots,
            kinds: details.kinds,
            file_server_url: details.file_server_url,
            labels: details.labels,
            data_dirs: details.data_dirs,
            long_running_kinds: details.long_running_kinds,
            build: essaim_telemetry::BuildInfo::of_this_process().to_string(),
        };
        Self {
            coordinators,
            request,
            backoff: RetryBackoff::new(seed, REGISTER_BACKOFF_BASE, REGISTER_BACKOFF_CAP),
            capability_key,
        }
    }

    /// Registers this worker as session `generation`, connecting first if needed.
    ///
    /// Retries, logging each failure, while the coordinator is unreachable or answers
    /// with a transient error; returns `Ok(None)` if `stop` fires first, and an error
    /// only when no retry can help (a malformed URL, a refused token).
    pub(crate) async fn register(
        &mut self,
        generation: u64,
        stop: &CancellationToken,
    ) -> Result<Option<(Session, Coordinators)>, WorkerError> {
        self.backoff.reset();
        loop {
            let attempt = tokio::select! {
                () = stop.cancelled() => return Ok(None),
                attempt = self.try_register(generation) => attempt,
            };
            let reason = match attempt {
                Ok(registered) => return Ok(Some(registered)),
                Err(RegisterAttemptError::Fatal(error)) => return Err(error),
                Err(RegisterAttemptError::Transient(reason)) => reason,
            };
            let delay = self.backoff.next_delay();
            tracing::warn!(
                coordinator = %self.coordinators.current_url(),
                failures = self.backoff.consecutive_failures(),
                retry_in_ms = delay.as_millis() as u64,
                %reason,
                "failed to register with the coordinator; retrying"
            );
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn try_register(
        &mut self,
        generation: u64,
    ) -> Result<(Session, Coordinators), RegisterAttemptError> {
        let request = self.request.clone();
        let answer = self
            .coordinators
            .try_once(REGISTER_RPC_TIMEOUT, |mut client| async move {
                client.register_worker(request).await
            })
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(CallError::Client(error)) => {
                return Err(RegisterAttemptError::Fatal(WorkerError::Coordinator(error)));
            }
            Err(CallError::Status(status)) if status_is_permanent(&status) => {
                return Err(RegisterAttemptError::Fatal(
                    WorkerError::RegistrationRefused {
                        code: status.code(),
                        message: status.message().to_string(),
                    },
                ));
            }
            Err(CallError::Status(status)) => {
                return Err(RegisterAttemptError::Transient(
                    status.message().to_string(),
                ));
            }
        };
        // Before the session is published: no attempt of this registration fetches
        // another worker's files with the key of the previous one.
        self.capability_key
            .set(CapabilityKey::from_wire(&response.file_capability_key));
        let session = Session {
            worker_id: response.worker_id,
            generation,
            timings: SessionTimings::from_response(&response),
        };
        // The loops share these coordinators: they call whichever one registered us.
        Ok((session, self.coordinators.clone()))
    }
}

enum RegisterAttemptError {
    /// Worth retrying: the coordinator may be starting or restarting.
    Transient(String),
    /// No retry can help.
    Fatal(WorkerError),
}

/// Returns the status a loop logs and retries on for a failed call; an unusable token
/// (refused before any call) reads as UNAUTHENTICATED.
pub(crate) fn call_status(error: CallError) -> tonic::Status {
    match error {
        CallError::Status(status) => status,
        CallError::Client(error) => tonic::Status::unauthenticated(error.to_string()),
    }
}

/// Returns true for answers that the same request will always get again.
fn status_is_permanent(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::InvalidArgument
            | tonic::Code::Unimplemented
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timings_are_replaced_by_usable_values() {
        let timings = SessionTimings::from_response(&v1::RegisterWorkerResponse {
            worker_id: 1,
            heartbeat_interval_ms: 0,
            worker_timeout_ms: 0,
            long_poll_ms: 0,
            ..Default::default()
        });
        assert_eq!(timings.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
        assert_eq!(timings.worker_timeout, DEFAULT_HEARTBEAT_INTERVAL * 10);
        let tiny = SessionTimings::from_response(&v1::RegisterWorkerResponse {
            worker_id: 1,
            heartbeat_interval_ms: 1,
            worker_timeout_ms: 5_000,
            long_poll_ms: 20_000,
            ..Default::default()
        });
        assert_eq!(tiny.heartbeat_interval, MIN_HEARTBEAT_INTERVAL);
        assert_eq!(tiny.long_poll, Duration::from_secs(20));
    }

    #[tokio::test]
    async fn unreachable_coordinator_is_retried_until_stopped() {
        // Port 1 on loopback refuses connections at once.
        let details = RegistrationDetails {
            name: "w".into(),
            slots: 1,
            kinds: vec!["noop".into()],
            file_server_url: "http://127.0.0.1:2".into(),
            labels: HashMap::new(),
            data_dirs: Vec::new(),
            long_running_kinds: Vec::new(),
        };
        let mut registrar = Registrar::new(
            coordinators("http://127.0.0.1:1"),
            details,
            CapabilityKeyCell::default(),
            5,
        );
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        let stop_soon = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            stopper.cancel();
        });
        let registered = registrar.register(1, &stop).await;
        assert!(matches!(registered, Ok(None)), "{:?}", registered.err());
        assert!(registrar.backoff.consecutive_failures() >= 1);
        stop_soon.await.unwrap();
    }

    fn coordinators(list: &str) -> Coordinators {
        let urls = essaim_proto::CoordinatorUrls::parse(list).expect("valid list");
        Coordinators::new(urls, None, 5)
    }

    #[tokio::test]
    async fn an_unusable_token_is_fatal() {
        let details = RegistrationDetails {
            name: "w".into(),
            slots: 1,
            kinds: Vec::new(),
            file_server_url: String::new(),
            labels: HashMap::new(),
            data_dirs: Vec::new(),
            long_running_kinds: Vec::new(),
        };
        let urls = essaim_proto::CoordinatorUrls::parse("http://127.0.0.1:1").expect("valid");
        let coordinators = Coordinators::new(urls, Some("bad\ntoken".into()), 5);
        let mut registrar = Registrar::new(coordinators, details, CapabilityKeyCell::default(), 5);
        let registered = registrar.register(1, &CancellationToken::new()).await;
        assert!(
            matches!(registered, Err(WorkerError::Coordinator(_))),
            "{:?}",
            registered.err()
        );
    }
}
