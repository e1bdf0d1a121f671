//! The circuit breaker around the PostgreSQL connection (the backoff between retries is
//! `essaim_connect::backoff`, shared with the other connectors).
//!
//! When PostgreSQL is down, every attempt costs a connect timeout and a log line. After
//! `failure_threshold` consecutive failures the breaker **opens**: calls fail at once
//! with the time left, for `cool_down`. Then it lets **one** probe through
//! (half-open): a success closes it, a failure opens it for another cool-down. Time
//! comes in as an argument, so the breaker is a pure state machine and tested without
//! sleeping.
//!
//! ```text
//!            failure (count < threshold)
//!              ┌────┐
//!              ▼    │  failure (count = threshold)
//!   ──────▶ Closed ─┴──────────────────────────▶ Open{until}
//!              ▲                                  │   ▲
//!              │ success        now ≥ until:      │   │ failure
//!              └─────────── HalfOpen ◀────────────┘   │
//!                               └─────────────────────┘
//! ```
use std::time::{Duration, Instant};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `consecutive_failures` so far.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// Calls fail at once until `until`.
    Open {
        /// End of the cool-down.
        until: Instant,
    },
    /// One probe is allowed; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// A circuit breaker (see the module doc).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cool_down: Duration,
    state: BreakerState,
}

impl CircuitBreaker {
    /// Returns a closed breaker that opens after `failure_threshold` (at least 1)
    /// consecutive failures, for `cool_down`.
    pub fn new(failure_threshold: u32, cool_down: Duration) -> CircuitBreaker {
        CircuitBreaker {
            failure_threshold: failure_threshold.max(1),
            cool_down,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// Returns the current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Returns `Ok` when a call may go through at `now`, else the time until the next
    /// probe. An open breaker whose cool-down is over becomes half-open.
    pub fn allow(&mut self, now: Instant) -> Result<(), Duration> {
        match self.state {
            BreakerState::Closed { .. } | BreakerState::HalfOpen => Ok(()),
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                Ok(())
            }
            BreakerState::Open { until } => Err(until - now),
        }
    }

    /// Records a successful call: the breaker closes.
    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed {
            consecutive_failures: 0,
        };
    }

    /// Records a failed call at `now`.
    pub fn on_failure(&mut self, now: Instant) {
        let open = BreakerState::Open {
            until: now + self.cool_down,
        };
        self.state = match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } if consecutive_failures + 1 < self.failure_threshold => BreakerState::Closed {
                consecutive_failures: consecutive_failures + 1,
            },
            // The threshold is reached, or the half-open probe failed.
            BreakerState::Closed { .. } | BreakerState::HalfOpen => open,
            // A call that started before the breaker opened: keep the running cool-down.
            BreakerState::Open { until } => BreakerState::Open { until },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_after_cool_down() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(3, Duration::from_secs(1));
        for _ in 0..2 {
            assert!(breaker.allow(start).is_ok());
            breaker.on_failure(start);
        }
        assert!(matches!(breaker.state(), BreakerState::Closed { .. }));
        breaker.on_failure(start);
        assert_eq!(
            breaker.allow(start + Duration::from_millis(400)),
            Err(Duration::from_millis(600))
        );
        assert!(breaker.allow(start + Duration::from_secs(1)).is_ok());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn failed_probe_reopens_and_successful_probe_closes() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(1, Duration::from_secs(1));
        breaker.on_failure(start);
        let after = start + Duration::from_secs(1);
        assert!(breaker.allow(after).is_ok());
        breaker.on_failure(after);
        assert!(breaker.allow(after).is_err());
        let later = after + Duration::from_secs(1);
        assert!(breaker.allow(later).is_ok());
        breaker.on_success();
        assert_eq!(
            breaker.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn success_resets_the_failure_count() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(2, Duration::from_secs(1));
        breaker.on_failure(start);
        breaker.on_success();
        breaker.on_failure(start);
        assert!(breaker.allow(start).is_ok());
    }
}
