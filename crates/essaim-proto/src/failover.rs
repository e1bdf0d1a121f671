//! Reaching the leading coordinator among several, through restarts and failovers.
//!
//! Clients and workers are given a list of coordinator URLs. At most one coordinator
//! leads; the others answer every call with UNAVAILABLE, naming the leader in the
//! [`LEADER_METADATA`](crate::LEADER_METADATA) key when they know it. A restarting
//! coordinator refuses connections for a few seconds. Both look the same from here: the
//! call could not be served *there*, so it is tried again, at the named leader if a hint
//! came, else at the next URL of the list, after a jittered, capped exponential delay so
//! that a crowd of workers does not hammer a coordinator that just came back.
//!
//! Every other answer (a refusal, a missing job, a bad argument) is final: it would be
//! the same on the next try, so it is returned at once.
//!
//! Retrying a call is only safe when running it twice is harmless. Reads are; a call
//! that changes state is retried only when the coordinator surely did not run it (it
//! could not be reached, or a standby refused it): see [`Idempotence`].
//!
//! [`Coordinators`] is cheap to clone and its clones share the current target, so the
//! worker's loops all move to the leader as soon as one of them learns where it is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use essaim_core::backoff::full_jitter_delay;
use essaim_core::rng::SeededRng;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::client::{ClientError, CoordinatorClient, connect_trusting};
use crate::leader_hint;

/// How long one connection attempt to one coordinator may take; short, since another
/// coordinator may answer at once.
pub const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// First retry delay ceiling (full jitter: the delay is drawn in `[0, ceiling]`).
pub const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Largest retry delay, so that a restarted coordinator is found within about 2 s.
pub const RETRY_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// After a coordinator could not be reached or did not answer in time, a standby that
/// names it as the leader is not followed back to it for this long: a standby names the
/// old leader until that leader's lease expires (about 2 s after it died or froze), and
/// going back to a frozen one costs a whole call timeout each time. Staying on the
/// standby, the next try finds it leading. Shorter than a worker timeout, so that a
/// leader that was only slow is soon reached again.
pub const SILENT_LEADER_WINDOW: Duration = Duration::from_secs(3);

/// A validated, non-empty list of coordinator URLs, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorUrls(Vec<String>);

impl CoordinatorUrls {
    /// Parses a comma-separated list (`http://c1:7070,http://c2:7070`), refusing an empty
    /// list, an empty entry, or an entry that is not an `http`/`https` URL with a host.
    pub fn parse(list: &str) -> Result<Self, ClientError> {
        let mut urls = Vec::new();
        for entry in list.split(',') {
            let url = entry.trim();
            validate_url(url)?;
            urls.push(url.trim_end_matches('/').to_string());
        }
        Ok(Self(urls))
    }

    /// Returns the URLs in order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Returns the first URL (the list is never empty).
    pub fn first(&self) -> &str {
        &self.0[0]
    }
}

impl std::fmt::Display for CoordinatorUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

fn validate_url(url: &str) -> Result<(), ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if url.is_empty() {
        return Err(invalid(
            "empty entry (give URLs separated by commas, e.g. http://c1:7070,http://c2:7070)",
        ));
    }
    let endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|error| invalid(&error.to_string()))?;
    let uri = endpoint.uri();
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("the scheme must be http:// or https://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(())
}

/// Whether running a call twice is harmless, which decides when it may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotence {
    /// A read, or a change that a repeat leaves as it is (cancel, wait): retried after
    /// any transport failure.
    Idempotent,
    /// A change that a repeat would make twice (a submission): retried only when the
    /// coordinator surely did not run it (unreachable, or a standby's refusal).
    NotIdempotent,
}

/// Where calls go now: a URL of the list, or a leader some standby named.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    url: String,
    /// Position in the list of the URL last taken from it; the next URL tried after a
    /// failure is the one after it.
    list_index: usize,
}

/// Returns where to go after `failed_url` could not serve a call: the leader it named,
/// unless it named itself; else the URL after the current list position.
fn next_target(urls: &[String], current: &Target, hint: Option<&str>) -> Target {
    if let Some(leader) = hint.map(|hint| hint.trim_end_matches('/'))
        && leader != current.url
    {
        return Target {
            url: leader.to_string(),
            list_index: current.list_index,
        };
    }
    let list_index = (current.list_index + 1) % urls.len();
    Target {
        url: urls[list_index].clone(),
        list_index,
    }
}

/// Returns true when the status says the call was not served there, so that another
/// try (elsewhere, or later) may succeed: UNAVAILABLE, or a connection that broke during
/// the call (tonic reports a broken pipe or reset as UNKNOWN with a transport error as
/// its source).
fn is_unavailable(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable || broke_in_transport(status)
}

/// Returns true when a transport error (not the coordinator) produced the status.
fn broke_in_transport(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Returns true when the coordinator surely did not run the call: a standby's refusal
/// (it names a leader) is one, a connection lost mid-call is not.
fn surely_not_run(status: &tonic::Status) -> bool {
    leader_hint(status).is_some()
}

/// Why a call through [`Coordinators::call`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The coordinator answered with a final refusal, or the retries ran out on an
    /// answer that is not safe to repeat.
    #[error(transparent)]
    Status(tonic::Status),
    /// No coordinator could serve the call before the deadline, or the URL or token is
    /// unusable.
    #[error(transparent)]
    Client(ClientError),
}

/// One failed try, as told to whoever watches the retries.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    /// The coordinator that could not serve the call.
    pub url: String,
    /// Where the next try goes.
    pub next_url: String,
    /// What went wrong, in the transport's or the coordinator's words.
    pub reason: String,
    /// Failures in a row, from 1.
    pub failures: u32,
    /// Time left before the caller gives up, `None` when it never does.
    pub remaining: Option<Duration>,
}

/// Called on every failed try; the CLI tells the user, the worker logs.
pub type RetryObserver = Arc<dyn Fn(&RetryNotice) + Send + Sync>;

/// State shared by the clones of one [`Coordinators`].
struct Shared {
    target: Target,
    /// The connected client of `target`, if any.
    client: Option<CoordinatorClient>,
    rng: SeededRng,
    /// The last coordinator that could not be reached or did not answer in time, and
    /// when (see [`SILENT_LEADER_WINDOW`]).
    silent: Option<(String, Instant)>,
}

impl Shared {
    /// Whether `url` went silent less than [`SILENT_LEADER_WINDOW`] ago.
    fn recently_silent(&self, url: &str) -> bool {
        let url = url.trim_end_matches('/');
        self.silent
            .as_ref()
            .is_some_and(|(silent, at)| silent == url && at.elapsed() < SILENT_LEADER_WINDOW)
    }
}

/// The coordinator URLs, the token, where calls go now and its connected client.
#[derive(Clone)]
pub struct Coordinators {
    urls: CoordinatorUrls,
    token: Option<String>,
    /// The roots an `https://` coordinator's certificate is verified with.
    trust: essaim_tls::ClientTrust,
    shared: Arc<Mutex<Shared>>,
    /// Ticks whenever the target changes, so that calls still waiting on the old target
    /// (a coordinator paused mid-call answers nothing) give up at once.
    moves: Arc<tokio::sync::watch::Sender<u64>>,
    observer: RetryObserver,
}

impl std::fmt::Debug for Coordinators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinators")
            .field("urls", &self.urls)
            .field("current", &self.current_url())
            .finish_non_exhaustive()
    }
}

impl Coordinators {
    /// Returns coordinators that start at the first URL; `seed` spreads the retry delays
    /// of processes that fail together. Failed tries are logged at WARN.
    pub fn new(urls: CoordinatorUrls, token: Option<String>, seed: u64) -> Self {
        let target = Target {
            url: urls.first().to_string(),
            list_index: 0,
        };
        Self {
            urls,
            token,
            trust: essaim_tls::ClientTrust::system(),
            shared: Arc::new(Mutex::new(Shared {
                target,
                client: None,
                rng: SeededRng::new(seed),
                silent: None,
            })),
            moves: Arc::new(tokio::sync::watch::channel(0).0),
            observer: Arc::new(log_retry),
        }
    }

    /// Replaces what is done on every failed try.
    pub fn with_observer(mut self, observer: RetryObserver) -> Self {
        self.observer = observer;
        self
    }

    /// Verifies `https://` coordinators' certificates with `trust` (default: the
    /// system's roots).
    pub fn with_trust(mut self, trust: essaim_tls::ClientTrust) -> Self {
        self.trust = trust;
        self
    }

    /// Returns the roots `https://` coordinators are verified with.
    pub fn trust(&self) -> &essaim_tls::ClientTrust {
        &self.trust
    }

    /// Returns the URL list.
    pub fn urls(&self) -> &CoordinatorUrls {
        &self.urls
    }

    /// Returns the URL calls go to now.
    pub fn current_url(&self) -> String {
        self.lock().target.url.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding this lock leaves the target valid: keep using it.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns a client of the current target and its URL, connecting first if needed.
    /// Fails with [`ClientError::Unreachable`] when nothing answers there (call
    /// [`Self::failed`] then), or with another [`ClientError`] that no retry can fix.
    pub async fn client(&self) -> Result<(CoordinatorClient, String), ClientError> {
        let url = {
            let shared = self.lock();
            if let Some(client) = &shared.client {
                return Ok((client.clone(), shared.target.url.clone()));
            }
            shared.target.url.clone()
        };
        let client = connect_trusting(
            &url,
            self.token.as_deref(),
            CONNECT_ATTEMPT_TIMEOUT,
            &self.trust,
        )
        .await?;
        let mut shared = self.lock();
        // Another clone may have moved on meanwhile; its choice wins.
        if shared.target.url == url {
            shared.client = Some(client.clone());
        }
        Ok((client, url))
    }

    /// Records that `failed_url` could not serve a call, and moves to the leader named
    /// by `hint`, or to the next URL. Does nothing if another clone already moved away
    /// from `failed_url`. Returns the URL calls go to now.
    pub fn failed(&self, failed_url: &str, hint: Option<&str>) -> String {
        let mut shared = self.lock();
        if hint.is_some_and(|leader| shared.recently_silent(leader)) {
            // A standby that does not know yet that its leader is gone: stay with it.
            return shared.target.url.clone();
        }
        if shared.target.url == failed_url {
            shared.target = next_target(self.urls.as_slice(), &shared.target, hint);
            // Staying on the same URL (a list of one) keeps the channel, which reconnects
            // by itself once the coordinator is back: no connection churn when a busy
            // coordinator is merely slow.
            if shared.target.url != failed_url {
                shared.client = None;
                self.moves.send_modify(|moves| *moves += 1);
            }
        }
        shared.target.url.clone()
    }

    /// Records that `url` could not be reached or did not answer in time, then moves on
    /// as [`Self::failed`] does.
    pub fn went_silent(&self, url: &str) -> String {
        self.lock().silent = Some((url.to_string(), Instant::now()));
        self.failed(url, None)
    }

    /// Resolves once calls no longer go to `url`.
    async fn moved_away_from(&self, url: &str) {
        let mut moves = self.moves.subscribe();
        while self.current_url() == url {
            if moves.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Returns the delay before retry number `failures` (from 1).
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let delay_ms = full_jitter_delay(
            &mut self.lock().rng,
            failures,
            millis(RETRY_BACKOFF_BASE),
            millis(RETRY_BACKOFF_CAP),
        );
        Duration::from_millis(delay_ms)
    }

    /// Runs one try of `rpc` at the current target, giving up after `timeout`. When no
    /// coordinator could serve it there (unreachable, a standby, or no answer in time),
    /// moves on — to the named leader, else to the next URL — and returns UNAVAILABLE
    /// saying where it failed: the caller keeps its own retry loop and backoff (the
    /// worker's loops retry forever). Fails with [`CallError::Client`] only when no
    /// retry can help (an unusable token).
    pub async fn try_once<T, F, Fut>(&self, timeout: Duration, rpc: F) -> Result<T, CallError>
    where
        F: FnOnce(CoordinatorClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (client, url) = match self.client().await {
            Ok(connected) => connected,
            Err(ClientError::Unreachable { url, reason }) => {
                self.went_silent(&url);
                let message = format!("cannot reach the coordinator at {url}: {reason}");
                return Err(CallError::Status(tonic::Status::unavailable(message)));
            }
            Err(fatal) => return Err(CallError::Client(fatal)),
        };
        let answer = tokio::select! {
            answer = tokio::time::timeout(timeout, rpc(client)) => answer,
            () = self.moved_away_from(&url) => {
                // Another call found this coordinator gone and moved on: follow it.
                let message = format!("gave up on the coordinator at {url}: calls moved to another one");
                return Err(CallError::Status(tonic::Status::unavailable(message)));
            }
        };
        let status = match answer {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) if !is_unavailable(&status) => return Err(CallError::Status(status)),
            Ok(Err(status)) => status,
            Err(_elapsed) => {
                self.went_silent(&url);
                return Err(CallError::Status(tonic::Status::unavailable(format!(
                    "no answer from the coordinator at {url} within {} ms",
                    timeout.as_millis()
                ))));
            }
        };
        self.failed(&url, leader_hint(&status).as_deref());
        Err(CallError::Status(status))
    }

    /// Runs `rpc` against the leader, trying again (at the named leader, else at the next
    /// URL, after a backoff) while no coordinator can serve it, until `deadline` (`None`:
    /// forever). Returns any other answer at once. `idempotence` says whether a try that
    /// may have run may be repeated.
    pub async fn call<T, F, Fut>(
        &self,
        deadline: Option<Instant>,
        idempotence: Idempotence,
        mut rpc: F,
    ) -> Result<T, CallError>
    where
        F: FnMut(CoordinatorClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut failures = 0u32;
        loop {
            let (url, hint, failure) = match self.client().await {
                Ok((client, url)) => match rpc(client).await {
                    Ok(response) => return Ok(response.into_inner()),
                    // A server that refuses this client's certificate (mutual TLS)
                    // does so only after the connection is made, at the first call;
                    // it will refuse it again a minute later.
                    Err(status) if let Some(failure) = essaim_tls::handshake_failure(&status) => {
                        return Err(CallError::Client(ClientError::Tls { url, failure }));
                    }
                    Err(status) if !is_unavailable(&status) => {
                        return Err(CallError::Status(status));
                    }
                    Err(status)
                        if idempotence == Idempotence::NotIdempotent
                            && !surely_not_run(&status) =>
                    {
                        return Err(CallError::Status(status));
                    }
                    Err(status) => (url, leader_hint(&status), Failure::Status(status)),
                },
                Err(ClientError::Unreachable { url, reason }) => {
                    (url.clone(), None, Failure::Unreachable { url, reason })
                }
                Err(fatal) => return Err(CallError::Client(fatal)),
            };
            failures = failures.saturating_add(1);
            let next_url = match failure {
                Failure::Unreachable { .. } => self.went_silent(&url),
                Failure::Status(_) => self.failed(&url, hint.as_deref()),
            };
            let now = Instant::now();
            let remaining = deadline.map(|deadline| deadline.saturating_duration_since(now));
            (self.observer)(&RetryNotice {
                url: url.clone(),
                next_url,
                reason: failure.reason(),
                failures,
                remaining,
            });
            let delay = self.retry_delay(failures);
            if remaining.is_some_and(|remaining| remaining <= delay) {
                return Err(failure.into_call_error(&self.urls));
            }
            tokio::time::sleep(delay).await;
        }
    }
}

/// The last failure of a call, kept to be returned when the deadline passes.
enum Failure {
    Status(tonic::Status),
    Unreachable { url: String, reason: String },
}

impl Failure {
    fn reason(&self) -> String {
        match self {
            Self::Status(status) => status.message().to_string(),
            Self::Unreachable { reason, .. } => reason.clone(),
        }
    }

    fn into_call_error(self, urls: &CoordinatorUrls) -> CallError {
        match self {
            Self::Status(status) => CallError::Status(status),
            Self::Unreachable { url, reason } => {
                let url = if urls.as_slice().len() > 1 {
                    format!("{url} (nor at any of {urls})")
                } else {
                    url
                };
                CallError::Client(ClientError::Unreachable { url, reason })
            }
        }
    }
}

/// The default observer: one WARN line per failed try.
fn log_retry(notice: &RetryNotice) {
    tracing::warn!(
        coordinator = %notice.url,
        next = %notice.next_url,
        failures = notice.failures,
        remaining_s = notice.remaining.map(|remaining| remaining.as_secs()),
        reason = %notice.reason,
        "coordinator cannot serve the call; retrying"
    );
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
