//! Named deadlines: a test never sleeps to wait for a condition, it polls until a
//! [`Deadline`] and fails naming what it was waiting for; a single call that may hang
//! runs [`within`] a timeout that names it.
//!
//! The only fixed pauses in tests are the ones a test chooses on purpose (chaos pacing,
//! or a window in which nothing must happen).

use std::time::{Duration, Instant};

/// How long an "eventually" condition may take on a slow, loaded machine.
pub const EVENTUALLY: Duration = Duration::from_secs(60);

/// Period of every polling loop.
pub const POLL_PERIOD: Duration = Duration::from_millis(50);

/// Longest a single RPC may take before the test gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A point in time by which a named condition must hold.
pub struct Deadline {
    what: String,
    at: Instant,
}

impl Deadline {
    /// Returns a deadline `timeout` from now for the condition `what`.
    pub fn after(timeout: Duration, what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            at: Instant::now() + timeout,
        }
    }

    /// Panics if the deadline has passed.
    pub fn check(&self) {
        assert!(
            Instant::now() < self.at,
            "timed out waiting for {}",
            self.what
        );
    }

    /// Panics if the deadline has passed, else waits one polling period.
    pub async fn tick(&self) {
        self.check();
        tokio::time::sleep(POLL_PERIOD).await;
    }
}

/// Polls `probe` on this thread, every `period`, until it returns a value; fails the
/// test after `timeout`, naming `what`. For tests without an async runtime (the
/// container tests drive `docker` synchronously).
pub fn poll_blocking<T>(
    what: &str,
    timeout: Duration,
    period: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Deadline::after(timeout, what);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        deadline.check();
        std::thread::sleep(period);
    }
}

/// Runs one future (an RPC) with a generous timeout, so a hung call fails the test with a
/// name instead of hanging it.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not answer within {CALL_TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_returns_the_first_value_the_probe_finds() {
        let mut calls = 0;
        let found = poll_blocking(
            "the third call",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                (calls == 3).then_some(calls)
            },
        );
        assert_eq!(found, 3);
    }

    #[test]
    #[should_panic(expected = "timed out waiting for nothing")]
    fn polling_fails_naming_what_it_waited_for() {
        poll_blocking("nothing", Duration::ZERO, Duration::ZERO, || None::<()>);
    }
}
