//! The circuit breaker of every connector (PostgreSQL, NATS, Kafka, files), as a pure
//! state machine; [`crate::guard`] puts it around a connector's calls.
//!
//! When a server is down, every attempt costs a timeout and a log line. After
//! `failure_threshold` consecutive failures the breaker **opens**: calls fail at once
//! with the time left, for `cool_down`. Then it lets **one** probe through
//! (half-open): a success closes it, a failure opens it for another cool-down. Other
//! calls made while the probe is out are refused; a probe whose outcome never comes (its
//! caller was cancelled) is replaced by another after a cool-down, so the breaker cannot
//! stay half-open for good. Time comes in as an argument, so the breaker is tested
//! without sleeping.
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

/// How a breaker opens and how long it stays open: the defaults of every connector's
/// breaker are defined here, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls (default 5 s).
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
        }
    }
}

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
    /// One probe is out; its outcome closes or reopens the breaker. Other calls are
    /// refused until `probe_until`, when another probe may go (the first was lost).
    HalfOpen {
        /// When a new probe may replace the one out.
        probe_until: Instant,
    },
}

impl BreakerState {
    /// Returns the state as a number for a gauge: 0 closed, 1 half-open, 2 open.
    pub fn level(self) -> i64 {
        match self {
            BreakerState::Closed { .. } => 0,
            BreakerState::HalfOpen { .. } => 1,
            BreakerState::Open { .. } => 2,
        }
    }
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
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker {
            failure_threshold: config.failure_threshold.max(1),
            cool_down: config.cool_down,
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
    /// probe. An open breaker whose cool-down is over becomes half-open, and the call
    /// that finds it so is the probe.
    pub fn allow(&mut self, now: Instant) -> Result<(), Duration> {
        match self.state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } | BreakerState::HalfOpen { probe_until: until }
                if now >= until =>
            {
                self.state = BreakerState::HalfOpen {
                    probe_until: now + self.cool_down,
                };
                Ok(())
            }
            BreakerState::Open { until } | BreakerState::HalfOpen { probe_until: until } => {
                Err(until - now)
            }
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
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => open,
            // A call that started before the breaker opened: keep the running cool-down.
            BreakerState::Open { until } => BreakerState::Open { until },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(failure_threshold: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold,
            cool_down: Duration::from_secs(1),
        }
    }

    #[test]
    fn opens_after_threshold_then_half_opens_after_cool_down() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(config(3));
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
        assert!(matches!(breaker.state(), BreakerState::HalfOpen { .. }));
        assert_eq!(breaker.state().level(), 1);
    }

    #[test]
    fn one_probe_at_a_time_and_a_lost_probe_is_replaced_after_a_cool_down() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(config(1));
        breaker.on_failure(start);
        assert_eq!(breaker.state().level(), 2);
        let probe = start + Duration::from_secs(1);
        assert!(breaker.allow(probe).is_ok(), "the probe goes");
        assert_eq!(
            breaker.allow(probe + Duration::from_millis(300)),
            Err(Duration::from_millis(700)),
            "a second caller waits for the probe's outcome"
        );
        // The probe's caller never reports: another probe goes a cool-down later.
        assert!(breaker.allow(probe + Duration::from_secs(1)).is_ok());
        breaker.on_success();
        assert_eq!(breaker.state().level(), 0);
    }

    #[test]
    fn failed_probe_reopens_and_successful_probe_closes() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(config(1));
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
        let mut breaker = CircuitBreaker::new(config(2));
        breaker.on_failure(start);
        breaker.on_success();
        breaker.on_failure(start);
        assert!(breaker.allow(start).is_ok());
    }
}
