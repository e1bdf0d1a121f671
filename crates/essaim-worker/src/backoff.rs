//! Retry delays for the worker's RPC loops: capped exponential backoff with full jitter,
//! and the ±10 % jitter of heartbeats.
//!
//! Jitter matters here because workers fail together: when the coordinator restarts,
//! every worker loses it at the same instant, and without jitter they would all come
//! back at the same instant too. The delay formula itself is the core's
//! [`full_jitter_delay`]; this module only keeps the per-loop failure count and seed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use essaim_core::backoff::full_jitter_delay;
use essaim_core::rng::SeededRng;

/// Consecutive-failure counter of one retry loop.
#[derive(Debug, Clone)]
pub(crate) struct RetryBackoff {
    rng: SeededRng,
    consecutive_failures: u32,
    base: Duration,
    cap: Duration,
}

impl RetryBackoff {
    /// Returns a backoff whose delays grow from `base` to at most `cap`.
    pub(crate) fn new(seed: u64, base: Duration, cap: Duration) -> Self {
        Self {
            rng: SeededRng::new(seed),
            consecutive_failures: 0,
            base,
            cap,
        }
    }

    /// Counts one more failure and returns how long to wait before the next try.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let delay_ms = full_jitter_delay(
            &mut self.rng,
            self.consecutive_failures,
            millis(self.base),
            millis(self.cap),
        );
        Duration::from_millis(delay_ms)
    }

    /// Returns how many tries failed in a row.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Forgets the failures after a success.
    pub(crate) fn reset(&mut self) {
        self.consecutive_failures = 0;
    }
}

/// Returns `interval` moved by up to ±10 %, so that workers started together do not
/// heart-beat in lockstep.
pub(crate) fn jittered_interval(rng: &mut SeededRng, interval: Duration) -> Duration {
    let interval_ms = millis(interval);
    let lowest_ms = interval_ms - interval_ms / 10;
    Duration::from_millis(lowest_ms + rng.up_to(interval_ms / 5))
}

/// Returns a seed that differs between processes and between calls (the clock and the
/// process id), since the jitter only needs to differ between workers.
pub(crate) fn fresh_seed(salt: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since_epoch| since_epoch.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ salt.rotate_left(17)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_cap_and_reset_after_success() {
        let cap = Duration::from_secs(2);
        let mut backoff = RetryBackoff::new(3, Duration::from_millis(50), cap);
        for _ in 0..50 {
            assert!(backoff.next_delay() <= cap);
        }
        assert_eq!(backoff.consecutive_failures(), 50);
        backoff.reset();
        assert_eq!(backoff.consecutive_failures(), 0);
        assert!(backoff.next_delay() <= Duration::from_millis(50));
    }

    #[test]
    fn heartbeat_jitter_stays_within_ten_percent() {
        let mut rng = SeededRng::new(9);
        let interval = Duration::from_millis(1000);
        for _ in 0..200 {
            let jittered = jittered_interval(&mut rng, interval);
            assert!(jittered >= Duration::from_millis(900), "{jittered:?}");
            assert!(jittered <= Duration::from_millis(1100), "{jittered:?}");
        }
    }
}
