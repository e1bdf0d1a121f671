//! The scheduler's clock: the wall clock read once, when the coordinator starts, then
//! advanced by the monotonic clock.
//!
//! Times the scheduler keeps (leases, retry backoffs, timeouts, submission times) are
//! wall-clock milliseconds, so that they mean the same to the next leader and survive
//! in the journal. But reading the wall clock at every batch let a step of it (NTP, a
//! virtual machine resumed) move every deadline at once: forward, and every lease ran
//! out together, so every running attempt ran again; back, and time stood still (the
//! scheduler never lets it go backwards) until the wall clock caught up, so no lease
//! expired and no dead worker was noticed for as long as the step. Advancing by the
//! monotonic clock keeps both out: a step is seen only by the next coordinator to
//! start.

use std::time::Instant;

use super::wall_clock_ms;

/// Milliseconds since the Unix epoch as of the start, plus the monotonic time since.
#[derive(Debug)]
pub(crate) struct SchedulerClock {
    base_ms: u64,
    started: Instant,
    last_ms: u64,
}

impl SchedulerClock {
    /// Reads the wall clock once.
    pub(crate) fn start() -> Self {
        Self::from(wall_clock_ms(), Instant::now())
    }

    fn from(base_ms: u64, started: Instant) -> Self {
        Self {
            base_ms,
            started,
            last_ms: 0,
        }
    }

    /// Returns the time now, never earlier than the last time returned.
    pub(crate) fn now_ms(&mut self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let now = self.base_ms.saturating_add(elapsed).max(self.last_ms);
        self.last_ms = now;
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_clock_advances_with_the_monotonic_clock_from_its_base() {
        let started = Instant::now() - Duration::from_secs(3);
        let mut clock = SchedulerClock::from(1_000_000, started);
        let first = clock.now_ms();
        assert!((1_003_000..1_004_000).contains(&first), "{first}");
        std::thread::sleep(Duration::from_millis(20));
        let second = clock.now_ms();
        assert!(second >= first + 20, "{first} then {second}");
    }
}
